"""The ``edgekit run`` options for tracking, events and clips, as one decorator: the command
receives them as ``events: EventsOptions``."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from edgekit.events.outbox import QUEUE
from edgekit.events.service import counters_line
from edgekit.events.settings import EventsOptions, options_from

NAMES = ("events", "track", "events_classes", "events_min_score", "events_min_frames",
         "events_update", "events_zone", "events_queue", "clips", "pre", "post", "max_disk")
FILTER_FLAGS = {"events_classes": "--events-classes", "events_min_score": "--events-min-score",
                "events_min_frames": "--events-min-frames", "events_zone": "--events-zone",
                "events_update": "--events-update"}


def events_from(given: dict[str, Any]) -> EventsOptions:
    """The options as the command line gave them, checked."""
    return options_from(given, FILTER_FLAGS)


def events_line(row: dict[str, Any]) -> str:
    """A destination's (or the clips') counters in the run's summary."""
    return counters_line(row)


def events_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the tracking, events and clips options; the command gets ``events``."""
    from edgekit.cli.options import Finite

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in NAMES}
        kwargs["events"] = events_from(given)
        return f(*args, **kwargs)

    command.__click_params__ = list(getattr(f, "__click_params__", []))
    options = [
        click.option("--max-disk", metavar="SIZE", help="--clips: the most the clips may "
                     "take (500M, 2G); the oldest are deleted to stay under it.",
                     show_default="1G"),
        click.option("--post", type=Finite(0, 600), metavar="S",
                     show_default="5", help="--clips: seconds kept after a track ends."),
        click.option("--pre", type=Finite(0, 600), metavar="S",
                     show_default="5", help="--clips: seconds kept before a track is confirmed."),
        click.option("--clips", type=click.Path(), metavar="DIR", help="Write a clip (.avi) "
                     "per tracked object, from --pre seconds before it appeared to --post "
                     "seconds after it left; the event names it."),
        click.option("--events-queue", type=click.IntRange(min=1), default=QUEUE,
                     show_default=True, metavar="N", help="Events held per destination while "
                     "it is down; past that the oldest are dropped (and counted)."),
        click.option("--events-update", type=Finite(0), metavar="S", help="At most one "
                     "'update' event per object every S seconds.", show_default="5"),
        click.option("--events-zone", multiple=True, metavar="NAME=X1,Y1,X2,Y2,X3,Y3",
                     help="Only objects standing in this polygon (frame pixels; repeatable); "
                          "the event names the zone."),
        click.option("--events-min-frames", type=click.IntRange(min=1), metavar="N",
                     show_default="1, after the tracker's own 3",
                     help="Frames an object must be seen before its 'new' event (debounce)."),
        click.option("--events-min-score", type=Finite(0, 1), metavar="X",
                     help="Only detections scoring at least X make events."),
        click.option("--events-classes", metavar="LIST",
                     help="Only these classes make events, by name or id, comma-separated."),
        click.option("--track", is_flag=True, help="Give each detection a track id that "
                     "persists across frames (drawn, in --jsonl and /stats.json); on with "
                     "--events or --clips."),
        click.option("--events", multiple=True, metavar="URL", help="Send events (new, "
                     "update, end per tracked object, or per top-1 label of a classifier) to "
                     "mqtt://HOST[:PORT][/TOPIC], mqtts://..., http(s)://... (JSON POST) or "
                     "FILE.jsonl; repeatable. On the URL: ?ca=FILE (mqtts), "
                     "?discovery=homeassistant (MQTT), ?spool=DIR&spool_max=SIZE. "
                     "Credentials: $EDGEKIT_EVENTS_USERNAME/$EDGEKIT_EVENTS_PASSWORD or "
                     "$EDGEKIT_EVENTS_CREDENTIALS=FILE, never the URL."),
    ]
    for option in options:
        command = option(command)
    return command
