"""The deploy's steps, written once, driven over a *link* to one device.

A link does three things: run an agent command and read its JSON answer (``call``), send
files into the new release's folder (``send``), and hold the device's lock for a block
(``lock``). The links: SSH (``remote.SshLink``), a read-only dry run (``remote.DryRunLink``),
a folder on this machine (``local.LocalLink``, for tests), and the Ansible action's connection
(``ansible/.../action_plugins/edgekit_release.py``, which ships this file to the controller
beside the agent). Adding a step means adding it here, and its command to ``agent/``.

A deploy: take the lock -> check the device -> stage a new release folder, reusing files the
device has -> copy the missing ones -> check every sha256 there -> reuse or create the Python
environment -> smoke test the new release -> the live view's token -> switch ``current``
(one rename), restart the service and watch it. Until the switch the running release is
untouched; a failure on the way removes the new folder (or leaves ``releases/.incoming-*``
when the link is gone, which the next deploy removes).

Standard library only, Python 3.7+ (the Ansible controller imports it without edgekit). The
plan is a plain dict (``playbook.plan_vars``); what happened goes into ``record``, a dict.
"""
from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time
from contextlib import ExitStack, contextmanager

try:
    from edgekit.deploy import checks
except ImportError:  # on the Ansible controller: the action loaded the role's checks.py first
    import edgekit_deploy_checks as checks  # type: ignore[no-redef]

UNIT_NAME = "edgekit.service"
# Runs the agent from the first N bytes of stdin, leaving the rest of stdin to it (the lock's
# session: the agent's ``hold`` keeps reading stdin for the heartbeat).
BOOT = ("import sys;n=int(sys.argv.pop(1));"
        "exec(compile(sys.stdin.buffer.read(n),'edgekit-agent','exec'),{'__name__':'__main__'})")
HEARTBEAT_SECONDS = 5.0
PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._@+-]+$")
LEFTOVER = ("the incomplete release folder (releases/.incoming-*) is never used, and the next "
            "deploy removes it")


def private_source(source, private):
    """The agent's source (bytes) with ``private`` (secrets for the payload) set in it: they
    ride in the source on the agent's stdin, never on a command line (agent/main.PRIVATE)."""
    if not private:
        return source
    return source.replace(b"\nPRIVATE = {}", b"\nPRIVATE = " + repr(private).encode(), 1)


class StepFailed(Exception):
    """A step that failed; ``kind``: "connection" (ssh's own stderr in ``stderr``), "device",
    "disk_full", "locked" or "service"."""

    def __init__(self, step, message, kind="device", stderr=""):
        super().__init__(message)
        self.step = step
        self.kind = kind
        self.stderr = stderr


class Link:
    """One device, as the steps see it. Subclasses fill in ``call``, ``send`` and ``lock``;
    the rest says how their errors look (StepFailed unless a link says otherwise)."""

    label = "device"  # the device in messages
    address = ""  # the host name the workstation reaches it by (the live view's URL)
    python = "python3"  # the device's interpreter, as the user named it
    base = "edgekit"  # the releases' folder on the device (relative: to the login home)
    python_hint = "pass --release python=PATH"  # how to name another interpreter
    dry_run = False  # nothing is changed; answers are simulated

    def call(self, command, step, **payload):
        """Run one agent command; its answer (a dict with "ok"), or raise its failure."""
        raise NotImplementedError

    def send(self, files, incoming, step):
        """Copy ``files`` ([(local path, path in the release)]) into ``incoming``."""
        raise NotImplementedError

    def lock(self, what, wait):
        """A context manager holding the device's lock; it yields the hold's answer."""
        raise NotImplementedError

    def error(self, step, message, kind="device"):
        """The exception this link raises for a failed step."""
        return StepFailed(step, message, kind)

    def failed(self, exc):
        """Whether ``exc`` is a step's failure (explained and re-raised), not a crash."""
        return isinstance(exc, StepFailed)

    def lost(self, exc):
        """Whether ``exc`` means the link itself is gone."""
        return isinstance(exc, StepFailed) and exc.kind == "connection"

    def amend(self, exc, message):
        """``exc`` with ``message`` instead of its own."""
        exc.args = (message,)
        return exc


class Journal:
    """Each step's name, a title for people (``announce(name, title)``) and its seconds."""

    def __init__(self, record, announce=None):
        self.record = record
        self.announce = announce or (lambda name, title: None)
        self.record.setdefault("seconds", {})

    @contextmanager
    def step(self, name, title):
        self.record["step"] = name
        self.announce(name, title)
        started = time.monotonic()
        yield
        self.record["seconds"][name] = round(time.monotonic() - started, 2)


# --- the lock's session (a process beside the steps' calls: ssh, or a local hold) ---------

def read_line(session, timeout):
    """The session's first line of output (b"" when it ends or stays silent ``timeout`` s)."""
    assert session.stdout is not None
    fd = session.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


@contextmanager
def heartbeat(session):
    """A heartbeat line on the session's stdin every few seconds for the ``with`` block: the
    device's lock holder knows this deploy is alive."""
    stop = threading.Event()

    def beat():
        assert session.stdin is not None
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                session.stdin.write(b"\n")
                session.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return  # the session ended: the next step that changes something finds out

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def holding(link, session, token, first_answer):
    """The lock's ``session``: its first answer (``first_answer()``), then, for the block, a
    heartbeat and the lock's ``token`` on the link's calls; the session closed after."""
    try:
        answer = first_answer()
        with heartbeat(session):
            link.token = token
            try:
                yield answer
            finally:
                link.token = ""
    finally:
        close(session)


def close(session, timeout=30):
    """End the hold: close its stdin (the device releases the lock), wait for ssh to exit."""
    if session.stdin is not None and not session.stdin.closed:
        try:
            session.stdin.close()
        except OSError:
            pass
    try:
        session.wait(timeout)
    except subprocess.TimeoutExpired:
        session.kill()
        session.wait()


# --- the sequences -------------------------------------------------------------------------------

def lock_title(base, wait):
    waiting = f"wait up to {wait:g} s for another deploy" if wait else "refuse if another holds it"
    return f"take the device's deploy lock (~/{base}/lock; {waiting}), held until the end"


@contextmanager
def locked(link, journal, what, wait, more=""):
    """The device's lock held for the block (its taking timed as the "lock" step); yields the
    device as the lock found it (``probe``)."""
    with ExitStack() as held:
        with journal.step("lock", lock_title(link.base, wait) + more):
            answer = held.enter_context(link.lock(what, wait))
        left = answer.get("taken_over")
        if left:
            journal.record.setdefault("notes", []).append(
                f"took over the device's lock from {left.get('what', 'a deploy')} from "
                f"{left.get('workstation', '?')} (started {left.get('since', '?')}), which "
                "ended without releasing it")
        yield answer["probe"]


def deploy_record(plan):
    """A deploy's record before its first step: what ships, nothing done yet."""
    return {"target": plan["target"]["name"], "model": plan["model"],
            "formats": list(plan["formats"]), "files": len(plan["files"]),
            "bytes_total": sum(f["size"] for f in plan["files"]), "release": "",
            "current": "", "previous": None, "running": None, "files_copied": 0,
            "bytes_copied": 0, "files_reused": 0, "leftovers_removed": [], "python": "",
            "platform": "", "venv": "", "venv_reused": False, "venv_seconds": 0.0,
            "smoke": None, "service": None, "live_view": None, "pruned": [],
            "notes": list(plan.get("notes", [])), "error": "", "error_kind": ""}


def deploy(link, plan, journal, samples=10, keep=3, settle=10.0, lock_timeout=0.0):
    """Deploy ``plan`` over ``link``, filling ``journal.record``; the step's failure (with
    what state the device is left in) when one fails before the switch."""
    record = journal.record
    record.update(deploy_record(plan))
    what = f"deploy of {plan['model']} (target {plan['target']['name']})"
    more = f"; check {link.label}: platform, Python, releases"
    with locked(link, journal, what, lock_timeout, more) as probe:
        _deploy_locked(link, plan, journal, probe, samples, keep, settle)
    return record


def _deploy_locked(link, plan, journal, probe, samples, keep, settle):
    record, target = journal.record, plan["target"]
    record["running"] = probe.get("current")
    if "platform" in probe:  # a dry run without the device's answer checks nothing
        record.update(python=".".join(map(str, probe["python"])), platform=probe["platform"])
        problem = checks.device_mismatch(probe, link.label, link.python, target["name"],
                                  target["arch"], target["python"], plan["requires_python"],
                                  link.python_hint)
        if problem:
            record["step"] = "check"
            raise link.error("check", problem)
    key = checks.venv_key(probe.get("executable", link.python), tuple(probe.get("python", ())),
                   plan["venv_inputs"])
    release = None
    try:
        with journal.step("stage", "stage a new release folder; link the files the device "
                          "already has (by sha256)"):
            staged = link.call("stage", "staging the release", content_hash=plan["content_hash"],
                               files=[shipped(f) for f in plan["files"]])
        release = record["release"] = staged["release"]
        record["leftovers_removed"] = staged.get("removed", [])
        _fill_and_check(link, plan, journal, probe, staged, key, samples)
    except BaseException as exc:
        raise abandoned(link, exc, release, probe) from None
    if plan.get("unit") and plan.get("serve"):  # the token first: the unit reads it at start
        with journal.step("serve_token", f"the live view's token ({plan['serve']}): made on "
                          "the device once, kept in the unit's environment file (mode 0600)"):
            answer = link.call("serve_token", "making the live view's token")
        record["live_view"] = checks.live_view(link.address, plan["serve"], answer)
    if plan.get("unit") and plan.get("events_env"):  # the service's secrets, off argv
        names = ", ".join(sorted(plan["events_env"]))
        with journal.step("service_env", f"the service's secrets ({names}) into the unit's "
                          "environment file (mode 0600), in the agent's standard input"):
            link.call("service_env", "setting the service's secrets",
                      private={"variables": plan["events_env"]})
    command = plan["command"].replace(plan["unit_base"], f"~/{link.base}")
    unit = f"install the systemd user unit {UNIT_NAME} (edgekit {command}), " \
        if plan.get("unit") else ""
    with journal.step("activate", f"switch current to the new release (one rename); {unit}"
                      f"restart the service if there is one, watch it {settle:g} s, and "
                      "switch back if it does not stay up; remove old releases"):
        done = link.call("activate", "switching current", release=release, keep=keep,
                         settle=settle)
    record.update(previous=done.get("previous"), pruned=done.get("pruned", []),
                  current=done.get("current", release), service=done.get("service"))
    if checks.service_failed(record["service"]):
        record["error"] = f"the service did not stay up with release {release}"
        record["error_kind"] = "service"


def _fill_and_check(link, plan, journal, probe, staged, key, samples):
    record, release = journal.record, staged["release"]
    missing = [f for f in plan["files"] if f["path"] in set(staged["missing"])]
    need = sum(f["size"] for f in missing)
    record.update(files_copied=len(missing), bytes_copied=need,
                  files_reused=len(staged["linked"]))
    with journal.step("copy", f"copy the files the device lacks ({len(missing)} files, "
                      f"{checks.byte_size(need)})"):
        try:
            link.send([(f["local"], f["path"]) for f in missing], staged["incoming"],
                      "copying the release")
        except Exception as exc:
            raise _copy_failure(link, exc, need) from None
    meta = dict(plan["meta"], venv=key)
    if plan.get("unit"):  # the unit this release runs with, installed whenever it is switched to
        meta["service"] = {"unit": unit_for(link, plan, probe)}
    with journal.step("verify", "check the sha256 of every file on the device"):
        link.call("verify", "checking the files on the device", release=release,
                  files=[shipped(f) for f in plan["files"]], meta=meta)
    if plan.get("imx500"):  # the AI Camera's network: packerOut.zip -> .rpk, on the device
        with journal.step("imx500", f"make the AI Camera's network.rpk from {plan['imx500']} "
                          "with imx500-package on the device (its sha256 into the release)"):
            record["imx500_rpk"] = link.call("imx500", "packaging the IMX500 network",
                                             release=release, artifact=plan["imx500"]).get("rpk")
    reused = any(v["key"] == key and v["complete"] for v in probe.get("venvs", []))
    what = (f"reuse the device's Python environment {key}" if reused else
            f"create the Python environment {key} on the device (pip install "
            f"{' '.join(plan['venv']['requirements'])}; minutes on a Pi)")
    with journal.step("venv", what):
        venv = link.call("venv", "preparing the Python environment", release=release, key=key,
                         **plan["venv"])
    record.update(venv=key, venv_reused=bool(venv.get("reused")),
                  venv_seconds=float(venv.get("seconds", 0)))
    with journal.step("smoke", f"smoke test: edgekit backends, then edgekit verify with "
                      f"{plan['backend']} on {samples} validation samples"):
        answer = link.call("smoke", "the smoke test", release=release, samples=samples,
                           **plan["smoke"])
    if not link.dry_run:
        record["smoke"] = answer
        problem = checks.smoke_problem(answer)
        if problem:
            raise link.error("smoke", f"the smoke test failed on the device: {problem}")


def shipped(f):
    """A shipped file as the agent takes it."""
    return {"path": f["path"], "sha256": f["sha256"], "size": f["size"]}


def unit_for(link, plan, probe):
    """The plan's unit text with the device's release folder in it."""
    base = str(probe.get("base") or f"/home/USER/{link.base}")
    if not PLAIN_PATH.match(base):
        raise link.error("plan", f"the device's release folder {base!r} has characters a "
                         "systemd unit would need quoted: choose a plainer releases' folder")
    return plan["unit"].replace(plan["unit_base"], base)


def _copy_failure(link, exc, need):
    """Why a copy failed, when the device can still say: over SFTP a full disk is only
    "Failure"."""
    if not link.lost(exc):
        return exc
    try:
        free = link.call("probe", "checking the device after the failed copy",
                         service_status=False)["free_bytes"]
    except Exception as again:  # noqa: BLE001 - the link is gone: the copy's own words stand
        if link.failed(again):
            return exc
        raise
    if free is not None and free < need:
        return link.error("copy", f"copying the release: the device's disk is full "
                          f"({checks.byte_size(free)} free, the copy needed "
                          f"{checks.byte_size(need)}; {exc})",
                          "disk_full")
    return exc


def abandoned(link, exc, release, probe):
    """The error to raise after a failed step: what happened, and what state the device is
    in. The incomplete release is removed if the device can still be reached."""
    if link.dry_run:
        return exc
    if release is None:  # staging failed: the agent removed its folder, unless the link died
        left = LEFTOVER if link.lost(exc) else "nothing was left over"
    else:
        try:
            link.call("cleanup", "removing the incomplete release", release=release)
            left = "the incomplete new release was removed"
        except Exception as again:  # noqa: BLE001
            if not link.failed(again):
                raise
            left = LEFTOVER
    if not link.failed(exc):
        return exc
    running = probe.get("current")
    state = (f"the running release ({running}) is untouched" if running else
             "nothing was running there before, and nothing is now")
    return link.amend(exc, f"{exc}. {state[0].upper()}{state[1:]}; {left}")


def rollback(link, journal, to=None, settle=10.0, lock_timeout=0.0):
    """Switch ``current`` back to the release before it (or ``to``), checked first; the
    service is restarted and watched like a deploy's, and switched back when it fails."""
    record = journal.record
    record.update(release="", current="", previous=None, service=None, error="",
                  error_kind="")
    with locked(link, journal, "rollback", lock_timeout):
        with journal.step("rollback", f"check the earlier release's files on {link.label}, "
                          f"then switch current to it (one rename), restart the service and "
                          f"watch it {settle:g} s"):
            done = link.call("rollback", "rolling back", settle=settle,
                             **({"to": to} if to else {}))
    if link.dry_run:
        return record
    record.update(previous=done.get("from"), release=done["to"],
                  current=done.get("current", done["to"]), service=done.get("service"))
    if checks.service_failed(done.get("service")):
        record["error"] = f"the service did not stay up with release {done['to']}"
        record["error_kind"] = "service"
    return record


def status(link, journal):
    """The device's releases, environments, free space, service and lock, as the agent
    reports (without the lock: it only reads); with the live view's URL when it serves one."""
    with journal.step("status", "read the device"):
        probe = link.call("probe", "reading the device's state")
    serve = probe.get("serve")
    if serve:
        serve["url"] = checks.live_view_url(link.address, serve["address"])
    journal.record["probe"] = probe
    return probe
