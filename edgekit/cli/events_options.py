"""The ``edgekit run`` options for tracking, events and clips, as one decorator: ``--events URL``
(repeatable), the family ``--events-filter KEY=VALUE`` (which objects make events, the queue, and
tracking without events) and ``--clips DIR[?pre=S&post=S&max_disk=SIZE]`` (its settings on the
folder's query, as the events URLs carry theirs). The command receives them as
``events: EventsOptions``."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import click

from edgekit.cli.families import (
    Key,
    KeyValueError,
    convert_pairs,
    family,
    form,
    option,
)
from edgekit.cli.options import Finite
from edgekit.events.outbox import QUEUE
from edgekit.events.settings import EventsOptions, options_from, parse_size

FLAG = "--events-filter"
# family key -> the parameter name options_from (and a target's [service] table) uses
KEYS = {
    "classes": ("events_classes", Key("only these classes (names or ids)", metavar="A,B")),
    "min_score": ("events_min_score", Key("only scores of X or more", Finite(0, 1), "X")),
    "min_frames": ("events_min_frames", Key("frames seen before 'new' (1)",
                                            click.IntRange(min=1), "N")),
    "update": ("events_update", Key("seconds between 'update' events (5)", Finite(0), "S")),
    "zone": ("events_zone", Key("only objects in this polygon (repeatable)",
                                metavar="NAME=POLYGON", multiple=True)),
    "queue": ("events_queue", Key(f"events held per destination while down ({QUEUE})",
                                  click.IntRange(min=1), "N")),
    "track": ("track", Key("track ids without events", click.BOOL, "on|off")),
}
FAMILY = {key: spec for key, (_, spec) in KEYS.items()}
FILTER_FLAGS = {name: f"{FLAG} {key}" for key, (name, _) in KEYS.items()
                if key not in ("queue", "track")}


def _size(text: str) -> str:
    """A size ``parse_size`` takes (``500M``, ``2G``), kept as given."""
    from edgekit.errors import UsageError

    try:
        parse_size(text, "max_disk")
    except UsageError:
        raise ValueError(f"give a size such as 500M or 2G, not {text!r}") from None
    return text


# the clips' settings on --clips DIR?KEY=VALUE&...
CLIP_KEYS = {
    "pre": Key("seconds kept before a track is confirmed, default 5", Finite(0, 600), "S"),
    "post": Key("seconds kept after it ends, default 5", Finite(0, 600), "S"),
    "max_disk": Key("the most the clips take, default 1G", _size, "SIZE"),
}
PARAMS = ("events", "events_filter", "clips")  # what events_from takes, parsed
RENAMED = {"--events-classes": "classes", "--events-min-score": "min_score",
           "--events-min-frames": "min_frames", "--events-update": "update",
           "--events-zone": "zone", "--events-queue": "queue"}
# the clips' flags before --clips DIR?KEY=VALUE&...
CLIP_FLAGS = {"--pre": "--clips DIR?pre=S", "--post": "--clips DIR?post=S",
              "--max-disk": "--clips DIR?max_disk=SIZE"}


def clips_value(text: str) -> dict[str, Any]:
    """``DIR?pre=S&post=S&max_disk=SIZE`` as {clips: DIR, pre: S, ...}; ValueError says why."""
    folder, _, query = text.partition("?")
    if not folder:
        raise ValueError(f"{text!r}: give the folder first, e.g. clips?pre=5")
    try:
        pairs = parse_qsl(query, strict_parsing=True) if query else []
    except ValueError:
        raise ValueError(f"{text!r}: after ? give KEY=VALUE pairs joined by &: "
                         f"{form(CLIP_KEYS)}") from None
    try:
        found = convert_pairs("DIR?", CLIP_KEYS, pairs, takes=form(CLIP_KEYS, described=True))
    except KeyValueError as exc:
        raise ValueError(f"{exc.key}: {exc.message}") from None
    except click.BadParameter as exc:
        raise ValueError(exc.message) from None
    return {"clips": folder, **found}


def _clips(ctx: click.Context, param: click.Parameter, text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        return clips_value(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def events_from(params: Mapping[str, Any]) -> EventsOptions:
    """The options from the command's parameters (``PARAMS``: the --events URLs, the
    --events-filter family's {key: value} and --clips' dict, as parsed), checked."""
    given: dict[str, Any] = {"events": params.get("events") or ()}
    for key, value in (params.get("events_filter") or {}).items():
        given[KEYS[key][0]] = value
    given.update(params.get("clips") or {})
    return options_from(given, FILTER_FLAGS)


def events_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the tracking, events and clips options; the command gets ``events``."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        kwargs["events"] = events_from({name: kwargs.pop(name) for name in PARAMS})
        return f(*args, **kwargs)

    command.__click_params__ = list(getattr(f, "__click_params__", []))
    command = family(FLAG, "events_filter", FAMILY, "Which objects make events (repeatable).",
                     renamed=RENAMED, moved={"--track": f"{FLAG} track=on"})(command)
    options = [
        option("--clips", callback=_clips, metavar="DIR[?...]",
               help="A clip per tracked object: DIR?pre=S&post=S&max_disk=SIZE (5, 5, 1G).",
               moved=CLIP_FLAGS),
        click.option("--events", multiple=True, metavar="URL", help="Send events to "
                     "mqtt[s]://HOST[:PORT][/TOPIC], http(s)://... or FILE.jsonl "
                     "(docs/events.md)."),
    ]
    for add in options:
        command = add(command)
    return command
