"""Deploy, roll back and report releases on a device: the workstation's side.

What ships is planned here (the bundle's artifacts for the target, edgekit's wheel, the
``--offline`` wheels); the steps themselves (lock, check, stage, copy, verify, environment,
smoke test, token, switch) are ``steps.py``'s, over an SSH link (``remote.SshLink``) or, for
``--dry-run``, a link that shows each command and runs none (``remote.DryRunLink``). The
answers become the typed reports of ``report.py``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.integrity import sha256_file
from edgekit.bundle.manifest import Manifest, read_manifest
from edgekit.deploy import checks, steps
from edgekit.deploy.plan import (
    ReleasePlan,
    ShippedFile,
    choose_backend,
    plan_release,
    shipped_formats,
)
from edgekit.deploy.playbook import plan_vars
from edgekit.deploy.remote import DryRunLink, SshLink
from edgekit.deploy.report import Command, DeployReport, RollbackReport, Step, service_problem
from edgekit.deploy.smoke import smoke_report
from edgekit.deploy.ssh import Host, SshClient, SshOptions
from edgekit.deploy.steps import Journal
from edgekit.deploy.targets import Target
from edgekit.deploy.wheels import (
    WheelInfo,
    checkout_info,
    edgekit_wheel,
    merge_requirements,
    offline_wheels,
    wheel_info,
)
from edgekit.errors import DeployError, EdgekitError
from edgekit.helpers import interrupt
from edgekit.helpers.limits import MAX_SECONDS, finite
from edgekit.helpers.records import keyword_only

Progress = Callable[[str], None]
DEFAULT_SSH = SshOptions()


def silent(_: str) -> None:
    """A progress callback that says nothing (the Python API's default)."""


@keyword_only
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
    """UsageError for a settle or lock_timeout that is negative, NaN or above a day."""
    finite(settle, "settle (seconds)", low=0, high=MAX_SECONDS)
    finite(lock_timeout, "lock_timeout (seconds)", low=0, high=MAX_SECONDS)


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

    def announce(self, name: str, title: str) -> None:
        """A step begins: a progress line, or a dry run's step."""
        if self.dry_run:
            self.steps.append(Step(title))
        else:
            self.progress(title)

    def journal(self, record: dict[str, Any]) -> Journal:
        """The steps' journal: announced here, timed into ``record["seconds"]``."""
        record["seconds"] = self.seconds
        return Journal(record, self.announce)

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        """Announce a workstation step and time it."""
        self.announce(name, title)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)

    def link(self, host: Host, options: SshOptions, python: str, base: str,
             known: dict[str, Any] | None = None) -> SshLink:
        """The device over ssh; for a dry run, the link that only shows its commands."""
        client = self.client(host, options)
        if self.dry_run:
            return DryRunLink(client, python, base, known)
        return SshLink(client, python, base)


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


def make_plan(request: DeployRequest, session: Session, staging: Path,
              manifest: Manifest | None = None) -> ReleasePlan:
    """Everything the workstation decides before it talks to the device. ``manifest``: the
    bundle already opened (a fleet plans every target from one reading); else it is read here,
    once, and passed on."""
    manifest = manifest or read_manifest(request.bundle)
    formats, missing = shipped_formats(manifest, request.target)  # fail fast
    choose_backend(request.target, formats, missing)
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
    return plan_release(manifest, request.target, wheel, info, staging,
                        offline=request.offline, offline_wheels=extra)


# --- checks of the device ----------------------------------------------------------------------

def check_device(probe: dict[str, Any], plan: ReleasePlan, request: DeployRequest) -> None:
    """Refuse a device that cannot run this release, saying why and what to do."""
    target = plan.target
    problem = checks.device_mismatch(probe, request.host.label, request.python, target.name,
                                    target.arch, target.python, plan.edgekit.requires_python)
    if problem:
        raise DeployError(problem)


# --- the deploy ----------------------------------------------------------------------------------

def deploy(request: DeployRequest, progress: Progress = silent) -> DeployReport:
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


def device_secrets(plan: ReleasePlan) -> dict[str, str]:
    """What the service's 0600 service.env gets on the device, read on this workstation: the
    events' credentials (when the unit sends events) and a camera URL with a password or a
    token (EDGEKIT_SOURCE). Never in the plan, the unit, the record or a command line."""
    from edgekit.deploy.service import source_secret
    from edgekit.events.service import service_secrets

    secrets = service_secrets() if "--events" in plan.run_args else {}
    return {**secrets, **source_secret(plan)}


def _run(request: DeployRequest, plan: ReleasePlan, session: Session) -> DeployReport:
    known, unknown = _preview(request, plan) if request.dry_run else (None, "")
    link = session.link(request.host, request.ssh, request.python, request.base, known)
    record: dict[str, Any] = {}
    variables = plan_vars(plan, request.service)
    if request.service:  # read here, sent on stdin only
        variables["events_env"] = device_secrets(plan)
    steps.deploy(link, variables, session.journal(record),
                 samples=request.samples, keep=request.keep, settle=request.settle,
                 lock_timeout=request.lock_timeout)
    report = DeployReport(request.host.label, plan.target.name, plan.model, plan.formats,
                          len(plan.files), plan.total_bytes, notes=record["notes"],
                          dry_run=request.dry_run, device_unknown=unknown)
    for name in ("release", "previous", "current", "leftovers_removed", "python", "platform",
                 "venv", "venv_seconds", "service", "live_view", "pruned"):
        setattr(report, name, record[name])
    copied = {"files": record["files_copied"], "bytes": record["bytes_copied"],
              "files_reused": record["files_reused"], "venv_reused": record["venv_reused"]}
    if request.dry_run:  # what a deploy would copy: nothing was
        report.would_copy = {**copied, "device_asked": known is not None}
    else:
        report.files_copied, report.bytes_copied = copied["files"], copied["bytes"]
        report.files_reused, report.venv_reused = copied["files_reused"], copied["venv_reused"]
        report.smoke = smoke_report(record["smoke"], plan.bundle, request.samples)
        report.imx500_rpk = record.get("imx500_rpk")
    report.problem = service_problem(report.service, report.release, request.host.label)
    return report


def _preview(request: DeployRequest, plan: ReleasePlan) -> tuple[dict[str, Any] | None, str]:
    """A dry run asks the device, read-only and without its lock, what it holds (releases,
    environments, which of the files by sha256), so the plan shows what a deploy would copy.
    (None, why) when it cannot be asked: the plan then assumes an empty device."""
    reader = SshLink(SshClient(request.host, request.ssh), request.python, request.base)
    try:
        return reader.call("preview", "asking the device what it holds (read-only)",
                           files=[f.to_dict() for f in plan.files]), ""
    except EdgekitError as exc:
        return None, str(exc)


# --- rollback and status -------------------------------------------------------------------------

def rollback(host: Host, ssh: SshOptions = DEFAULT_SSH, *, to: str | None = None,
             python: str = "python3", base: str = "edgekit", dry_run: bool = False,
             settle: float = 10.0, lock_timeout: float = 0.0,
             progress: Progress = silent) -> RollbackReport:
    """Switch ``current`` back to the release before it (or ``to``), checked first; the service
    is restarted and watched like a deploy's, and switched back when it does not stay up."""
    check_waits(settle, lock_timeout)
    session = Session(progress, dry_run)
    record: dict[str, Any] = {}
    steps.rollback(session.link(host, ssh, python, base), session.journal(record), to=to,
                   settle=settle, lock_timeout=lock_timeout)
    report = RollbackReport(host.label, None, to or "<previous>", dry_run=dry_run,
                            notes=record.get("notes", []), steps=session.steps)
    if dry_run:
        return report
    report.previous, report.target = record["previous"], record["release"]
    report.current, report.service = record["current"], record["service"]
    report.problem = service_problem(report.service, report.target, host.label)
    return report


def status(host: Host, ssh: SshOptions = DEFAULT_SSH, *, python: str = "python3",
           base: str = "edgekit") -> dict[str, Any]:
    """The device's releases, environments, free space, service and lock, as the agent reports
    (without taking the lock: it only reads); with the live view's address when it serves one."""
    return steps.status(SshLink(SshClient(host, ssh), python, base), Journal({}))
