"""Figures for the camera loop.

    .venv/bin/python scripts/bench_loop.py

1. Pipelining with a backend whose time is known: the real detection stages (clip decode,
   letterbox, decoder, no sink) around a fixed-delay test backend (registered through the
   public registry; it sleeps, then returns zeros). Goal: loop FPS >= 0.9 / slowest stage.
2. Balanced stages (every stage sleeps the same time): pipelined FPS over the same stages
   one after another. Goals: >= 1.3x, and >= 0.9 / slowest stage.
3. The loop's own cost per frame: stages that do nothing, a source of ready frames; wall
   time and CPU time per frame (queues, timing, bookkeeping). Goal: <= 0.5 ms.
4. The real detector on the generated clip, every CPU backend, in one `edgekit compare` run:
   FPS and end-to-end p90 per backend.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
sys.path.insert(0, str(ROOT))

from edgekit.backends import Backend, BackendStatus, register  # noqa: E402
from edgekit.bundle.tflite_file import read_tflite  # noqa: E402
from edgekit.loop.pipeline import Pipeline, Stage  # noqa: E402
from edgekit.loop.sources import Frame, Source  # noqa: E402


class DelayBackend(Backend):
    """A test backend with a known inference time: sleeps, then returns zeros (dequantised)."""

    name = "delay"
    suffixes = (".tflite",)
    delay_s = 0.006

    def __init__(self, model, *, device=None, threads=None) -> None:
        super().__init__(model, device=device, threads=threads)
        info = read_tflite(self.model_path)
        self.inputs, self.outputs, self.runtime = info.inputs, info.outputs, "time.sleep"

    @classmethod
    def probe(cls) -> BackendStatus:
        return BackendStatus(cls.name, True, runtime="time.sleep", devices=["CPU"])

    def _invoke(self, inputs):
        time.sleep(self.delay_s)  # outputs that dequantise to 0.0: the decoder finds nothing
        return [np.full(t.shape, t.quantization.zero_point[0] if t.quantization else 0, t.dtype)
                for t in self.outputs]


class ReadyFrames(Source):
    """``count`` frames, each after ``delay_s`` (a capture stage of known time)."""

    def __init__(self, count: int, delay_s: float = 0.0) -> None:
        super().__init__()
        self.count, self.delay_s, self.next = count, delay_s, 0
        self.image = np.zeros((4, 4, 3), np.uint8)

    def read(self) -> Frame | None:
        if self.next >= self.count:
            return None
        if self.delay_s:
            time.sleep(self.delay_s)
        self.next += 1
        return Frame(self.next - 1, self.image, time.perf_counter_ns())


def ensure_detector_and_clip() -> tuple[Path, Path]:
    bundle, clip = OUT / "digit_detector", OUT / "clip.avi"
    if not (bundle / "edgekit.json").is_file():
        from edgekit.convert import ConvertOptions, convert

        convert(ROOT / "models" / "digit_detector" / "digit_detector.keras", bundle,
                ConvertOptions(force=True), progress=lambda m: print(f"  {m}", file=sys.stderr))
    if not clip.is_file():
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "make_clip", ROOT / "models" / "digit_detector" / "make_clip.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_clip"] = module
        spec.loader.exec_module(module)
        module.make_clip(clip, seconds=20, fps=15, seed=0)
    return bundle, clip


def pipelining_with_delay_backend(bundle: Path, clip: Path) -> None:
    from edgekit.loop.run import loop_model, run_loop

    register("delay", DelayBackend)
    for delay in (0.004, 0.008):
        DelayBackend.delay_s = delay
        with loop_model(bundle, backend="delay", fmt="tflite-int8") as model:
            report = run_loop(model, clip)
        s = report.stats
        p50 = {name: s.stage(name).p50 for name in s.stage_ns}
        slowest = max(p50, key=p50.get)
        bound = 1000 / p50[slowest]
        print(f"  delay backend {delay * 1000:.0f} ms: {s.frames} frames at {s.fps:.1f} FPS; "
              f"slowest stage {slowest} p50 {p50[slowest]:.2f} ms -> bound {bound:.1f} FPS; "
              f"ratio {s.fps / bound:.3f} (goal >= 0.9); stage p50s "
              + ", ".join(f"{k} {v:.2f}" for k, v in p50.items()))


def sleeping(name: str, seconds: float) -> Stage:
    return Stage(name, lambda item: time.sleep(seconds))


def balanced_stages(stage_s: float = 0.004, frames: int = 300) -> None:
    names = ("preprocess", "infer", "postprocess", "sink")
    results = {}
    for pipelined in (False, True):
        fps = []
        for _ in range(3):
            stats = Pipeline(ReadyFrames(frames, stage_s), [sleeping(n, stage_s) for n in names],
                             pipelined=pipelined).run()
            fps.append(stats.fps)
        results[pipelined] = statistics.median(fps)
    bound = 1 / stage_s
    print(f"  5 stages of {stage_s * 1000:.0f} ms each, {frames} frames, median of 3: "
          f"sequential {results[False]:.1f} FPS, pipelined {results[True]:.1f} FPS; "
          f"speed-up x{results[True] / results[False]:.2f} (goal >= 1.3); "
          f"pipelined / bound {bound:.0f} FPS = {results[True] / bound:.3f} (goal >= 0.9)")


def loop_cost(frames: int = 20000) -> None:
    names = ("preprocess", "infer", "postprocess", "sink")
    for pipelined in (True, False):
        walls, cpus = [], []
        for _ in range(3):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            Pipeline(ReadyFrames(frames), [Stage(n, lambda item: None) for n in names],
                     pipelined=pipelined).run()
            walls.append((time.perf_counter() - wall0) / frames * 1000)
            cpus.append((time.process_time() - cpu0) / frames * 1000)
        print(f"  {'pipelined ' if pipelined else 'sequential'}: wall "
              f"{statistics.median(walls):.4f} ms/frame, CPU {statistics.median(cpus):.4f} "
              f"ms/frame over {frames} frames (median of 3; goal <= 0.5 ms)")


def compare_backends(bundle: Path, clip: Path) -> None:
    from edgekit.loop.report import compare_table
    from edgekit.loop.run import compare

    rows = compare(bundle, clip, ["tflite", "openvino", "onnxruntime", "edgetpu", "myriad"])
    for row in rows:
        if row.report is None:
            print(f"  {row.backend:12} {row.status}: {row.reason[:90]}")
            continue
        s, e2e = row.report.stats, row.report.stats.end_to_end()
        print(f"  {row.backend:12} {Path(row.report.artifact).name:28} {s.fps:7.1f} FPS   "
              f"end-to-end p50 {e2e.p50:6.2f} ms  p90 {e2e.p90:6.2f} ms   infer p50 "
              f"{s.stage('infer').p50:5.2f} ms   mAP@0.5 {row.report.map50:.4f}")
    print()
    print(compare_table(rows))


def main() -> None:
    bundle, clip = ensure_detector_and_clip()
    print("1. pipelining, real stages around a fixed-delay backend (clip of "
          f"{clip.name}, no sink):")
    pipelining_with_delay_backend(bundle, clip)
    print("2. balanced stages:")
    balanced_stages()
    print("3. the loop's own cost per frame (no-op stages):")
    loop_cost()
    print("4. the real detector on the clip, every CPU backend, one compare run:")
    compare_backends(bundle, clip)


if __name__ == "__main__":
    main()
