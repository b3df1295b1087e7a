"""What deploy, rollback and status report: records, and their text for people."""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.deploy.smoke import SmokeReport
from edgekit.render import size, table


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
    service: dict[str, Any] | None = None
    pruned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, and "total"
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)  # the dry run's transcript

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.smoke is not None:
            data["smoke"]["matches"] = self.smoke.matches
        return data


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
    else:
        rows.append(["outputs", "one inference on zeros (the bundle has no validation set)"])
    return rows


def deploy_text(report: DeployReport) -> str:
    """The human report of a deploy, or the steps and commands of a dry run."""
    if report.dry_run:
        return dry_run_text(report)
    venv = ("reused " if report.venv_reused else
            f"created in {report.venv_seconds:.0f} s: ") + report.venv
    rows = [
        ["device", f"{report.host} ({report.platform}, Python {report.python})"],
        ["target", report.target],
        ["release", f"{report.release} (now current; previous: {report.previous or 'none'})"],
        ["shipped", f"{report.model}: {', '.join(report.formats)}; {report.files} files, "
                    f"{size(report.bytes_total)}"],
        ["copied", f"{report.files_copied} files, {_bytes(report.bytes_copied)} "
                   f"({report.files_reused} already on the device, reused)"],
        ["checked", f"sha256 of all {report.files} files, on the device"],
        ["environment", venv],
    ]
    if report.smoke is not None:
        rows += _smoke_lines(report.smoke)
    if report.service is not None:
        rows.append(["service", report.service.get("summary", "")])
    if report.pruned:
        rows.append(["removed", "old releases " + ", ".join(report.pruned)])
    rows.append(["time", f"{report.seconds.get('total', 0):.1f} s"])
    text = table(["", ""], rows).split("\n", 2)[2]  # no header: a two-column listing
    return text + "".join(f"\nnote: {n}" for n in report.notes)


def dry_run_text(report: DeployReport) -> str:
    lines = [f"dry run: nothing was sent to {report.host}; these are the steps and commands"]
    for i, step in enumerate(report.steps, 1):
        lines.append(f"\n{i}. {step.title}")
        for command in step.commands:
            lines.append(f"   $ {shlex.join(command.argv)}")
            if command.note:
                lines.append(f"     ({command.note})")
    return "\n".join(lines + [f"\nnote: {n}" for n in report.notes])


@dataclass
class RollbackReport:
    host: str
    previous: str | None
    current: str
    service: str | None = None
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
    text = f"{report.host}: current is now {report.current} (was {report.previous})"
    return text + (f"; service: {report.service}" if report.service else "")


def status_text(host: str, probe: dict[str, Any]) -> str:
    """``edgekit deploy --status``: the releases on the device and what runs."""
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
        return head + "\nno releases yet: edgekit deploy BUNDLE --target NAME --host ..."
    body = table(["release", "state", "target", "bundle", "formats", "size", "venv"], rows)
    extra = [f"in progress or interrupted (never used): {', '.join(probe['incomplete'])}"] \
        if probe.get("incomplete") else []
    unit = probe.get("unit")
    extra.append(f"service: {unit}" if unit else "service: not installed (deploy --service)")
    return "\n".join([head, body, *extra])
