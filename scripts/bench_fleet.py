"""Figures for `edgekit deploy --inventory`: wall time and bytes copied for 1, 4 and 8 loopback
devices (a first deploy, then a redeploy of the unchanged bundle), against the same number of
single-device deploys (`edgekit deploy --host`) one after another.

    .venv/bin/python scripts/bench_fleet.py [--bundle DIR] [--counts 1,4,8] [--forks 5]

Each device is a user of this machine behind one loopback OpenSSH server (tests/fleet_devices.py;
root needed), with its own ~/edgekit. Both ways run the real CLI in a subprocess, as a user
would, with --offline (the device environments are made from the shipped wheels, no index).
Each round uses fresh devices, so "first" creates every device's environment. The machine has
2 cores: the fleet's parallel hosts share them (the environment and the smoke test are CPU work
on each "device").
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deploy_support import local_profile  # noqa: E402
from fleet_devices import FleetSshd, missing_requirement, write_inventory  # noqa: E402

from edgekit.helpers.render import table  # noqa: E402

PYTHON = "/usr/bin/python3"  # the devices' Python


def lenet_bundle(folder: Path) -> Path:
    from edgekit.convert import ConvertOptions, convert

    out = folder / "lenet5_digits"
    print("converting the bundled LeNet-5 (tflite formats) ...", file=sys.stderr)
    convert(ROOT / "models" / "lenet5_digits" / "lenet5_digits.keras", out,
            ConvertOptions(formats="tflite-fp32,tflite-int8"))
    return out


def edgekit(*args: str | Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", "deploy", *map(str, args),
                           "--json", "-q"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"edgekit deploy failed: {done.stderr.strip()[-2000:]}")
    return wall, json.loads(done.stdout)


def fleet_round(bundle: Path, profile: Path, count: int, forks: int, work: Path
                ) -> list[list[str]]:
    rows = []
    sshd = FleetSshd(count)
    sshd.start()
    try:
        inventory = write_inventory(work / f"lab-{count}.ini", sshd.devices, profile)
        common = ["--inventory", inventory, "--ssh",
                  f"known_hosts={sshd.devices[0].known_hosts_file}",
                  "--release", f"python={PYTHON}", "--offline", "--rollout", f"forks={forks}"]
        for label in ("first", "redeploy"):
            wall, report = edgekit(bundle, *common)
            copied = sum(h["bytes_copied"] for h in report["hosts"])
            ok = sum(h["status"] == "ok" for h in report["hosts"])
            rows.append([str(count), f"fleet (--inventory, forks {forks})", label,
                         f"{wall:.1f} s", f"{copied:,} B", f"{ok}/{count}"])
    finally:
        sshd.stop()
    return rows


def single_round(bundle: Path, profile: Path, count: int, work: Path) -> list[list[str]]:
    rows = []
    sshd = FleetSshd(count)
    sshd.start()
    try:
        for label in ("first", "redeploy"):
            wall, copied, ok = 0.0, 0, 0
            for device in sshd.devices:
                seconds, report = edgekit(
                    bundle, "--target", profile, "--host", device.destination, "--ssh",
                    f"port={device.port}", "--ssh", f"identity={device.identity_file}", "--ssh",
                    f"known_hosts={device.known_hosts_file}", "--release", f"python={PYTHON}",
                    "--offline")
                wall += seconds
                copied += report["bytes_copied"]
                ok += 1
            rows.append([str(count), "one --host deploy after another", label,
                         f"{wall:.1f} s", f"{copied:,} B", f"{ok}/{count}"])
    finally:
        sshd.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a LeNet bundle (default: convert one)")
    parser.add_argument("--counts", default="1,4,8")
    parser.add_argument("--forks", type=int, default=5)
    args = parser.parse_args()
    reason = missing_requirement()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        bundle = args.bundle or lenet_bundle(work)
        profile = local_profile(work / "targets")
        # Warm the caches (edgekit's wheel, the --offline wheels) outside the figures.
        warm = FleetSshd(1)
        warm.start()
        try:
            inventory = write_inventory(work / "warm.ini", warm.devices, profile)
            edgekit(bundle, "--inventory", inventory, "--ssh",
                    f"known_hosts={warm.devices[0].known_hosts_file}", "--release",
                    f"python={PYTHON}", "--offline")
        finally:
            warm.stop()
        rows = []
        for count in [int(c) for c in args.counts.split(",")]:
            print(f"{count} device(s) ...", file=sys.stderr)
            rows += fleet_round(bundle, profile, count, args.forks, work)
            rows += single_round(bundle, profile, count, work)
        print(table(["devices", "how", "deploy", "wall", "bytes copied (all devices)",
                     "ok"], rows))


if __name__ == "__main__":
    main()
