"""``edgekit run`` and ``edgekit compare``: the camera loop on a model and a source.

``loop_model`` loads a model for the loop and settles its task (the bundle's, or
``--task``); ``run_loop`` wires it into the pipeline's stages (preprocess: letterbox or
resize, colour, normalisation; infer; postprocess: the task's, in frame pixels; sink: the
outputs) and scores a detector against ground truth when the source has some. Every task
(detection, classification, segmentation, generic) runs the same loop: what differs is the
task object (``edgekit.tasks.make_task``). ``compare`` runs the same source through several
backends, one after another.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.backends import Concurrency, Pending, backend_status
from edgekit.backends.base import cpu_count
from edgekit.bundle.fidelity import agreeing
from edgekit.bundle.manifest import Manifest, bundle_folder, read_manifest
from edgekit.errors import EdgekitError, SourceLost, UsageError, WriteFailed
from edgekit.helpers.limits import checked, finite, whole
from edgekit.helpers.output_files import check as check_outputs
from edgekit.loop.labels import ClassTruth, find_class_truth
from edgekit.loop.picamera import is_imx500
from edgekit.loop.pipeline import Item, LoopStats, Pipeline, Stage, check_queue_size
from edgekit.loop.sinks import (
    VIDEO_SUFFIXES,
    JsonlSink,
    MaskSink,
    RawOutputsSink,
    Sink,
    VideoSink,
    WindowSink,
    check_mask_folder,
    close_all,
)
from edgekit.loop.sources import (
    check_source,
    from_environment,
    is_live,
    open_source,
    paced,
)
from edgekit.loop.truth import find_ground_truth, score_map, truth_path
from edgekit.model import LoadedModel, load_model
from edgekit.preprocess import SpecOptions, prepare
from edgekit.tasks import TaskOptions, check_task, make_task
from edgekit.tasks.base import LoopTask, Summary
from edgekit.tasks.detection import (
    DECODERS,
    Detection,
    DetectionOptions,
    configure,
    decode,
    option_of,
)

if TYPE_CHECKING:
    from edgekit.events.settings import EventsOptions
    from edgekit.live.server import LiveView


KEPT_FRAMES = 1000  # per-frame answers kept to compare backends (a mask each, for a segmenter)

@dataclass
class RunReport:
    """What one run of the loop did and measured."""

    source: str
    artifact: str
    backend: str  # the backend's description: name, runtime, device, threads
    stats: LoopStats
    task: str = "detection"
    map50: float | None = None
    map_frames: int = 0
    map_note: str = ""
    accuracy: float | None = None  # a classifier: top-1 against the source's labels
    accuracy_frames: int = 0
    accuracy_source: str = ""  # where the labels came from
    # A file through a classifier or a segmenter: per frame, its top-1 class id or its mask at
    # the model's resolution (at most KEPT_FRAMES), to compare backends frame by frame.
    answers: dict[int, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    stopped: str = ""  # why the source ended early (a camera that vanished), if it did
    input: str = ""  # the input spec used, one line with where each value came from
    decoder: str = ""  # the task's line: the decoder and its parameters used, the top-k...
    summary: Summary = field(default_factory=Summary)  # what the clip added up to (the task's)
    requests: int = 1  # frames in the infer stage at once
    paced_fps: float | None = None  # realtime: the rate a file or folder was read at
    live: bool = False  # a camera or stream: frames arrive at their own rate
    notes: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # per destination: counters

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "artifact": self.artifact, "backend": self.backend,
                "task": self.task, "input": self.input, "decoder": self.decoder,
                "summary": self.summary.data,
                **self.stats.to_dict(), "requests": self.requests, "paced_fps": self.paced_fps,
                "live": self.live, "map50": self.map50, "map_frames": self.map_frames,
                "map_note": self.map_note, "accuracy": self.accuracy,
                "accuracy_frames": self.accuracy_frames,
                "accuracy_source": self.accuracy_source, "outputs": self.outputs,
                "stopped": self.stopped, "notes": self.notes, "events": self.events}


def loop_threads(threads: int | None, pipelined: bool, requests: int = 1) -> int | None:
    """The runtime's CPU threads in the loop: ``threads`` when given; in the pipelined loop
    with one request (``requests``; 0: as many as the runtime recommends), every core but
    one, which capture, pre- and post-processing then have to themselves; else the
    runtime's own choice (None). Why: ONNX Runtime's intra-op threads spin while they wait,
    and on a runtime given every core the pipelined loop fell behind the sequential one
    (docs/figures.md, "Choices in the code")."""
    if threads is not None or not pipelined or requests != 1:
        return threads
    cores = cpu_count()
    return cores - 1 if cores > 1 else None


@checked
def loop_model(path: str | Path | Manifest, *, task: str | None = None,
               backend: str | None = None,
               device: str | None = None, threads: int | None = None, fmt: str | None = None,
               labels: str | Path | None = None, spec: SpecOptions | None = None,
               detect: DetectionOptions | None = None, mode: str = "latency",
               requests: int | None = None, pipelined: bool = True,
               sensor: bool = False) -> LoadedModel:
    """Load a model for the camera loop, its task settled: the bundle's (or a bare model's
    guess), or ``task`` (``check_task``: a bundle's own task cannot be contradicted). A
    detector's decoder is configured (the bundle's, with ``detect`` on top; ``detect.decoder``
    makes a bare model a detector) and tried once on outputs of the model's shapes, so a
    wrong decoder parameter or anchors file stops the run before a frame is read; a
    classifier's or segmenter's outputs are checked the same way (``make_task``).
    ``mode`` and ``requests``: the runtime tuned for each inference's latency or for the most
    per second, and the frames the infer stage keeps in flight (None: 1 in latency mode, the
    runtime's recommendation in throughput mode; see ``Concurrency``). ``pipelined``: the
    loop will run its stages at once (``loop_threads``). ``sensor``: for ``--source imx500``,
    the bundle's imx500 artifact, run by the sensor (``loop.imx500.sensor_model``)."""
    detect = detect or DetectionOptions()
    if detect.decoder is not None and detect.decoder not in DECODERS:
        raise UsageError(f"unknown `decoder` {detect.decoder!r}; choose from "
                         f"{', '.join(DECODERS)}")
    if detect.decoder is not None and task not in (None, "detection"):
        raise UsageError(f"a decoder makes the model a detector, not a {task} model: give "
                         "one of them")
    concurrency = Concurrency(mode, requests)
    in_flight = requests or (1 if mode == "latency" else 0)
    threads = loop_threads(threads, pipelined, in_flight)
    if sensor:
        from edgekit.loop.imx500 import sensor_model

        given = [f"`{name}`" for name, value in (("backend", backend), ("device", device),
                                                 ("format", fmt), ("requests", requests))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: with `source` imx500 the sensor runs the "
                             "bundle's imx500 artifact itself; leave them out")
        model = sensor_model(bundle_folder(path) if isinstance(path, Manifest) else Path(path),
                             labels, spec)
    else:
        model = load_model(path, backend=backend, device=device, threads=threads, fmt=fmt,
                           labels=labels, spec=spec, concurrency=concurrency)
    name = (bundle_folder(path) if isinstance(path, Manifest) else Path(path)).name
    try:
        if detect.decoder is not None:
            model.task = "detection"
        model.task = check_task(model.task, task, model.manifest is not None)
        if model.task == "detection":
            if not model.decoder and detect.decoder is None:
                raise UsageError(f"{name} has no decoder: for a bare detector give "
                                 f"`decoder` ({', '.join(DECODERS)}) and `labels`")
            model.decoder, model.decoder_origin = configure(
                model.decoder, detect, "bundle" if model.manifest else "default")
            decode(model.blank_outputs(), model.decoder, (model.spec.width, model.spec.height),
                   model.labels)
        elif detect.given():
            flags = ", ".join(option_of(k) for k in detect.given())
            raise UsageError(f"{flags}: detection options, and {name} runs as a "
                             f"{model.task} model")
        make_task(model)  # a classifier's or segmenter's outputs checked now
    except BaseException:
        model.close()
        raise
    return model


def loop_stages(model: LoadedModel, task: LoopTask, sinks: Sequence[Sink],
                stats: LoopStats) -> list[Stage]:
    """The four stages after capture, for any task; the sinks see ``stats``."""
    spec = model.spec
    sensor_spec = replace(spec, resize="stretch")  # the IMX500 scales its whole view to the input

    def preprocess(item: Item) -> None:
        item.tensor, item.transform = prepare(item.frame.image, sensor_spec
                                              if item.frame.sensor is not None else spec)

    def infer(item: Item) -> None:
        if item.frame.sensor is not None:  # the IMX500 ran the network on this frame
            item.outputs = item.frame.sensor.outputs
            item.timings_ns["infer"] = item.frame.sensor.dnn_ns
            return
        item.outputs = model.predict(item.tensor)

    def begin(item: Item) -> Pending:
        return model.backend.start(item.tensor)

    def end(item: Item, pending: Pending) -> None:
        item.outputs = model.in_keras_order(pending.result())

    def postprocess(item: Item) -> None:
        item.result = task.postprocess(item.outputs, item.transform)

    def sink(item: Item) -> None:
        for s in sinks:
            s.write(item, stats)

    return [Stage("preprocess", preprocess),
            Stage("infer", infer, begin, end, depth=model.backend.requests),
            Stage("postprocess", postprocess), Stage("sink", sink)]


def check_run_outputs(save: Path | None, jsonl: Path | None, source: str | int | Path,
                      truth: Path | None = None,
                      others: Sequence[str | Path | None] = (),
                      raw_outputs: Path | None = None) -> None:
    """Refuse output paths (run's ``--save``: the video, the JSON lines, the raw outputs) that
    are an input (the source, its ground truth, found beside it or given, ``others`` such as
    the model), each other or a folder, before anything is read."""
    found = truth_path(str(source), None if truth is None else Path(truth))
    inputs = [str(i) for i in [source, found, *others] if i is not None]
    raw = "--save (raw outputs)"
    check_outputs({"--save": save, "--save (JSON lines)": jsonl, raw: raw_outputs}, inputs,
                  {"--save": VIDEO_SUFFIXES, raw: (".npz",)})


@checked
def run_loop(model: LoadedModel, source_spec: str | int | Path, *,
             save: Path | None = None, jsonl: Path | None = None, show: bool = False,
             max_frames: int | None = None, pipelined: bool = True, queue_size: int = 2,
             truth: Path | None = None, score_threshold: float | None = None,
             repeat: bool = False, serve: LiveView | None = None,
             realtime: bool | float = False, top_k: int = 5, smooth: int = 1,
             save_masks: Path | None = None, raw_outputs: Path | None = None,
             events: EventsOptions | None = None) -> RunReport:
    """Run the camera loop on a source; sinks are always closed, whatever happens.

    Outputs are checked before the source is read; a file that cannot be written completely
    raises WriteFailed and leaves nothing (an earlier file at that path stays). ``repeat``: a
    file or folder starts again when it ends (no mAP: frames repeat).
    ``serve``: a live view (``edgekit run --serve``) that shows the frames and figures.
    ``realtime``: read a file or folder at its frame rate (True) or at this many frames per
    second, as a camera delivers them; a camera or stream already is (a note, not an error).
    ``top_k`` and ``smooth``: a classifier's classes per frame, and the frames its scores are
    averaged over. ``save_masks``: a segmenter's masks, one 8-bit PNG per frame, into that
    folder. ``raw_outputs``: every frame's outputs into an .npz. ``events``: track ids on a
    detector's results, events to their destinations, clips (``edgekit.events``).
    """
    source_spec = from_environment(source_spec)  # env:NAME: a stream URL kept off argv
    check_run_outputs(save, jsonl, source_spec, truth, [model.artifact],
                      raw_outputs=raw_outputs)
    check_queue_size(queue_size)
    if max_frames is not None:
        whole(max_frames, "max_frames")
    if score_threshold is not None and not 0 <= score_threshold <= 1:
        raise UsageError(f"score_threshold is a score from 0 to 1, not {score_threshold}",
        param="score_threshold")
    if repeat and truth is not None:
        raise UsageError("truth scores one pass over the source, and `repeat` loops it: "
                         "choose one", param="truth")
    if realtime is not True and realtime is not False:
        finite(realtime, "realtime (frames per second)", low=0, low_open=True)
    if save_masks is not None and model.task != "segmentation":
        raise UsageError(f"save_masks writes a segmenter's masks, and this is a {model.task} "
                         "model", param="save_masks")
    if truth is not None and model.task != "detection":
        raise UsageError(f"truth scores a detector's boxes, and this is a {model.task} model",
        param="truth")
    tracking = events is not None and events.wanted()
    if tracking:
        events.check_task(model.task)
    notes = []
    live = is_live(source_spec)
    gt = None if repeat or model.task != "detection" else find_ground_truth(source_spec, truth)
    task = make_task(model, TaskOptions(task=model.task, top_k=top_k, smooth=smooth,
                                        score_threshold=score_threshold,
                                        keep_all=gt is not None))
    if save_masks is not None:
        check_mask_folder(save_masks, [source_spec, model.artifact])
    if is_imx500(source_spec):
        from edgekit.loop.imx500 import open_sensor

        if repeat:
            raise UsageError("repeat loops a file or folder; the IMX500 runs until stopped",
            param="repeat")
        source = open_sensor(str(source_spec), model)
    else:
        source = open_source(source_spec, repeat=repeat)
    if realtime is not False and live:
        notes.append(f"--capture realtime: {source.description} delivers frames at its own rate "
                     "already, as a camera or stream does; nothing to pace")
    classes = None  # a classifier on a file or folder: its labels, if the source has some
    if model.task == "classification" and not repeat and not live:
        try:
            classes = find_class_truth(source_spec, model.labels, source.stats.expected)
        except BaseException:
            source.close()
            raise
    if realtime is not False and not live:
        source = paced(source, source_spec, None if realtime is True else float(realtime))
    if tracking:
        from edgekit.events.labels import LabelTrackingTask
        from edgekit.events.tracking import TrackingTask

        try:
            task = (LabelTrackingTask(task, events.min_frames) if model.task == "classification"
                    else TrackingTask(task, source.fps))
        except BaseException:
            source.close()
            raise
    events_sink = None
    sinks: list[Sink] = []
    pipeline: Pipeline | None = None
    predicted: dict[int, list[Detection]] = {}
    answers: dict[int, tuple[Any, str]] = {}  # frame -> (its top-1 or mask, its name)
    keep_answers = model.task in ("classification", "segmentation") and not repeat and not live
    name = model.backend.name
    try:
        if save is not None:
            sinks.append(VideoSink(save, source.fps, name))
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        if save_masks is not None:
            sinks.append(MaskSink(save_masks))
        if raw_outputs is not None:
            sinks.append(RawOutputsSink(raw_outputs))
        if show:
            sinks.append(WindowSink(name, lambda: pipeline.stop() if pipeline else None))
        if serve is not None:
            from edgekit.live.state import ServeSink

            sinks.append(ServeSink(serve, source, model))
        if tracking and (events.destinations or events.clips):
            from edgekit.events.sink import EventsSink

            events_sink = EventsSink(events, model, source.fps)
            sinks.append(events_sink)
            if serve is not None:
                serve.more_metrics.append(events_sink.metrics_lines)
        warm_up(model)
        figures = LoopStats()
        pipeline = Pipeline(source, loop_stages(model, task, sinks, figures),
                            queue_size=queue_size, pipelined=pipelined, stats=figures)

        def collect(item: Item) -> None:
            if gt is not None:
                predicted[item.frame.index] = item.result.candidates
            if keep_answers and len(answers) < KEPT_FRAMES:
                answers[item.frame.index] = (item.result.answer(), item.frame.name)

        stopped = ""
        try:
            stats = pipeline.run(max_frames, on_result=collect)
        except SourceLost as exc:
            stats, stopped = pipeline.stats, str(exc)
    except WriteFailed as exc:
        close_all(sinks)  # the other outputs keep the frames before the failure
        source.close()
        raise _naming_kept(exc, sinks) from None
    except BaseException:
        close_all(sinks)  # what was processed is kept (Ctrl-C); a failed file is not
        source.close()
        raise
    source.close()
    failed = close_all(sinks)
    if failed is not None:
        raise _naming_kept(failed, sinks)
    report = RunReport(source.description, str(model.artifact), model.backend.describe(), stats,
                       task=task.name, outputs=[str(s.written) for s in sinks if s.written],
                       stopped=stopped, input=model.spec.describe(), decoder=task.describe(),
                       summary=task.summary(source.fps or 0.0),
                       requests=model.backend.requests, live=live,
                       paced_fps=source.fps if realtime is not False and not live else None,
                       notes=notes,
                       events=events_sink.counters() if events_sink is not None else [])
    if gt is not None:
        report.map50, report.map_frames, report.map_note = score_map(
            predicted, gt, source.stats.uncertain_from)
    report.answers = {index: answer for index, (answer, _) in answers.items()}
    if classes is not None:
        report.accuracy, report.accuracy_frames = _accuracy(answers, classes)
        report.accuracy_source = classes.source
    return report


def _accuracy(answers: dict[int, tuple[Any, str]], truth: ClassTruth) -> tuple[float | None,
                                                                               int]:
    """A classifier's top-1 accuracy on the frames the truth labels (``fidelity.agreeing``,
    the one definition), and how many those were."""
    pairs = [(known, top) for index, (top, name) in sorted(answers.items())
             if (known := truth.of(index, name)) is not None]
    if not pairs:
        return None, 0
    return agreeing([k for k, _ in pairs], [t for _, t in pairs]) / len(pairs), len(pairs)


def warm_up(model: LoadedModel) -> None:
    """One untimed inference on every request before the first frame: a runtime's first
    (kernels compiled, memory allocated; docs/figures.md has OpenVINO's on the digit
    detector) would otherwise sit in the first frame's latency and queue the frames behind
    it."""
    tensor = np.zeros(model.spec.shape, np.float32)
    for pending in [model.backend.start(tensor) for _ in range(model.backend.requests)]:
        pending.result()


def _naming_kept(failed: WriteFailed, sinks: Sequence[Sink]) -> WriteFailed:
    """The write failure, saying which outputs still hold the frames processed."""
    kept = [str(s.written) for s in sinks if s.written]
    return WriteFailed(f"{failed}; the frames processed are in {', '.join(kept)}") if kept \
        else failed


@dataclass
class CompareRow:
    backend: str
    status: str
    reason: str = ""
    report: RunReport | None = None
    agreement: float | None = None  # a classifier without labels: top-1 equal to the first row's


def agree_with_first(rows: Sequence[CompareRow]) -> None:
    """A classifier's or segmenter's rows without truth to score against: each backend's
    answers against the first backend that ran, on the frames both finished: the share of
    equal top-1 classes, or of equal pixels (the masks at the model's resolution)."""
    ran = [r for r in rows if r.report is not None and r.report.answers]
    if len(ran) < 2 or any(r.report.accuracy is not None for r in ran):
        return
    first = ran[0].report.answers
    for row in ran:
        frames = sorted(set(first) & set(row.report.answers))
        if frames:
            row.agreement = float(np.mean([np.mean(np.asarray(first[i]) ==
                                                   np.asarray(row.report.answers[i]))
                                           for i in frames]))


@checked
def compare(bundle: Path, source_spec: str | int | Path, backends: Sequence[str],
            *, max_frames: int | None = None, threads: int | None = None,
            truth: Path | None = None, spec: SpecOptions | None = None,
            detect: DetectionOptions | None = None, mode: str = "latency",
            requests: int | None = None, realtime: bool | float = False,
            task: str | None = None, top_k: int = 5, smooth: int = 1,
            progress: Callable[[str], None] = lambda _: None) -> list[CompareRow]:
    """The same source through each backend in turn; unusable ones become skipped rows.

    A backend may be written ``name:format`` to pick the bundle's artifact. What would fail
    every row is refused first, in one line: a task the bundle does not hold, a source that
    does not exist.
    """
    manifest = read_manifest(bundle)
    check_task(manifest.task, task, from_bundle=True)
    if max_frames is not None and max_frames < 1:
        raise UsageError("max_frames must be 1 or more", param="max_frames")
    Concurrency(mode, requests)  # --requests 0, --mode x: one line, before any row
    check_source(source_spec)
    rows = []
    for entry in backends:
        name, _, fmt = entry.partition(":")
        status = backend_status(name)
        if not status.usable:
            progress(f"{entry}: skipped ({status.reason})")
            rows.append(CompareRow(entry, "skipped", status.reason +
                                   (f"; {status.hint}" if status.hint else "")))
            continue
        progress(f"{entry}: running")
        try:
            with loop_model(manifest, task=task, backend=name, threads=threads,
                            fmt=fmt or None, spec=spec, detect=detect, mode=mode,
                            requests=requests, pipelined=True) as model:
                report = run_loop(model, source_spec, max_frames=max_frames, truth=truth,
                                  realtime=realtime, top_k=top_k, smooth=smooth)
        except EdgekitError as exc:
            rows.append(CompareRow(entry, "failed", str(exc)))
            continue
        rows.append(CompareRow(entry, "ok", report.stopped, report))
    agree_with_first(rows)
    return rows
