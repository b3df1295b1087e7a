"""Soak the detection loop: a repeating source at full speed, video and JSONL, then Ctrl-C.

    .venv/bin/python scripts/soak_loop.py --minutes 30
    .venv/bin/python scripts/soak_loop.py --seconds 60 --bundle B --clip CLIP.avi

Runs the real `edgekit run BUNDLE --source CLIP --capture repeat=on --save OUT.avi --save
OUT.jsonl` in a subprocess for the given time, sampling its resident memory (VmRSS) every half
second, then sends SIGINT as Ctrl-C does. Checks, and exits 1 when one fails:

- the run ends with exit 130 within 2 s of the signal, with "interrupted" on stderr;
- resident memory after warm-up grows by at most 5 MB (warm-up: the first quarter of the run,
  at most 60 s; growth: the median of the last 10 s minus the median of the 10 s after the
  warm-up, so a leak counts and one sample's spike does not: the largest sample less that
  baseline was 5.44 MB once in a 60 s CI run, 0.5-1.0 MB in reruns; it is reported as
  ``spike_mb``);
- no frame is lost between the loop and its outputs: the video's frame count equals the JSONL
  line count, the JSONL frame numbers run 0..N-1 without a gap, and the last frame decodes;
- nothing is left beside the outputs (no hidden .partial file).

Without --bundle/--clip it converts the bundled detector (tflite-int8) and makes the demo
clip in --out first (TensorFlow, about a minute). The video is deleted at the end unless
--keep (30 minutes of 640x480 MJPG at ~140 FPS is about 5 GB).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROWTH_LIMIT_MB = 5.0
EXIT_LIMIT_S = 2.0


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_growth(samples: list[tuple[float, float]], seconds: float) -> dict:
    """Resident memory over a run (``samples``: seconds in, MB): the warm-up (the first
    quarter, at most 60 s), the baseline after it (the median of its next 10 s), the growth
    (the median of the last 10 s less the baseline) and the largest sample less the baseline."""
    warmup = min(60.0, seconds / 4)
    after = [mb for t, mb in samples if t >= warmup]
    settle = [mb for t, mb in samples if warmup <= t < warmup + 10] or after[:1]
    baseline = statistics.median(settle) if settle else 0.0
    end = samples[-1][0] if samples else 0.0
    last = [mb for t, mb in samples if t >= max(warmup, end - 10)]
    return {"warmup_s": warmup, "baseline": baseline,
            "max_after_warmup": max(after) if after else None,
            "growth": statistics.median(last) - baseline if last else 0.0,
            "spike": (max(after) if after else 0.0) - baseline}


def prepare(out: Path) -> tuple[Path, Path]:
    """The detector bundle and the demo clip, made once in ``out``."""
    bundle, clip = out / "detector", out / "clip.avi"
    if not bundle.is_dir():
        subprocess.run([sys.executable, "-m", "edgekit", "convert",
                        str(ROOT / "models" / "digit_detector" / "digit_detector.keras"),
                        "-o", str(bundle), "--formats", "tflite-int8", "-q"], check=True,
                       stdout=subprocess.DEVNULL)
    if not clip.is_file():
        sys.path.insert(0, str(ROOT))
        from edgekit.demo import make_clip

        make_clip(clip, seconds=6, fps=15, seed=0)
    return bundle, clip


def video_frames(path: Path) -> tuple[int, bool]:
    """(frames the video's index declares, whether its last frame decodes)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, count - 1))
    ok, _ = cap.read()
    cap.release()
    return count, bool(ok)


def soak(bundle: Path, clip: Path, out: Path, seconds: float, backend: str) -> dict:
    video, lines = out / "soak.avi", out / "soak.jsonl"
    for path in (video, lines):
        path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "edgekit", "run", str(bundle), "--source", str(clip),
               "--capture", "repeat=on", "--save", str(video), "--save", str(lines), "--backend",
               backend]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    while time.monotonic() - started < seconds and process.poll() is None:
        value = rss_mb(process.pid)
        if value and value > 1:  # the interpreter has started
            samples.append((time.monotonic() - started, value))
        time.sleep(0.5)
    if process.poll() is not None:
        _, err = process.communicate()
        raise SystemExit(f"the run ended by itself (exit {process.returncode}): {err.strip()}")
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    exit_s = time.monotonic() - signalled

    rss = rss_growth(samples, seconds)
    records = [json.loads(line) for line in lines.read_text().splitlines()] \
        if lines.is_file() else []
    declared, last_decodes = video_frames(video) if video.is_file() else (0, False)
    numbers = [r["frame"] for r in records]
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith(".soak"))
    return {
        "seconds": round(time.monotonic() - started, 1), "backend": backend,
        "exit_code": process.returncode, "exit_after_sigint_s": round(exit_s, 3),
        "stderr": err.strip().splitlines()[-1:] if err.strip() else [],
        "frames_video": declared, "frames_jsonl": len(records),
        "jsonl_frames_contiguous": numbers == list(range(len(numbers))),
        "last_frame_decodes": last_decodes,
        "fps": round(len(records) / max(1e-9, samples[-1][0] if samples else seconds), 1),
        "rss_mb": {"start": round(samples[0][1], 1) if samples else None,
                   "after_warmup": round(rss["baseline"], 1),
                   "max_after_warmup": None if rss["max_after_warmup"] is None
                   else round(rss["max_after_warmup"], 1),
                   "end": round(samples[-1][1], 1) if samples else None,
                   "warmup_s": rss["warmup_s"]},
        "growth_mb": round(rss["growth"], 2),
        "spike_mb": round(rss["spike"], 2),
        "video_bytes": video.stat().st_size if video.is_file() else 0,
        "leftovers": leftovers,
    }


def verdicts(r: dict) -> list[tuple[str, bool]]:
    return [
        ("exit 130 with 'interrupted'", r["exit_code"] == 130 and r["stderr"] == ["interrupted"]),
        (f"ended within {EXIT_LIMIT_S} s of Ctrl-C", r["exit_after_sigint_s"] <= EXIT_LIMIT_S),
        (f"RSS growth after warm-up <= {GROWTH_LIMIT_MB} MB", r["growth_mb"] <= GROWTH_LIMIT_MB),
        ("video frames == JSONL lines", r["frames_video"] == r["frames_jsonl"] > 0),
        ("JSONL frame numbers 0..N-1", r["jsonl_frames_contiguous"]),
        ("the video's last frame decodes", r["last_frame_decodes"]),
        ("no hidden .partial left", not r["leftovers"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default 30)")
    length.add_argument("--seconds", type=float, help="how long to run, in seconds")
    parser.add_argument("--bundle", type=Path, help="a detection bundle (default: convert one)")
    parser.add_argument("--clip", type=Path, help="a video with ground truth (default: make one)")
    parser.add_argument("--backend", default="tflite")
    parser.add_argument("--out", type=Path, help="where the outputs go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the video at the end")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds else 60 * (args.minutes or 30)
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekit-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    bundle, clip = (args.bundle, args.clip) if args.bundle and args.clip else prepare(out)
    result = soak(bundle, clip, out, seconds, args.backend)
    if not args.keep:
        (out / "soak.avi").unlink(missing_ok=True)
    checks = verdicts(result)
    result["passed"] = all(ok for _, ok in checks)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rss = result["rss_mb"]
        print(f"soak: {result['seconds']} s of `edgekit run --capture repeat=on --save OUT.avi "
              f"--save OUT.jsonl` on "
              f"{clip.name} ({result['backend']}), then Ctrl-C")
        print(f"  frames: video {result['frames_video']}, JSONL {result['frames_jsonl']} "
              f"({result['fps']} FPS); video {result['video_bytes'] / 2**20:.0f} MiB")
        print(f"  RSS MB: start {rss['start']}, after {rss['warmup_s']:.0f} s warm-up "
              f"{rss['after_warmup']}, max after {rss['max_after_warmup']}, end {rss['end']}; "
              f"growth {result['growth_mb']} MB")
        print(f"  exit {result['exit_code']} {result['exit_after_sigint_s']} s after SIGINT")
        for name, ok in checks:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
