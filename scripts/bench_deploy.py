"""Figures for `edgekit deploy`: a first deploy and redeploys of an unchanged bundle to a real
OpenSSH server on loopback (time and bytes copied), and what ships to each target.

    .venv/bin/python scripts/bench_deploy.py [--bundle DIR] [--redeploys 3] [--no-offline]

The server is Debian's sshd on 127.0.0.1 with throwaway keys (tests/sshd.py), so the device's
"network" is loopback: times here are the work deploy does (ssh round trips, hashing, the
environment, the smoke test), not a Wi-Fi link. The loopback device is this machine, so the
profile is rpi4-cpu with this machine's architecture. Sizes per target come from the same
plan a deploy makes (nothing is sent for them); --offline sizes download the target's wheels
for its platform and Python into the cache (~/.cache/edgekit/deploy/offline).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deploy_support import local_profile  # noqa: E402
from sshd import LoopbackSshd  # noqa: E402

from edgekit.deploy import DeployRequest, SshOptions, deploy, parse_host  # noqa: E402
from edgekit.deploy.release import Session, make_plan  # noqa: E402
from edgekit.deploy.remote import SshLink  # noqa: E402
from edgekit.deploy.ssh import SshClient  # noqa: E402
from edgekit.deploy.targets import list_targets  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402
from edgekit.helpers.render import size, table  # noqa: E402


def lenet_bundle(folder: Path) -> Path:
    from edgekit.convert import convert

    out = folder / "lenet5_digits"
    print("converting the bundled LeNet-5 (every format) ...", file=sys.stderr)
    convert(ROOT / "models" / "lenet5_digits" / "lenet5_digits.keras", out)
    return out


def loopback_figures(bundle: Path, work: Path, redeploys: int) -> str:
    sshd = LoopbackSshd(work / "sshd")
    server = sshd.start()
    try:
        request = DeployRequest(bundle=bundle, target=_target(local_profile(work / "targets")),
                                host=parse_host(server.destination, server.port),
                                ssh=SshOptions(identity=server.identity_file,
                                               known_hosts=server.known_hosts_file))
        rows = []
        for i in range(1 + redeploys):
            started = time.perf_counter()
            report = deploy(request)
            wall = time.perf_counter() - started
            rows.append([("first deploy" if i == 0 else f"redeploy {i}"), f"{wall:.2f} s",
                         f"{report.files_copied} / {report.files}",
                         f"{report.bytes_copied:,} B", f"{report.files_reused}",
                         "reused" if report.venv_reused else
                         f"created ({report.venv_seconds:.1f} s)",
                         f"{report.smoke.matches}/{len(report.smoke.samples)}",
                         _steps(report.seconds)])
        locks = lock_seconds(request, 5)
    finally:
        sshd.stop()
    redo = [float(r[1].split()[0]) for r in rows[1:]]
    text = table(["deploy", "wall", "files copied", "bytes copied", "reused", "environment",
                  "top-1 = workstation", "steps (s)"], rows)
    if redo:
        text += f"\nredeploy median: {statistics.median(redo):.2f} s"
    return text + (f"\nthe device's lock alone (its own ssh session), taken and released: "
                   f"median {statistics.median(locks):.2f} s of {len(locks)}")


def lock_seconds(request: DeployRequest, rounds: int) -> list[float]:
    """Taking and releasing the device's lock, alone: what one deploy at a time costs."""
    device = SshLink(SshClient(request.host, request.ssh), request.python, request.base)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        with device.lock("bench_deploy.py"):
            pass
        seconds.append(time.perf_counter() - started)
    return seconds


def wheel_build_seconds(work: Path) -> float:
    """Building edgekit's wheel with a cold cache (what a deploy after a code change adds)."""
    import os

    from edgekit.deploy.wheels import edgekit_wheel

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(work / "cold-cache")
    try:
        started = time.perf_counter()
        edgekit_wheel(lambda _: None)
        return time.perf_counter() - started
    finally:
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved


def _steps(seconds: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in seconds.items() if k != "total")


def _target(path: Path):
    from edgekit.deploy.targets import load_target

    return load_target(path)


def shipped_sizes(bundle: Path, offline: bool) -> str:
    rows = []
    for target in list_targets():
        request = DeployRequest(bundle=bundle, target=target, host=parse_host("pi@device.invalid"))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                plan = make_plan(request, Session(lambda _: None, False), Path(tmp))
            except EdgekitError as exc:
                rows.append([target.name, "-", "-", "-", "-", "-", str(exc)[:60]])
                continue
            artifacts = sum(f.size for f in plan.files if f.path.startswith("bundle/")
                            and f.path.rsplit("/", 1)[-1] not in ("edgekit.json",
                                                                  "validation.npz"))
            other = sum(f.size for f in plan.files if f.path in (
                "bundle/edgekit.json", "bundle/validation.npz"))
            total = plan.total_bytes
            wheels, note = "-", ""
            if offline:
                try:
                    full = make_plan(DeployRequest(bundle=bundle, target=target, host=request.host,
                                                 offline=True),
                                     Session(lambda _: None, False), Path(tmp))
                    wheels = size(full.total_bytes - total)
                    note = f"{sum(f.path.startswith('wheels/') for f in full.files) - 1} wheels"
                except EdgekitError as exc:
                    note = "n/a: " + str(exc).split("failed: ", 1)[-1].replace("ERROR: ", "")[:60]
            rows.append([target.name, ", ".join(plan.formats), size(artifacts), size(other),
                         size(plan.wheel.size), size(total), f"{wheels} {note}".strip()])
    return table(["target", "formats shipped", "artifacts", "manifest+validation",
                  "edgekit wheel", "total", "--offline adds"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a LeNet bundle (default: convert one)")
    parser.add_argument("--redeploys", type=int, default=3)
    parser.add_argument("--no-offline", action="store_true", help="skip the --offline sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        work = Path(tmp)
        bundle = args.bundle or lenet_bundle(work)
        print("## Deploys to a loopback OpenSSH server (LeNet-5, rpi4-cpu's packages)\n")
        print(loopback_figures(bundle, work, args.redeploys))
        print(f"building edgekit's wheel with a cold cache (after a code change): "
              f"{wheel_build_seconds(work):.1f} s")
        print("\n## What ships to each target (LeNet-5 bundle)\n")
        print(shipped_sizes(bundle, not args.no_offline))


if __name__ == "__main__":
    main()
