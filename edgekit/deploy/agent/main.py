"""The agent's entry: one command, one JSON line back, whatever happens."""
from __future__ import annotations

import errno
import json
import os
import traceback

from .env import serve_token, service_env
from .files import Failure
from .imx500 import imx500
from .releases import activate, cleanup, hold, preview, probe, rollback, stage, verify
from .smoke import smoke
from .venv import make_venv

COMMANDS = {"probe": probe, "preview": preview, "hold": hold, "stage": stage, "verify": verify,
            "venv": make_venv, "smoke": smoke, "activate": activate, "rollback": rollback,
            "serve_token": serve_token, "service_env": service_env, "cleanup": cleanup,
            "imx500": imx500}


def describe(exc):
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the device's disk is full: {exc.strerror}{where}", "disk_full"
    return f"{exc.strerror or exc}{where}", "os_error"


def read_payload(text):
    """The command's JSON object; Failure (not a traceback) when it is not one."""
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise Failure(f"the payload is not JSON ({exc}): a workstation and an agent of "
                      "different edgekit versions?", code="bad_payload") from None
    if not isinstance(payload, dict):
        raise Failure("the payload is not a JSON object", code="bad_payload")
    return payload


def unexpected(exc):
    """One line for an error the agent did not foresee: its type, message and where."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" (agent {os.path.basename(last.filename)} line {last.lineno}, in {last.name})"
    if isinstance(exc, KeyError):  # a payload without a field this command needs
        return f"the payload lacks {exc}{where}", "bad_payload"
    return f"the device agent failed: {type(exc).__name__}: {exc}{where}", "agent_error"


PRIVATE = {}  # secrets for the payload: the bootstrap on stdin sets them (shipping.py)


def main(argv):
    """Answer one JSON line whatever happens (only Ctrl-C or a kill ends it without one)."""
    if len(argv) != 3 or argv[1] not in COMMANDS:
        print(json.dumps({"ok": False, "error": "usage: agent COMMAND JSON",
                          "code": "bad_payload"}))
        return 2
    try:
        result = COMMANDS[argv[1]]({**read_payload(argv[2]), **PRIVATE})
        result["ok"] = True
    except Failure as exc:
        result = dict(exc.fields, ok=False, error=str(exc))
    except OSError as exc:
        message, code = describe(exc)
        result = {"ok": False, "error": message, "code": code}
    except Exception as exc:  # noqa: BLE001 - the workstation reads JSON, never a traceback
        message, code = unexpected(exc)
        result = {"ok": False, "error": message, "code": code}
    print(json.dumps(result))
    return 0
