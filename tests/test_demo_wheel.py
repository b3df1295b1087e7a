"""`edgekit demo` from an installed wheel, run from a folder that is not the checkout, and the
README's excerpt of what `make demo` prints held to what it prints.

One demo run proves both (it takes minutes: every example converted to every format). The
wheel goes into a fresh venv that sees .venv's packages through a plain path entry, not
``--system-site-packages``: that would also run .venv's editable-install hook, which maps
``edgekit`` back to a checkout and would hide the wheel.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import LEGACY_PYTHON, ROOT

from edgekit.deploy.wheels import source_files, wheel_command

EXAMPLES = ("lenet5_digits", "digit_detector", "digit_segmenter")


# Where the README and the docs quote what `make demo` prints: the block after each marker.
EXCERPTS = {"README.md": "What `make demo` prints first",
            "docs/getting-started.md": "It prints the conversion tables"}


def demo_excerpt(page: str) -> list[str]:
    """The block after ``page``'s marker."""
    after = (ROOT / page).read_text().split(EXCERPTS[page], 1)[1]
    return after.split("```\n", 2)[1].splitlines()


def shape(line: str) -> str:
    """A line with its figures and column padding taken out (a table's rule too, as wide as
    its widest figure): what stays true between runs."""
    line = re.sub(r"-{2,}", "-", re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", line))
    return " ".join(line.split())


def missing_lines(excerpt: list[str], printed: list[str]) -> list[str]:
    """The excerpt's lines that are not in ``printed``, in order, by shape. ``...`` stands for
    lines left out; a line ending in `` ...`` is cut short and matches its start."""
    shapes = [shape(line) for line in printed]
    at, missing = 0, []
    for line in excerpt:
        if line.strip() in ("", "..."):
            continue
        want = shape(line)
        cut = want.endswith(" ...")
        found = next((i for i in range(at, len(shapes))
                      if (shapes[i].startswith(want[:-4]) if cut else shapes[i] == want)), None)
        if found is None:
            missing.append(line)
        else:
            at = found + 1
    return missing


def test_the_excerpt_check_finds_a_stale_line() -> None:
    assert all(len(demo_excerpt(page)) > 20 for page in EXCERPTS)
    printed = ["table", "a  1.5 ms  ok", "b  2 ms  ok", "report: x"]
    assert missing_lines(["a 7.25 ms   ok", "...", "report: x"], printed) == []
    assert missing_lines(["b 2 ms ok", "a 1 ms ok"], printed) == ["a 1 ms ok"]  # order kept
    assert missing_lines(["a 1 ms gone"], printed) == ["a 1 ms gone"]
    assert missing_lines(["--  ----"], ["----  -------"]) == []  # columns as wide as figures


def installed_wheel_venv(tmp: Path) -> Path:
    """A venv holding a wheel built from a clean copy of the checkout, models/ included."""
    source = tmp / "src"
    for rel in [*source_files(ROOT), *(p.relative_to(ROOT) for p in (ROOT / "models").rglob("*")
                                       if p.is_file() and "__pycache__" not in p.parts)]:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    subprocess.run(wheel_command(source, tmp / "dist"), check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("edgekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in EXAMPLES:
        assert f"edgekit/_examples/{name}/{name}.keras" in names
    assert not any("train.py" in n for n in names)  # the recipes' training code stays out
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "dotvenv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    return venv


@pytest.mark.slow
def test_the_demo_runs_from_an_installed_wheel_as_the_readme_shows(tmp_path: Path) -> None:
    venv = installed_wheel_venv(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if LEGACY_PYTHON.is_file():  # as `make demo` finds it beside the checkout
        env["EDGEKIT_TFLITE_PYTHONS"] = str(LEGACY_PYTHON)
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import edgekit.demo as d; print(d.examples_dir())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(venv))  # the wheel's copy, not the checkout's
    result = subprocess.run([str(venv / "bin" / "edgekit"), "demo", "--runs", "5"], cwd=work,
                            env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "out" / "demo" / "report" / "REPORT.md").is_file()
    for page in EXCERPTS:
        assert missing_lines(demo_excerpt(page), result.stdout.splitlines()) == [], page
