"""The user service under systemd: start it, watch it settle, say why it went down."""
from __future__ import annotations

import json
import os
import time

from .files import read_release, releases_dir, run_text, tail, unit_path, write_file
from .lock import lock_holder

JOURNAL_LINES = 12  # of a failing service, in the report


def systemctl(*args):
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return run_text(["systemctl", "--user"] + list(args), env=env)


SHOWN = ("ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus", "ExecMainCode",
         "ActiveEnterTimestamp", "ActiveEnterTimestampMonotonic", "UnitFileState")


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def user_name():
    return os.environ.get("USER") or os.environ.get("LOGNAME") or ""


def unit_state(name):
    """The unit's state as ``systemctl --user show`` reports it (numbers as int)."""
    code, text = systemctl("show", name, "--property=" + ",".join(SHOWN))
    if code != 0:
        return {"ActiveState": "unknown", "SubState": "", "error": tail(text, 2)}
    state = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    for key in ("NRestarts", "ExecMainStatus", "ExecMainCode", "ActiveEnterTimestampMonotonic"):
        try:
            state[key] = int(state.get(key) or 0)
        except ValueError:
            state[key] = 0
    return state


def running(state):
    return state.get("ActiveState") == "active" and state.get("SubState") == "running"


def went_down(state, restarts):
    return (state.get("ActiveState") in ("failed", "inactive", "unknown")
            or state.get("SubState") == "auto-restart" or state.get("NRestarts", 0) > restarts)


def exit_text(state):
    status = state.get("ExecMainStatus", 0)
    if state.get("ExecMainCode") in (2, 3):  # CLD_KILLED, CLD_DUMPED
        return f"it was killed by signal {status}"
    return f"it exited with status {status}"


def why_down(state, restarts, seconds):
    """Why a service did not stay up, in words."""
    if state.get("error"):
        return f"systemctl cannot read it: {state['error']}"
    restarted = state.get("NRestarts", 0) - restarts
    if state.get("Result") == "start-limit-hit":
        return "systemd stopped restarting it: it failed too often in a row (start limit)"
    if state.get("ActiveState") == "failed":
        return f"it failed: {exit_text(state)}"
    if state.get("ActiveState") == "inactive":
        return (f"{exit_text(state)} and stopped: the loop ended (a video file ends: give the "
                "service a camera, or a file it plays with --capture repeat=on)")
    if state.get("SubState") == "auto-restart":
        return f"{exit_text(state)} and systemd is about to restart it"
    return f"it restarted {restarted} time(s) within {seconds:.0f} s ({exit_text(state)})"


def journal_tail(name, since):
    """The unit's last journal lines since ``since`` (epoch seconds): what its program said,
    and what systemd said about it, each line led by who said it."""
    argv = ["journalctl", "--user", "--unit", name, "--since", f"@{int(since)}", "--no-pager",
            "--output", "json", "--lines", str(JOURNAL_LINES)]
    lines = []
    for _ in range(10):  # journald may take a moment to write what the program said
        code, text = run_text(argv)
        if code != 0:
            return [f"(journalctl gave no lines: {tail(text, 2)})"]
        lines, program = [], False
        for raw in text.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            message = entry.get("MESSAGE", "")
            if isinstance(message, list):  # bytes that are not UTF-8
                message = bytes(message).decode("utf-8", "replace")
            who = entry.get("SYSLOG_IDENTIFIER", "?")
            program = program or who != "systemd"
            lines.append(f"{who}: {message}")
        if program:
            break
        time.sleep(0.3)
    return lines or ["(no journal lines: is the user's journal readable here?)"]


def watch(name, settle, since):
    """Watch the unit for ``settle`` seconds: healthy when it is still running, never restarted."""
    started = time.time()
    state = unit_state(name)
    restarts = state.get("NRestarts", 0)
    while not went_down(state, restarts) and time.time() - started < settle:
        time.sleep(0.5)
        state = unit_state(name)
    seconds = time.time() - started
    healthy = running(state) and state.get("NRestarts", 0) == restarts
    check = {"healthy": healthy, "seconds": round(seconds, 1), "settle": settle,
             "active": state.get("ActiveState"), "sub": state.get("SubState"),
             "since": state.get("ActiveEnterTimestamp", ""),
             "restarts": state.get("NRestarts", 0) - restarts,
             "exit_status": state.get("ExecMainStatus", 0), "why": "", "journal": []}
    if not healthy:
        check["why"] = why_down(state, restarts, seconds)
        check["journal"] = journal_tail(name, since)
        errors = [line.split(": error: ", 1)[1] for line in check["journal"]
                  if ": error: " in line]
        if errors:
            check["why"] += f"; its last error: {errors[-1]}"
    return check


def linger(user):
    """Whether lingering is on for ``user`` (logind's answer; its file where logind cannot say)."""
    code, text = run_text(["loginctl", "show-user", user, "--property=Linger", "--value"])
    if code == 0 and text in ("yes", "no"):
        return text == "yes"
    return os.path.exists(os.path.join("/var/lib/systemd/linger", user))


def sessions(user, excluded=()):
    """``user``'s open logind sessions other than ``excluded``; None where logind cannot say."""
    code, text = run_text(["loginctl", "show-user", user, "--property=Sessions", "--value"])
    if code != 0:
        return None
    found = []
    for session in text.split():
        state = run_text(["loginctl", "show-session", session, "--property=State", "--value"])
        if session not in excluded and state[1] in ("active", "online"):  # not "closing"
            found.append(session)
    return found


def linger_report(enable, excluded):
    """Lingering for the user (turned on first when asked and polkit allows it), and the
    user's sessions other than ``excluded`` (this deploy's own)."""
    user = user_name()
    if not user or not systemd_running():
        return {"user": user, "linger": None}
    was = linger(user)
    if not was and enable:
        run_text(["loginctl", "enable-linger", user])  # needs root, or polkit's leave
    now = linger(user)
    return {"user": user, "linger": now, "linger_turned_on": now and not was,
            "other_sessions": sessions(user, excluded)}


def start_service(base, release, payload, restore=False, before=None):
    """Install the release's unit (if it has one), restart the service, and watch it.

    ``restore`` (a switch back): a release without a unit of its own gets ``before``, the unit
    installed before the switch; none there: the service is stopped and removed again.
    None when there is no service (no unit installed, none in the release)."""
    name = payload.get("unit", "edgekit.service")
    path = unit_path(name)
    text = ((read_release(os.path.join(releases_dir(base), release)) or {}).get("service")
            or {}).get("unit")
    if text is None and restore:
        if before is None:
            return remove_service(name, path, release) if os.path.isfile(path) else None
        text = before
    if text is None and not os.path.isfile(path):
        return None
    result = {"unit": path, "release": release, "installed": text is not None,
              "systemd": systemd_running(), "check": None, "messages": [], "user": user_name()}
    if text is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, text)
    if not result["systemd"]:
        return result
    if text is None:  # installed by an earlier deploy: restarted only if it runs
        state = systemctl("is-active", name)[1]
        if state in ("inactive", "failed", "deactivating"):
            result["left_stopped"] = True
            return result
        if state not in ("active", "activating", "reloading"):
            result["messages"].append(f"systemctl --user is-active {name}: {tail(state, 2)}")
            return result
    steps = [("daemon-reload",), ("enable", name)] if text is not None else []
    for args in steps + [("reset-failed", name)]:
        code, out = systemctl(*args)
        if code != 0 and args[0] != "reset-failed":
            result["messages"].append(f"systemctl --user {' '.join(args)}: {tail(out, 2)}")
            return result
    since = time.time()
    code, out = systemctl("restart", name)
    result["check"] = check = watch(name, float(payload.get("settle", 10)), since)
    if code != 0 and not check["healthy"]:
        check["why"] = f"systemctl --user restart {name} failed ({tail(out, 2)}); {check['why']}"
    ours = (os.environ.get("XDG_SESSION_ID", ""), (lock_holder(base) or {}).get("session", ""))
    result.update(linger_report(text is not None, ours))
    # Still running once this deploy's sessions end: lingering, or another login of the user.
    result["runs_after_deploy"] = result["check"]["healthy"] and bool(
        result.get("linger") or result.get("other_sessions"))
    return result


def remove_service(name, path, release):
    """Stop, disable and remove the unit: what a switch back to a release before any service
    restores."""
    result = {"unit": path, "release": release, "removed": True, "systemd": systemd_running(),
              "check": None, "messages": [], "user": user_name()}
    if result["systemd"]:
        systemctl("disable", "--now", name)
    os.unlink(path)
    if result["systemd"]:
        systemctl("daemon-reload")
    return result


def service_status(payload):
    """The installed service now: running or not, since when, restarts, lingering."""
    name = payload.get("unit", "edgekit.service")
    if not systemd_running():
        return {"systemd": False}
    state = unit_state(name)
    result = {"systemd": True, "active": state.get("ActiveState"), "sub": state.get("SubState"),
              "since": state.get("ActiveEnterTimestamp", ""),
              "restarts": state.get("NRestarts", 0), "exit_status": state.get("ExecMainStatus"),
              "enabled": state.get("UnitFileState", ""), "result": state.get("Result", "")}
    session = os.environ.get("XDG_SESSION_ID", "")
    result.update(linger_report(False, (session,)))
    # Without lingering, this very login may have started the user's systemd (and the
    # service with it): then it was not running before, and stops again after this check.
    _, manager = systemctl("show", "--property=UserspaceTimestampMonotonic", "--value")
    login = run_text(["loginctl", "show-session", session, "--property=TimestampMonotonic",
                      "--value"])[1] if session else ""
    try:
        result["started_by_this_login"] = int(manager) >= int(login) > 0
    except ValueError:
        result["started_by_this_login"] = None
    return result
