"""edgekit's Ansible action: deploy, roll back or read one device with edgekit's device agent.

It runs on the Ansible controller, once per host, and drives the same agent as ``edgekit
deploy --host`` (``files/agent.py``, standard library only, sent on stdin with each call)
through the host's own Ansible SSH connection: the lock's session (held from the first step to
the last, with a heartbeat), then stage, copy what the device lacks (``put_file``), check every
sha256 on the device, the environment, the smoke test with the new release, and only then the
switch of ``current`` (one rename) with the health-checked service restart. A failure before the
switch removes the new release folder and leaves the running release untouched.

It needs ansible-core only (no edgekit on the controller): ``edgekit deploy --inventory`` runs
it, and so does a playbook written by ``edgekit deploy --emit-playbook DIR``. The plan (what
ships to each target, with every file's sha256) comes in ``plans``; the host's plan is
``plans[target]``. With ``results_dir`` set, each host's result is also written there as JSON,
and progress lines go to ``results_dir/events.jsonl``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import select
import shlex
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.action import ActionBase

BOOT = ("import sys;n=int(sys.argv.pop(1));"
        "exec(compile(sys.stdin.buffer.read(n),'edgekit-agent','exec'),{'__name__':'__main__'})")
HEARTBEAT_SECONDS = 5.0
PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._@+-]+$")
MODES = ("deploy", "rollback", "status")


class StepFailed(Exception):
    """A step that failed; ``kind``: "connection" (ssh's own stderr in ``stderr``) or "device"."""

    def __init__(self, step, message, kind="device", stderr=""):
        super().__init__(message)
        self.step = step
        self.kind = kind
        self.stderr = stderr


def load_agent(path):
    """The agent as a module (its plain functions make the checks) and its source bytes."""
    spec = importlib.util.spec_from_file_location("edgekit_device_agent", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(path, "rb") as f:
        return module, f.read()


def last_json(text):
    lines = text.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class Device:
    """The agent on one host, over the host's Ansible connection."""

    def __init__(self, action, python, base, source):
        self.action = action
        self.connection = action._connection
        self.python = python
        self.base = base
        self.source = source
        self.token = ""

    def call(self, command, step, **payload):
        payload = dict({"base": self.base, "unit": "edgekit.service"}, **payload)
        if self.token:
            payload["lock"] = self.token
        remote = shlex.join([self.python, "-", command,
                             json.dumps(payload, separators=(",", ":"))])
        try:
            done = self.action._low_level_execute_command(remote, sudoable=False,
                                                          in_data=self.source)
        except AnsibleConnectionFailure as exc:
            raise StepFailed(step, f"{step}: {exc}", "connection", str(exc)) from None
        if done["rc"] == 255:
            raise StepFailed(step, f"{step}: {done['stderr'].strip()}", "connection",
                             done["stderr"])
        answer = last_json(done["stdout"])
        if answer is None:
            err = done["stderr"].strip()
            last = err.splitlines()[-1] if err else f"exit status {done['rc']}"
            if done["rc"] == 127 or "not found" in err:
                why = (f"the device has no {self.python} ({last}): install Python 3 there, or "
                       "set edgekit_python for this host")
            else:
                why = f"the device agent gave no answer ({last})"
            raise StepFailed(step, f"{step}: {why}")
        if not answer.get("ok"):
            kind = "disk_full" if answer.get("code") == "disk_full" else "device"
            raise StepFailed(step, f"{step}: {answer.get('error', 'failed')}", kind)
        return answer

    def put(self, local, remote, step):
        try:
            self.connection.put_file(local, remote)
        except AnsibleError as exc:
            raise StepFailed(step, f"{step}: {exc}", "connection", str(exc)) from None

    def ssh_argv(self, remote):
        """The connection's own ssh command line (its options, multiplexing and host keys) for
        a session that lives beside the others: the lock's."""
        connection = self.connection
        if not hasattr(connection, "_build_command"):
            raise StepFailed("lock", f"edgekit needs the ssh connection; this host uses "
                             f"{connection.transport}: set ansible_connection=ssh")
        host = connection.get_option("host") or self.action._play_context.remote_addr
        argv = connection._build_command(connection.get_option("ssh_executable"), "ssh",
                                         host, remote)
        return [a.decode() if isinstance(a, bytes) else a for a in argv]

    @contextmanager
    def lock(self, what, wait, timeout):
        """Hold the device's lock (the agent's ``hold``) for the ``with`` block."""
        token = secrets.token_hex(8)
        owner = {"what": what, "workstation": socket.gethostname(),
                 "workstation_pid": os.getpid(), "user": os.environ.get("USER", "")}
        payload = {"base": self.base, "token": token, "wait": wait, "owner": owner,
                   "stale_after": max(60.0, 3 * timeout)}
        remote = shlex.join([self.python, "-c", BOOT, str(len(self.source)), "hold",
                             json.dumps(payload, separators=(",", ":"))])
        session = subprocess.Popen(self.ssh_argv(remote), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            try:
                session.stdin.write(self.source)
                session.stdin.flush()
            except BrokenPipeError:
                pass
            line = read_line(session, wait + timeout + 30)
            answer = last_json(line.decode(errors="replace"))
            if answer is None:
                close(session)
                stderr = session.stderr.read().decode(errors="replace")
                if session.returncode == 255:
                    raise StepFailed("lock", f"taking the device's deploy lock: "
                                     f"{stderr.strip()}", "connection", stderr)
                raise StepFailed("lock", "taking the device's deploy lock: the device agent "
                                 f"gave no answer ({stderr.strip() or session.returncode})")
            if not answer.get("ok"):
                raise StepFailed("lock", answer.get("error", "failed"),
                                 "locked" if answer.get("code") == "locked" else "device")
            stop = threading.Event()
            beat = threading.Thread(target=heartbeat, args=(session, stop), daemon=True)
            beat.start()
            self.token = token
            try:
                yield answer
            finally:
                self.token = ""
                stop.set()
                beat.join()
        finally:
            close(session)


def read_line(session, timeout):
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


def heartbeat(session, stop):
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            session.stdin.write(b"\n")
            session.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return


def close(session, timeout=30):
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


class ActionModule(ActionBase):
    """``edgekit_release: mode=deploy|rollback|status`` (see the role's tasks/main.yml)."""

    TRANSFERS_FILES = False  # no remote temporary folder: the agent stages its own files
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        args = dict(self._task.args)
        task_vars = task_vars or {}
        self.host_name = str(task_vars.get("inventory_hostname", "?"))
        self.results_dir = str(args.get("results_dir") or "")
        mode = str(args.get("mode", "deploy"))
        self.record = {"host": self.host_name, "mode": mode, "status": "failed", "step": "",
                       "error": "", "error_kind": "", "stderr": "", "notes": [],
                       "address": self.address(), "seconds": {}}
        self.shown = ""  # a line for the person running the playbook (the live view's URL)
        started = time.monotonic()
        try:
            if mode not in MODES:
                raise StepFailed("arguments", f"mode must be one of {', '.join(MODES)}")
            agent, source = load_agent(self._find_needle("files", "agent.py"))
            device = Device(self, str(args.get("python") or "python3"),
                            str(args.get("remote_dir") or "edgekit"), source)
            getattr(self, mode)(agent, device, args)
            self.record["status"] = "failed" if self.record["error"] else "ok"
        except StepFailed as exc:
            self.record.update(step=self.record["step"] or exc.step, error=str(exc),
                               error_kind=exc.kind,
                               stderr=exc.stderr)
        finally:
            self.record["seconds"]["total"] = round(time.monotonic() - started, 2)
            self.save()
        failed = self.record["status"] != "ok"
        result = {"failed": failed, "changed": mode != "status" and not failed,
                  "msg": self.record["error"] or f"edgekit {mode}: ok", "edgekit": self.record}
        live = self.record.get("live_view")
        if self.results_dir and live and live.get("url_with_token"):
            # edgekit deploy --inventory shows it from the results file: the token stays out of
            # Ansible's output (and so out of its log)
            result["edgekit"] = dict(self.record, live_view=dict(live, url_with_token=None))
        elif not self.results_dir and self.shown:
            result["edgekit_show"] = self.shown  # the role's next task shows it (the playbook)
        return result

    # --- the three modes --------------------------------------------------------------------

    def deploy(self, agent, device, args):
        plans = args.get("plans") or {}
        target = str(args.get("target") or "")
        if target not in plans:
            raise StepFailed("plan", f"no plan for target {target!r} (edgekit_target of this "
                             f"host); this playbook has plans for {', '.join(sorted(plans))}: "
                             "set edgekit_target to one of them, or write the playbook again "
                             "with the target (edgekit deploy --emit-playbook)")
        plan = plans[target]
        record = self.record
        record.update(target=plan["target"]["name"], model=plan["model"],
                      formats=plan["formats"], files=len(plan["files"]),
                      bytes_total=sum(f["size"] for f in plan["files"]), release="",
                      current="", previous=None, files_copied=0, bytes_copied=0,
                      files_reused=0, venv="", venv_reused=False, venv_seconds=0.0,
                      smoke=None, service=None, live_view=None, pruned=[],
                      notes=list(plan.get("notes", [])))
        wait, timeout = float(args.get("lock_timeout") or 0), float(args.get("timeout") or 60)
        what = f"deploy of {plan['model']} (target {plan['target']['name']})"
        with self.locked(device, what, wait, timeout, "; check the device") as probe:
            self.deploy_locked(agent, device, plan, probe, args)

    def deploy_locked(self, agent, device, plan, probe, args):
        record, target = self.record, plan["target"]
        record["running"] = probe.get("current")
        record.update(python=".".join(map(str, probe["python"])), platform=probe["platform"])
        problem = agent.device_mismatch(probe, self.host_name, device.python, target["name"],
                                        target["arch"], target["python"],
                                        plan["requires_python"],
                                        "set edgekit_python (a host variable)")
        if problem:
            record["step"] = "check"
            raise StepFailed("check", problem)
        key = agent.venv_key(probe.get("executable", device.python),
                             tuple(probe.get("python", ())), plan["venv_inputs"])
        release = None
        try:
            with self.step("stage", "stage a new release folder"):
                staged = device.call("stage", "staging the release",
                                     content_hash=plan["content_hash"],
                                     files=[self.shipped(f) for f in plan["files"]])
            release = record["release"] = staged["release"]
            missing = [f for f in plan["files"] if f["path"] in set(staged["missing"])]
            record["files_copied"] = len(missing)
            record["bytes_copied"] = sum(f["size"] for f in missing)
            record["files_reused"] = len(staged["linked"])
            with self.step("copy", f"copy {len(missing)} files the device lacks"):
                self.copy(device, missing, staged["incoming"], record["bytes_copied"])
            meta = dict(plan["meta"], venv=key)
            if plan.get("unit"):
                meta["service"] = {"unit": self.unit(plan, probe)}
            with self.step("verify", "check every sha256 on the device"):
                device.call("verify", "checking the files on the device", release=release,
                            files=[self.shipped(f) for f in plan["files"]], meta=meta)
            with self.step("venv", f"the Python environment {key}"):
                venv = device.call("venv", "preparing the Python environment",
                                   release=release, key=key, **plan["venv"])
            record.update(venv=key, venv_reused=bool(venv.get("reused")),
                          venv_seconds=float(venv.get("seconds", 0)))
            with self.step("smoke", "smoke test with the new release"):
                smoke = device.call("smoke", "the smoke test", release=release,
                                    samples=int(args.get("samples", 10)), **plan["smoke"])
            record["smoke"] = smoke
            failure = agent.smoke_problem(smoke)
            if failure:
                raise StepFailed("smoke", f"the smoke test failed on the device: {failure}")
        except BaseException as exc:
            self.abandon(exc, device, release, probe)
            raise
        if plan.get("unit") and plan.get("serve"):  # the token first: the unit reads it at start
            with self.step("serve_token", f"the live view's token ({plan['serve']}): made on "
                           "the device once, kept in the unit's environment file (mode 0600)"):
                answer = device.call("serve_token", "making the live view's token")
            live = agent.live_view(self.record["address"]["host"], plan["serve"], answer)
            record["live_view"] = live
            self.shown = f"live view: {agent.live_view_text(live)}"
        settle = float(args.get("settle") if args.get("settle") is not None else 10)
        with self.step("activate", "switch current; restart and watch the service"):
            done = device.call("activate", "switching current", release=release,
                               keep=int(args.get("keep") or 3), settle=settle)
        record.update(previous=done.get("previous"), pruned=done.get("pruned", []),
                      current=done.get("current", release), service=done.get("service"))
        if agent.service_failed(record["service"]):
            record["error"] = f"the service did not stay up with release {release}"
            record["error_kind"] = "service"

    def rollback(self, agent, device, args):
        wait, timeout = float(args.get("lock_timeout") or 0), float(args.get("timeout") or 60)
        settle = float(args.get("settle") if args.get("settle") is not None else 10)
        to = args.get("to") or None
        with self.locked(device, "rollback", wait, timeout, ""):
            with self.step("rollback", "switch current back; restart and watch the service"):
                done = device.call("rollback", "rolling back", settle=settle,
                                   **({"to": to} if to else {}))
        self.record.update(previous=done.get("from"), release=done["to"],
                           current=done.get("current", done["to"]), service=done.get("service"))
        if agent.service_failed(done.get("service")):
            self.record["error"] = f"the service did not stay up with release {done['to']}"
            self.record["error_kind"] = "service"

    def status(self, agent, device, args):
        with self.step("status", "read the device"):
            probe = device.call("probe", "reading the device's state")
        serve = probe.get("serve")
        if serve:
            serve["url"] = agent.live_view_url(self.record["address"]["host"], serve["address"])
            self.shown = f"live view: {agent.serve_status_text(serve)}"
        self.record["probe"] = probe

    # --- pieces ---------------------------------------------------------------------------

    @contextmanager
    def locked(self, device, what, wait, timeout, more):
        """The device's lock held for the block (its taking timed as the "lock" step); yields
        the device as the lock found it."""
        self.record["step"] = "lock"
        self.event("lock", "take the device's deploy lock" + more)
        started = time.monotonic()
        with device.lock(what, wait, timeout) as answer:
            self.record["seconds"]["lock"] = round(time.monotonic() - started, 2)
            self.taken_over(answer)
            yield answer["probe"]

    @contextmanager
    def step(self, name, title):
        self.record["step"] = name
        self.event(name, title)
        started = time.monotonic()
        yield
        self.record["seconds"][name] = round(time.monotonic() - started, 2)

    def shipped(self, f):
        return {"path": f["path"], "sha256": f["sha256"], "size": f["size"]}

    def local(self, path):
        return path if os.path.isabs(path) else os.path.join(self._loader.get_basedir(), path)

    def copy(self, device, missing, incoming, need):
        for f in missing:
            try:
                device.put(self.local(f["local"]), f"{incoming}/{f['path']}",
                           "copying the release")
            except StepFailed as exc:
                try:
                    free = device.call("probe", "checking the device after the failed copy",
                                       service_status=False)["free_bytes"]
                except StepFailed:
                    raise exc from None
                if free is not None and free < need:
                    raise StepFailed("copy", f"copying the release: the device's disk is full "
                                     f"({free} bytes free, the copy needed {need})",
                                     "disk_full") from None
                raise

    def unit(self, plan, probe):
        """The plan's unit text with the device's release folder in it."""
        base = str(probe.get("base") or "")
        if not PLAIN_PATH.match(base):
            raise StepFailed("plan", f"the device's release folder {base!r} has characters a "
                             "systemd unit would need quoted: choose a plainer edgekit_remote_dir")
        return plan["unit"].replace(plan["unit_base"], base)

    def abandon(self, exc, device, release, probe):
        """After a failed step: remove the incomplete release, and say what state the device
        is in (in the error)."""
        if not isinstance(exc, StepFailed):
            return
        leftover = ("the incomplete release folder (releases/.incoming-*) is never used, and "
                    "the next deploy removes it")
        if release is None:
            left = leftover if exc.kind == "connection" else "nothing was left over"
        else:
            try:
                device.call("cleanup", "removing the incomplete release", release=release)
                left = "the incomplete new release was removed"
            except StepFailed:
                left = leftover
        running = probe.get("current")
        state = (f"The running release ({running}) is untouched" if running else
                 "Nothing was running there before, and nothing is now")
        exc.args = (f"{exc}. {state}; {left}",)

    def taken_over(self, answer):
        left = answer.get("taken_over")
        if left:
            self.record["notes"].append(
                f"took over the device's lock from {left.get('what', 'a deploy')} from "
                f"{left.get('workstation', '?')} (started {left.get('since', '?')}), which "
                "ended without releasing it")

    def address(self):
        connection = self._connection
        options = {}
        for name in ("host", "remote_user", "port", "private_key_file"):
            try:
                options[name] = connection.get_option(name)
            except (AnsibleError, KeyError):
                options[name] = None
        options["host"] = options["host"] or self._play_context.remote_addr
        return options

    def event(self, step, title):
        if not self.results_dir:
            return
        line = json.dumps({"host": self.host_name, "step": step, "title": title}) + "\n"
        fd = os.open(os.path.join(self.results_dir, "events.jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def save(self):
        if not self.results_dir:
            return
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.host_name)
        path = os.path.join(self.results_dir, f"host-{name}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.record, f, default=str)
        os.replace(path + ".tmp", path)
