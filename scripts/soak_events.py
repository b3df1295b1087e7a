"""Soak the events and clips (issue 25's goal): an hour with an event every second and clips on.

    .venv/bin/python scripts/soak_events.py --minutes 60
    .venv/bin/python scripts/soak_events.py --seconds 120 --bundle B --clip CLIP.avi

Runs the real ``edgekit run BUNDLE --source CLIP --capture repeat=on,realtime=source --events
FILE.jsonl --events-filter update=1 --clips DIR?pre=2&post=2&max_disk=QUOTA`` in a subprocess (an
``update`` per object every second, a clip per object), sampling its resident memory (VmRSS)
and the clips folder every half second, then sends SIGINT. Checks, and exits 1 when one fails:

- resident memory grows by at most 5 MB after warm-up (measured as ``soak_loop.py`` does);
- the clips folder is under the quota at every sample;
- no partial clip is left (no hidden file in the folder) after the run, and every clip the
  events name that retention did not delete is there;
- at least one event per second of the run was written.

Without --bundle/--clip it converts the bundled detector and makes the demo clip in --out
first (``soak_loop.prepare``).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from soak_loop import GROWTH_LIMIT_MB, prepare, rss_growth, rss_mb  # noqa: E402


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.glob("*"):
        try:
            total += path.stat().st_size
        except OSError:
            pass  # deleted by retention between the listing and the stat
    return total


def soak(bundle: Path, clip: Path, out: Path, seconds: float, quota: int) -> dict:
    events, clips = out / "events.jsonl", out / "clips"
    events.unlink(missing_ok=True)
    for old in clips.glob("*") if clips.is_dir() else []:
        old.unlink()
    command = [sys.executable, "-m", "edgekit", "run", str(bundle), "--source", str(clip),
               "--capture", "repeat=on", "--capture", "realtime=source", "--events", str(events),
               "--events-filter", "update=1",
               "--clips", f"{clips}?pre=2&post=2&max_disk={quota}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    disk_max = 0
    while time.monotonic() - started < seconds and process.poll() is None:
        value = rss_mb(process.pid)
        if value and value > 1:
            samples.append((time.monotonic() - started, value))
        if clips.is_dir():
            disk_max = max(disk_max, folder_bytes(clips))
        time.sleep(0.5)
    if process.poll() is not None:
        _, err = process.communicate()
        raise SystemExit(f"the run ended by itself (exit {process.returncode}): {err.strip()}")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    ran = time.monotonic() - started
    rss = rss_growth(samples, seconds)
    written = [json.loads(line) for line in events.read_text().splitlines()] \
        if events.is_file() else []
    named = {e["clip"] for e in written if e.get("clip")}
    present = {p.name for p in clips.glob("*.avi") if not p.name.startswith(".")}
    return {"seconds": round(ran, 1), "exit_code": process.returncode,
            "events": len(written), "events_per_s": round(len(written) / ran, 2),
            "clips_named": len(named), "clips_present": len(present),
            "clips_present_not_named": sorted(present - named),
            "quota_bytes": quota, "disk_max_bytes": disk_max,
            "partial_left": sorted(p.name for p in clips.glob(".*")),
            "rss_mb": {"after_warmup": round(rss["baseline"], 1),
                       "end": round(samples[-1][1], 1) if samples else None},
            "growth_mb": round(rss["growth"], 2),
            "stderr": err.strip().splitlines()[-1:] if err.strip() else []}


def verdicts(r: dict) -> list[tuple[str, bool]]:
    return [(f"RSS growth {r['growth_mb']} MB <= {GROWTH_LIMIT_MB}",
             r["growth_mb"] <= GROWTH_LIMIT_MB),
            (f"clips at most {r['disk_max_bytes']} bytes <= quota {r['quota_bytes']}",
             r["disk_max_bytes"] <= r["quota_bytes"]),
            (f"no partial clip left ({r['partial_left']})", not r["partial_left"]),
            (f"every clip present is named by an event ({r['clips_present_not_named']})",
             not r["clips_present_not_named"]),
            (f"{r['events_per_s']} events per second >= 1", r["events_per_s"] >= 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--quota", type=int, default=20 << 20, help="--clips max_disk, bytes")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "soak_events")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle, clip = (args.bundle, args.clip) if args.bundle and args.clip else prepare(args.out)
    seconds = args.minutes * 60 if args.minutes else args.seconds
    result = soak(bundle, clip, args.out, seconds, args.quota)
    print(json.dumps(result, indent=2))
    failed = [what for what, ok in verdicts(result) if not ok]
    for what, ok in verdicts(result):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
