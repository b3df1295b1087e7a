"""Sequential, functional and subclassed Keras models all convert, through the real CLI."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

pytestmark = pytest.mark.slow

MODULE = textwrap.dedent('''
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable(package="edgekit_tests")
    class TinyNet(keras.Model):
        """A subclassed CNN: the layers live in __init__, the graph in call()."""

        def __init__(self, classes=3, **kwargs):
            super().__init__(**kwargs)
            self.classes = classes
            self.conv = layers.Conv2D(4, 3, activation="relu")
            self.pool = layers.GlobalAveragePooling2D()
            self.head = layers.Dense(classes, activation="softmax")

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

        def get_config(self):
            return {**super().get_config(), "classes": self.classes}

    @keras.saving.register_keras_serializable(package="edgekit_tests")
    class ThreeHeads(keras.Model):
        """A subclassed face-detector-like model: box, landmarks and class scores."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = layers.Conv2D(8, 3, activation="relu")
            self.pool = layers.GlobalAveragePooling2D()
            self.box = layers.Dense(4, activation="sigmoid")
            self.landmarks = layers.Dense(10)
            self.classes = layers.Dense(3, activation="softmax")

        def call(self, x):
            features = self.pool(self.conv(x))
            return [self.box(features), self.landmarks(features), self.classes(features)]

    def layers_list():
        return [layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(),
                layers.Dense(3, activation="softmax")]
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import importlib.util

    import keras

    folder = tmp_path_factory.mktemp("styles")
    (folder / "tinynet.py").write_text(MODULE)
    spec = importlib.util.spec_from_file_location("tinynet", folder / "tinynet.py")
    tinynet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tinynet)
    keras.utils.set_random_seed(0)

    sequential = keras.Sequential([keras.Input((16, 16, 3)), *tinynet.layers_list()])
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for layer in tinynet.layers_list():
        x = layer(x)
    functional = keras.Model(inputs, x)
    subclassed = tinynet.TinyNet()
    subclassed(np.zeros((1, 16, 16, 3), np.float32))
    heads = tinynet.ThreeHeads()
    heads(np.zeros((1, 16, 16, 3), np.float32))
    flexible_in = keras.Input((None, None, 3))
    y = flexible_in
    for layer in tinynet.layers_list():
        y = layer(y)
    flexible = keras.Model(flexible_in, y)
    lam_in = keras.Input((16, 16, 3))
    lam = keras.Model(lam_in, keras.layers.Dense(3)(keras.layers.Lambda(lambda t: t * 2.0)(
        keras.layers.GlobalAveragePooling2D()(lam_in))))

    paths = {}
    for name, model in [("sequential", sequential), ("functional", functional),
                        ("subclassed", subclassed), ("flexible", flexible), ("lambda", lam),
                        ("heads", heads)]:
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    rng = np.random.default_rng(0)
    np.savez(folder / "val.npz", x=rng.random((20, 16, 16, 3), dtype=np.float32),
             y=rng.integers(0, 3, 20))
    paths["val"] = folder / "val.npz"
    paths["module"] = folder / "tinynet.py"
    return paths


@pytest.mark.parametrize("style", ["sequential", "functional", "subclassed"])
def test_each_style_converts(models: dict[str, Path], tmp_path: Path, style: str) -> None:
    extra = ["--load", f"import={models['module']}"] if style == "subclassed" else []
    result = run_cli("convert", models[style], "-o", tmp_path / "b", "--formats",
                     "tflite-fp32,onnx,openvino-fp32", "--val", models["val"], "--json", "-q",
                     *extra)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"]["kind"] == style
    assert data["task"] == "classification"
    for a in data["artifacts"]:
        assert a["status"] == "ok", a
        assert a["fidelity"]["top1_agreement"] == 1.0
        assert a["fidelity"]["max_abs_diff"] < 1e-4
        assert a["inputs"][0]["shape"] == [1, 16, 16, 3]


def test_subclassed_without_its_module_says_how(models: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("convert", models["subclassed"], "-o", tmp_path / "b", "--formats",
                     "tflite-fp32")
    assert_clean_error(result, "--load import")
    assert not (tmp_path / "b").exists()


def test_unknown_spatial_dims_need_input_shape(models: dict[str, Path], tmp_path: Path) -> None:
    refused = run_cli("convert", models["flexible"], "-o", tmp_path / "b", "--formats",
                      "tflite-fp32")
    assert_clean_error(refused, "unknown dimensions", "--load input_shape")
    assert not (tmp_path / "b").exists()
    ok = run_cli("convert", models["flexible"], "-o", tmp_path / "b", "--formats",
                 "tflite-fp32,onnx", "--load", "input_shape=24,24,3", "--json", "-q")
    assert ok.returncode == 0, ok.stderr
    for a in json.loads(ok.stdout)["artifacts"]:
        assert a["status"] == "ok" and a["inputs"][0]["shape"] == [1, 24, 24, 3]


def test_lambda_layer_is_refused_in_safe_mode(models: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("convert", models["lambda"], "-o", tmp_path / "b", "--formats", "tflite-fp32")
    assert_clean_error(result, "Lambda", "safe mode")
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".*"))


def test_a_subclassed_model_with_three_heads_gets_fidelity_per_output(
        models: dict[str, Path], tmp_path: Path) -> None:
    """Box, landmarks and class scores: every output gets its figures, the class scores top-1,
    and the table names the output its figure comes from."""
    import shutil

    folder = tmp_path / "m"
    folder.mkdir()
    model = Path(shutil.copy(models["heads"], folder / "heads.keras"))
    (folder / "heads.edgekit.json").write_text(json.dumps(
        {"output_names": ["box", "landmarks", "classes"],
         "input": {"color": "rgb", "mean": [0, 0, 0], "std": [255, 255, 255]}}))
    common = ["--formats", "tflite-fp32,tflite-int8,onnx", "--val", models["val"],
              "--calib", models["val"], "--load", f"import={models['module']}"]
    result = run_cli("convert", model, "-o", tmp_path / "b", "--json", "-q", *common)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["task"] == "generic" and data["source"]["kind"] == "subclassed"
    assert [o["name"] for o in data["outputs"]] == ["box", "landmarks", "classes"]
    assert [o["class_scores"] for o in data["outputs"]] == [False, False, True]
    for a in data["artifacts"]:
        f = a["fidelity"]
        assert a["status"] == "ok", a
        assert [o["name"] for o in f["outputs"]] == ["box", "landmarks", "classes"]
        assert [o["top1_agreement"] is not None for o in f["outputs"]] == [False, False, True]
        assert all(o["cosine"] > 0.99 and o["nonfinite"] == 0 for o in f["outputs"])
        assert f["worst"] == "classes" and f["top1_agreement"] == f["outputs"][2][
            "top1_agreement"]
        assert f["accuracy"] is not None  # the labels score the class output
    table = run_cli("inspect", tmp_path / "b").stdout
    assert "(classes)" in table
