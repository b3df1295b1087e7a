"""Deploy, roll back and report releases on a device, step by step, never half-updated.

A deploy: plan what ships (workstation) -> take the device's lock -> check the device ->
stage a new release folder, reusing files the device has -> copy the missing ones -> check
every sha256 there -> reuse or create the Python environment -> smoke test the new release
with it -> switch ``current`` (one rename) -> install and restart the service, watch it for
the settle time, and switch back to the previous release when it does not stay up. Until the
switch, the running release is untouched; a failure on the way removes the new folder (or,
when the link is gone, leaves it as ``releases/.incoming-*``, which nothing uses and the next
deploy removes). The lock is held from the first step to the last: one deploy or rollback
at a time per device.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.integrity import sha256_file
from edgekit.bundle.manifest import read_manifest
from edgekit.deploy import agent
from edgekit.deploy.plan import (
    ReleasePlan,
    ShippedFile,
    choose_backend,
    plan_release,
    shipped_formats,
)
from edgekit.deploy.remote import TIMEOUTS, UNIT_NAME, Device
from edgekit.deploy.report import Command, DeployReport, RollbackReport, Step, service_problem
from edgekit.deploy.service import exec_start, live_view_url, serve_note, unit_text
from edgekit.deploy.smoke import smoke_report
from edgekit.deploy.ssh import Host, SshClient, SshOptions
from edgekit.deploy.targets import Target
from edgekit.deploy.wheels import (
    WheelInfo,
    checkout_info,
    edgekit_wheel,
    merge_requirements,
    offline_wheels,
    wheel_info,
)
from edgekit.errors import ConnectionFailed, DeployError, EdgekitError
from edgekit.helpers import interrupt
from edgekit.helpers.limits import MAX_SECONDS, finite
from edgekit.helpers.render import size

Progress = Callable[[str], None]
DEFAULT_SSH = SshOptions()


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy where, and how."""

    bundle: Path
    target: Target
    host: Host
    ssh: SshOptions = DEFAULT_SSH
    python: str = "python3"  # the device's interpreter that makes the environment
    base: str = "edgekit"  # the releases' folder on the device (relative: to the login home)
    service: bool = False
    offline: bool = False
    dry_run: bool = False
    samples: int = 10  # validation samples the smoke test runs (0: all)
    keep: int = 3  # complete releases kept on the device
    wheel: Path | None = None  # an edgekit wheel to ship instead of building one
    settle: float = 10.0  # seconds the restarted service must stay up
    lock_timeout: float = 0.0  # seconds to wait for another deploy's lock (0: refuse at once)

    def __post_init__(self) -> None:
        check_waits(self.settle, self.lock_timeout)


def check_waits(settle: float, lock_timeout: float) -> None:
    """UsageError for a --settle or --lock-timeout that is negative, NaN or above a day."""
    finite(settle, "--settle (seconds)", low=0, high=MAX_SECONDS)
    finite(lock_timeout, "--lock-timeout (seconds)", low=0, high=MAX_SECONDS)


class Session:
    """Progress lines for a real run; for a dry run, the transcript of steps and commands."""

    def __init__(self, progress: Progress, dry_run: bool) -> None:
        self.progress = progress
        self.dry_run = dry_run
        self.steps: list[Step] = []
        self.seconds: dict[str, float] = {}

    def client(self, host: Host, options: SshOptions) -> SshClient:
        return SshClient(host, options, self.echo if self.dry_run else None)

    def echo(self, argv: list[str], note: str) -> None:
        if not self.steps:
            self.steps.append(Step("(commands)"))
        self.steps[-1].commands.append(Command(argv, note))

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        """Announce a step (a progress line, or a dry-run step) and time it."""
        if self.dry_run:
            self.steps.append(Step(title))
        else:
            self.progress(title)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


# --- the workstation's part ---------------------------------------------------------------------

def _edgekit(request: DeployRequest, session: Session) -> tuple[ShippedFile, WheelInfo]:
    """edgekit's wheel (built, cached or given) as a shipped file, and what it requires."""
    if request.wheel is not None:
        path = Path(request.wheel)
        info = wheel_info(path)
        if info.name.lower() != "edgekit":
            raise DeployError(f"--wheel {path} is a wheel of {info.name!r}, not edgekit")
    else:
        with session.step("wheel", "edgekit's wheel (built from this checkout, cached)"):
            plan = edgekit_wheel(session.progress, build=not session.dry_run)
            if not plan.built:
                session.echo(plan.command, "from a clean copy of the checkout's source files;"
                             " its sha256 below is a placeholder until it is built")
                return _unbuilt_wheel(plan.path), checkout_info()
            path = plan.path
            info = wheel_info(path)
    return ShippedFile(f"wheels/{path.name}", path, sha256_file(path), path.stat().st_size), info


def _unbuilt_wheel(path: Path) -> ShippedFile:
    return ShippedFile(f"wheels/{path.name}", path, "0" * 64, 0)


def make_plan(request: DeployRequest, session: Session, staging: Path) -> ReleasePlan:
    """Everything the workstation decides before it talks to the device."""
    manifest = read_manifest(request.bundle)
    formats, _ = shipped_formats(manifest, request.target)  # fail fast
    choose_backend(request.target, formats)
    wheel, info = _edgekit(request, session)
    requirements = merge_requirements(info.requires, request.target)
    extra: tuple[Path, ...] = ()
    if request.offline and requirements:
        with session.step("download", f"the {request.target.arch} wheels of the environment "
                          f"(--offline; cached)"):
            plan = offline_wheels(requirements, request.target, session.progress,
                                  download=not session.dry_run)
            if not plan.wheels:
                session.echo(plan.command, "")
            extra = plan.wheels
    return plan_release(request.bundle, request.target, wheel, info, staging,
                        offline=request.offline, offline_wheels=extra)


# --- checks of the device ----------------------------------------------------------------------

def check_device(probe: dict[str, Any], plan: ReleasePlan, request: DeployRequest) -> None:
    """Refuse a device that cannot run this release, saying why and what to do."""
    target = plan.target
    problem = agent.device_mismatch(probe, request.host.label, request.python, target.name,
                                    target.arch, target.python, plan.edgekit.requires_python)
    if problem:
        raise DeployError(problem)


# --- the deploy ----------------------------------------------------------------------------------

def deploy(request: DeployRequest, progress: Progress = _silent) -> DeployReport:
    """Deploy ``request.bundle`` to ``request.host``; a DeployReport, or an EdgekitError that
    says which step failed and that the running release is untouched."""
    session = Session(progress, request.dry_run)
    started = time.perf_counter()
    with interrupt.temporary_folder("edgekit-deploy-") as staging:  # a hard exit removes it
        plan = make_plan(request, session, staging)
        report = _run(request, plan, session)
    report.seconds = {**session.seconds, "total": round(time.perf_counter() - started, 2)}
    report.steps = session.steps
    return report


def _run(request: DeployRequest, plan: ReleasePlan, session: Session) -> DeployReport:
    device = Device(session.client(request.host, request.ssh), request.python, request.base)
    report = DeployReport(request.host.label, plan.target.name, plan.model, plan.formats,
                          len(plan.files), plan.total_bytes, notes=list(plan.notes),
                          dry_run=request.dry_run)
    if plan.missing_formats:
        report.notes.append("not shipped (the bundle lacks them): " + "; ".join(
            f"{f}: {why}" for f, why in plan.missing_formats.items()))
    if request.dry_run:
        device.known, report.device_unknown = _preview(request, plan)
    with ExitStack() as held_until_done:
        with session.step("lock", _lock_title(request.base, request.lock_timeout)
                          + f"; check {request.host.label}: platform, Python, releases"):
            held = held_until_done.enter_context(device.lock(
                f"deploy of {plan.model} (target {plan.target.name})", request.lock_timeout))
        _note_taken_over(held, report)
        _deploy_locked(request, plan, session, device, report, held["probe"])
    return report


def _preview(request: DeployRequest, plan: ReleasePlan) -> tuple[dict[str, Any] | None, str]:
    """A dry run asks the device, read-only and without its lock, what it holds (releases,
    environments, which of the files by sha256), so the plan shows what a deploy would copy.
    (None, why) when it cannot be asked: the plan then assumes an empty device."""
    reader = Device(SshClient(request.host, request.ssh), request.python, request.base)
    try:
        return reader.call("preview", "asking the device what it holds (read-only)",
                           files=[f.to_dict() for f in plan.files]), ""
    except EdgekitError as exc:
        return None, str(exc)


def _lock_title(base: str, wait: float) -> str:
    waiting = f"wait up to {wait:g} s for another deploy" if wait else "refuse if another holds it"
    return f"take the device's deploy lock (~/{base}/lock; {waiting}), held until the end"


def _note_taken_over(held: dict[str, Any], report: DeployReport | RollbackReport) -> None:
    left = held.get("taken_over")
    if left:
        report.notes.append(f"took over the device's lock from {left.get('what', 'a deploy')} "
                            f"from {left.get('workstation', '?')} (started "
                            f"{left.get('since', '?')}), which ended without releasing it")


def _deploy_locked(request: DeployRequest, plan: ReleasePlan, session: Session, device: Device,
                   report: DeployReport, probe: dict[str, Any]) -> None:
    """The deploy's steps, with the lock held; ``probe``: the device, as the lock found it."""
    if not request.dry_run or device.known is not None:
        check_device(probe, plan, request)
        report.python = ".".join(map(str, probe["python"]))
        report.platform = probe["platform"]
    key = plan.venv_key(probe.get("executable", request.python), tuple(probe.get("python", ())))
    release = None
    try:
        with session.step("stage", "stage a new release folder; link the files the device "
                          "already has (by sha256)"):
            staged = device.call("stage", "staging the release",
                                 content_hash=plan.content_hash(),
                                 files=[f.to_dict() for f in plan.files])
        release = report.release = staged["release"]
        report.leftovers_removed = staged["removed"]
        _fill_and_check(device, plan, staged, key, report, session, request, probe)
    except BaseException as exc:
        raise _abandoned(exc, device, release, probe) from None
    if request.service and plan.target.serve:  # the token first: the unit reads it at start
        report.live_view = _live_view_token(device, plan, session, request)
    elif plan.target.serve:
        report.notes.append(serve_note(plan.target))
    command = " ".join(exec_start(plan, f"~/{request.base}")[1:])
    unit = f"install the systemd user unit {UNIT_NAME} (edgekit {command}), " \
        if request.service else ""
    with session.step("activate", f"switch current to the new release (one rename); {unit}"
                      f"restart the service if there is one, watch it {request.settle:g} s, and "
                      "switch back if it does not stay up; remove old releases"):
        done = device.call("activate", "switching current", release=staged["release"],
                           keep=request.keep, settle=request.settle,
                           timeout=TIMEOUTS["activate"] + 2 * request.settle)
    report.previous, report.pruned = done.get("previous"), done.get("pruned", [])
    report.current = done.get("current", release)
    report.service = done.get("service")
    report.problem = service_problem(report.service, release, request.host.label)


def _fill_and_check(device: Device, plan: ReleasePlan, staged: dict[str, Any], key: str,
                    report: DeployReport, session: Session, request: DeployRequest,
                    probe: dict[str, Any]) -> None:
    release = staged["release"]
    missing = [f for f in plan.files if f.path in set(staged["missing"])]
    need = sum(f.size for f in missing)
    if request.dry_run:  # what a deploy would copy: nothing was
        report.would_copy = {"files": len(missing), "bytes": need,
                             "files_reused": len(staged["linked"]),
                             "device_asked": device.known is not None}
    else:
        report.files_copied, report.bytes_copied = len(missing), need
        report.files_reused = len(staged["linked"])
    with session.step("copy", f"copy the files the device lacks ({len(missing)} files, "
                      f"{size(need) if missing else '0 B'}) with scp"):
        try:
            for folder in sorted({f.path.split("/")[0] for f in missing}):
                device.client.upload(
                    [f.local for f in missing if f.path.startswith(folder + "/")],
                    f"{staged['incoming']}/{folder}", step="copying the release")
        except ConnectionFailed as exc:
            raise _copy_failure(exc, device, report.bytes_copied) from None
    meta = {**plan.meta(), "venv": key}
    if request.service:  # the unit this release runs with, installed whenever it is switched to
        base = probe.get("base") or f"/home/USER/{request.base}"
        meta["service"] = {"unit": unit_text(plan, base)}
    with session.step("verify", "check the sha256 of every file on the device"):
        device.call("verify", "checking the files on the device", release=release,
                    files=[f.to_dict() for f in plan.files], meta=meta)
    reused = any(v["key"] == key and v["complete"] for v in probe.get("venvs", []))
    what = (f"reuse the device's Python environment {key}" if reused else
            f"create the Python environment {key} on the device (pip install "
            f"{' '.join(plan.requirements)}; minutes on a Pi)")
    with session.step("venv", what):
        venv = device.call("venv", "preparing the Python environment", release=release,
                           key=key, **plan.venv_payload())
    report.venv = key
    if request.dry_run:
        report.would_copy["venv_reused"] = bool(venv.get("reused"))
    else:
        report.venv_reused = bool(venv.get("reused"))
    report.venv_seconds = float(venv.get("seconds", 0))
    with session.step("smoke", f"smoke test: edgekit backends, then edgekit verify with "
                      f"{plan.backend} on {request.samples} validation samples"):
        answer = device.call("smoke", "the smoke test", release=release,
                             samples=request.samples, **plan.smoke_payload())
        if not request.dry_run:
            report.smoke = smoke_report(answer, plan.bundle, request.samples)


def _copy_failure(exc: ConnectionFailed, device: Device, need: int) -> EdgekitError:
    """Why scp failed, when the device can still say: over SFTP a full disk is only "Failure"."""
    try:
        free = device.call("probe", "checking the device after the failed copy")["free_bytes"]
    except EdgekitError:
        return exc  # the link is gone: ssh's own words stand
    if free is not None and free < need:
        return DeployError(f"copying the release: the device's disk is full ({size(free)} "
                           f"free, the copy needed {size(need)}; {exc})")
    return exc


def _abandoned(exc: BaseException, device: Device, release: str | None,
               probe: dict[str, Any]) -> BaseException:
    """The error to raise after a failed step: what happened, and what state the device is in.

    The incomplete release is removed if the device can still be reached."""
    if device.client.dry_run:
        return exc
    leftover = ("the incomplete release folder (releases/.incoming-*) is never used, and the "
                "next deploy removes it")
    if release is None:  # staging failed: the agent removed its folder, unless the link died
        left = leftover if isinstance(exc, ConnectionFailed) else "nothing was left over"
    else:
        try:
            device.call("cleanup", "removing the incomplete release", release=release)
            left = "the incomplete new release was removed"
        except EdgekitError:
            left = leftover
    if not isinstance(exc, EdgekitError):
        return exc
    running = probe.get("current")
    state = (f"the running release ({running}) is untouched" if running else
             "nothing was running there before, and nothing is now")
    kind = type(exc) if isinstance(exc, (ConnectionFailed, DeployError)) else DeployError
    return kind(f"{exc}. {state[0].upper()}{state[1:]}; {left}")


def _live_view_token(device: Device, plan: ReleasePlan, session: Session,
                     request: DeployRequest) -> dict[str, Any]:
    """The target asks for the live view: its token, made on the device the first time.

    The URL carries the token only when it was just made: it is shown this once."""
    with session.step("serve_token", f"the live view's token ({plan.target.serve}): made on "
                      "the device once, kept in the unit's environment file (mode 0600)"):
        answer = device.call("serve_token", "making the live view's token")
    return agent.live_view(request.host.host, plan.target.serve, answer)


# --- rollback and status -------------------------------------------------------------------------

def rollback(host: Host, ssh: SshOptions = DEFAULT_SSH, *, to: str | None = None,
             python: str = "python3", base: str = "edgekit", dry_run: bool = False,
             settle: float = 10.0, lock_timeout: float = 0.0,
             progress: Progress = _silent) -> RollbackReport:
    """Switch ``current`` back to the release before it (or ``to``), checked first; the service
    is restarted and watched like a deploy's, and switched back when it does not stay up."""
    check_waits(settle, lock_timeout)
    session = Session(progress, dry_run)
    device = Device(session.client(host, ssh), python, base)
    report = RollbackReport(host.label, None, to or "<previous>", dry_run=dry_run)
    with ExitStack() as held_until_done:
        with session.step("lock", _lock_title(base, lock_timeout)):
            held = held_until_done.enter_context(device.lock("rollback", lock_timeout))
        _note_taken_over(held, report)
        with session.step("rollback", f"check the earlier release's files on {host.label}, "
                          f"then switch current to it (one rename), restart the service and "
                          f"watch it {settle:g} s"):
            answer = device.call("rollback", "rolling back", settle=settle,
                                 timeout=TIMEOUTS["rollback"] + 2 * settle,
                                 **({"to": to} if to else {}))
    report.steps = session.steps
    if dry_run:
        return report
    report.previous, report.target = answer.get("from"), answer["to"]
    report.current, report.service = answer.get("current", answer["to"]), answer.get("service")
    report.problem = service_problem(report.service, report.target, host.label)
    return report


def status(host: Host, ssh: SshOptions = DEFAULT_SSH, *, python: str = "python3",
           base: str = "edgekit") -> dict[str, Any]:
    """The device's releases, environments, free space, service and lock, as the agent reports
    (without taking the lock: it only reads); with the live view's address when it serves one."""
    state = Device(SshClient(host, ssh), python, base).call("probe", "reading the device's state")
    serve = state.get("serve")
    if serve:
        serve["url"] = live_view_url(host.host, serve["address"])
    return state
