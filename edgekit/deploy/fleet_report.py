"""What a fleet deploy, rollback or status reports: one row per host, as a table or JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.deploy.checks import live_view_text, serve_status_text
from edgekit.deploy.report import events_status_lines
from edgekit.deploy.smoke import SmokeReport
from edgekit.helpers.render import size, table
from edgekit.helpers.text import redact_urls

NOT_RUN = "not run"


@dataclass
class HostRow:
    """One host of a fleet run."""

    host: str
    address: str  # user@host:port as the inventory gives it
    target: str = ""
    status: str = NOT_RUN  # "ok", "failed" or "not run" (a failed batch stopped the rollout)
    release: str = ""  # deploy: the new release; rollback: the release switched to
    previous: str | None = None
    current: str = ""  # current after the run (the previous one again after a switch back)
    files: int = 0
    bytes_total: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_reused: int = 0
    venv_reused: bool = False
    smoke: SmokeReport | None = None
    seconds: float = 0.0
    step: str = ""  # the step that failed
    error: str = ""  # one line: what happened and what to do
    notes: list[str] = field(default_factory=list)
    service: dict[str, Any] | None = None
    live_view: dict[str, Any] | None = None  # deploy --service: URL (with a new token), file
    device: dict[str, Any] | None = None  # --status: the agent's probe

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.smoke is not None:
            data["smoke"]["matches"] = self.smoke.matches
        return data


@dataclass
class FleetReport:
    """Every host of a fleet run, in the inventory's order."""

    mode: str  # "deploy", "rollback" or "status"
    inventory: str
    limit: str | None
    hosts: list[HostRow]
    serial: str | None = None
    max_fail_percentage: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[HostRow]:
        return [h for h in self.hosts if h.status == "failed"]

    @property
    def not_run(self) -> list[HostRow]:
        return [h for h in self.hosts if h.status == NOT_RUN]

    def problem(self) -> str:
        """The one error line when any host failed or was left out, or ""."""
        if not self.failed and not self.not_run:
            return ""
        parts = []
        if self.failed:
            parts.append(f"{len(self.failed)} of {len(self.hosts)} hosts failed "
                         f"({', '.join(h.host for h in self.failed)})")
        if self.not_run:
            parts.append(f"{len(self.not_run)} not run ({', '.join(h.host for h in self.not_run)})"
                         + (": the rollout stopped after a failed batch" if self.failed else ""))
        keep = "; each failed host keeps the release it had" if self.mode == "deploy" and \
            self.failed else ""
        return f"{self.mode}: {'; '.join(parts)}{keep}. The table above says why, host by host"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "inventory": self.inventory, "limit": self.limit,
                "serial": self.serial, "max_fail_percentage": self.max_fail_percentage,
                "seconds": self.seconds, "ok": not self.problem(),
                "failed": [h.host for h in self.failed],
                "not_run": [h.host for h in self.not_run], "notes": self.notes,
                "hosts": [h.to_dict() for h in self.hosts]}


def smoke_cell(row: HostRow) -> str:
    smoke = row.smoke
    if smoke is None:
        return "failed" if row.step == "smoke" else "-"
    if smoke.matches is not None:
        return f"{smoke.matches}/{len(smoke.samples)} top-1 ({smoke.backend})"
    return f"ran ({smoke.backend})"


def copied_cell(row: HostRow) -> str:
    if row.status == NOT_RUN or (not row.release and row.status != "ok"):
        return "-"
    copied = size(row.bytes_copied) if row.bytes_copied else "0 B"
    return f"{row.files_copied}/{row.files} files, {copied}"


def release_cell(row: HostRow) -> str:
    if row.status == "ok":
        return row.release
    if row.status == NOT_RUN:
        return "-"
    return f"kept {row.current}" if row.current else "none (as before)"


def fleet_text(report: FleetReport) -> str:
    """The per-host table of a fleet deploy or rollback, and its summary line."""
    if report.mode == "status":
        return status_text(report)
    if report.mode == "deploy":
        headers = ["host", "target", "release", "copied", "smoke test", "time", "status", "error"]
        rows = [[h.host, h.target or "-", release_cell(h), copied_cell(h), smoke_cell(h),
                 f"{h.seconds:.1f} s" if h.status != NOT_RUN else "-", h.status, h.error]
                for h in report.hosts]
    else:
        headers = ["host", "from", "to", "current", "time", "status", "error"]
        rows = [[h.host, h.previous or "-", h.release or "-", h.current or "-",
                 f"{h.seconds:.1f} s" if h.status != NOT_RUN else "-", h.status, h.error]
                for h in report.hosts]
    ok = sum(h.status == "ok" for h in report.hosts)
    lines = [table(headers, rows), "",
             f"{ok} of {len(report.hosts)} hosts ok in {report.seconds:.1f} s"
             + _rollout_text(report)]
    views = [f"live view: {h.host}: {live_view_text(h.live_view)}" for h in report.hosts
             if h.live_view]
    notes = [f"note: {h.host}: {n}" for h in report.hosts for n in h.notes]
    return "\n".join(lines + views + notes + [f"note: {n}" for n in report.notes])


def _rollout_text(report: FleetReport) -> str:
    parts = []
    if report.serial:
        parts.append(f"serial {report.serial}")
    if report.max_fail_percentage is not None:
        parts.append(f"max fail {report.max_fail_percentage:g}%")
    return f" ({', '.join(parts)})" if parts else ""


def status_text(report: FleetReport) -> str:
    """--status --inventory: each host's current release and what runs; under the table,
    each host's live view and its service's events destinations with their delivery counters
    (URLs' secrets masked)."""
    rows = []
    for h in report.hosts:
        probe = h.device or {}
        releases = probe.get("releases", [])
        current = next((r for r in releases if r["current"]), None)
        service = probe.get("service") or {}
        svc = "-" if not probe.get("unit") else (service.get("active") or "installed")
        lock = probe.get("lock")
        rows.append([h.host, (current or {}).get("target", "-") if current else "-",
                     probe.get("current") or ("-" if h.status == "ok" else ""),
                     (current or {}).get("bundle", "") or "-",
                     str(len(releases)) if h.status == "ok" else "",
                     size(probe.get("free_bytes")) if probe else "",
                     svc if probe else "",
                     (f"held by {lock.get('what', '?')}" if lock else "free") if probe else "",
                     h.status, h.error])
    views = [f"live view: {h.host}: {serve_status_text(h.device['serve'])}"
             for h in report.hosts if (h.device or {}).get("serve")]
    events = [f"{h.host}: {line}" for h in report.hosts
              for line in events_status_lines(redact_urls((h.device or {}).get("events")))]
    return "\n".join([table(["host", "target", "current", "bundle", "releases", "free",
                             "service", "lock", "status", "error"], rows), *views, *events])
