"""Option families (edgekit/cli/families.py): KEY=VALUE pairs, checked as they are parsed."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgekit.cli.families import Command, Key, family, option, parse_family, split_pairs

KEYS = {"iou": Key("NMS IoU.", click.FloatRange(0, 1), "X"),
        "classes": Key("Classes kept.", metavar="LIST"),
        "zone": Key("A zone.", metavar="POLYGON", multiple=True)}


def test_pairs_split_only_where_a_key_follows() -> None:
    assert split_pairs("iou=0.5,classes=person,dog") == [("iou", "0.5"), ("classes", "person,dog")]
    assert split_pairs("mean=127.5,127.5,127.5,std=58") == [("mean", "127.5,127.5,127.5"),
                                                           ("std", "58")]
    assert split_pairs("max-detections=3") == [("max_detections", "3")]


@pytest.mark.parametrize("texts, problem", [
    (("iou",), "'iou' is not KEY=VALUE"),
    (("nms=0.5",), "unknown key 'nms'"),
    (("iou=2",), "2.0 is not in the range"),
    (("iou=0.5", "iou=0.4"), "iou is given twice"),
])
def test_bad_pairs_say_which_and_why(texts: tuple[str, ...], problem: str) -> None:
    with pytest.raises(click.BadParameter, match=problem):
        parse_family("--post", KEYS, texts)


def test_values_are_converted_and_multiple_keys_gather() -> None:
    found = parse_family("--post", KEYS, ("iou=0.25,zone=a:1,2", "zone=b:3,4"))
    assert found == {"iou": 0.25, "zone": ("a:1,2", "b:3,4")}


def test_a_command_gets_one_dict_and_a_moved_flag_names_its_new_spelling() -> None:
    @click.command(cls=Command)
    @family("--post", "post", KEYS, "Post-processing.", moved={"--old-iou": "--post iou=X"})
    def command(post: dict) -> None:
        click.echo(repr(post))

    ok = CliRunner().invoke(command, ["--post", "iou=0.5", "--post", "classes=a,b"])
    assert ok.exit_code == 0 and ok.output.strip() == "{'iou': 0.5, 'classes': 'a,b'}"
    moved = CliRunner().invoke(command, ["--old-iou", "0.5"])
    assert moved.exit_code == 2 and "--old-iou is now --post iou=X" in moved.output
    bad = CliRunner().invoke(command, ["--post", "iou=x"])
    assert bad.exit_code == 2 and "--post iou" in bad.output


def test_a_key_fills_its_parameter_and_a_word_stands_for_pairs() -> None:
    keys = {"dir": Key("Where.", metavar="DIR", param="base"),
            "serial": Key("Batch.", metavar="N"), "max_fail": Key("Stop.", click.INT, "P")}
    words = {"canary": "serial=1,max_fail=0"}
    assert parse_family("--x", keys, ("dir=/srv/e",)) == {"base": "/srv/e"}
    assert parse_family("--x", keys, ("canary",), words=words) == {"serial": "1", "max_fail": 0}
    with pytest.raises(click.BadParameter, match="max_fail is given twice"):
        parse_family("--x", keys, ("canary", "max-fail=3"), words=words)


def _answers_only_on(command: click.Command, args: list[str], said: str) -> None:
    """``args`` (an old flag) answer with ``said`` on ``command``, and are click's unknown
    option on a command without the option that replaced it."""
    @click.command(cls=Command)
    def without() -> None:
        pass

    moved = CliRunner().invoke(command, args)
    assert moved.exit_code == 2 and said in moved.output
    unknown = CliRunner().invoke(without, args)
    assert unknown.exit_code == 2 and f"No such option '{args[0]}'" in unknown.output


def test_a_familys_old_flags_answer_only_on_the_commands_that_have_it() -> None:
    @click.command(cls=Command)
    @family("--ssh", "ssh", {"port": Key("Port.", click.INT, "N")}, "SSH.",
            renamed={"--ssh-port-old": "port"})
    def with_family(ssh: dict) -> None:
        click.echo(repr(ssh))

    _answers_only_on(with_family, ["--ssh-port-old", "22"], "--ssh-port-old is now --ssh port=N")
    assert with_family.params[0].flags == {"port": "--ssh port"}  # for the library's errors


def test_a_plain_option_carries_the_flags_it_replaced() -> None:
    @click.command(cls=Command)
    @option("--save", "outputs", multiple=True, moved={"--jsonl": "--save FILE.jsonl"})
    def with_save(outputs: tuple) -> None:
        click.echo(repr(outputs))

    _answers_only_on(with_save, ["--jsonl", "x"], "--jsonl is now --save FILE.jsonl")


@pytest.mark.parametrize("args, said", [
    (["run", "b", "--source", "0", "--jsonl", "x"], "--jsonl is now --save FILE.jsonl"),
    (["targets", "--jsonl", "x"], "no such option '--jsonl'"),
    (["inspect", "m", "--jsonl", "x"], "no such option '--jsonl'"),
    (["targets", "--markdown"], "--markdown is now --table markdown"),
    (["status", "--host", "pi@x", "--csv"], "no such option '--csv'"),
    (["run", "b", "--source", "0", "--token", "t"], "--token is now $EDGEKIT_SERVE_TOKEN"),
    (["compare", "b", "--source", "0", "--token", "t"], "no such option '--token'"),
    (["run", "b", "--source", "0", "--no-pipeline"], "--no-pipeline is now --capture pipeline"),
    (["compare", "b", "--source", "0", "--no-pipeline"], "no such option '--no-pipeline'"),
    (["compare", "b", "--source", "0", "--pre", "3"], "no such option '--pre'"),
    (["convert", "m", "-o", "o", "--no-remedy"], "--no-remedy is now --quantize remedy=off"),
    (["bench", "m", "--no-remedy"], "no such option '--no-remedy'"),
    (["bench", "m", "--decoder-param", "a=1"], "no such option '--decoder-param'"),
])
def test_a_moved_flag_answers_only_where_it_moved_from(args: list[str], said: str) -> None:
    """The old flag names its new spelling on the commands that have the option that replaced
    it; any other command answers as click does for any flag it has not got (edgekit's
    group writes click's "No such option" in lower case)."""
    from edgekit.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and said in result.output, result.output


@pytest.mark.parametrize("args, said", [
    (["run", "m", "--source", "0", "--iou", "0.5"], "--iou is now --postprocess iou=X"),
    (["compare", "m", "--source", "0", "--no-antialias"],
     "--no-antialias is now --preprocess antialias=off"),
    (["bench", "m", "--streams", "2"], "--streams is now --infer streams=N"),
    (["convert", "m", "-o", "o", "--trust-model"], "--trust-model is now --load trust_model="),
    (["convert", "m", "-o", "o", "--postprocess", "top_k=3"], "convert does not use top_k"),
    (["classify", "m", "i", "--infer", "mode=throughput"], "classify does not use mode"),
    (["run", "m", "--source", "0", "--preprocess", "mean=1,x"], "--preprocess mean"),
])
def test_the_commands_families_answer_moved_flags_and_unused_keys(args: list[str],
                                                                  said: str) -> None:
    """The shared families on the real commands: parsed and refused before any model loads."""
    from edgekit.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and said in result.output, result.output


def test_the_families_give_the_library_records() -> None:
    from edgekit.cli.options import _post

    made = _post({"iou": 0.3, "classes": ("a", "b"), "size_scale": "0.5", "top_k": 2},
                 frozenset({"iou", "classes", "size_scale", "top_k"}))
    assert made["top_k"] == 2 and made["detect"].iou_threshold == 0.3
    assert made["detect"].given() == {"size_scale": "0.5", "iou_threshold": 0.3,
                                      "classes": ("a", "b")}


def test_a_key_without_help_is_taken_but_left_out_of_the_help() -> None:
    """Each decoder parameter is a --postprocess key; the help points to the docs for them."""
    keys = {**KEYS, "size_scale": Key("")}

    @click.command(cls=Command)
    @family("--hidden", "post", keys, "Post-processing (docs).")
    def command(post: dict) -> None:
        click.echo(repr(post))

    shown = CliRunner().invoke(command, ["--help"]).output
    assert "iou=X" in shown and "size_scale" not in shown
    assert CliRunner().invoke(command, ["--hidden", "size_scale=0.5"]).output.strip() == \
        "{'size_scale': '0.5'}"
    unknown = CliRunner().invoke(command, ["--hidden", "nms=1"])
    assert unknown.exit_code == 2 and "or one of 1 more keys its help points to" in unknown.output


def test_a_command_that_uses_some_keys_lists_those_and_refuses_the_others() -> None:
    keys = {**KEYS, "dir": Key("Where.", metavar="DIR", param="base")}

    @click.command("cmd", cls=Command)
    @family("--post", "post", keys, "Post-processing.", uses=("iou", "dir"))
    def command(post: dict) -> None:
        click.echo(repr(post))

    shown = CliRunner().invoke(command, ["--help"]).output
    assert "iou=X, dir=DIR." in shown and "classes=" not in shown
    ok = CliRunner().invoke(command, ["--post", "dir=/srv,iou=0.5"])
    assert ok.exit_code == 0 and ok.output.strip() == "{'base': '/srv', 'iou': 0.5}"
    unused = CliRunner().invoke(command, ["--post", "classes=a"])
    assert unused.exit_code == 2 and "cmd does not use classes; it takes iou, dir" in unused.output
    unknown = CliRunner().invoke(command, ["--post", "nms=1"])
    assert unknown.exit_code == 2 and "unknown key 'nms'; --post takes iou=X, dir=DIR" in \
        unknown.output
