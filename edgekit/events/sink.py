"""The loop's events sink: each frame's tracks become events (``rules``), which go into each
destination's outbox (``outbox``; never waiting on it) and, with ``--clips``, into the clip
recorder (``clips``). Its counters are the run's report and ``/metrics``'
``edgekit_events_*`` series."""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from edgekit.events.destinations import parse_destination
from edgekit.events.outbox import Outbox
from edgekit.events.rules import Event, EventMaker
from edgekit.events.service import STATE_ENV
from edgekit.events.settings import EventsOptions
from edgekit.events.tracking import lost_frames
from edgekit.loop.pipeline import Item, LoopStats
from edgekit.loop.sinks import Sink


def bundle_name(model: Any) -> str:
    """How events name the model: its bundle folder, else its file."""
    artifact = str(getattr(model, "artifact", "") or "")
    if getattr(model, "manifest", None) is not None and "/" in artifact:
        return artifact.rstrip("/").rsplit("/", 2)[-2]
    return artifact.rsplit("/", 1)[-1]


STATE_EVERY_S = 1.0  # how often a service's state file is written


class EventsSink(Sink):
    """Tracks -> events -> destinations (and clips)."""

    def __init__(self, options: EventsOptions, model: Any, fps: float | None,
                 device: str | None = None) -> None:
        self.device = device or socket.gethostname()
        self.options = options
        # a classifier's label ends when another has held for min_frames (labels)
        end_frames = (options.min_frames if getattr(model, "task", "") == "classification"
                      else lost_frames(fps))
        self.maker = EventMaker(options.rules(end_frames), self.device, bundle_name(model))
        self.outboxes = [Outbox(parse_destination(url, self.device), options.queue)
                         for url in options.destinations]
        labels = [str(label) for label in getattr(model, "labels", None) or []]
        if options.classes:  # only the classes that make events
            labels = [label for i, label in enumerate(labels)
                      if label in options.classes or str(i) in options.classes]
        for outbox in self.outboxes:
            outbox.destination.describe(labels, bundle_name(model))
        self.clips: Any = None
        if options.clips is not None:
            from edgekit.events.clips import ClipRecorder

            self.clips = ClipRecorder(options.clips, fps)
        self.events = 0
        # a deployed service's counters for edgekit status (the unit sets the variable)
        self.state_file = os.environ.get(STATE_ENV) or None
        self._state_at = 0.0
        self._checked_zones = False
        self._closed = False
        started = []
        try:
            for outbox in self.outboxes:
                outbox.start()
                started.append(outbox)
        except BaseException:
            for outbox in started:
                outbox.close(0)
            if self.clips is not None:
                self.clips.close()
            raise

    def write(self, item: Item, stats: LoopStats) -> None:
        if not self._checked_zones:
            height, width = item.frame.image.shape[:2]
            for zone in self.options.zones:
                zone.check_inside(width, height)
            self._checked_zones = True
        if self.clips is not None:
            self.clips.frame(item)
        if self.state_file is not None and time.monotonic() - self._state_at >= STATE_EVERY_S:
            self.write_state()
        tracks = getattr(item.result, "tracks", None)
        if tracks is None:
            return
        self._send(self.maker.frame(item.frame.index, item.frame.captured_ns,
                                    item.frame.image, tracks))

    def _send(self, events: list[Event]) -> None:
        for event in events:
            if self.clips is not None:
                self.clips.event(event)
            self.events += 1
            for outbox in self.outboxes:
                outbox.put(event)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send(self.maker.finish())
        for outbox in self.outboxes:
            outbox.close()
        if self.clips is not None:
            self.clips.close()
        if self.state_file is not None:
            self.write_state()

    def write_state(self) -> None:
        """The counters into the state file (whole or not at all); a failure is let go: the
        file is for edgekit status, the loop does not depend on it."""
        self._state_at = time.monotonic()
        path = self.state_file
        try:
            with open(f"{path}.partial", "w") as f:
                json.dump({"time": round(time.time(), 3), "device": self.device,
                           "destinations": self.counters()}, f)
            os.replace(f"{path}.partial", path)
        except OSError:
            pass

    def counters(self) -> list[dict[str, Any]]:
        """Per destination: delivered, dropped, queued, failed tries, the last error."""
        rows = [outbox.counters() for outbox in self.outboxes]
        if self.clips is not None:
            rows.append(self.clips.counters())
        return rows

    def metrics_lines(self, backend: str = "") -> list[str]:
        """The ``edgekit_events_*`` series for /metrics (Prometheus text format)."""
        from edgekit.live.prometheus import _labels

        lines = []
        for name, key, help_text in (
                ("edgekit_events_delivered_total", "delivered", "Events delivered."),
                ("edgekit_events_dropped_total", "dropped", "Events that could not be "
                 "delivered: the queue was full, or the destination refused them."),
                ("edgekit_events_queued", "queued", "Events waiting for delivery.")):
            kind = "gauge" if key == "queued" else "counter"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{_labels(backend=backend, destination=o.destination.name)} "
                      f"{o.counters()[key]}" for o in self.outboxes]
        return lines
