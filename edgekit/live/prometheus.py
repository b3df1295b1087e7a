"""/metrics: the loop's figures in Prometheus' text format (version 0.0.4), series edgekit_*.

Counters (frames, dropped, decode failures, reconnects, frames encoded), gauges (FPS over the
last few seconds, seconds since the last frame, viewers) and latency histograms per stage and
end to end, labelled by backend.
"""
from __future__ import annotations

import math
from typing import Any

from edgekit.helpers.text import printable
from edgekit.live.state import MAX_CLASS_SERIES, OTHER_CLASSES, Histogram, LiveState
from edgekit.loop.pipeline import STAGES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: Any) -> str:
    """A label value in the exposition format: control characters shown escaped (a carriage
    return or a newline in a name cannot break the line), then ``\\`` and ``"`` escaped."""
    return printable(value).replace("\\", "\\\\").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _histogram(lines: list[str], name: str, hist: Histogram, **labels: Any) -> None:
    running = 0
    for bound, count in zip((*hist.bounds_s, math.inf), hist.counts.tolist()):
        running += count
        le = "+Inf" if bound == math.inf else repr(bound)
        lines.append(f"{name}_bucket{_labels(**labels, le=le)} {running}")
    lines.append(f"{name}_sum{_labels(**labels)} {hist.total_ns / 1e9!r}")
    lines.append(f"{name}_count{_labels(**labels)} {hist.count}")


def prometheus_text(view: LiveState) -> str:
    """/metrics: the loop's counters, FPS and latency histograms, labelled by backend."""
    info, source = view.info, view.source_stats
    backend = info.get("backend_name", "")
    frames, stages, end_to_end = view.figures.histograms()
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: Any, **labels: Any) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                      f"{name}{_labels(backend=backend, **labels)} {value}"])

    metric("edgekit_info", "gauge", "What runs: the value is always 1.", 1,
           artifact=info.get("artifact_name", ""), format=info.get("format", ""),
           device=info.get("device", ""), runtime=info.get("runtime", ""),
           source=info.get("source", ""))
    metric("edgekit_frames_total", "counter", "Frames the loop finished.", frames)
    classes = view.figures.class_frames()
    if classes:
        lines += ["# HELP edgekit_class_frames_total Frames that showed each class (a "
                  "classifier's top-1, a detected object, a class in a mask); at most "
                  f"{MAX_CLASS_SERIES} classes apart, the rest as {OTHER_CLASSES}.",
                  "# TYPE edgekit_class_frames_total counter"]
        lines += [f"edgekit_class_frames_total{_labels(backend=backend, **{'class': name})} "
                  f"{count}" for name, count in sorted(classes.items())]
    for name, field_name, help_text in (
            ("edgekit_dropped_frames_total", "dropped",
             "Frames a live source replaced before the loop took them."),
            ("edgekit_decode_failures_total", "decode_failures", "Frames that failed to decode."),
            ("edgekit_reconnects_total", "reconnects", "Times a live source was reopened.")):
        metric(name, "counter", help_text, getattr(source, field_name, 0) if source else 0)
    live = view.figures.liveness()
    metric("edgekit_fps", "gauge", "Frames per second over the last few seconds.",
           round(live["fps_recent"], 3))
    metric("edgekit_seconds_since_frame", "gauge",
           "Seconds since the last frame reached the sink (a stalled source grows it).",
           live["since_frame_s"])
    metric("edgekit_viewers", "gauge", "Clients reading /stream.mjpg now.", view.viewers)
    metric("edgekit_encoded_frames_total", "counter",
           "Frames JPEG-encoded for viewers (once each, whatever the number of viewers).",
           view.frames.encoded)
    lines += ["# HELP edgekit_view_cpu_seconds_total CPU time the live view used: in the loop's "
              "sink stage (handing frames and figures over), drawing and encoding frames (once "
              "each), sending them to viewers.",
              "# TYPE edgekit_view_cpu_seconds_total counter"]
    for work, ns in (("sink", view.sink.cpu_ns if view.sink else 0),
                     ("encode", view.frames.encode_cpu_ns), ("send", view.send_cpu_ns)):
        lines.append(f"edgekit_view_cpu_seconds_total{_labels(backend=backend, work=work)} "
                     f"{ns / 1e9!r}")
    lines += ["# HELP edgekit_stage_seconds Time per frame in each stage of the loop.",
              "# TYPE edgekit_stage_seconds histogram"]
    for stage in sorted(stages, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES)):
        _histogram(lines, "edgekit_stage_seconds", stages[stage], backend=backend, stage=stage)
    lines += ["# HELP edgekit_latency_seconds End-to-end latency per frame, capture to sink.",
              "# TYPE edgekit_latency_seconds histogram"]
    _histogram(lines, "edgekit_latency_seconds", end_to_end, backend=backend)
    for more in view.more_metrics:  # e.g. the events' delivery counters
        lines += more(backend)
    return "\n".join(lines) + "\n"
