"""The release's virtual environment, shared between releases with the same requirements."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .files import (
    VENV_MARK,
    Failure,
    base_dir,
    incoming_dir,
    remove_tree,
    safe_relative,
    tail,
    write_file,
)
from .lock import require_lock


def run_logged(argv, log, env=None, timeout=None):
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, timeout=timeout)
    text = result.stdout.decode("utf-8", "replace")
    log.append("$ " + " ".join(argv) + "\n" + text)
    return result.returncode, text


def link_venv(release_dir, key):
    link = os.path.join(release_dir, "venv")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.join("..", "..", "venvs", key), link)


def make_venv(payload):
    require_lock(payload)
    base = base_dir(payload)
    key = payload["key"]
    release = incoming_dir(base, payload["release"])
    venv = os.path.join(base, "venvs", key)
    if os.path.isfile(os.path.join(venv, VENV_MARK)):
        link_venv(release, key)
        return {"reused": True, "key": key}
    started = time.time()
    remove_tree(venv)  # what an interrupted run left
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    log = []
    try:
        install_venv(payload, venv, release, log)
    except BaseException:
        save_log(base, key, log)
        remove_tree(venv)
        raise
    write_file(os.path.join(venv, VENV_MARK), json.dumps(
        {"key": key, "requirements": payload["requirements"], "edgekit": payload["wheel"],
         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    save_log(base, key, log)
    link_venv(release, key)
    return {"reused": False, "key": key, "seconds": round(time.time() - started, 1)}


def install_venv(payload, venv, release, log):
    create = [sys.executable, "-m", "venv"]
    if payload.get("system_site_packages"):
        create.append("--system-site-packages")
    steps = [("creating the environment", create + [venv])]
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    if payload.get("offline"):
        pip += ["--no-index", "--find-links", os.path.join(release, "wheels")]
    pip += list(payload.get("pip_options", []))
    if payload["requirements"]:
        steps.append(("pip install " + " ".join(payload["requirements"]),
                      pip + list(payload["requirements"])))
    steps.append(("installing edgekit", pip + ["--no-deps", os.path.join(
        release, safe_relative(payload["wheel"]))]))
    for what, argv in steps:
        code, text = run_logged(argv, log, timeout=payload.get("timeout"))
        if code != 0:
            full = "No space left on device" in text or "Errno 28" in text
            why = " (the disk is full)" if full else ""
            raise Failure(f"{what} failed on the device{why}: {tail(text)}",
                          code="disk_full" if full else "pip")


def save_log(base, key, log):
    try:
        os.makedirs(os.path.join(base, "logs"), exist_ok=True)
        with open(os.path.join(base, "logs", f"venv-{key}.log"), "w") as f:
            f.write("\n".join(log))
    except OSError:
        pass  # a full disk must not hide the real failure
