"""``edgekit deploy --inventory``: one bundle to every host of an Ansible inventory.

Ansible does the fleet's part: its inventory (INI, YAML, groups, host variables), ``--limit``,
its rolling update (``serial``, ``max_fail_percentage``: a first batch is a canary) and its
forks. edgekit does the rest as for one device: the plan (artifacts, manifest, edgekit's
wheel, ``--offline`` wheels) is made once per target on the workstation, then each host runs
the same steps with the same device agent (``playbook.py``'s role: lock, stage, copy what the
device lacks, sha256 on the device, environment, smoke test, one-rename switch, health-checked
service). Each host's result comes back as JSON; the table says, host by host, what happened.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.manifest import read_manifest
from edgekit.deploy.fleet_report import NOT_RUN, FleetReport, HostRow
from edgekit.deploy.inventory import (
    InventoryHost,
    ansible_command,
    ansible_env,
    check_host,
    read_inventory,
    require_ansible,
)
from edgekit.deploy.playbook import (
    PLAYBOOKS,
    RoleSettings,
    Rollout,
    copy_files,
    plan_vars,
    readme_text,
    write_playbooks,
)
from edgekit.deploy.release import (
    DeployRequest,
    Progress,
    Session,
    check_waits,
    device_secrets,
    make_plan,
    silent,
)
from edgekit.deploy.report import service_problem
from edgekit.deploy.smoke import smoke_report, workstation_top1
from edgekit.deploy.ssh import Host, SshOptions, explain
from edgekit.deploy.targets import Target, find_target
from edgekit.errors import DeployError, EdgekitError, UsageError
from edgekit.helpers.config import cache_dir
from edgekit.helpers.records import keyword_only
from edgekit.helpers.text import redact_urls

KILL_GRACE = 1.0  # seconds ansible-playbook gets after Ctrl-C before it is killed


@keyword_only
@dataclass(frozen=True)
class FleetRequest:
    """Which hosts, how to roll through them, and how to reach and treat each device."""

    inventory: Path
    limit: str | None = None
    rollout: Rollout = field(default_factory=Rollout)
    ssh: SshOptions = field(default_factory=SshOptions)
    python: str = "python3"
    base: str = "edgekit"
    samples: int = 10  # validation samples each host's smoke test runs (0: all)
    keep: int = 3
    settle: float = 10.0
    lock_timeout: float = 0.0

    def __post_init__(self) -> None:
        check_waits(self.settle, self.lock_timeout)

    def settings(self, default_target: str = "", rollback_to: str = "",
                 results_dir: str = "", secrets_file: str = "") -> RoleSettings:
        return RoleSettings(default_target=default_target, python=self.python,
                            remote_dir=self.base, samples=self.samples, keep=self.keep,
                            settle=self.settle, lock_timeout=self.lock_timeout,
                            timeout=self.ssh.timeout, rollback_to=rollback_to,
                            results_dir=results_dir, secrets_file=secrets_file)


@keyword_only
@dataclass(frozen=True)
class FleetBundle:
    """What to deploy: the bundle, the target of hosts without edgekit_target, and how."""

    bundle: Path
    target: str | None = None  # a name or profile file; hosts' edgekit_target overrides it
    service: bool = False
    offline: bool = False
    wheel: Path | None = None


# --- the inventory and the plans -----------------------------------------------------------

def resolve_targets(hosts: list[InventoryHost], default: str | None
                    ) -> tuple[dict[str, str], dict[str, Target]]:
    """(host -> its target's key, key -> Target): the key is the edgekit_target text (a name
    or profile file) or ``default``; UsageError naming the host for an unknown one."""
    keys: dict[str, str] = {}
    targets: dict[str, Target] = {}
    for host in hosts:
        key = str(host.vars.get("edgekit_target") or default or "")
        if not key:
            raise UsageError(f"host {host.name} has no edgekit_target and no `target` was "
                             "given: set edgekit_target for it (a host or group variable in the "
                             "inventory) or pass `target` NAME (see edgekit targets)")
        if key not in targets:
            try:
                targets[key] = find_target(key)
            except UsageError as exc:
                where = "edgekit_target" if host.vars.get("edgekit_target") else "`target`"
                raise UsageError(f"host {host.name}: {where} {key!r}: {exc}; set "
                                 "edgekit_target to a name from edgekit targets or a profile "
                                 "file") from None
        keys[host.name] = key
    return keys, targets


def make_plans(deploy: FleetBundle, request: FleetRequest, targets: dict[str, Target],
               staging: Path, progress: Progress) -> dict[str, Any]:
    """One plan per target, made once on the workstation (edgekit's wheel is built once and
    cached; --offline wheels are downloaded once per target)."""
    plans = {}
    session = Session(progress, dry_run=False)
    manifest = read_manifest(deploy.bundle)  # one reading for every target
    for i, (key, target) in enumerate(targets.items()):
        progress(f"plan for target {target.name}: what ships, every file hashed")
        one = DeployRequest(bundle=deploy.bundle, target=target, host=Host("inventory"),
                            ssh=request.ssh, python=request.python, base=request.base,
                            service=deploy.service, offline=deploy.offline,
                            samples=request.samples, keep=request.keep, wheel=deploy.wheel,
                            settle=request.settle, lock_timeout=request.lock_timeout)
        folder = staging / f"plan-{i}"
        folder.mkdir(parents=True)
        plans[key] = make_plan(one, session, folder, manifest)
    return plans


def write_secrets(path: Path, plans: dict[str, Any]) -> str:
    """The service's secrets per target (the events' credentials from this workstation, a
    camera URL with a password) into ``path``, mode 0600, for the role to send on each
    device's agent stdin into its service.env; ``path`` as text, or "" when there are none."""
    from edgekit.deploy.agent.env import write_private

    found = {key: secrets for key, plan in plans.items() if (secrets := device_secrets(plan))}
    if not found:
        return ""
    write_private(str(path), [json.dumps(found)])
    return str(path)


# --- running ansible-playbook ----------------------------------------------------------------

@contextmanager
def run_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="edgekit-fleet-"))
    try:
        yield folder
    finally:
        stop_control_masters(folder / "cp")
        shutil.rmtree(folder, ignore_errors=True)


def stop_control_masters(folder: Path) -> None:
    """End the ssh connections Ansible left open for reuse (ControlPersist) in ``folder``."""
    if not folder.is_dir():
        return
    for socket_path in folder.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "edgekit"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False)


def log_path() -> Path:
    """Where the last fleet run's ansible-playbook output is kept (not the working folder)."""
    return cache_dir() / "fleet" / "ansible-playbook.log"


def run_playbook(folder: Path, mode: str, request: FleetRequest, progress: Progress
                 ) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run ``mode``'s playbook in ``folder``; (ansible-playbook's exit code, each host's
    result). Progress lines as hosts go through their steps; Ctrl-C ends it and every ssh
    it started within about a second."""
    results = folder / "results"
    results.mkdir(exist_ok=True)
    argv = [*ansible_command("playbook"), "-i", str(Path(request.inventory).resolve()),
            PLAYBOOKS[mode], "--forks", str(request.rollout.forks)]
    if request.limit:
        argv += ["--limit", request.limit]
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, cwd=folder, env=ansible_env(folder),
                                   stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            seen = 0
            while process.poll() is None:
                seen = _show_events(results / "events.jsonl", seen, progress)
                time.sleep(0.2)
            _show_events(results / "events.jsonl", seen, progress)
        except BaseException:
            _end(process)
            raise
    found = _ansible_failures(log.read_text(errors="replace"))
    for path in sorted(results.glob("host-*.json")):
        record = json.loads(path.read_text())
        found[record["host"]] = record
    return process.returncode, found


def _ansible_failures(text: str) -> dict[str, dict[str, Any]]:
    """Hosts that Ansible itself failed before edgekit's action could report (``fatal:``)."""
    found = {}
    for host, kind, data in re.findall(r"^fatal: \[([^\]]+)\]: (FAILED|UNREACHABLE)! => (.*)$",
                                       text, re.MULTILINE):
        try:
            message = str(json.loads(data).get("msg", data))
        except ValueError:
            message = data
        found[host] = {"host": host, "status": "failed", "step": "ansible",
                       "error": f"ansible: {message.splitlines()[0] if message else kind}"}
    return found


def _show_events(path: Path, seen: int, progress: Progress) -> int:
    if not path.is_file():
        return seen
    lines = path.read_text().splitlines()
    for line in lines[seen:]:
        try:
            event = json.loads(line)
        except ValueError:
            return seen  # a line being written: read it next time
        progress(f"{event['host']}: {event['title']}")
        seen += 1
    return seen


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop ansible-playbook and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGINT, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
        try:
            os.killpg(process.pid, signal.SIGKILL)  # workers and their ssh, if any are left
        except ProcessLookupError:
            pass
        return


def _ansible_failure(code: int) -> DeployError:
    text = log_path().read_text(errors="replace") if log_path().is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    last = (errors or lines or [f"exit status {code}"])[-1]
    return DeployError(f"ansible-playbook failed before it reached the hosts: {last} (its "
                       f"output: {log_path()})")


# --- the three modes -------------------------------------------------------------------------

def fleet_deploy(deploy: FleetBundle, request: FleetRequest,
                 progress: Progress = silent) -> FleetReport:
    """Deploy ``deploy.bundle`` to every host of the inventory that ``request.limit`` matches."""
    require_ansible()
    started = time.monotonic()
    with run_folder() as folder:
        hosts = _hosts(request, folder)
        keys, targets = resolve_targets(hosts, deploy.target)
        plans = make_plans(deploy, request, targets, folder / "staging", progress)
        secrets = write_secrets(folder / "secrets.json", plans) if deploy.service else ""
        settings = request.settings(deploy.target or "", results_dir=str(folder / "results"),
                                    secrets_file=secrets)
        write_playbooks(folder, {k: plan_vars(p, deploy.service) for k, p in plans.items()},
                        settings, request.rollout, request.ssh, folder / "cp")
        progress(_start_line("deploy", hosts, request))
        code, records = run_playbook(folder, "deploy", request, progress)
    if not records and code not in (0, 2, 4):
        raise _ansible_failure(code)
    reference = _workstation(deploy.bundle)
    rows = [_deploy_row(h, records.get(h.name), targets[keys[h.name]], deploy, request,
                        reference) for h in hosts]
    return _report("deploy", request, rows, started)


def fleet_rollback(request: FleetRequest, to: str | None = None,
                   progress: Progress = silent) -> FleetReport:
    """Roll every matched host back to the release before its current one (or ``to``)."""
    return _simple("rollback", request, progress, rollback_to=to or "")


def fleet_status(request: FleetRequest, progress: Progress = silent) -> FleetReport:
    """Every matched host's releases, service and lock (read only: no lock taken)."""
    return _simple("status", request, progress)


def emit_playbook(deploy: FleetBundle, request: FleetRequest, folder: Path,
                  progress: Progress = silent) -> list[str]:
    """Write a self-contained playbook folder for ``deploy`` (the plans for the inventory's
    targets, the files to ship, the role with the agent, a README); what it holds."""
    require_ansible()
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"folder {folder}: the folder is not empty; name a new one",
                         param="folder")
    with run_folder() as work:
        hosts = _hosts(request, work)
        keys, targets = resolve_targets(hosts, deploy.target)
        if deploy.target and deploy.target not in targets:
            targets[deploy.target] = find_target(deploy.target)
        plans = make_plans(deploy, request, targets, work / "staging", progress)
        out = Path(tempfile.mkdtemp(prefix=".edgekit-emit-", dir=folder.resolve().parent))
        try:
            local = copy_files(plans, out)
            write_playbooks(out, {k: plan_vars(p, deploy.service, local)
                                  for k, p in plans.items()},
                            request.settings(deploy.target or ""), request.rollout,
                            request.ssh)
            (out / "README.md").write_text(readme_text(deploy, request, plans, hosts, keys))
            if folder.exists():
                folder.rmdir()
            out.rename(folder)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _hosts(request: FleetRequest, folder: Path) -> list[InventoryHost]:
    hosts = read_inventory(request.inventory, request.limit, folder / "inventory")
    for host in hosts:
        check_host(host)
    return hosts


def _start_line(mode: str, hosts: list[InventoryHost], request: FleetRequest) -> str:
    rollout = request.rollout
    how = [f"forks {rollout.forks}"]
    if rollout.serial:
        how.insert(0, f"serial {rollout.serial}")
    if rollout.max_fail_percentage is not None:
        how.insert(1, f"max fail {rollout.max_fail_percentage:g}%")
    return (f"ansible-playbook: {mode} on {len(hosts)} host(s) ({', '.join(how)}): "
            f"{', '.join(h.name for h in hosts)}")


def _simple(mode: str, request: FleetRequest, progress: Progress,
            rollback_to: str = "") -> FleetReport:
    require_ansible()
    started = time.monotonic()
    with run_folder() as folder:
        hosts = _hosts(request, folder)
        settings = request.settings(rollback_to=rollback_to,
                                    results_dir=str(folder / "results"))
        write_playbooks(folder, {}, settings, request.rollout, request.ssh, folder / "cp")
        progress(_start_line(mode, hosts, request))
        code, records = run_playbook(folder, mode, request, progress)
    if not records and code not in (0, 2, 4):
        raise _ansible_failure(code)
    rows = []
    for host in hosts:
        record = records.get(host.name)
        row = _row(host, record, request)
        if record is not None:
            row.device = redact_urls(record.get("probe"))  # a unit's camera URL, a webhook
            row.release, row.previous = record.get("release", ""), record.get("previous")
            row.current = record.get("current", "")
            row.service = record.get("service")
            if record.get("error_kind") == "service":
                row.error = service_problem(row.service, row.release, host.name)
        rows.append(row)
    return _report(mode, request, rows, started)


def _report(mode: str, request: FleetRequest, rows: list[HostRow],
            started: float) -> FleetReport:
    return FleetReport(mode, str(request.inventory), request.limit, rows,
                       request.rollout.serial, request.rollout.max_fail_percentage,
                       round(time.monotonic() - started, 2))


def _row(host: InventoryHost, record: dict[str, Any] | None,
         request: FleetRequest) -> HostRow:
    """The common part of a host's row: status, time, error (ssh's failures explained)."""
    row = HostRow(host.name, host.address)
    if record is None:
        return row
    row.status = record["status"]
    row.seconds = float(record.get("seconds", {}).get("total", 0.0))
    row.step = record.get("step", "")
    row.notes = list(record.get("notes", []))
    row.error = record.get("error", "")
    if record.get("error_kind") == "connection":
        row.error = _connection_error(record, request)
    return row


def _connection_error(record: dict[str, Any], request: FleetRequest) -> str:
    """ssh's failure as deploy explains it, for this host's address and key."""
    address = record.get("address") or {}
    key = address.get("private_key_file")
    identity = Path(key) if key and Path(key).is_file() else request.ssh.identity
    options = SshOptions(identity=identity, known_hosts=request.ssh.known_hosts,
                         timeout=request.ssh.timeout)
    host = Host(str(address.get("host") or record["host"]),
                str(address.get("remote_user") or ""), int(address.get("port") or 22))
    message = record.get("error", "")
    step = message.split(":", 1)[0] if ":" in message else record.get("step", "")
    why = explain(record.get("stderr", ""), host, options)
    rest = message.split(". ", 1)[1] if ". The running release" in message or \
        ". Nothing was running" in message else ""
    return f"{step}: {why}" + (f". {rest}" if rest else "")


def _workstation(bundle: Path) -> Callable[[Path, str, int], tuple[list[int | None], str]]:
    """workstation_top1, run once per artifact format and sample count for the whole fleet."""
    cache: dict[tuple[str, int], tuple[list[int | None], str]] = {}

    def answers(path: Path, fmt: str, samples: int) -> tuple[list[int | None], str]:
        if (fmt, samples) not in cache:
            cache[(fmt, samples)] = workstation_top1(path, fmt, samples)
        return cache[(fmt, samples)]
    return answers


def _deploy_row(host: InventoryHost, record: dict[str, Any] | None, target: Target,
                deploy: FleetBundle, request: FleetRequest,
                reference: Callable[[Path, str, int], tuple[list[int | None], str]]) -> HostRow:
    row = _row(host, record, request)
    row.target = target.name
    if record is None:
        return row
    for name in ("release", "previous", "current", "files", "bytes_total", "files_copied",
                 "bytes_copied", "files_reused", "venv_reused", "service", "live_view"):
        if name in record:
            setattr(row, name, record[name])
    if record.get("smoke"):
        try:
            row.smoke = smoke_report(record["smoke"], deploy.bundle, request.samples, reference)
        except EdgekitError:
            row.smoke = None  # it failed on the device: the error says why
    if record.get("error_kind") == "service":
        row.error = service_problem(row.service, row.release, host.name)
    if row.status != "ok":
        row.current = record.get("running") or ""  # untouched: what ran before
    return row


__all__ = ["FleetBundle", "FleetRequest", "Rollout", "emit_playbook", "fleet_deploy",
           "fleet_rollback", "fleet_status", "NOT_RUN"]
