"""The Backend contract and registry, on the real CPU runtimes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

from edgekit.backends import BUILTIN_BACKENDS, backend_class, backend_names, open_backend
from edgekit.errors import BackendUnavailable, InferenceError, InvalidModel, UsageError
from edgekit.model import load_model
from edgekit.preprocess import read_image

MOBILENET = "mobilenet_v1_0.25_128_quant.tflite"


def test_registry_names_builtins_and_refuses_unknown() -> None:
    assert set(BUILTIN_BACKENDS) <= set(backend_names())
    with pytest.raises(UsageError, match="unknown backend 'nope'.*tflite"):
        backend_class("nope")


def test_third_party_backend_through_entry_point(tmp_path: Path) -> None:
    """A plugin registered under edgekit.backends is listed and opened like a built-in."""
    (tmp_path / "echo_backend.py").write_text(textwrap.dedent('''
        import numpy as np
        from edgekit.backends import Backend, BackendStatus
        from edgekit.bundle.tensors import TensorInfo

        class EchoBackend(Backend):
            name = "echo"
            suffixes = (".npy",)

            def __init__(self, model, *, device=None, threads=None):
                super().__init__(model, device=device, threads=threads)
                shape = tuple(np.load(self.model_path).shape)
                self.inputs = self.outputs = (TensorInfo("x", shape, "float32"),)
                self.runtime = "echo 1.0"

            @classmethod
            def probe(cls):
                return BackendStatus("echo", True, runtime="echo 1.0", devices=["CPU"])

            def _invoke(self, inputs):
                return [inputs[0] * 2]
    '''))
    info = tmp_path / "edgekit_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekit-echo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edgekit.backends]\necho = echo_backend:EchoBackend\n")
    model = tmp_path / "shape.npy"
    np.save(model, np.zeros((1, 3), np.float32))
    code = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from edgekit.backends import backend_names, open_backend, probe_all
        assert "echo" in backend_names()
        with open_backend("echo", {str(model)!r}) as b:
            print(b.infer(np.ones((1, 3)))[0].tolist())
        print([s.name for s in probe_all() if s.usable])
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[[2.0, 2.0, 2.0]]" in out.stdout and "'echo'" in out.stdout
    listed = run_cli("backends", env={"PYTHONPATH": str(tmp_path)})
    assert any(line.startswith("echo ") and " yes " in line for line in listed.stdout.splitlines())


def test_a_plugin_that_fails_to_import_is_unavailable_with_its_error(tmp_path: Path) -> None:
    """A third-party backend whose module raises on import is a BackendUnavailable naming the
    error (not "unexpected ImportError"); the others are still listed and usable."""
    (tmp_path / "broken_backend.py").write_text("import numpy_that_is_not_there\n")
    info = tmp_path / "edgekit_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekit-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[edgekit.backends]\nbroken = broken_backend:BrokenBackend\n")
    env = {"PYTHONPATH": str(tmp_path)}
    listed = run_cli("backends", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    statuses = {s["name"]: s for s in json.loads(listed.stdout)}
    assert not statuses["broken"]["usable"]
    assert "ModuleNotFoundError: No module named 'numpy_that_is_not_there'" in \
        statuses["broken"]["reason"]
    assert statuses["tflite"]["usable"]
    (tmp_path / "x.tflite").write_bytes(b"\0" * 64)
    result = run_cli("classify", tmp_path / "x.tflite", tmp_path / "y.png", "--backend", "broken",
                     env=env)
    assert_clean_error(result, "backend 'broken' cannot be loaded", "numpy_that_is_not_there")
    assert result.returncode == 1 and "unexpected" not in result.stderr


def test_the_registry_resolves_a_class_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import edgekit.backends as registry

    monkeypatch.setattr(registry, "_RESOLVED", {})
    imported: list[str] = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: imported.append(name) or real(name, *a))
    first = backend_class("onnxruntime")
    assert backend_class("onnxruntime") is first and backend_class("onnxruntime") is first
    assert imported == ["edgekit.backends.onnxruntime"]


@pytest.mark.parametrize("backend", ["tflite", "openvino"])
def test_same_tflite_file_on_two_runtimes(coral: Path, backend: str) -> None:
    labels = coral / "imagenet_labels.txt"
    with load_model(coral / MOBILENET, backend=backend, labels=labels, threads=1) as model:
        assert model.backend.threads == 1
        cat = model.classify(read_image(coral / "cat.bmp"), 3)
        gown = model.classify(read_image(coral / "grace_hopper.bmp"), 3)
    assert all("cat" in c.label for c in cat)
    assert gown[0].label.startswith("academic gown")


def test_bare_integer_model_takes_pixels_as_trained(coral: Path) -> None:
    """The spec read from a uint8 input makes each pixel quantise to itself."""
    from edgekit.bundle.quant import quantize

    with load_model(coral / MOBILENET) as model:
        spec, tensor_info = model.spec, model.backend.inputs[0]
        assert spec.mean == (128.0,) * 3 and spec.std == (128.0,) * 3
        pixels = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1).repeat(3, axis=3)
    q = quantize((pixels - 128.0) / 128.0, tensor_info.__class__(
        "x", pixels.shape, "uint8", tensor_info.quantization))
    assert np.array_equal(q, pixels.astype(np.uint8))


@pytest.mark.slow
def test_cpu_backends_agree_on_lenet(lenet_bundle: Path) -> None:
    from edgekit.bundle.fidelity import load_validation

    x = load_validation(lenet_bundle).x[:5]
    results = {}
    for backend, fmt in [("tflite", "tflite-fp32"), ("tflite", "tflite-int8"),
                         ("onnxruntime", "onnx"), ("openvino", "openvino-fp32"),
                         ("openvino", "onnx"), ("openvino", "tflite-int8")]:
        with load_model(lenet_bundle, backend=backend, fmt=fmt, threads=1) as model:
            out = np.concatenate([model.predict(s[None])[0] for s in x])
        assert out.dtype == np.float32  # integer artifacts come back dequantised
        results[(backend, fmt)] = out
    reference = results[("tflite", "tflite-fp32")]
    for key, out in results.items():
        assert np.array_equal(out.argmax(1), reference.argmax(1)), key
        assert np.abs(out - reference).max() < 0.1, key


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("backend,name", [
    ("tflite", "lenet5_digits_fp32.tflite"), ("tflite", "lenet5_digits_int8.tflite"),
    ("onnxruntime", "lenet5_digits.onnx"), ("openvino", "lenet5_digits_fp32.xml")])
def test_the_hot_path_checks_what_the_first_call_checks(lenet_bundle: Path, backend: str,
                                                        name: str) -> None:
    """After the first call, infer takes its one-closure hot path (``_fast_infer``): bad
    input is still refused with the same errors, and anything it does not take as it is
    gives what the checked path gives."""
    from edgekit.bundle.fidelity import load_validation

    x = load_validation(lenet_bundle).x[:1].astype(np.float32)
    with open_backend(backend, lenet_bundle / name) as b:
        first = b.infer(x)[0]
        assert b._fast is not None
        assert np.array_equal(b.infer(x)[0], first)  # the hot path gives the same
        assert np.array_equal(b.infer(x.astype(np.float64))[0], first)  # converted
        wide = np.zeros((1, 32, 64, 1), np.float32)
        wide[:, :, ::2] = x
        assert np.array_equal(b.infer(wide[:, :, ::2])[0], first)  # not contiguous
        assert len(b.infer(np.full_like(x, 1e20))) == 1  # x.x overflows; finite: it runs
        for bad, says in ((np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")):
            y = x.copy()
            y[0, 5, 5, 0] = bad
            with pytest.raises(InferenceError, match=says):
                b.infer(y)
        with pytest.raises(InferenceError, match=r"\(1, 28, 28, 1\)|takes"):
            b.infer(np.zeros((1, 28, 28, 1), np.float32))
        assert np.array_equal(b.infer(x)[0], first)  # and it goes on after an error
    with pytest.raises(InferenceError, match="closed"):
        b.infer(x)


def test_bad_model_files_raise_typed_errors(tmp_path: Path, coral: Path) -> None:
    data = (coral / MOBILENET).read_bytes()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    for backend in ("tflite", "openvino"):
        with pytest.raises(InvalidModel, match="damaged or truncated"):
            open_backend(backend, truncated)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(InvalidModel, match="junk.onnx"):
            open_backend(backend, junk)
    lone = tmp_path / "lone.xml"
    lone.write_text("<net/>")
    with pytest.raises(InvalidModel, match=r"no weights file beside it \(lone.bin\)"):
        open_backend("openvino", lone)
    with pytest.raises(InvalidModel, match="fake-op-double"):
        open_backend("tflite", coral / "model_invoking_error.tflite")
    with pytest.raises(InvalidModel, match="model_invoking_error.tflite"):
        open_backend("openvino", coral / "model_invoking_error.tflite")
    with pytest.raises(InvalidModel, match="compiled for the Edge TPU.*--backend edgetpu"):
        open_backend("tflite", coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    with pytest.raises(InvalidModel, match="reads .tflite"):
        open_backend("tflite", junk)


def test_wrong_input_shape_and_dtype(coral: Path) -> None:
    with open_backend("tflite", coral / MOBILENET) as backend:
        with pytest.raises(InferenceError, match=r"shape \(1, 64, 64, 3\).*\(1, 128, 128, 3\)"):
            backend.infer(np.zeros((1, 64, 64, 3), np.float32))
        with pytest.raises(InferenceError, match="is int32"):
            backend.infer(np.zeros((1, 128, 128, 3), np.int32))
        with pytest.raises(InferenceError, match="takes 1 input"):
            backend.infer([np.zeros((1, 128, 128, 3), np.uint8)] * 2)


def test_missing_runtime_is_backend_unavailable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime") as err:
        open_backend("onnxruntime", model)
    assert err.value.hint
    assert not backend_class("onnxruntime").probe().usable


def test_cli_bad_input_is_one_clean_line(tmp_path: Path, coral: Path) -> None:
    image = coral / "cat.bmp"
    assert_clean_error(run_cli("classify", coral / MOBILENET, image, "--backend", "nope"),
                       "unknown backend 'nope'")
    assert_clean_error(run_cli("classify", coral / "model_invoking_error.tflite", image,
                               "--backend", "tflite"), "fake-op-double")
    assert_clean_error(run_cli("classify", coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
                               image, "--backend", "tflite"), "--backend edgetpu")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(1).bytes(2048))
    assert_clean_error(run_cli("classify", junk, image), "junk.onnx")
    lone = tmp_path / "lone.xml"
    lone.write_text("<net/>")
    assert_clean_error(run_cli("classify", lone, image), "lone.bin")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((coral / MOBILENET).read_bytes()[:9000])
    assert_clean_error(run_cli("classify", cut, image), "truncated")
    assert_clean_error(run_cli("classify", coral / MOBILENET, tmp_path / "none.jpg"),
                       "no such image")


def test_cli_runtime_not_installed(tmp_path: Path, coral: Path) -> None:
    shadow = tmp_path / "shadow"
    (shadow / "onnxruntime").mkdir(parents=True)
    (shadow / "onnxruntime" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'onnxruntime'\")\n")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    result = run_cli("classify", model, coral / "cat.bmp", env={"PYTHONPATH": str(shadow)})
    assert_clean_error(result, "ONNX Runtime is not installed", "pip install onnxruntime")
    listed = run_cli("backends", "--json", env={"PYTHONPATH": str(shadow)})
    assert '"name": "onnxruntime",\n    "usable": false' in listed.stdout


def test_myriad_on_new_openvino_says_what_to_do(tmp_path: Path) -> None:
    import openvino

    if int(openvino.__version__.split(".")[0]) < 2023:
        pytest.skip("this OpenVINO may have the MYRIAD plugin")
    status = backend_class("myriad").probe()
    assert not status.usable and "no MYRIAD plugin" in status.reason
    assert "2022.3 LTS" in status.hint and "openvino==2021.4.2" in status.hint
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(BackendUnavailable, match="no MYRIAD plugin"):
        open_backend("myriad", xml)


def test_openvino_device_that_is_not_there(coral: Path) -> None:
    from edgekit.errors import DeviceNotFound

    with pytest.raises(DeviceNotFound, match="sees no NPU device"):
        open_backend("openvino", coral / MOBILENET, device="NPU")
    with open_backend("openvino", coral / MOBILENET, device="AUTO") as backend:
        assert backend.device == "AUTO"


@pytest.mark.myriad
def test_myriad_on_an_attached_ncs2(lenet_bundle: Path) -> None:
    if not backend_class("myriad").probe().usable:
        pytest.skip("needs an Intel NCS2 and OpenVINO 2022.3 LTS or older (see edgekit backends)")
    with load_model(lenet_bundle, backend="myriad") as model:
        from edgekit.bundle.fidelity import load_validation

        v = load_validation(lenet_bundle)
        top = [int(model.predict(s[None])[0].argmax()) for s in v.x[:20]]
    assert np.mean(np.array(top) == v.reference[0][:20].argmax(1)) >= 0.95


@pytest.mark.slow
def test_openvino_runs_an_fp32_ir_in_f32(lenet_bundle: Path) -> None:
    """On a CPU with bfloat16 OpenVINO computes in bf16 unless told: an FP32 IR must not."""
    from edgekit.bundle.fidelity import load_validation

    validation = load_validation(lenet_bundle)
    with load_model(lenet_bundle, backend="openvino", fmt="openvino-fp32") as model:
        assert model.backend.precision == "f32"
        assert "precision f32" in model.backend.describe()
        out = np.concatenate([model.predict(s[None])[0] for s in validation.x[:20]])
    assert np.abs(out - validation.reference[0][:20]).max() < 1e-4
