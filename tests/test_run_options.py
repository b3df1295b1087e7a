"""`edgekit run`'s own options at the parse level (issue 22), in-process with click's CliRunner:
--save by the name's kind, the --capture and --events-filter families, --clips DIR?..., and
every old flag answering with its new spelling (exit 2). Nothing loads a model here: each line
is refused before it would."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.cli.events_options import clips_value
from edgekit.cli.loop_options import save_kind


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", "bundle", "--source", "0", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("old, new", [
    ("--jsonl", "--save FILE.jsonl"), ("--raw-outputs", "--save FILE.npz"),
    ("--save-masks", "--save DIR/"), ("--max-frames", "--capture max_frames=N"),
    ("--truth", "--capture truth=FILE"), ("--realtime", "--capture realtime=FPS|source"),
    ("--repeat", "--capture repeat=on|off"), ("--no-pipeline", "--capture pipeline=off"),
    ("--queue-size", "--capture queue=N"), ("--track", "--events-filter track=on"),
    ("--events-classes", "--events-filter classes=A,B"),
    ("--events-zone", "--events-filter zone=NAME=POLYGON"),
    ("--events-queue", "--events-filter queue=N"), ("--pre", "--clips DIR?pre=S"),
    ("--max-disk", "--clips DIR?max_disk=SIZE"),
    ("--token", "$EDGEKIT_SERVE_TOKEN (a credential stays off the command line)"),
])
def test_an_old_flag_names_its_new_spelling(old: str, new: str) -> None:
    code, output = _run(old, "x")
    assert code == 2 and f"{old} is now {new}" in output, output


def test_compare_moved_its_source_flags_too() -> None:
    result = CliRunner().invoke(cli, ["compare", "b", "--source", "0", "--max-frames", "3"])
    assert result.exit_code == 2 and "--max-frames is now --capture max_frames=N" in result.output
    result = CliRunner().invoke(cli, ["compare", "b", "--source", "0", "--capture", "repeat=on"])
    assert result.exit_code == 2
    assert "compare does not use repeat; it takes max_frames, truth, realtime" in result.output


@pytest.mark.parametrize("name, kind", [
    ("out.avi", "video"), ("OUT.MP4", "video"), ("f.jsonl", "jsonl"), ("raw.npz", "raw"),
    ("masks/", "masks")])
def test_save_tells_the_kind_by_the_name(name: str, kind: str) -> None:
    assert save_kind(name) == kind


def test_save_refuses_a_name_of_no_kind_and_two_of_one(tmp_path: Path) -> None:
    assert save_kind(str(tmp_path)) == "masks"  # an existing folder, without the slash
    code, output = _run("--save", "out.mkv")
    assert code == 2 and ".avi or .mp4 (the annotated video), .jsonl" in output
    code, output = _run("--save", "a.avi", "--save", "b.mp4")
    assert code == 2 and "give one of each kind" in output


@pytest.mark.parametrize("args, needle", [
    (["--capture", "max_frames=0"], "--capture max_frames"),
    (["--capture", "realtime=-1"], "frame rate above 0"),
    (["--capture", "pipeline=maybe"], "--capture pipeline"),
    (["--capture", "max_frames=2,max_frames=3"], "max_frames is given twice"),
    (["--events-filter", "min_score=2"], "--events-filter min_score"),
    (["--events-filter", "colour=red"], "unknown key 'colour'"),
    (["--clips", "c?pre=x"], "pre: it must be a finite number"),
    (["--clips", "c?during=3"], "unknown key 'during'; DIR? takes pre=S (seconds kept before"),
    (["--clips", "c?max_disk=lots"], "give a size such as 500M"),
])
def test_bad_values_are_one_line_before_any_model_loads(args: list[str], needle: str) -> None:
    code, output = _run(*args)
    assert code == 2 and needle in output, output


def test_clips_settings_ride_on_the_folder() -> None:
    assert clips_value("clips") == {"clips": "clips"}
    assert clips_value("c?pre=2&post=0.5&max_disk=2G") == {
        "clips": "c", "pre": 2.0, "post": 0.5, "max_disk": "2G"}
