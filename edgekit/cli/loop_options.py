"""The camera loop's own options, declared once: ``--capture`` (how the source is read; run and
compare share its keys) and ``--save`` (run's outputs, the kind told by the name)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from edgekit.cli.families import Key, family, option

F = TypeVar("F", bound=Callable[..., Any])


def realtime_value(text: str) -> bool | float:
    """``realtime=`` as run_loop takes it: True (``source``: the source's own rate) or an FPS."""
    if text == "source":
        return True
    from edgekit.errors import UsageError
    from edgekit.helpers.limits import finite

    try:
        return finite(text, "realtime", low=0, low_open=True)
    except UsageError:
        raise ValueError(f"takes a frame rate above 0 (a finite number) or source (the "
                         f"source's own rate), not {text!r}") from None


CAPTURE_KEYS = {
    "max_frames": Key("stop after N frames", click.IntRange(min=1), "N"),
    "truth": Key("ground truth for mAP@0.5 (unset: SOURCE.json beside it)",
                 click.Path(path_type=Path), "FILE"),
    "realtime": Key("read a file or folder at its frame rate or at FPS, as a camera would",
                    realtime_value, "FPS|source"),
    "repeat": Key("play a file or folder in a loop (no mAP)", click.BOOL, "on|off"),
    "pipeline": Key("off: the stages one after another", click.BOOL, "on|off"),
    "queue": Key("frames between two stages (2)", click.IntRange(min=1), "N"),
}
COMPARE_KEYS = ("max_frames", "truth", "realtime")
_HELP = "How the source is read (repeatable)."

_MOVED = {"--max-frames": "max_frames", "--truth": "truth", "--realtime": "realtime",
          "--repeat": "repeat", "--queue-size": "queue"}
run_capture = family("--capture", "capture", CAPTURE_KEYS, _HELP, renamed=_MOVED,
                     moved={"--no-pipeline": "--capture pipeline=off"})
compare_capture = family("--capture", "capture", CAPTURE_KEYS, _HELP, uses=COMPARE_KEYS,
                         renamed={o: k for o, k in _MOVED.items() if k in COMPARE_KEYS})


@dataclass(frozen=True)
class Outputs:
    """What ``--save`` asked for, by kind."""

    video: Path | None = None
    jsonl: Path | None = None
    raw: Path | None = None
    masks: Path | None = None


# kind -> (what it is, how a name says it)
KINDS = {"video": "the annotated video (.avi MJPG or .mp4)",
         "jsonl": "one JSON line per frame (.jsonl)",
         "raw": "every frame's outputs as the model gave them (.npz)",
         "masks": "a segmenter's class-id masks, one PNG per frame (a folder: DIR/)"}


def save_kind(text: str) -> str:
    """The kind of output a ``--save`` name asks for; ValueError listing the kinds."""
    suffix = Path(text).suffix.lower()
    if suffix in (".avi", ".mp4"):
        return "video"
    if suffix in (".jsonl", ".npz"):
        return {".jsonl": "jsonl", ".npz": "raw"}[suffix]
    if text.endswith(("/", "\\")) or Path(text).is_dir():
        return "masks"
    raise ValueError(f"{text}: the name says what to write: .avi or .mp4 (the annotated "
                     f"video), .jsonl (JSON lines), .npz (raw outputs) or a folder ending "
                     f"in / (masks)")


def _outputs(ctx: click.Context, param: click.Parameter, texts: tuple[str, ...]) -> Outputs:
    found: dict[str, Path] = {}
    for text in texts:
        try:
            kind = save_kind(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if kind in found:
            raise click.BadParameter(f"{found[kind]} and {text} are both {KINDS[kind]}: "
                                     "give one of each kind", ctx, param)
        found[kind] = Path(text)
    return Outputs(**found)


save_option = option(
    "--save", "outputs", multiple=True, metavar="FILE|DIR/", callback=_outputs,
    help="Write .avi/.mp4 (the video), .jsonl (a line per frame), .npz (raw outputs), DIR/ "
         "(masks).",
    moved={"--jsonl": "--save FILE.jsonl", "--raw-outputs": "--save FILE.npz",
           "--save-masks": "--save DIR/"})
