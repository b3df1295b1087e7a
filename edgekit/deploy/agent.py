"""edgekit's device agent: the device side of ``edgekit deploy``.

The workstation never copies this file: each step runs ``python3 - COMMAND 'JSON'`` over ssh
with this source on stdin, and reads one JSON object back from stdout. It uses the standard
library only and runs on Python 3.7+ (so that a device with an old Python still gets a clear
answer). Layout it keeps under BASE (default ``~/edgekit``)::

    releases/20250101T120000Z-1a2b3c4d/   one folder per deploy, read-only files once checked
        bundle/  edgekit.json  validation.npz  the artifacts for this target
        wheels/  edgekit-*.whl  (+ the runtime's wheels with --offline)
        venv ->  ../../venvs/<key>
        release.json                      written last: what was checked (a complete release)
    releases/.incoming-<id>/              a deploy in progress; never used, removed when stale
    venvs/<key>/                          one per requirement set + edgekit wheel, shared
    current -> releases/<id>              switched with one rename(2)
"""
from __future__ import annotations

import calendar
import errno
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import sysconfig
import time

INCOMING = ".incoming-"
RELEASE_FILE = "release.json"
VENV_MARK = ".edgekit-venv.json"
UNIT_DIR = os.path.join(".config", "systemd", "user")
MARGIN = 1 << 20  # bytes kept free beyond what the copy needs


class Failure(Exception):
    """A step that cannot go on; ``fields`` travel with the message."""

    def __init__(self, message, **fields):
        super().__init__(message)
        self.fields = fields


# --- paths --------------------------------------------------------------------------------------

def home():
    return os.path.expanduser("~")


def base_dir(payload):
    return os.path.join(home(), payload.get("base", "edgekit"))


def releases_dir(base):
    return os.path.join(base, "releases")


def for_scp(path):
    """A path as scp should name it: relative to the login folder when it lies inside it."""
    rel = os.path.relpath(path, home())
    return path if rel.startswith("..") else rel


def safe_relative(path):
    parts = path.split("/")
    if path.startswith("/") or not path or any(p in ("", ".", "..") for p in parts):
        raise Failure(f"refusing the file name {path!r}: not a plain relative path")
    return os.path.join(*parts)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def remove_tree(path):
    """rmtree that also removes read-only files and a dangling link."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.exists(path):
        return

    def retry(func, target, _info):
        os.chmod(os.path.dirname(target), 0o755)
        func(target)

    shutil.rmtree(path, onerror=retry)


# --- what is there ------------------------------------------------------------------------------

def read_release(path):
    try:
        with open(os.path.join(path, RELEASE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def current_id(base):
    link = os.path.join(base, "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link).rstrip("/"))


def list_releases(base):
    folder = releases_dir(base)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    current = current_id(base)
    found = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        info = read_release(path) or {}
        found.append({
            "id": name, "complete": bool(info), "current": name == current,
            "created": info.get("created", ""), "target": info.get("target", ""),
            "bundle": info.get("bundle", ""), "formats": info.get("formats", []),
            "venv": info.get("venv", ""), "edgekit": info.get("edgekit", ""),
            "bytes": sum(f["size"] for f in info.get("files", [])),
        })
    return found


def list_venvs(base):
    folder = os.path.join(base, "venvs")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [{"key": n, "complete": os.path.isfile(os.path.join(folder, n, VENV_MARK))}
            for n in names if os.path.isdir(os.path.join(folder, n))]


def unit_path(name):
    return os.path.join(home(), UNIT_DIR, name)


def probe(payload):
    base = base_dir(payload)
    folder = releases_dir(base)
    incoming = sorted(n for n in os.listdir(folder) if n.startswith(INCOMING)) \
        if os.path.isdir(folder) else []
    unit = unit_path(payload.get("unit", "edgekit.service"))
    return {
        "python": list(sys.version_info[:3]), "executable": sys.executable,
        "platform": sysconfig.get_platform(), "machine": platform.machine(),
        "home": home(), "base": base, "free_bytes": free_bytes(folder),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or "",
        "releases": list_releases(base), "current": current_id(base), "incomplete": incoming,
        "venvs": list_venvs(base), "systemd": os.path.isdir("/run/systemd/system"),
        "unit": unit if os.path.isfile(unit) else None,
    }


# --- stage: a new release folder, filled from earlier releases where the bytes are known -------

def known_files(base):
    """sha256 -> paths of files in complete releases (newest first)."""
    index = {}
    for release in reversed(list_releases(base)):
        if not release["complete"]:
            continue
        path = os.path.join(releases_dir(base), release["id"])
        for f in (read_release(path) or {}).get("files", []):
            index.setdefault(f["sha256"], []).append(os.path.join(path, safe_relative(f["path"])))
    return index


def reuse(sources, sha256, dest):
    """Hard-link (or, across file systems, copy) a file with this sha256 into ``dest``."""
    for source in sources:
        if not os.path.isfile(source) or sha256_of(source) != sha256:
            continue  # damaged or gone: never spread it
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        return True
    return False


def remove_leftovers(base, keep=None):
    folder = releases_dir(base)
    removed = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.startswith(INCOMING) and name != keep:
                remove_tree(os.path.join(folder, name))
                removed.append(name)
    return removed


def new_release_id(base, content_hash):
    """``<UTC time>-<content hash>``, always sorting after the releases already there.

    A Pi has no clock battery: before NTP answers, its time can lie in the past. Release names
    must still sort in deploy order (rollback and pruning go by it), so a clock behind the
    newest release is taken as one second after it.
    """
    stamp_format = "%Y%m%dT%H%M%SZ"
    now = time.time()
    names = [r["id"] for r in list_releases(base)]
    if names:
        try:
            newest = calendar.timegm(time.strptime(names[-1][:16], stamp_format))
            now = max(now, newest + 1)
        except ValueError:
            pass
    stamp = time.strftime(stamp_format, time.gmtime(now))
    candidate = f"{stamp}-{content_hash[:8]}"
    n = 1
    while os.path.exists(os.path.join(releases_dir(base), candidate)):
        n += 1
        candidate = f"{stamp}-{content_hash[:8]}-{n}"
    return candidate


def stage(payload):
    base = base_dir(payload)
    os.makedirs(releases_dir(base), exist_ok=True)
    removed = remove_leftovers(base)
    release = new_release_id(base, payload["content_hash"])
    incoming = os.path.join(releases_dir(base), INCOMING + release)
    os.makedirs(incoming)
    index = known_files(base)
    linked, missing = [], []
    for f in payload["files"]:
        dest = os.path.join(incoming, safe_relative(f["path"]))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if reuse(index.get(f["sha256"], []), f["sha256"], dest):
            linked.append(f["path"])
        else:
            missing.append(f["path"])
    sizes = {f["path"]: f["size"] for f in payload["files"]}
    need = sum(sizes[p] for p in missing)
    free = free_bytes(incoming)
    if need + MARGIN > free:
        remove_tree(incoming)
        raise Failure(f"not enough space on the device: the new files need {need} bytes "
                      f"(+ {MARGIN} spare), {free} are free under {base}",
                      code="disk_full", free_bytes=free, need_bytes=need)
    return {"release": release, "incoming": for_scp(incoming), "linked": linked,
            "missing": missing, "missing_bytes": need, "free_bytes": free, "removed": removed}


# --- verify: every file's sha256, on the device -------------------------------------------------

def incoming_dir(base, release):
    return os.path.join(releases_dir(base), INCOMING + release)


def check_tree(root, files):
    """Problems with ``files`` (path, sha256, size) under ``root``; extra files count too."""
    problems = []
    expected = set()
    for f in files:
        path = os.path.join(root, safe_relative(f["path"]))
        expected.add(os.path.normpath(path))
        if not os.path.isfile(path):
            problems.append(f"{f['path']}: missing")
        elif os.path.getsize(path) != f["size"]:
            size = os.path.getsize(path)
            problems.append(f"{f['path']}: {size} bytes, expected {f['size']}")
        elif sha256_of(path) != f["sha256"]:
            problems.append(f"{f['path']}: sha256 differs")
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in names:
            path = os.path.normpath(os.path.join(folder, name))
            if path not in expected and name != RELEASE_FILE:
                problems.append(f"{os.path.relpath(path, root)}: not part of the release")
    return problems


def verify(payload):
    base = base_dir(payload)
    incoming = incoming_dir(base, payload["release"])
    problems = check_tree(incoming, payload["files"])
    if problems:
        remove_tree(incoming)
        raise Failure(f"{len(problems)} file(s) failed the check on the device: "
                      + "; ".join(problems[:5]), problems=problems)
    record = dict(payload["meta"], id=payload["release"], files=payload["files"],
                  created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_file(os.path.join(incoming, RELEASE_FILE), json.dumps(record, indent=1) + "\n")
    for folder, _dirs, names in os.walk(incoming):
        for name in names:
            path = os.path.join(folder, name)
            os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)
    return {"checked": len(payload["files"]),
            "bytes": sum(f["size"] for f in payload["files"])}


def write_file(path, text):
    """Write ``text`` to ``path`` through a temporary file, flushed to disk, then renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- venv: one per requirement set and edgekit wheel --------------------------------------------

def run_logged(argv, log, env=None, timeout=None):
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, timeout=timeout)
    text = result.stdout.decode("utf-8", "replace")
    log.append("$ " + " ".join(argv) + "\n" + text)
    return result.returncode, text


def tail(text, lines=8):
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def link_venv(release_dir, key):
    link = os.path.join(release_dir, "venv")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.join("..", "..", "venvs", key), link)


def make_venv(payload):
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


# --- smoke: edgekit backends + edgekit verify, with the release's own environment ---------------

def run_json(argv, env, timeout):
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s", -1
    err = result.stderr.decode("utf-8", "replace")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    message = errors[-1][len("error: "):] if errors else tail(err, 3)
    try:
        return json.loads(result.stdout.decode("utf-8", "replace")), message, result.returncode
    except ValueError:
        return None, message or "no output", result.returncode


def smoke(payload):
    base = base_dir(payload)
    release = incoming_dir(base, payload["release"])
    python = os.path.join(release, "venv", "bin", "python")
    env = dict(os.environ, **payload.get("environment", {}))
    timeout = payload.get("timeout", 900)
    backends, backends_error, _ = run_json([python, "-m", "edgekit", "backends", "--json"],
                                           env, timeout)
    argv = [python, "-m", "edgekit", "verify", os.path.join(release, "bundle"),
            "--backend", payload["backend"], "--samples", str(payload["samples"]), "--json"]
    if payload.get("device"):
        argv += ["--device", payload["device"]]
    result, error, code = run_json(argv, env, timeout)
    return {"backends": backends, "backends_error": backends_error, "verify": result,
            "verify_error": error if code != 0 else "", "verify_code": code,
            "command": argv}


# --- activate: the one switch, then tidy up -----------------------------------------------------

def switch_current(base, release):
    """Point ``current`` at ``release`` with one rename(2): atomic for every reader."""
    tmp = os.path.join(base, f"current.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release), tmp)
    os.replace(tmp, os.path.join(base, "current"))
    fd = os.open(base, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def systemctl(*args):
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    try:
        result = subprocess.run(["systemctl", "--user"] + list(args), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return result.returncode, result.stdout.decode("utf-8", "replace").strip()


def restart_service(name):
    """Restart the service if it is installed and systemd runs; say what happened."""
    if not os.path.isfile(unit_path(name)):
        return None
    if not os.path.isdir("/run/systemd/system"):
        return "installed, but systemd is not running here: not restarted"
    code, text = systemctl("try-restart", name)
    return "restarted" if code == 0 else f"restart failed: {tail(text, 2)}"


def prune(base, keep):
    """Remove all but the newest ``keep`` complete releases (never current), then unused venvs."""
    current = current_id(base)
    complete = [r["id"] for r in list_releases(base) if r["complete"]]
    broken = [r["id"] for r in list_releases(base) if not r["complete"] and not r["current"]]
    kept = set(complete[-keep:]) | {current}
    removed = []
    for name in [r for r in complete if r not in kept] + broken:
        remove_tree(os.path.join(releases_dir(base), name))
        removed.append(name)
    used = set()
    for r in list_releases(base):
        link = os.path.join(releases_dir(base), r["id"], "venv")
        if os.path.islink(link):
            used.add(os.path.basename(os.readlink(link)))
    removed_venvs = []
    for venv in list_venvs(base):
        if venv["key"] not in used:
            remove_tree(os.path.join(base, "venvs", venv["key"]))
            removed_venvs.append(venv["key"])
    return removed, removed_venvs


def activate(payload):
    base = base_dir(payload)
    release = payload["release"]
    previous = current_id(base)
    if hasattr(os, "sync"):
        os.sync()  # every copied byte on disk before anything points at it
    os.rename(incoming_dir(base, release), os.path.join(releases_dir(base), release))
    switch_current(base, release)
    service = restart_service(payload.get("unit", "edgekit.service"))
    removed, removed_venvs = prune(base, max(1, int(payload.get("keep", 3))))
    return {"current": release, "previous": previous, "pruned": removed,
            "pruned_venvs": removed_venvs, "service": service}


def rollback(payload):
    base = base_dir(payload)
    current = current_id(base)
    complete = [r["id"] for r in list_releases(base) if r["complete"]]
    target = payload.get("to")
    if target:
        if target not in complete:
            raise Failure(f"no complete release {target!r} on the device (there are: "
                          f"{', '.join(complete) or 'none'})")
    else:
        older = [r for r in complete if current is None or r < current]
        if not older:
            raise Failure(f"no earlier release to roll back to (current: {current}; "
                          f"releases: {', '.join(complete) or 'none'})")
        target = older[-1]
    path = os.path.join(releases_dir(base), target)
    problems = check_tree(path, read_release(path)["files"])
    venv = os.path.join(path, "venv", VENV_MARK)
    if not os.path.isfile(venv):
        problems.append("its environment (venv) is gone")
    if problems:
        raise Failure(f"release {target} is damaged, not switching to it: "
                      + "; ".join(problems[:5]))
    switch_current(base, target)
    return {"from": current, "to": target,
            "service": restart_service(payload.get("unit", "edgekit.service"))}


# --- service: a systemd user unit ---------------------------------------------------------------

def linger_enabled(user):
    return os.path.exists(os.path.join("/var/lib/systemd/linger", user))


def service(payload):
    name = payload["unit"]
    path = unit_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file(path, payload["text"])
    result = {"unit": path, "systemd": os.path.isdir("/run/systemd/system"), "enabled": False,
              "active": "", "linger": None, "messages": []}
    if not result["systemd"]:
        return result
    for args in (("daemon-reload",), ("enable", name), ("restart", name)):
        code, text = systemctl(*args)
        if code != 0:
            result["messages"].append(f"systemctl --user {' '.join(args)}: {tail(text, 2)}")
            return result
    result["enabled"] = True
    result["active"] = systemctl("is-active", name)[1]
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if user and not linger_enabled(user):
        subprocess.run(["loginctl", "enable-linger", user], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result["linger"] = bool(user) and linger_enabled(user)
    return result


def cleanup(payload):
    base = base_dir(payload)
    path = incoming_dir(base, payload["release"])
    existed = os.path.exists(path)
    remove_tree(path)
    return {"removed": existed}


COMMANDS = {"probe": probe, "stage": stage, "verify": verify, "venv": make_venv,
            "smoke": smoke, "activate": activate, "rollback": rollback, "service": service,
            "cleanup": cleanup}


def describe(exc):
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the device's disk is full: {exc.strerror}{where}", "disk_full"
    return f"{exc.strerror or exc}{where}", "os_error"


def main(argv):
    if len(argv) != 3 or argv[1] not in COMMANDS:
        print(json.dumps({"ok": False, "error": "usage: agent COMMAND JSON"}))
        return 2
    try:
        result = COMMANDS[argv[1]](json.loads(argv[2]))
        result["ok"] = True
    except Failure as exc:
        result = dict(exc.fields, ok=False, error=str(exc))
    except OSError as exc:
        message, code = describe(exc)
        result = {"ok": False, "error": message, "code": code}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
