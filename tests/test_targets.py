"""Device profiles: the built-in ones load, a user's own are found, bad ones are named clearly,
and the profiles travel inside the wheel."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, assert_clean_error, cli_json, run_cli

from edgekit.bundle.formats import FORMATS
from edgekit.deploy.targets import find_target, list_targets, load_target
from edgekit.errors import UsageError

REQUIRED = {"rpi4-cpu", "rpi5-cpu", "rpi4-coral-usb", "rpi5-coral-usb", "rpi4-ncs2",
            "coral-devboard"}


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ~/.config for this test (XDG_CONFIG_HOME), with its targets/ folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "edgekit" / "targets"
    folder.mkdir(parents=True)
    return folder


def test_every_builtin_profile_loads_and_says_what_it_needs(config_home: Path) -> None:
    found = {t.name: t for t in list_targets()}
    assert REQUIRED <= set(found)
    for t in found.values():
        assert t.origin == "built-in" and t.path.parent == ROOT / "targets"
        assert t.arch == "aarch64" and t.description and t.os and t.limits
        assert all(f in FORMATS for f in t.formats)
    pi = found["rpi4-cpu"]
    assert pi.python == "3.11" and "tflite-runtime==2.14.0" in pi.packages
    assert "numpy<2" in pi.packages and "opencv-python-headless<=4.11.0.86" in pi.packages
    assert pi.exclude == ("ai-edge-litert",) and pi.formats == ("tflite-int8", "tflite-fp32")
    assert any("crashed under qemu" in n for n in pi.notes)
    coral = found["rpi4-coral-usb"]
    assert coral.formats[0] == "edgetpu" and coral.fallback_backend == "tflite"
    assert "libedgetpu1-std" in coral.system_packages
    assert any("x86-64" in limit for limit in coral.limits)  # no compiler on arm64
    ncs2 = found["rpi4-ncs2"]
    assert ncs2.python == "3.9" and ncs2.backend == "myriad" and "onnx" in ncs2.formats
    assert any("2022.3" in limit for limit in ncs2.limits)
    assert found["coral-devboard"].python == "3.7"


def test_targets_command_lists_them(config_home: Path) -> None:
    result = run_cli("targets", env={"XDG_CONFIG_HOME": str(config_home.parent.parent)})
    assert result.returncode == 0, result.stderr
    for name in REQUIRED:
        assert name in result.stdout
    assert "tflite-runtime 2.14.0" in result.stdout
    data = cli_json("targets", "--json")
    assert {d["name"] for d in data} >= REQUIRED
    assert {"arch", "python", "tflite_runtime", "formats", "backend"} <= set(data[0])
    # What runs the model there: the AI Camera's sensor, not the CPU backend its smoke test uses.
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "imx500 (sensor)" in rows["rpi5-ai-camera"] and "tflite (CPU)" in rows["rpi5-cpu"]
    assert "tflite (CPU)" not in rows["rpi4-ai-camera"]
    runs_on = {d["name"]: d["runs_on"] for d in data}
    assert runs_on["rpi4-ai-camera"] == "imx500 (sensor)" and runs_on["rpi4-ncs2"] == \
        "myriad (MYRIAD)"


def test_a_users_profile_is_found_and_may_replace_a_builtin(config_home: Path) -> None:
    text = (ROOT / "targets" / "rpi4-cpu.toml").read_text()
    (config_home / "my-pi.toml").write_text(text.replace("Raspberry Pi 4 Model B (4x", "Mine ("))
    (config_home / "rpi5-cpu.toml").write_text(text.replace('camera = "0"', 'camera = "2"'))
    mine = find_target("my-pi")
    assert mine.origin == "user" and mine.description.startswith("Mine")
    assert find_target("rpi5-cpu").camera == "2"
    assert find_target("rpi5-cpu").origin == "user"
    assert "my-pi" in {t.name for t in list_targets()}
    direct = find_target(str(config_home / "my-pi.toml"))
    assert direct.origin == "file" and direct.name == "my-pi"


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda t: t.replace('arch = "aarch64"\n', ""), "arch: missing"),
    (lambda t: t.replace('formats = ["tflite-int8", "tflite-fp32"]', 'formats = ["tflite-int9"]'),
     "[run] formats: unknown format 'tflite-int9'"),
    (lambda t: t.replace('backend = "tflite"', 'backend = "tpu"'),
     "[run] backend: unknown backend 'tpu'"),
    (lambda t: t.replace('version = "3.11"', 'version = "3"'), "[python] version: '3'"),
    (lambda t: t.replace('version = "3.11"', 'version = "3.11"\ncolour = "red"'),
     "[python] colour: unknown field"),
    (lambda t: t.replace('[python]', 'packages = "numpy"\n[python]'), "packages: unknown field"),
    (lambda t: t.replace('camera = "0"', "camera = 0"), "[run] camera: must be a str"),
    (lambda t: t.replace('glibc = "2.36"', 'glibc = 2.36'), "glibc: must be a str"),
    (lambda t: t.replace('version = "3.11"', 'version = "3.11"\nsystem_site_packages = "yes"'),
     "[python] system_site_packages: must be true or false, not 'yes'"),
    (lambda t: "run = 3\n" + t[:t.index("[run]")], "[run]: must be a table, not 3"),
    (lambda t: t.replace('description = "', 'description = '), "not valid TOML"),
])
def test_a_bad_profile_gets_one_line_naming_file_and_field(config_home: Path, edit, needle) -> None:
    bad = config_home / "broken.toml"
    bad.write_text(edit((ROOT / "targets" / "rpi4-cpu.toml").read_text()))
    result = run_cli("targets", env={"XDG_CONFIG_HOME": str(config_home.parent.parent)})
    assert_clean_error(result, str(bad), needle)
    assert result.returncode == 2


def test_unknown_target_names_the_known_ones(config_home: Path) -> None:
    with pytest.raises(UsageError, match="unknown target 'rpi9'.*rpi4-cpu"):
        find_target("rpi9")
    with pytest.raises(UsageError, match="no such profile file"):
        find_target("./nowhere.toml")


def test_the_wheel_carries_the_profiles(tmp_path: Path) -> None:
    """A wheel built with pip (setup.py's hook copies targets/), installed, read from there."""
    source = tmp_path / "src"
    for item in ("edgekit", "targets", "pyproject.toml", "README.md", "setup.py", "MANIFEST.in"):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy2
        copy(ROOT / item, source / item)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("edgekit-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        inside = {Path(n).name for n in archive.namelist() if "/_targets/" in n}
    assert {f"{name}.toml" for name in REQUIRED} <= inside
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    code = ("import json, edgekit.deploy.targets as t; print(json.dumps([t.__file__] + "
            "[[x.name, x.origin, str(x.path)] for x in t.list_targets()]))")
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CONFIG_HOME": str(tmp_path / "none")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True).stdout
    module, *rows = json.loads(out)
    assert module.startswith(str(site))  # the installed copy, not the checkout
    assert REQUIRED <= {name for name, _, _ in rows}
    assert all(origin == "built-in" and path.startswith(str(site / "edgekit" / "_targets"))
               for _, origin, path in rows)


def test_load_target_reads_a_file_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "lab-pi.toml"
    path.write_text((ROOT / "targets" / "rpi4-cpu.toml").read_text())
    target = load_target(path)
    assert target.name == "lab-pi" and target.path == path
