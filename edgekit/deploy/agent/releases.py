"""The commands that read the device, hold its lock, stage, check, switch and roll back releases."""
from __future__ import annotations

import calendar
import fcntl
import json
import os
import platform
import select
import shutil
import stat
import sys
import sysconfig
import time

from .env import events_info, serve_info
from .files import (
    INCOMING,
    MARGIN,
    RELEASE_FILE,
    VENV_MARK,
    Failure,
    base_dir,
    check_tree,
    current_id,
    for_scp,
    free_bytes,
    home,
    incoming_dir,
    list_releases,
    list_venvs,
    read_release,
    read_text,
    releases_dir,
    remove_tree,
    safe_relative,
    sha256_of,
    tail,
    unit_path,
    write_file,
)
from .lock import (
    LOCK_GRACE,
    describe_holder,
    lock_file,
    lock_holder,
    read_owner,
    require_lock,
    try_flock,
)
from .systemd import service_status, start_service, systemctl, systemd_running


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
            how = f"after waiting {wait:g} s" if wait else "at once (lock_timeout 0)"
            raise Failure(f"another deploy holds this device's lock ({for_scp(path)}): "
                          f"{describe_holder(holder)}. Refused {how}: wait for it to finish, "
                          "or pass --release lock_timeout=SECONDS to wait for it",
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


def cleanup(payload):
    require_lock(payload)
    base = base_dir(payload)
    path = incoming_dir(base, payload["release"])
    existed = os.path.exists(path)
    remove_tree(path)
    return {"removed": existed}
