"""edgekit's Ansible action: deploy, roll back or read one device with edgekit's device agent.

It runs on the Ansible controller, once per host: connection glue only. The steps are
edgekit's own (``files/steps.py``, the same module ``edgekit deploy --host`` drives), run over
this host's Ansible SSH connection: agent commands through ``_low_level_execute_command``
(``files/agent.py``, standard library only, sent on stdin with each call), files through
``put_file``, and the lock's session beside them (the connection's own ssh command line, with
a heartbeat). A failure before the switch removes the new release folder and leaves the
running release untouched.

It needs ansible-core only (no edgekit on the controller): ``edgekit deploy --inventory`` runs
it, and so does a playbook written by ``edgekit playbook``. The plan (what ships to each
target, with every file's sha256) comes in ``plans``; the host's plan is ``plans[target]``.
With ``results_dir`` set, each host's result is also written there as JSON, and progress
lines go to ``results_dir/events.jsonl``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.action import ActionBase

MODES = ("deploy", "rollback", "status")


def load_module(path, name):
    """One of the role's files (edgekit's steps) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_json(text):
    lines = text.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def ansible_link(steps, action, python, base, source, timeout):
    """The steps' link over the host's Ansible connection (``steps``: the module, loaded from
    the role's files, so the class is made here)."""

    class AnsibleLink(steps.Link):
        python_hint = "set edgekit_python (a host variable)"  # in place of --release python=

        def __init__(self):
            self.python, self.base, self.source, self.token = python, base, source, ""
            self.connection = action._connection
            self.label = action.host_name
            self.address = action.record["address"]["host"]

        def call(self, command, step, **payload):
            # secrets (``private``) ride in the agent's source on stdin, never on argv
            source = steps.private_source(self.source, payload.pop("private", None))
            payload = dict({"base": self.base, "unit": steps.UNIT_NAME}, **payload)
            if self.token:
                payload["lock"] = self.token
            remote = shlex.join([self.python, "-", command,
                                 json.dumps(payload, separators=(",", ":"))])
            try:
                done = action._low_level_execute_command(remote, sudoable=False,
                                                         in_data=source)
            except AnsibleConnectionFailure as exc:
                raise steps.StepFailed(step, f"{step}: {exc}", "connection", str(exc)) from None
            if done["rc"] == 255:
                raise steps.StepFailed(step, f"{step}: {done['stderr'].strip()}", "connection",
                                       done["stderr"])
            answer = last_json(done["stdout"])
            if answer is None:
                err = done["stderr"].strip()
                last = err.splitlines()[-1] if err else f"exit status {done['rc']}"
                if done["rc"] == 127 or "not found" in err:
                    why = (f"the device has no {self.python} ({last}): install Python 3 there, "
                           "or set edgekit_python for this host")
                else:
                    why = f"the device agent gave no answer ({last})"
                raise steps.StepFailed(step, f"{step}: {why}")
            if not answer.get("ok"):
                kind = "disk_full" if answer.get("code") == "disk_full" else "device"
                raise steps.StepFailed(step, f"{step}: {answer.get('error', 'failed')}", kind)
            return answer

        def send(self, files, incoming, step):
            for local, path in files:
                try:
                    self.connection.put_file(action.local(local), f"{incoming}/{path}")
                except AnsibleError as exc:
                    raise steps.StepFailed(step, f"{step}: {exc}", "connection",
                                           str(exc)) from None

        @contextmanager
        def lock(self, what, wait):
            if not hasattr(self.connection, "_build_command"):
                raise steps.StepFailed("lock", "edgekit needs the ssh connection; this host uses "
                                       f"{self.connection.transport}: set ansible_connection=ssh")
            token = secrets.token_hex(8)
            owner = {"what": what, "workstation": socket.gethostname(),
                     "workstation_pid": os.getpid(), "user": os.environ.get("USER", "")}
            payload = {"base": self.base, "token": token, "wait": wait, "owner": owner,
                       "stale_after": max(60.0, 3 * timeout)}
            remote = shlex.join([self.python, "-c", steps.BOOT, str(len(self.source)), "hold",
                                 json.dumps(payload, separators=(",", ":"))])
            session = subprocess.Popen(action.ssh_argv(remote), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            with steps.holding(self, session, token, lambda: first_answer(
                    steps, session, self.source, wait + timeout + 30)) as answer:
                yield answer

    return AnsibleLink()


def first_answer(steps, session, source, timeout):
    """Send the agent to the lock's session and read the hold's one line."""
    try:
        session.stdin.write(source)
        session.stdin.flush()
    except BrokenPipeError:
        pass
    answer = last_json(steps.read_line(session, timeout).decode(errors="replace"))
    if answer is None:
        steps.close(session)
        stderr = session.stderr.read().decode(errors="replace")
        if session.returncode == 255:
            raise steps.StepFailed("lock", f"taking the device's deploy lock: {stderr.strip()}",
                                   "connection", stderr)
        raise steps.StepFailed("lock", "taking the device's deploy lock: the device agent "
                               f"gave no answer ({stderr.strip() or session.returncode})")
    if not answer.get("ok"):
        raise steps.StepFailed("lock", answer.get("error", "failed"),
                               "locked" if answer.get("code") == "locked" else "device")
    return answer


def read_secrets(steps, path, target):
    """The target's service secrets ({VARIABLE: value}) from the secrets file edgekit deploy
    --inventory writes (mode 0600, in its run folder, removed after the run)."""
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError) as exc:
        raise steps.StepFailed("plan", f"cannot read the service's secrets file {path} "
                               f"({getattr(exc, 'strerror', None) or exc})") from None
    mine = found.get(target) if isinstance(found, dict) else None
    return {str(k): str(v) for k, v in mine.items()} if isinstance(mine, dict) else {}


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
        steps = None
        try:
            self.checks = sys.modules.setdefault("edgekit_deploy_checks", load_module(
                self._find_needle("files", "checks.py"), "edgekit_deploy_checks"))
            steps = load_module(self._find_needle("files", "steps.py"), "edgekit_deploy_steps")
            if mode not in MODES:
                raise steps.StepFailed("arguments", f"mode must be one of {', '.join(MODES)}")
            with open(self._find_needle("files", "agent.py"), "rb") as f:
                source = f.read()
            link = ansible_link(steps, self, str(args.get("python") or "python3"),
                                str(args.get("remote_dir") or "edgekit"), source,
                                float(args.get("timeout") or 60))
            journal = steps.Journal(self.record, self.event)
            getattr(self, mode)(steps, link, journal, args)
            self.record["status"] = "failed" if self.record["error"] else "ok"
        except Exception as exc:  # noqa: BLE001 - a step's failure, as the record says it
            if steps is None or not isinstance(exc, steps.StepFailed):
                raise
            self.record.update(step=self.record["step"] or exc.step, error=str(exc),
                               error_kind=exc.kind, stderr=exc.stderr)
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

    # --- the three modes: edgekit's steps, with Ansible's arguments ------------------------

    def deploy(self, steps, link, journal, args):
        plans = args.get("plans") or {}
        target = str(args.get("target") or "")
        if target not in plans:
            raise steps.StepFailed(
                "plan", f"no plan for target {target!r} (edgekit_target of this host); this "
                f"playbook has plans for {', '.join(sorted(plans))}: set edgekit_target to one "
                "of them, or write the playbook again with the target (edgekit playbook)")
        settle = float(args.get("settle") if args.get("settle") is not None else 10)
        plan = plans[target]
        if plan.get("unit") and args.get("secrets_file"):  # the service's secrets: into
            # service.env on the agent's stdin; never in the plan, the playbook or the record
            plan = dict(plan, events_env=read_secrets(steps, str(args["secrets_file"]), target))
        steps.deploy(link, plan, journal, samples=int(args.get("samples", 10)),
                     keep=int(args.get("keep") or 3), settle=settle,
                     lock_timeout=float(args.get("lock_timeout") or 0))
        live = self.record.get("live_view")
        if live:
            self.shown = f"live view: {self.checks.live_view_text(live)}"

    def rollback(self, steps, link, journal, args):
        settle = float(args.get("settle") if args.get("settle") is not None else 10)
        steps.rollback(link, journal, to=args.get("to") or None, settle=settle,
                       lock_timeout=float(args.get("lock_timeout") or 0))

    def status(self, steps, link, journal, args):
        serve = steps.status(link, journal).get("serve")
        if serve:
            self.shown = f"live view: {self.checks.serve_status_text(serve)}"

    # --- the connection ---------------------------------------------------------------------

    def ssh_argv(self, remote):
        """The connection's own ssh command line (its options, multiplexing and host keys) for
        a session that lives beside the others: the lock's."""
        connection = self._connection
        host = connection.get_option("host") or self._play_context.remote_addr
        argv = connection._build_command(connection.get_option("ssh_executable"), "ssh",
                                         host, remote)
        return [a.decode() if isinstance(a, bytes) else a for a in argv]

    def local(self, path):
        return path if os.path.isabs(path) else os.path.join(self._loader.get_basedir(), path)

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
        """A progress line for edgekit deploy --inventory (events.jsonl)."""
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
