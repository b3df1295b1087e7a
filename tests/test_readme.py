"""The README and the documentation site (docs/*.md) say what the CLI does: their synopses name
exactly each command's options, every `edgekit ...` line in them parses, their shell and Python
blocks run as shown, and `mkdocs build --strict` builds the site (no broken link or anchor).

A ```text block that starts with `edgekit COMMAND` is a synopsis. A ```sh or ```python block runs
here (in a folder where `out/demo/` holds the session's bundles and clip, as `make demo` leaves
them, and `models/` and `../shared` are the checkout's), unless a comment before it says
`<!-- readme: slow -->` (it runs with the slow tests) or `<!-- readme: parse -->` (it needs a
camera, a device, root or make: its `edgekit` lines are only parsed).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from conftest import CORAL, ROOT

from edgekit.cli.app import all_commands

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


@dataclass
class Block:
    page: str  # README.md or docs/NAME.md
    line: int  # where it starts in it
    lang: str
    text: str
    mark: str  # "", "slow" or "parse"


def _blocks() -> list[Block]:
    return [block for page in PAGES for block in _page_blocks(page)]


def _page_blocks(page: Path) -> list[Block]:
    blocks, lines, name = [], page.read_text().splitlines(), str(page.relative_to(ROOT))
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start, body = lines[i][3:].strip(), i, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            before = lines[start - 1] if start else ""
            mark = re.fullmatch(r"<!-- readme: (\w+) -->", before.strip())
            blocks.append(Block(name, start + 1, lang, "\n".join(body),
                                mark.group(1) if mark else ""))
        i += 1
    return blocks


def _commands(text: str) -> list[str]:
    """The `edgekit ...` command lines of a block, continuation lines joined, comments cut."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].strip()
        words = line.split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value edgekit ...
            words.pop(0)
        if words and words[0] == "edgekit":
            found.append(" ".join(words))
    return found


def _synopses() -> list[tuple[str, str]]:
    """(page:line, one command's synopsis) for each `edgekit COMMAND` in a ```text block."""
    found = []
    for block in _blocks():
        if block.lang == "text" and block.text.startswith("edgekit "):
            current: list[str] = []
            for line in block.text.splitlines():
                if line.startswith("edgekit ") and current:
                    found.append((f"{block.page}:{block.line}", " ".join(current)))
                    current = []
                current.append(line.strip())
            found.append((f"{block.page}:{block.line}", " ".join(current)))
    return found


def _options(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def _left_out(command: click.Command, named: set[str]) -> list[str]:
    """The command's options the pages name in none of their spellings (-q or --quiet)."""
    return [p.opts[-1] for p in command.params if isinstance(p, click.Option)
            and not set(p.opts) & named and p.name not in ("help", "debug")]


def test_the_pages_have_a_synopsis_of_every_command() -> None:
    named = {text.split()[1] for _, text in _synopses()}
    assert named == set(all_commands()) - {"demo"}  # demo: `make demo`, and its --help


@pytest.mark.parametrize("where,text", _synopses(), ids=lambda v: str(v)[:40])
def test_each_synopsis_names_exactly_the_commands_options(where: str, text: str) -> None:
    name = text.split()[1]
    command = all_commands()[name]
    named = set(OPTION.findall(text.split(maxsplit=2)[2] if len(text.split()) > 2 else ""))
    unknown = named - _options(command)
    assert not unknown, f"{where}: edgekit {name} has no {sorted(unknown)}"
    if name != "deploy":  # deploy's three forms share its options between them
        left_out = _left_out(command, named)
        assert not left_out, f"{where}: edgekit {name}'s synopsis lacks {left_out}"


def test_deploys_synopses_together_name_every_option() -> None:
    named = {opt for _, text in _synopses() if text.split()[1] == "deploy"
             for opt in OPTION.findall(text)}
    assert not _left_out(all_commands()["deploy"], named)


def test_every_edgekit_line_in_the_pages_parses() -> None:
    """Each `edgekit ...` in a shell block is a command click accepts: known options, valid
    choices and numbers (parsed without running it)."""
    lines = [(f"{b.page}:{b.line}", c) for b in _blocks() if b.lang == "sh"
             for c in _commands(b.text)]
    assert len(lines) >= 15
    for where, command in lines:
        name, *args = shlex.split(command)[1:]
        assert name in all_commands(), f"{where}: {command}"
        try:
            all_commands()[name].make_context(name, args)
        except click.ClickException as exc:
            pytest.fail(f"{where}: {command}: {exc.format_message()}")


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory, lenet_bundle: Path,
                detector_bundle: Path, demo_clip: Path) -> Path:
    """A folder laid out as after `make demo`: out/demo/{lenet5_digits, digit_detector,
    clip.avi}, models/ and ../shared from the checkout."""
    root = tmp_path_factory.mktemp("readme")
    work, demo = root / "checkout", root / "checkout" / "out" / "demo"
    demo.mkdir(parents=True)
    (demo / "lenet5_digits").symlink_to(lenet_bundle)
    (demo / "digit_detector").symlink_to(detector_bundle)
    for path in demo_clip.parent.iterdir():  # clip.avi and its ground truth, clip.json
        (demo / path.name).symlink_to(path)
    (work / "models").symlink_to(ROOT / "models")
    if CORAL.is_dir():
        (root / "shared").symlink_to(CORAL.parent.parent)
    return work


def _run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if block.lang == "python":
        argv = [sys.executable, "-c", block.text]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.text]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def _runnable(mark: str) -> list[Block]:
    return [b for b in _blocks() if b.lang in ("sh", "python") and b.mark == mark]


def _check(block: Block, folder: Path) -> None:
    if "$C/" in block.text and not CORAL.is_dir():
        pytest.skip(f"needs Coral's test data in {CORAL} (../shared beside the checkout)")
    done = _run_block(block, folder)
    assert done.returncode == 0, f"{block.page}:{block.line}:\n{block.text}\n{done.stderr[-3000:]}"
    if block.lang == "python":  # its comments say what it prints: (1, 10) D, then onnx D
        first, second = done.stdout.split("\n")[:2]
        digit = first.split()[-1]
        assert first == f"(1, 10) {digit}" and second == f"onnx {digit}", done.stdout


@pytest.mark.parametrize("block", _runnable(""), ids=lambda b: f"{b.page}:{b.line}")
def test_the_quick_blocks_run_as_shown(block: Block, demo_folder: Path) -> None:
    _check(block, demo_folder)


@pytest.mark.slow
@pytest.mark.parametrize("block", _runnable("slow"), ids=lambda b: f"{b.page}:{b.line}")
def test_the_slow_blocks_run_as_shown(block: Block, demo_folder: Path) -> None:
    _check(block, demo_folder)


def test_the_documentation_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` (as `make docs`): a broken link, a missing anchor or a page left out
    of the navigation fails it."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed: pip install 'edgekit[docs]' (make setup does)")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_the_readme_is_read_in_two_minutes() -> None:
    """The manual lives in docs/: the README says what edgekit is, the two commands, the
    install table, a quick start and the links (httpx's and click's are 60-150 lines)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move the detail into docs/"
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", "\n".join(lines)))
    assert linked >= {p.name for p in (ROOT / "docs").glob("*.md")}, "a docs page the README omits"
