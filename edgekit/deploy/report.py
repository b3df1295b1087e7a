"""What deploy, rollback and status report: records, and their text for people."""
from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from edgekit.deploy.checks import live_view_text, serve_status_text, service_failed
from edgekit.deploy.service import start_hint
from edgekit.deploy.smoke import SmokeReport
from edgekit.helpers.render import size, table
from edgekit.helpers.text import redact_urls


@dataclass
class Command:
    """One command a dry run would have run."""

    argv: list[str]
    note: str = ""


@dataclass
class Step:
    """One step of a dry run and its commands."""

    title: str
    commands: list[Command] = field(default_factory=list)


@dataclass
class DeployReport:
    """One deploy, start to end."""

    host: str
    target: str
    model: str
    formats: list[str]
    files: int
    bytes_total: int
    release: str = ""
    previous: str | None = None
    current: str = ""  # the release current points at after the deploy (previous if switched back)
    files_copied: int = 0
    bytes_copied: int = 0
    files_reused: int = 0  # hard-linked (or copied on the device) from earlier releases
    leftovers_removed: list[str] = field(default_factory=list)
    python: str = ""  # the device's Python
    platform: str = ""
    venv: str = ""
    venv_reused: bool = False
    venv_seconds: float = 0.0
    smoke: SmokeReport | None = None
    imx500_rpk: dict[str, Any] | None = None  # the AI Camera's .rpk made there: path, sha256, size
    service: dict[str, Any] | None = None  # the agent's answer: unit, health checks, lingering
    live_view: dict[str, Any] | None = None  # the service's live view: URL(s), token's file
    problem: str = ""  # why the deploy counts as failed after the switch (exit 1), or ""
    pruned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, and "total"
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)  # the dry run's transcript
    # A dry run's: what a deploy would copy and reuse (files, bytes, files_reused,
    # venv_reused, device_asked), as the device said when asked read-only; the *_copied
    # fields stay 0, since nothing was. device_unknown: why the device could not be asked.
    would_copy: dict[str, Any] | None = None
    device_unknown: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.smoke is not None:
            data["smoke"]["matches"] = self.smoke.matches
        # a camera URL's password never shows (the unit holds it); the live view's URL keeps
        # its token: this is the one time it is shown
        return {**redact_urls(data), "live_view": data["live_view"]}


def _bytes(n: int) -> str:
    return size(n) if n else "0 B"


def _smoke_lines(smoke: SmokeReport) -> list[list[str]]:
    devices = ", ".join(smoke.devices) or "none found"
    rows = [["ran", f"{smoke.artifact} ({smoke.format}) on {smoke.backend}, "
                    f"{smoke.runtime}, device {smoke.device}"],
            ["devices found", devices]]
    if smoke.samples and smoke.samples[0].device is not None:
        n = len(smoke.samples)
        against = f"the workstation ({smoke.compared_with})" if smoke.compared_with \
            else "Keras (no backend here runs this format)"
        rows.append(["top-1", f"{smoke.matches}/{n} samples equal to {against}"])
        rows.append(["  device", " ".join(str(s.device) for s in smoke.samples)])
        if smoke.compared_with:
            rows.append(["  workstation", " ".join(str(s.workstation) for s in smoke.samples)])
        rows.append(["  Keras", " ".join(str(s.keras) for s in smoke.samples)])
    elif smoke.samples:
        rows.append(["outputs", f"largest |device - Keras| {smoke.max_abs_diff:.3g} over "
                                f"{len(smoke.samples)} samples"])
    if smoke.pixel_agreement is not None:
        rows.append(["masks", f"{100 * smoke.pixel_agreement:.2f}% of pixels in Keras's class "
                              f"(mIoU agreement {smoke.miou_agreement:.3f})"])
    else:
        rows.append(["outputs", "one inference on zeros (the bundle has no validation set)"])
    return rows


def deploy_text(report: DeployReport) -> str:
    """The human report of a deploy, or the steps and commands of a dry run."""
    if report.dry_run:
        return dry_run_text(report)
    venv = ("reused " if report.venv_reused else
            f"created in {report.venv_seconds:.0f} s: ") + report.venv
    back = report.current and report.current != report.release
    state = f"its service did not stay up: current is back on {report.current}" if back \
        else f"now current; previous: {report.previous or 'none'}"
    rows = [
        ["device", f"{report.host} ({report.platform}, Python {report.python})"],
        ["target", report.target],
        ["release", f"{report.release} ({state})"],
        ["shipped", f"{report.model}: {', '.join(report.formats)}; {report.files} files, "
                    f"{size(report.bytes_total)}"],
        ["copied", f"{report.files_copied} files, {_bytes(report.bytes_copied)} "
                   f"({report.files_reused} already on the device, reused)"],
        ["checked", f"sha256 of all {report.files} files, on the device"],
        ["environment", venv],
    ]
    if report.imx500_rpk:
        rows.append(["network.rpk", f"{report.imx500_rpk['path']}, made by imx500-package on "
                                    f"the device (sha256 {report.imx500_rpk['sha256'][:12]}..."
                                    ", in release.json)"])
    if report.smoke is not None:
        rows += _smoke_lines(report.smoke)
    rows += service_rows(report.service)
    if report.live_view:
        rows.append(["live view", live_view_text(report.live_view)])
    if report.pruned:
        rows.append(["removed", "old releases " + ", ".join(report.pruned)])
    rows.append(["time", f"{report.seconds.get('total', 0):.1f} s"])
    text = table(["", ""], rows).split("\n", 2)[2]  # no header: a two-column listing
    return text + "".join(f"\nnote: {n}" for n in report.notes)


def dry_run_text(report: DeployReport) -> str:
    if report.device_unknown:
        lines = [f"dry run: nothing was sent to {report.host}, which could not be asked what it "
                 f"holds ({report.device_unknown}); these are the steps and commands for an "
                 "empty device"]
    else:
        would = report.would_copy or {}
        env = "reused" if would.get("venv_reused") else "created"
        lines = [f"dry run: nothing on {report.host} was changed; asked (read-only) what it "
                 f"holds, it would get {would.get('files', 0)} of {report.files} files "
                 f"({_bytes(would.get('bytes', 0))} of {size(report.bytes_total)}; "
                 f"{would.get('files_reused', 0)} already there, reused) and its Python "
                 f"environment {env}. These are the steps and commands"]
    for i, step in enumerate(report.steps, 1):
        lines.append(f"\n{i}. {step.title}")
        for command in step.commands:
            lines.append(f"   $ {shlex.join(command.argv)}")
            if command.note:
                lines.append(f"     ({command.note})")
    return redact_urls("\n".join(lines + [f"\nnote: {n}" for n in report.notes]))


@dataclass
class RollbackReport:
    host: str
    previous: str | None  # current before the rollback
    target: str  # the release rolled back to
    current: str = ""  # current after it (previous again if the target's service failed)
    service: dict[str, Any] | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback_text(report: RollbackReport) -> str:
    if report.dry_run:
        lines = [f"dry run: nothing was sent to {report.host}"]
        for step in report.steps:
            lines.append(f"\n{step.title}")
            lines += [f"   $ {shlex.join(c.argv)}" for c in step.commands]
        return "\n".join(lines)
    if report.current == report.target:
        head = f"{report.host}: current is now {report.target} (was {report.previous})"
    else:
        head = (f"{report.host}: rolled back to {report.target}, then switched back: current is "
                f"{report.current} again")
    rows = service_rows(report.service)
    body = "\n" + table(["", ""], rows).split("\n", 2)[2] if rows else ""
    return head + body + "".join(f"\nnote: {n}" for n in report.notes)


# --- the service: what deploy and rollback saw, and what --status sees --------------------------

def _unit_name(service: dict[str, Any]) -> str:
    return PurePosixPath(service.get("unit") or "edgekit.service").name


def _check_text(name: str, release: str, check: dict[str, Any]) -> str:
    if check["healthy"]:
        return (f"{name} running release {release} since {check.get('since') or '?'}; stayed "
                f"up {check['settle']:g} s with no restart")
    return f"{name} did NOT stay up with release {release}: {check['why']}"


def _journal_rows(check: dict[str, Any] | None) -> list[list[str]]:
    lines = (check or {}).get("journal") or []
    return [["  journal" if i == 0 else "", line] for i, line in enumerate(lines)]


def linger_text(service: dict[str, Any]) -> str:
    """What lingering means for this service, or "" where systemd could not say."""
    user, name = service.get("user") or "USER", _unit_name(service)
    if service.get("linger") is None:
        return ""
    fix = f"Fix, once, as root on the device: loginctl enable-linger {user}"
    if service["linger"]:
        how = "turned on by this deploy" if service.get("linger_turned_on") else "on"
        return f"{how} for {user}: {name} starts at boot and runs with no one logged in"
    others = service.get("other_sessions")
    stops = (f"OFF for {user}: {user}'s systemd, and {name} with it, stops when {user}'s last "
             "session ends, and does not start at boot")
    if others == []:
        return (f"{stops}. {user} has no other session, so it is NOT running once this "
                f"command's SSH sessions have closed. {fix}")
    if others:
        return f"{stops}. It runs while {user}'s {len(others)} other session(s) last. {fix}"
    return f"{stops}. {fix}"


def service_rows(service: dict[str, Any] | None) -> list[list[str]]:
    """The report's lines about the service after a deploy or rollback."""
    if not service:
        return []
    name, unit = _unit_name(service), service.get("unit", "")
    if not service.get("systemd"):
        return [["service", f"unit installed at {unit}; systemd is not running on the device, "
                            f"so it was not started: on a systemd system run "
                            f"{start_hint(service.get('user', ''))}"]]
    if service.get("messages"):
        return [["service", f"unit installed at {unit}, but starting it failed: "
                            f"{'; '.join(service['messages'])}"]]
    if service.get("left_stopped"):
        return [["service", f"{name} is installed and was stopped: left stopped (systemctl "
                            f"--user start {name} starts it)"]]
    check = service.get("check")
    rows = [["service", _check_text(name, service["release"], check)]] + _journal_rows(check)
    back = service.get("switched_back")
    if back:
        rows.append(["switched back", f"current is {back} again; "
                     + _fallback_text(name, back, service.get("fallback"))])
        rows += _journal_rows((service.get("fallback") or {}).get("check"))
    linger = linger_text(service)
    return rows + ([["lingering", linger]] if linger else [])


def _fallback_text(name: str, release: str, fallback: dict[str, Any] | None) -> str:
    """What runs after a switch back to ``release``."""
    if fallback and fallback.get("removed"):
        return f"it had no service, so {name} was stopped and removed again"
    if fallback and fallback.get("check"):
        return _check_text(name, release, fallback["check"])
    return f"{name} was not restarted ({'; '.join((fallback or {}).get('messages', []))})"


def service_problem(service: dict[str, Any] | None, release: str, host: str) -> str:
    """The one error line when the service did not stay up after a switch, or ""."""
    if service and service.get("systemd") and service.get("messages"):
        return (f"on {host}, {_unit_name(service)} could not be started: "
                f"{'; '.join(service['messages'])}")
    if not service_failed(service):
        return ""
    check = service["check"]
    name = _unit_name(service)
    back = service.get("switched_back")
    if back:
        fallback = service.get("fallback") or {}
        now = ("which is running" if (fallback.get("check") or {}).get("healthy") else
               "which runs no service, as before" if fallback.get("removed") else
               f"whose service is failing too ({fallback['check']['why']})"
               if fallback.get("check") else "whose service was not restarted")
        return (f"on {host}, {name} did not stay up with release {release} ({check['why']}); "
                f"current is back on {back}, {now}. The report above has the failing "
                "release's last journal lines")
    stopped = (f", and {name} was stopped and disabled rather than left restarting: fix the "
               f"cause and deploy again (or systemctl --user start {name})"
               if service.get("stopped") else
               f"; stopping it failed too ({service['stop_error']})"
               if service.get("stop_error") else "")
    return (f"on {host}, {name} is failing with release {release} ({check['why']}), and there "
            f"is no earlier release to switch back to, so {release} stays current{stopped}. "
            "The report above has its last journal lines")


def service_status_text(probe: dict[str, Any]) -> list[str]:
    """--status's lines about the service and the lock."""
    unit, state = probe.get("unit"), probe.get("service") or {}
    lines = []
    if not unit:
        lines.append("service: not installed (deploy --service)")
    elif not state.get("systemd"):
        lines.append(f"service: {unit} (systemd is not running on the device)")
    else:
        name = PurePosixPath(unit).name
        restarts = f"{state.get('restarts', 0)} automatic restart(s)"
        if state.get("started_by_this_login"):
            lines.append(f"service: {name} was NOT running before this check: lingering is off "
                         f"and {state.get('user')} had no session, so {state.get('user')}'s "
                         "systemd had stopped; this check's login started it again (active "
                         f"since {state.get('since')}), and it stops when the check ends")
        elif state.get("active") == "active":
            lines.append(f"service: {name} running since {state.get('since')}, {restarts} "
                         f"({state.get('enabled')})")
        else:
            why = f", result {state.get('result')}" if state.get("result") not in ("", "success") \
                else ""
            lines.append(f"service: {name} NOT running: {state.get('active')} "
                         f"({state.get('sub')}{why}, last exit status "
                         f"{state.get('exit_status')}, {restarts}); see journalctl --user -u "
                         f"{name}")
        linger = linger_text({**state, "unit": unit, "other_sessions": None})
        if linger:
            lines.append(f"lingering: {linger}")
    holder = probe.get("lock")
    if holder is not None:
        lines.append(f"lock: held by {holder.get('what', 'a deploy')} from "
                     f"{holder.get('workstation', '?')} (pid {holder.get('workstation_pid', '?')}"
                     f"), since {holder.get('since', '?')}")
    return lines


def status_text(host: str, probe: dict[str, Any]) -> str:
    """``edgekit status``: the releases on the device and what runs."""
    probe = redact_urls(probe)
    rows = []
    for r in reversed(probe.get("releases", [])):
        state = "current" if r["current"] else ("ok" if r["complete"] else "INCOMPLETE")
        rows.append([r["id"], state, r.get("target", ""), r.get("bundle", ""),
                     ", ".join(r.get("formats", [])), size(r.get("bytes")),
                     r.get("venv", "")])
    head = (f"{host}: {probe.get('platform')}, Python "
            f"{'.'.join(map(str, probe.get('python', [])))}, "
            f"{size(probe.get('free_bytes'))} free in {probe.get('base')}")
    if not rows:
        return "\n".join([head, "no releases yet: edgekit deploy BUNDLE --target NAME --host ...",
                          *service_status_text(probe)])
    body = table(["release", "state", "target", "bundle", "formats", "size", "venv"], rows)
    extra = [f"in progress or interrupted (never used): {', '.join(probe['incomplete'])}"] \
        if probe.get("incomplete") else []
    serve = probe.get("serve")
    if serve:
        extra.append(f"live view: {serve_status_text(serve)}")
    extra += events_status_lines(probe.get("events"))
    return "\n".join([head, body, *extra, *service_status_text(probe)])


def events_status_lines(state: dict[str, Any] | None) -> list[str]:
    """The service's events destinations and counters, as its loop last wrote them."""
    if not state:
        return []
    from edgekit.events.service import counters_line

    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.get("time", 0)))
    return [f"{counters_line(row)}; {row.get('queued', 0)} queued (as of {when})"
            if "clips" not in row else counters_line(row)
            for row in state.get("destinations", [])]
