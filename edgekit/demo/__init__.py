"""``edgekit demo``: the whole path on the bundled example models, into one report folder.

1. convert LeNet-5 (handwritten digits), the digit detector and the digit segmenter to every
   format;
2. bench every (artifact, backend) pair of the classifier and the detector;
3. generate the demo clip (digits moving over photos, with ground truth) and the
   classification clip (held-out digits one at a time, with a labels sidecar);
4. run the loop through every backend (edgekit compare): the detector on the demo clip, the
   classifier on the classification clip (top-1 against its labels), the segmenter on the
   demo clip;
5. run the detector once more on the default backend, saving the annotated video and JSON
   lines;
6. write REPORT.md and the tables as JSON and Markdown, with latency plots.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bench import BenchRow, BenchSettings, bench
from edgekit.bench.report import json_text as bench_json
from edgekit.bench.report import markdown as bench_markdown
from edgekit.bench.report import plot as bench_plot
from edgekit.bundle.manifest import Manifest
from edgekit.bundle.tables import conversion_table
from edgekit.convert import ConvertOptions, Progress, convert
from edgekit.errors import EdgekitError, UsageError
from edgekit.helpers.config import checkout_dir

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # edgekit/
WHEEL_EXAMPLES = PACKAGE_DIR / "_examples"  # an installed wheel's copy (setup.py makes it)
EXAMPLES = ("lenet5_digits", "digit_detector", "digit_segmenter")
BENCHED = ("lenet5_digits", "digit_detector")  # the segmenter's bench would add a minute


def examples_dir() -> Path:
    """The example models: the checkout's models/, else the copy inside an installed wheel."""
    root = checkout_dir()
    return root / "models" if root is not None and (root / "models").is_dir() \
        else WHEEL_EXAMPLES


def example_model(name: str) -> Path:
    """Path of a bundled example's .keras file (the checkout's or the wheel's)."""
    path = examples_dir() / name / f"{name}.keras"
    if not path.is_file():
        raise UsageError(
            f"the bundled example {name} is not here ({path}); this edgekit was installed "
            "without its examples (a wheel built by deploy carries none): pip install edgekit "
            "from PyPI or a wheel built from the repository, or run the demo from a checkout"
        )
    return path


def make_clip(path: Path, seconds: float = 6, fps: float = 15, seed: int = 0) -> Path:
    """The demo clip and its ground truth (``CLIP.json``), from the detector's recipe."""
    return Path(_recipe("digit_detector", "make_clip.py").make_clip(path, seconds=seconds,
                                                                     fps=fps, seed=seed))


def _recipe(example: str, name: str) -> Any:
    """A bundled example's script, imported from the examples' folder."""
    recipe = examples_dir() / example / name
    if not recipe.is_file():
        raise UsageError(f"{recipe} is missing: reinstall edgekit with its examples, or run "
                         "the demo from a checkout")
    spec = importlib.util.spec_from_file_location(f"edgekit_demo_{example}_{recipe.stem}",
                                                  recipe)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise UsageError(f"the demo clip needs the train extra ({exc.name} is missing): "
                         "pip install 'edgekit[train]'") from None
    return module


def make_classification_clip(path: Path, frames: int = 300, fps: float = 15,
                             seed: int = 0) -> Path:
    """The classification clip (held-out digits, one at a time) and its labels sidecar
    (``CLIP.labels.txt``), from LeNet's recipe."""
    return Path(_recipe("lenet5_digits", "make_clip.py").make_clip(path, frames=frames,
                                                                    fps=fps, seed=seed))


@dataclass
class DemoReport:
    folder: Path
    manifests: dict[str, Manifest] = field(default_factory=dict)
    bench: dict[str, list[BenchRow]] = field(default_factory=dict)
    compare: list[Any] = field(default_factory=list)  # the detector on the demo clip
    tracking: dict[str, Any] = field(default_factory=dict)  # backend -> its TrackScore
    compare_tasks: dict[str, list[Any]] = field(default_factory=dict)  # the other tasks
    loop: Any = None  # the default backend's RunReport
    files: list[Path] = field(default_factory=list)


def _write(report: DemoReport, name: str, text: str) -> Path:
    path = report.folder / name
    path.write_text(text)
    report.files.append(path)
    return path


def run_demo(out_dir: Path, progress: Progress, runs: int = 100) -> DemoReport:
    """Everything above, into ``out_dir`` (re-running replaces the demo's own output)."""
    from edgekit.loop.report import compare_json, compare_markdown, compare_plot
    from edgekit.loop.run import compare, loop_model, run_loop

    out_dir.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out_dir / "report")
    report.folder.mkdir(exist_ok=True)
    for name in EXAMPLES:
        progress(f"converting {name}")
        report.manifests[name] = convert(example_model(name), out_dir / name,
                                         ConvertOptions(force=True),
                                         progress=lambda m: progress(f"  {m}"))
        _write(report, f"convert_{name}.txt", conversion_table(report.manifests[name]) + "\n")
    for name in BENCHED:
        progress(f"bench {name}")
        rows = bench(out_dir / name, None, BenchSettings(runs=runs, warmup=10),
                     progress=lambda m: progress(f"  {m}"))
        report.bench[name] = rows
        _write(report, f"bench_{name}.md", bench_markdown(rows))
        _write(report, f"bench_{name}.json", bench_json(rows))
        _plot(report, lambda path, rows=rows, name=name: bench_plot(rows, path, name),
              f"bench_{name}.png")
    progress("making the demo clip")
    clip = make_clip(out_dir / "clip.avi")
    detector = out_dir / "digit_detector"
    progress("the detection loop on the clip, every backend")
    from edgekit.backends import BUILTIN_BACKENDS

    report.compare = compare(detector, clip, list(BUILTIN_BACKENDS),
                             progress=lambda m: progress(f"  {m}"))
    _write(report, "compare.md", compare_markdown(report.compare))
    _write(report, "compare.json", compare_json(report.compare))
    _plot(report, lambda path: compare_plot(report.compare, path, detector.name),
          "compare.png")
    progress("tracking on the clip, every backend (MOTA, IDF1)")
    report.tracking = _tracking(detector, clip, [r.backend for r in report.compare if r.report])
    progress("making the classification clip")
    digits = make_classification_clip(out_dir / "digits.avi")
    for task, name, source in (("classification", "lenet5_digits", digits),
                               ("segmentation", "digit_segmenter", clip)):
        progress(f"the {task} loop on {source.name}, every backend")
        rows = compare(out_dir / name, source, list(BUILTIN_BACKENDS),
                       progress=lambda m: progress(f"  {m}"))
        report.compare_tasks[task] = rows
        _write(report, f"compare_{name}.md", compare_markdown(rows))
        _write(report, f"compare_{name}.json", compare_json(rows))
    progress("the annotated video (tflite)")
    with loop_model(detector, backend="tflite") as model:
        report.loop = run_loop(model, clip, save=report.folder / "annotated.avi",
                                    jsonl=report.folder / "annotated.jsonl")
    report.files += [report.folder / "annotated.avi", report.folder / "annotated.jsonl"]
    _write(report, "REPORT.md", _summary(report, clip))
    return report


def _tracking(detector: Path, clip: Path, backends: list[str]) -> dict[str, Any]:
    """Per backend, the detector's tracks scored against the clip's true paths (none where
    the events extra or motmetrics is missing)."""
    try:
        from edgekit.events.scoring import score_run

        return {backend: score_run(detector, clip, backend) for backend in backends}
    except EdgekitError:
        return {}


def _plot(report: DemoReport, draw: Any, name: str) -> None:
    try:
        report.files.append(draw(report.folder / name))
    except EdgekitError:  # matplotlib missing: the tables still say everything
        pass


def _summary(report: DemoReport, clip: Path) -> str:
    from edgekit.loop.report import compare_markdown

    parts = ["# edgekit demo report", ""]
    for name, manifest in report.manifests.items():
        parts += [f"## {name}: conversion", "", "```", conversion_table(manifest), "```", ""]
    for name, rows in report.bench.items():
        parts += [f"## {name}: every artifact on every backend", "", bench_markdown(rows), ""]
    parts += [f"## The detection loop on {clip.name}, every backend", "",
              compare_markdown(report.compare), ""]
    if report.tracking:
        parts += [f"## Tracking on {clip.name}: MOTA and IDF1 against the true paths", "",
                  "| backend | MOTA | IDF1 | ID switches |", "|---|---|---|---|",
                  *[f"| {b} | {s.mota:.3f} | {s.idf1:.3f} | {s.switches} |"
                    for b, s in report.tracking.items()], ""]
    for task, rows in report.compare_tasks.items():
        ran = next((r.report for r in rows if r.report), None)
        source = Path(ran.source.split(",")[0].rsplit(" ", 1)[-1]).name if ran else ""
        parts += [f"## The {task} loop{f' on {source}' if source else ''}, every backend", "",
                  compare_markdown(rows), ""]
    loop = report.loop
    if loop is not None:
        parts += ["## The annotated video", "",
                  f"`annotated.avi`: {loop.stats.frames} frames through {loop.backend}, "
                  f"{loop.stats.fps:.1f} FPS, mAP@0.5 "
                  f"{'-' if loop.map50 is None else f'{loop.map50:.4f}'}; one JSON line per "
                  "frame in `annotated.jsonl`.", ""]
    parts += ["Files: " + ", ".join(f"`{p.name}`" for p in report.files), ""]
    return "\n".join(parts)


def demo_json(report: DemoReport) -> str:
    from edgekit.loop.report import compare_json

    return json.dumps({
        "report": str(report.folder / "REPORT.md"),
        "manifests": {k: m.to_dict() for k, m in report.manifests.items()},
        "bench": {k: [r.to_dict() for r in rows] for k, rows in report.bench.items()},
        "compare": json.loads(compare_json(report.compare)),
        "tracking": {b: s.to_dict() for b, s in report.tracking.items()},
        "compare_tasks": {task: json.loads(compare_json(rows))
                          for task, rows in report.compare_tasks.items()},
        "loop": report.loop.to_dict() if report.loop else None,
    }, indent=2)
