"""The ``edgekit run`` options for tracking, events and clips, as one decorator: the command
receives them as ``events: EventsOptions``."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from edgekit.errors import UsageError
from edgekit.events.outbox import QUEUE
from edgekit.events.settings import ClipOptions, EventsOptions, parse_size, zones_from

NAMES = ("events", "track", "events_classes", "events_min_score", "events_min_frames",
         "events_update", "events_zone", "events_queue", "clips", "pre", "post", "max_disk")
FILTER_FLAGS = {"events_classes": "--events-classes", "events_min_score": "--events-min-score",
                "events_min_frames": "--events-min-frames", "events_zone": "--events-zone",
                "events_update": "--events-update"}


def events_from(given: dict[str, Any]) -> EventsOptions:
    """The options as the command line gave them, checked."""
    clips = None
    if given["clips"] is not None:
        default = ClipOptions(folder=str(given["clips"]))
        clips = ClipOptions(folder=default.folder,
                            pre_s=default.pre_s if given["pre"] is None else given["pre"],
                            post_s=default.post_s if given["post"] is None else given["post"],
                            max_disk=default.max_disk if given["max_disk"] is None
                            else parse_size(given["max_disk"]))
    elif any(given[k] is not None for k in ("pre", "post", "max_disk")):
        raise UsageError("--pre, --post and --max-disk go with --clips DIR")
    classes = ()
    if given["events_classes"] is not None:
        classes = tuple(c.strip() for c in given["events_classes"].split(",") if c.strip())
        if not classes:
            raise UsageError("--events-classes takes class names or ids, comma-separated")
    options = EventsOptions(
        destinations=tuple(given["events"]), classes=classes,
        min_score=given["events_min_score"] or 0.0, min_frames=given["events_min_frames"] or 1,
        update_s=5.0 if given["events_update"] is None else given["events_update"],
        zones=zones_from(tuple(given["events_zone"])), queue=given["events_queue"],
        track=given["track"], clips=clips,
        filters_given=tuple(flag for key, flag in FILTER_FLAGS.items() if given[key]))
    options.check()
    return options


def events_line(row: dict[str, Any]) -> str:
    """A destination's (or the clips') counters in the run's summary."""
    if "clips" in row:
        return (f"clips: {row['clips']} written in {row['destination']} "
                f"({row['bytes'] / 1e6:.1f} MB), {row['deleted']} deleted for --max-disk"
                + (f"; {row['last_error']}" if row.get("last_error") else ""))
    return (f"events: {row['destination']}: {row['delivered']} delivered, {row['dropped']} "
            f"dropped" + (f" (last error: {row['last_error']})" if row["last_error"] else ""))


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
                     "update, end per tracked object) to mqtt://HOST[:PORT][/TOPIC], "
                     "mqtts://..., http(s)://... (JSON POST) or FILE.jsonl; repeatable. "
                     "Credentials: $EDGEKIT_EVENTS_USERNAME/$EDGEKIT_EVENTS_PASSWORD or "
                     "$EDGEKIT_EVENTS_CREDENTIALS=FILE, never the URL."),
    ]
    for option in options:
        command = option(command)
    return command
