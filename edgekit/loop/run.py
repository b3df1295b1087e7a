"""``edgekit run`` and ``edgekit compare``: the detection loop on a model and a source.

``run_detection`` wires a detection model into the pipeline's stages
(preprocess: letterbox or resize, colour, normalisation; infer; postprocess: the
manifest's decoder and boxes mapped back to frame pixels; sink: the outputs)
and scores the result against ground truth when the source has some.
``compare`` runs the same source through several backends, one after another.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.backends import Concurrency, Pending, backend_status
from edgekit.backends.base import cpu_count
from edgekit.errors import EdgekitError, SourceLost, UsageError, WriteFailed
from edgekit.limits import checked, finite, whole
from edgekit.loop.pipeline import Item, LoopStats, Pipeline, Stage, check_queue_size
from edgekit.loop.sinks import VIDEO_SUFFIXES, JsonlSink, Sink, VideoSink, WindowSink, close_all
from edgekit.loop.sources import (
    GroundTruth,
    check_source,
    find_ground_truth,
    is_live,
    open_source,
    paced,
    truth_path,
)
from edgekit.manifest import read_manifest
from edgekit.model import LoadedModel, load_model
from edgekit.outputs import check as check_outputs
from edgekit.preprocess import SpecOptions, prepare
from edgekit.tasks.detection import (
    DECODERS,
    Detection,
    DetectionOptions,
    configure,
    decode,
    decoder_params,
    describe_decoder,
    to_frame,
)
from edgekit.tasks.metrics import mean_average_precision

if TYPE_CHECKING:
    from edgekit.loop.serve import LiveView

METRIC_THRESHOLD = 0.01  # detections kept for mAP (the PR curve needs the low scores too)


@dataclass
class RunReport:
    """What one run of the loop did and measured."""

    source: str
    artifact: str
    backend: str  # the backend's description: name, runtime, device, threads
    stats: LoopStats
    map50: float | None = None
    map_frames: int = 0
    map_note: str = ""
    outputs: list[str] = field(default_factory=list)
    stopped: str = ""  # why the source ended early (a camera that vanished), if it did
    input: str = ""  # the input spec used, one line with where each value came from
    decoder: str = ""  # the decoder and its parameters used, likewise
    requests: int = 1  # frames in the infer stage at once
    paced_fps: float | None = None  # --realtime: the rate a file or folder was read at
    live: bool = False  # a camera or stream: frames arrive at their own rate
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "artifact": self.artifact, "backend": self.backend,
                "input": self.input, "decoder": self.decoder,
                **self.stats.to_dict(), "requests": self.requests, "paced_fps": self.paced_fps,
                "live": self.live, "map50": self.map50, "map_frames": self.map_frames,
                "map_note": self.map_note, "outputs": self.outputs, "stopped": self.stopped,
                "notes": self.notes}


def loop_threads(threads: int | None, pipelined: bool, requests: int = 1) -> int | None:
    """The runtime's CPU threads in the loop: ``threads`` when given; in the pipelined loop
    with one request (``requests``; 0: as many as the runtime recommends), every core but
    one, which capture, pre- and post-processing then have to themselves; else the
    runtime's own choice (None). Measured on the bundled detector on 2 cores (300 frames,
    medians of 4 rounds): ONNX Runtime's two intra-op threads spin while they wait, and the
    pipelined loop ran at 0.92x sequential with them, 1.21x with one thread (1.14x with two
    that do not spin); TFLite 1.23x with either."""
    if threads is not None or not pipelined or requests != 1:
        return threads
    cores = cpu_count()
    return cores - 1 if cores > 1 else None


@checked
def detection_model(path: str | Path, *, backend: str | None = None, device: str | None = None,
                    threads: int | None = None, fmt: str | None = None,
                    labels: str | Path | None = None, spec: SpecOptions | None = None,
                    detect: DetectionOptions | None = None, mode: str = "latency",
                    requests: int | None = None, pipelined: bool = True) -> LoadedModel:
    """Load a model for the detection loop, its decoder configured (the bundle's, with
    ``detect`` on top) and tried once on outputs of the model's shapes, so a wrong decoder
    parameter or anchors file stops the run before a frame is read. A classifier or an
    unknown head is a UsageError. ``mode`` and ``requests``: the runtime tuned for each
    inference's latency or for the most per second, and the frames the infer stage keeps in
    flight (None: 1 in latency mode, the runtime's recommendation in throughput mode; see
    ``Concurrency``). ``pipelined``: the loop will run its stages at once (``loop_threads``)."""
    detect = detect or DetectionOptions()
    if detect.decoder is not None and detect.decoder not in DECODERS:
        raise UsageError(f"unknown --decoder {detect.decoder!r}; choose from "
                         f"{', '.join(DECODERS)}")
    concurrency = Concurrency(mode, requests)
    in_flight = requests or (1 if mode == "latency" else 0)
    threads = loop_threads(threads, pipelined, in_flight)
    model = load_model(path, backend=backend, device=device, threads=threads, fmt=fmt,
                       labels=labels, spec=spec, concurrency=concurrency)
    try:
        if detect.decoder is not None:
            model.task = "detection"
        if model.task != "detection":
            if model.task == "classification":
                raise UsageError(f"{Path(path).name} is a classification model; edgekit run is "
                                 "the detection loop: use edgekit classify for classifiers")
            raise UsageError(f"{Path(path).name} is not a detection bundle: for a bare detector "
                             f"give --decoder ({', '.join(DECODERS)}) and --labels")
        model.decoder, model.decoder_origin = configure(
            model.decoder, detect, "bundle" if model.manifest else "default")
        decode(model.blank_outputs(), model.decoder, (model.spec.width, model.spec.height),
               model.labels)
    except BaseException:
        model.close()
        raise
    return model


def detection_stages(model: LoadedModel, sinks: Sequence[Sink], stats: LoopStats,
                     score_threshold: float | None, keep_all: bool) -> list[Stage]:
    """The four stages after capture, for a detection model; the sinks see ``stats``."""
    spec, labels = model.spec, model.labels
    size = (spec.width, spec.height)
    shown = score_threshold if score_threshold is not None else \
        decoder_params(model.decoder).score_threshold
    params = {**model.decoder, "score_threshold": min(shown, METRIC_THRESHOLD) if keep_all
              else shown}

    def preprocess(item: Item) -> None:
        item.tensor, item.transform = prepare(item.frame.image, spec)

    def infer(item: Item) -> None:
        item.outputs = model.predict(item.tensor)

    def begin(item: Item) -> Pending:
        return model.backend.start(item.tensor)

    def end(item: Item, pending: Pending) -> None:
        item.outputs = model.in_keras_order(pending.result())

    def postprocess(item: Item) -> None:
        item.candidates = to_frame(decode(item.outputs, params, size, labels), item.transform)
        item.detections = [d for d in item.candidates if d.score >= shown]

    def sink(item: Item) -> None:
        for s in sinks:
            s.write(item, stats)

    return [Stage("preprocess", preprocess),
            Stage("infer", infer, begin, end, depth=model.backend.requests),
            Stage("postprocess", postprocess), Stage("sink", sink)]


def _truth(gt: GroundTruth, index: int) -> list[Detection]:
    return [Detection(o.get("label", ""), int(o["class_id"]), 1.0, tuple(o["box"]))
            for o in gt.frames.get(index, [])]


def _score(predicted: dict[int, list[Detection]], gt: GroundTruth,
           uncertain_from: int | None) -> tuple[float | None, int, str]:
    frames = sorted(i for i in predicted if uncertain_from is None or i < uncertain_from)
    note = ""
    if uncertain_from is not None:
        note = (f"scored on the {len(frames)} frames before the first decode failure (frame "
                f"{uncertain_from}); positions after it are uncertain")
    if not frames:
        return None, 0, note or "no frame to score"
    value = mean_average_precision([predicted[i] for i in frames],
                                   [_truth(gt, i) for i in frames], 0.5)
    return value, len(frames), note


def check_run_outputs(save: Path | None, jsonl: Path | None, source: str | int | Path,
                      truth: Path | None = None,
                      others: Sequence[str | Path | None] = ()) -> None:
    """Refuse --save/--jsonl paths that are an input (the source, its ground truth, found
    beside it or given, ``others`` such as the model), each other or a folder, before
    anything is read."""
    found = truth_path(str(source), None if truth is None else Path(truth))
    inputs = [str(i) for i in [source, found, *others] if i is not None]
    check_outputs({"--save": save, "--jsonl": jsonl}, inputs, {"--save": VIDEO_SUFFIXES})


@checked
def run_detection(model: LoadedModel, source_spec: str | int | Path, *,
                  save: Path | None = None, jsonl: Path | None = None, show: bool = False,
                  max_frames: int | None = None, pipelined: bool = True, queue_size: int = 2,
                  truth: Path | None = None, score_threshold: float | None = None,
                  repeat: bool = False, serve: LiveView | None = None,
                  realtime: bool | float = False) -> RunReport:
    """Run the detection loop on a source; sinks are always closed, whatever happens.

    Outputs are checked before the source is read; a file that cannot be written completely
    raises WriteFailed and leaves nothing (an earlier file at that path stays). ``repeat``: a
    file or folder starts again when it ends (no mAP: frames repeat).
    ``serve``: a live view (``edgekit run --serve``) that shows the frames and figures.
    ``realtime``: read a file or folder at its frame rate (True) or at this many frames per
    second, as a camera delivers them; a camera or stream already is (a note, not an error).
    """
    check_run_outputs(save, jsonl, source_spec, truth, [model.artifact])
    check_queue_size(queue_size)
    if max_frames is not None:
        whole(max_frames, "--max-frames")
    if score_threshold is not None and not 0 <= score_threshold <= 1:
        raise UsageError(f"--score-threshold is a score from 0 to 1, not {score_threshold}")
    if repeat and truth is not None:
        raise UsageError("--truth scores one pass over the source, and --repeat loops it: "
                         "choose one")
    if realtime is not True and realtime is not False:
        finite(realtime, "--realtime (frames per second)", low=0, low_open=True)
    notes = []
    live = is_live(source_spec)
    gt = None if repeat else find_ground_truth(source_spec, truth)
    source = open_source(source_spec, repeat=repeat)
    if realtime is not False and live:
        notes.append(f"--realtime: {source.description} delivers frames at its own rate "
                     "already, as a camera or stream does; nothing to pace")
    if realtime is not False and not live:
        source = paced(source, source_spec, None if realtime is True else float(realtime))
    sinks: list[Sink] = []
    pipeline: Pipeline | None = None
    predicted: dict[int, list[Detection]] = {}
    name = model.backend.name
    try:
        if save is not None:
            sinks.append(VideoSink(save, source.fps, name))
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        if show:
            sinks.append(WindowSink(name, lambda: pipeline.stop() if pipeline else None))
        if serve is not None:
            from edgekit.loop.live import ServeSink

            sinks.append(ServeSink(serve, source, model))
        warm_up(model)
        figures = LoopStats()
        pipeline = Pipeline(source, detection_stages(model, sinks, figures, score_threshold,
                                                     keep_all=gt is not None),
                            queue_size=queue_size, pipelined=pipelined, stats=figures)

        def collect(item: Item) -> None:
            if gt is not None:
                predicted[item.frame.index] = item.candidates

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
                       outputs=[str(s.written) for s in sinks if s.written], stopped=stopped,
                       input=model.spec.describe(),
                       decoder=describe_decoder(model.decoder, model.decoder_origin),
                       requests=model.backend.requests, live=live,
                       paced_fps=source.fps if realtime is not False and not live else None,
                       notes=notes)
    if gt is not None:
        report.map50, report.map_frames, report.map_note = _score(
            predicted, gt, source.stats.uncertain_from)
    return report


def warm_up(model: LoadedModel) -> None:
    """One untimed inference on every request before the first frame: a runtime's first
    (kernels compiled, memory allocated: 130 ms for OpenVINO's first on the digit detector
    here) would otherwise sit in the first frame's latency and queue the frames behind it."""
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


@checked
def compare(bundle: Path, source_spec: str | int | Path, backends: Sequence[str],
            *, max_frames: int | None = None, threads: int | None = None,
            truth: Path | None = None, spec: SpecOptions | None = None,
            detect: DetectionOptions | None = None, mode: str = "latency",
            requests: int | None = None, realtime: bool | float = False,
            progress: Callable[[str], None] = lambda _: None) -> list[CompareRow]:
    """The same source through each backend in turn; unusable ones become skipped rows.

    A backend may be written ``name:format`` to pick the bundle's artifact. What would fail
    every row is refused first, in one line: a bundle that is not a detector, a source that
    does not exist.
    """
    manifest = read_manifest(bundle)
    if manifest.task != "detection":
        raise UsageError(f"{bundle} holds a {manifest.task} model; edgekit compare runs the "
                         "detection loop: give a detection bundle (edgekit bench compares "
                         "classifiers)")
    if max_frames is not None and max_frames < 1:
        raise UsageError("--max-frames must be 1 or more")
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
            with detection_model(bundle, backend=name, threads=threads, fmt=fmt or None,
                                 spec=spec, detect=detect, mode=mode,
                                 requests=requests, pipelined=True) as model:
                report = run_detection(model, source_spec, max_frames=max_frames, truth=truth,
                                       realtime=realtime)
        except EdgekitError as exc:
            rows.append(CompareRow(entry, "failed", str(exc)))
            continue
        rows.append(CompareRow(entry, "ok", report.stopped, report))
    return rows
