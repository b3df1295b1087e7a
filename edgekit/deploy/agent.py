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
    lock                                  flock(2)ed by the deploy or rollback under way
    service.env                           the unit's environment: the live view's token (0600)

One deploy or rollback at a time: ``hold`` takes the lock and keeps it for as long as the
workstation's ssh session to it lives (and sends a heartbeat on stdin); every step that
changes something checks that its deploy still holds it. The kernel releases a flock when
its holder dies, so a lock left by a dead process is simply taken over.
"""
from __future__ import annotations

import calendar
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import select
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import traceback

INCOMING = ".incoming-"
RELEASE_FILE = "release.json"
VENV_MARK = ".edgekit-venv.json"
UNIT_DIR = os.path.join(".config", "systemd", "user")
MARGIN = 1 << 20  # bytes kept free beyond what the copy needs
LOCK_FILE = "lock"
LOCK_GRACE = 1.0  # seconds a refused lock is retried anyway (a status check holds it briefly)
JOURNAL_LINES = 12  # of a failing service, in the report


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
        "venvs": list_venvs(base), "systemd": systemd_running(),
        "unit": unit if os.path.isfile(unit) else None, "lock": lock_holder(base),
        "service": service_status(payload) if os.path.isfile(unit) and payload.get(
            "service_status", True) else None,
        "serve": serve_info(base, unit), "events": events_info(base),
    }


# --- checks the workstation (or the Ansible action) makes with the device's answers ------------
# Plain functions, not commands: release.py imports them, and the Ansible role's action loads
# this file, so each decision is made in one place.

# --- the lock: one deploy or rollback at a time -------------------------------------------------

def lock_file(base):
    return os.path.join(base, LOCK_FILE)


def read_owner(path):
    """The lock's owner record (JSON), or None when it is empty or unreadable."""
    try:
        with open(path) as f:
            text = f.read()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def try_flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def lock_holder(base):
    """The owner record of the deploy holding the lock now, or None when nobody does."""
    path = lock_file(base)
    if not os.path.isfile(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return read_owner(path) or {}
    finally:
        os.close(fd)


def describe_holder(owner):
    """Who holds the lock, for a person: what, from where, since when."""
    if not owner:
        return "a process that has not said who it is yet"
    since = owner.get("since_epoch")
    ago = f", {time.time() - since:.0f} s ago" if since else ""
    return (f"{owner.get('what', 'a deploy')} from {owner.get('workstation', '?')} "
            f"(pid {owner.get('workstation_pid', '?')}, user {owner.get('user', '?')}), started "
            f"{owner.get('since', '?')}{ago}; its session here is pid {owner.get('pid', '?')}")


def hold(payload):
    """Take the lock and keep it until stdin ends or its heartbeat stops; one JSON line first.

    Runs for the whole deploy, in its own ssh session: the workstation keeps stdin open and
    writes a heartbeat line every few seconds. EOF (the deploy ended, or its ssh died) or
    ``stale_after`` seconds without a heartbeat (a workstation that vanished) releases it."""
    base = base_dir(payload)
    os.makedirs(base, exist_ok=True)
    path = lock_file(base)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    wait = float(payload.get("wait", 0))
    started = time.time()
    while not try_flock(fd):
        waited = time.time() - started
        if waited >= max(wait, LOCK_GRACE):
            os.close(fd)
            holder = read_owner(path)
            how = f"after waiting {wait:g} s" if wait else "at once (--lock-timeout 0)"
            raise Failure(f"another deploy holds this device's lock ({for_scp(path)}): "
                          f"{describe_holder(holder)}. Refused {how}: wait for it to finish, "
                          "or pass --lock-timeout SECONDS to wait for it",
                          code="locked", holder=holder)
        time.sleep(0.2)
    left = read_owner(path)  # not empty: its holder died without releasing (the kernel did)
    owner = dict(payload.get("owner", {}), token=payload["token"], pid=os.getpid(),
                 session=os.environ.get("XDG_SESSION_ID", ""), since_epoch=time.time(),
                 since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    os.fsync(fd)
    # The device as the lock found it: deploy's first look, without a round trip of its own.
    found = probe(dict(payload, service_status=False))
    print(json.dumps({"ok": True, "owner": owner, "taken_over": left, "probe": found}))
    sys.stdout.flush()
    stale_after = float(payload.get("stale_after", 180))
    last = time.time()
    while True:
        ready = select.select([0], [], [], 1.0)[0]
        if ready:
            if not os.read(0, 4096):
                break  # EOF: the deploy is over, or its ssh session is gone
            last = time.time()
        elif time.time() - last > stale_after:
            break  # no heartbeat: the workstation vanished without closing the link
    os.ftruncate(fd, 0)  # empty: released cleanly (a record left in it means a dead holder)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return {"released": True, "held_seconds": round(time.time() - owner["since_epoch"], 1)}


def require_lock(payload):
    """Refuse to change anything unless this deploy (payload's token) holds the lock."""
    base = base_dir(payload)
    token = payload.get("lock")
    holder = lock_holder(base)
    if holder is None:
        raise Failure("this deploy no longer holds the device's lock (its ssh session ended or "
                      "went silent), so it stopped before changing anything more; deploy again",
                      code="lock_lost")
    if not token or holder.get("token") != token:
        raise Failure(f"another deploy holds this device's lock now: {describe_holder(holder)}",
                      code="locked", holder=holder)


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


def intact_copy(sources, sha256):
    """The first of ``sources`` that is a file with this sha256 (a damaged one is never used)."""
    for source in sources:
        if os.path.isfile(source) and sha256_of(source) == sha256:
            return source
    return None


def reuse(sources, sha256, dest):
    """Hard-link (or, across file systems, copy) a file with this sha256 into ``dest``."""
    source = intact_copy(sources, sha256)
    if source is None:
        return False
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    return True


def preview(payload):
    """Read-only, for --dry-run: the device as probe sees it, and which of the release's files
    its complete releases already hold intact (what stage would link instead of a copy)."""
    found = probe(payload)
    index = known_files(base_dir(payload))
    found["held"] = [f["path"] for f in payload["files"]
                     if intact_copy(index.get(f["sha256"], []), f["sha256"])]
    return found


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
    require_lock(payload)
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
    require_lock(payload)
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
    require_lock(payload)
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
    if payload.get("allow_empty"):  # a bundle converted without validation data
        argv.append("--allow-empty")
    result, error, code = run_json(argv, env, timeout)
    unit = ((read_release(release) or {}).get("service") or {}).get("unit")
    source = unit_source(unit) if unit and systemd_running() else None
    return {"backends": backends, "backends_error": backends_error, "verify": result,
            "verify_error": error if code != 0 else "", "verify_code": code,
            "command": argv,
            "source_problem": source and source_problem(source, base, python, env),
            "imx500_problem": imx500_device().rpk_problem(release)}


# The service's camera, checked before the switch where the service is about to start (systemd
# runs): a missing one would only show as a service that fails after it. Presence only: a
# camera the running release's service holds open cannot be opened twice.
PICAMERA_COUNT = ("from picamera2 import Picamera2; "
                  "print(len(Picamera2.global_camera_info()))")


def unit_argument(unit, flag):
    """The value of ``flag`` on a unit's ExecStart, unquoted as systemd reads it (None when it
    has none): what the service runs with, read back from the unit deploy wrote."""
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            args = [a.replace("%%", "%").replace("$$", "$")
                    for a in shlex.split(line[len("ExecStart="):])]
            if flag in args[:-1]:
                return args[args.index(flag) + 1]
    return None


def unit_source(unit):
    """The ``--source`` of a unit's ExecStart (None when it has none)."""
    return unit_argument(unit, "--source")


def source_problem(source, base, python, env):
    """Why the service's ``--source`` cannot be there on this device, or None (present, or a
    stream URL, which the loop reconnects to)."""
    text = str(source)
    fix = "plug the camera in, or set the target's camera to one this device has"
    if "://" in text:
        return None
    if imx500_device().is_sensor(text):
        return imx500_device().camera_problem(text, python, env, run_text, fix)
    if text.isdigit():
        path = "/dev/video" + text
        return None if os.path.exists(path) else (
            f"the service's camera {text} is missing: no {path} on the device ({fix})")
    if text == "picamera2" or text.startswith("picamera2:"):
        number = text.partition(":")[2] or "0"
        code, out = run_text([python, "-c", PICAMERA_COUNT], env=env, timeout=120)
        if code != 0:
            return (f"the service's camera {text}: Picamera2 does not load in the release's "
                    f"environment ({tail(out, 1)}; on Raspberry Pi OS: sudo apt install -y "
                    "python3-picamera2, and a target with system_site_packages)")
        found = int(out.split()[-1]) if out.split() and out.split()[-1].isdigit() else 0
        return None if number.isdigit() and int(number) < found else (
            f"the service's camera {text} is missing: libcamera sees {found} camera(s) ({fix})")
    path = text if os.path.isabs(text) else os.path.join(base, text)
    return None if os.path.exists(path) else (
        f"the service's source {text} is missing: no {path} on the device ({fix})")


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


def run_text(argv, env=None, timeout=60):
    """(exit code, stdout and stderr as text) of a short command; 127 when it is missing."""
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except OSError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} timed out after {timeout} s"
    return result.returncode, result.stdout.decode("utf-8", "replace").strip()


def systemctl(*args):
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return run_text(["systemctl", "--user"] + list(args), env=env)


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


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def switch_and_check(base, release, fallback, payload):
    """Switch ``current`` to ``release`` and (re)start its service; when the service does not
    stay up and ``fallback`` is a release, switch back to that one, with the unit that was
    installed before (none: the service is removed again), and restart it too. With nothing
    to switch back to (the first release), the failing service is stopped and disabled, not
    left restarting: the release stays current and its unit in place, for after the fix."""
    name = payload.get("unit", "edgekit.service")
    before = read_text(unit_path(name))
    switch_current(base, release)
    service = start_service(base, release, payload)
    check = (service or {}).get("check")
    if check and not check["healthy"]:
        if fallback and fallback != release:
            switch_current(base, fallback)
            service["switched_back"] = fallback
            service["fallback"] = start_service(base, fallback, payload, restore=True,
                                                before=before)
        else:
            code, out = systemctl("disable", "--now", name)
            service["stopped"] = code == 0
            if code != 0:
                service["stop_error"] = f"systemctl --user disable --now {name}: {tail(out, 2)}"
    return (service or {}).get("switched_back") or release, service


def activate(payload):
    require_lock(payload)
    base = base_dir(payload)
    release = payload["release"]
    previous = current_id(base)
    if hasattr(os, "sync"):
        os.sync()  # every copied byte on disk before anything points at it
    os.rename(incoming_dir(base, release), os.path.join(releases_dir(base), release))
    current, service = switch_and_check(base, release, previous, payload)
    removed, removed_venvs = prune(base, max(1, int(payload.get("keep", 3))))
    return {"current": current, "previous": previous, "pruned": removed,
            "pruned_venvs": removed_venvs, "service": service}


def rollback(payload):
    require_lock(payload)
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
    now, service = switch_and_check(base, target, current, payload)
    return {"from": current, "to": target, "current": now, "service": service}


# --- service: a systemd user unit, (re)started and watched -------------------------------------

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
                "service a camera, or a file it plays with --repeat)")
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


# --- the live view's token, in the unit's environment file --------------------------------------

SERVE_ENV = "service.env"
TOKEN_VARIABLE = "EDGEKIT_SERVE_TOKEN"


def read_env(path):
    """KEY=value lines of an environment file, in order (missing file: none)."""
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def write_private(path, lines):
    """Write a file only its owner can read (mode 0600 from the start), then rename it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)  # an old tmp left by a killed run may have had other bits
    os.replace(tmp, path)


def serve_token(payload):
    """The live view's token: made here, on the device, the first time; kept afterwards.

    It lives in the unit's environment file, mode 0600, never on a command line. The token
    is returned only when it was just made (the workstation shows the URL with it once)."""
    require_lock(payload)
    base = base_dir(payload)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, SERVE_ENV)
    lines = read_env(path)
    prefix = TOKEN_VARIABLE + "="
    if any(line.startswith(prefix) and len(line) > len(prefix) for line in lines):
        if lines and stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
        return {"env_file": path, "created": False}
    token = secrets.token_urlsafe(24)
    lines = [line for line in lines if not line.startswith(prefix)] or [
        "# edgekit's service environment (systemd EnvironmentFile): keep it private"]
    write_private(path, lines + [prefix + token])
    return {"env_file": path, "created": True, "token": token}


EVENTS_PREFIX = "EDGEKIT_EVENTS_"  # the events' credentials (edgekit/events/destinations.py)


def service_env(payload):
    """Set the events' secrets in the unit's environment file (mode 0600), beside the live
    view's token: ``payload["variables"]``, EDGEKIT_EVENTS_* only; an empty value removes one.
    Sent on the agent's standard input, never on a command line."""
    require_lock(payload)
    variables = payload.get("variables") or {}
    for key, value in variables.items():
        if not key.startswith(EVENTS_PREFIX) or not re.match(r"^[A-Z0-9_]+$", key):
            raise ValueError(f"{key}: only {EVENTS_PREFIX}* variables go in the service's "
                             "environment file this way")
        if "\n" in str(value) or "\r" in str(value) or "\0" in str(value):
            raise ValueError(f"{key}: a value on one line, without NUL")
    base = base_dir(payload)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, SERVE_ENV)
    lines = [line for line in read_env(path) if line.split("=", 1)[0] not in variables] or [
        "# edgekit's service environment (systemd EnvironmentFile): keep it private"]
    lines += [f"{key}={value}" for key, value in sorted(variables.items()) if value]
    write_private(path, lines)
    return {"env_file": path, "set": sorted(k for k, v in variables.items() if v)}


EVENTS_STATE = "events-state.json"  # as edgekit.events.service.STATE_FILE


def events_info(base):
    """The service's events destinations and delivery counters, as its loop last wrote them."""
    try:
        with open(os.path.join(base, EVENTS_STATE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def serve_info(base, unit):
    """The live view the installed unit serves (its --serve), and where its token is."""
    try:
        with open(unit) as f:
            text = f.read()
    except OSError:
        return None
    address = unit_argument(text, "--serve")
    if address is None:
        return None
    path = os.path.join(base, SERVE_ENV)
    has_token = any(line.startswith(TOKEN_VARIABLE + "=") for line in read_env(path))
    return {"address": address, "env_file": path, "token": has_token}


def cleanup(payload):
    require_lock(payload)
    base = base_dir(payload)
    path = incoming_dir(base, payload["release"])
    existed = os.path.exists(path)
    remove_tree(path)
    return {"removed": existed}


# --- imx500: network.rpk from the bundle's packerOut.zip, on the device ---------------------------

def imx500_device():
    """The AI Camera's checks: sent beside this file (remote.agent_source), else edgekit's."""
    try:
        import edgekit_imx500_device as module
    except ImportError:
        from edgekit.deploy import imx500_device as module
    return module


IMX500_PACKAGER = "imx500-package"
IMX500_INSTALL = "sudo apt install -y imx500-all (Raspberry Pi OS: the IMX500 firmware and tools)"


def imx500(payload):
    """Make ``NAME_imx500.rpk`` beside the verified release's ``NAME_imx500.zip`` with
    imx500-package, read-only, its sha256 added to release.json; before the switch. With
    ``expect_sha256`` (a release made before) an .rpk that differs is removed and refused."""
    require_lock(payload)
    base = base_dir(payload)
    incoming = incoming_dir(base, payload["release"])
    packed = os.path.join(incoming, safe_relative(payload["artifact"]))
    if not os.path.isfile(packed):
        raise Failure(f"{payload['artifact']} is not in the release", code="imx500_missing")
    packager = shutil.which(IMX500_PACKAGER)
    if packager is None:
        raise Failure(f"the bundle's imx500 artifact needs {IMX500_PACKAGER} on the device to "
                      f"become network.rpk, and it is not there: {IMX500_INSTALL}",
                      code="imx500_tools_missing")
    rpk = packed[:-len(".zip")] + ".rpk"
    work = os.path.join(incoming, ".imx500-work")
    remove_tree(work)
    os.makedirs(work)
    try:
        try:
            done = subprocess.run([packager, "-i", packed, "-o", work], capture_output=True,
                                  timeout=payload.get("timeout", 600), check=False)
        except subprocess.TimeoutExpired:
            raise Failure(f"{IMX500_PACKAGER} did not finish", code="imx500_package") from None
        made = os.path.join(work, "network.rpk")
        if done.returncode != 0 or not os.path.isfile(made):
            why = tail((done.stderr or done.stdout).decode("utf-8", "replace"), 1) or "no output"
            raise Failure(f"{IMX500_PACKAGER} failed on the device: {why}",
                          code="imx500_package")
        digest = sha256_of(made)
        expected = payload.get("expect_sha256")
        if expected and digest != expected:
            raise Failure(f"the network.rpk {IMX500_PACKAGER} made on the device has sha256 "
                          f"{digest[:12]}..., not the release's {expected[:12]}...: another "
                          "imx500-tools version? Deploy again to record the new one",
                          code="imx500_sha256")
        os.replace(made, rpk)
        os.chmod(rpk, 0o444)
    finally:
        remove_tree(work)
    entry = {"path": os.path.relpath(rpk, incoming), "sha256": digest,
             "size": os.path.getsize(rpk)}
    record = read_release(incoming)
    if record is not None:  # verified: the .rpk joins the files the release vouches for
        record["files"] = [f for f in record.get("files", []) if f["path"] != entry["path"]]
        record["files"].append(entry)
        record["imx500_rpk"] = entry
        record_path = os.path.join(incoming, RELEASE_FILE)
        write_file(record_path, json.dumps(record, indent=1) + "\n")
        os.chmod(record_path, 0o444)
    return {"rpk": entry}


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
    where = f" (agent line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""
    if isinstance(exc, KeyError):  # a payload without a field this command needs
        return f"the payload lacks {exc}{where}", "bad_payload"
    return f"the device agent failed: {type(exc).__name__}: {exc}{where}", "agent_error"


PRIVATE = {}  # secrets for the payload: the workstation writes them here in the source it sends


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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
