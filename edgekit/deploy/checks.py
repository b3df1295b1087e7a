"""The checks and texts the workstation and the Ansible controller both make of the device's
answers: one place for each decision, standard library only (the role ships this file beside
``steps.py``, and the controller loads it without edgekit)."""
from __future__ import annotations

import hashlib
import json


def minimum_python(spec):
    """(major, minor) from a ``>=3.9`` Requires-Python; (0, 0) when it says no minimum."""
    parts = (spec or "").strip()
    if not parts.startswith(">="):
        return (0, 0)
    numbers = parts[2:].strip().split(".")
    try:
        return (int(numbers[0]), int(numbers[1]))
    except (IndexError, ValueError):
        return (0, 0)


def device_mismatch(probe, host, python, target, arch, target_python, requires_python,
                    python_hint="pass --release python=PATH"):
    """Why the device (``probe``) cannot run the release for ``target``, or "" when it can.

    ``python``: the device's interpreter as the user named it; ``python_hint``: how to name
    another one (``--release python=`` for deploy, the ``edgekit_python`` variable for Ansible)."""
    found = str(probe["platform"]).split("-", 1)[-1]
    if found != arch:
        return (f"{host} is {found} (its Python reports {probe['platform']}) and target "
                f"{target} is for {arch}: pick the target that matches (edgekit targets), "
                "or make your own profile")
    version = tuple(probe["python"])
    shown = ".".join(map(str, version))
    if version[:2] < minimum_python(requires_python):
        return (f"{host}'s {python} is Python {shown} and edgekit needs Python "
                f"{requires_python}: install a newer Python there and {python_hint} (see the "
                f"limits in edgekit targets --json for {target})")
    if f"{version[0]}.{version[1]}" != target_python:
        return (f"{host}'s {python} is Python {shown} and target {target} is for Python "
                f"{target_python}: pick the matching target, {python_hint} to a Python "
                f"{target_python} on the device, or make your own profile")
    return ""


def venv_key(executable, version, inputs):
    """The device environment's name: the same Python and ``inputs`` (requirements, index
    URLs, system site packages, edgekit wheel's sha256) give the same environment."""
    data = dict(inputs, python=executable, version=list(version[:2]))
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def smoke_problem(answer):
    """Why the smoke test failed on the device (``smoke``'s answer), or None when it ran."""
    verify = answer.get("verify")
    if answer.get("verify_code") != 0 or verify is None:
        return answer.get("verify_error") or "edgekit verify gave no result"
    if not verify.get("files_ok"):
        bad = [f"{f['name']}: {f['problem']}" for f in verify["files"] if not f["ok"]]
        return "artifact files do not match the manifest: " + "; ".join(bad)
    return answer.get("imx500_problem") or answer.get("source_problem") or None


def service_failed(service):
    """Whether a switch's service answer (``activate``, ``rollback``) counts as a failure:
    systemd could not start the unit, or it did not stay up."""
    if service and service.get("systemd") and service.get("messages"):
        return True
    check = (service or {}).get("check")
    return bool(check) and not check["healthy"]


def live_view_url(device_host, address, token=None):
    """The live view's address as the workstation reaches it (``?token=`` only if given).

    ``address``: the service's ``--serve``, ``[HOST:]PORT`` (checked when the target profile
    was read); a bind on every interface (0.0.0.0, ::) is reached by the name deploy used for
    the device (``device_host``), no host means 127.0.0.1 (as ``edgekit run --serve``)."""
    host, _, port = address.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = device_host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def live_view(device_host, address, answer):
    """What a deploy reports of the live view, from ``serve_token``'s ``answer``: the URL, the
    URL with the token only when the token was just made (it is shown this once), its file."""
    token = answer.get("token") if answer.get("created") else None
    return {"url": live_view_url(device_host, address),
            "url_with_token": live_view_url(device_host, address, token) if token else None,
            "env_file": answer.get("env_file"), "new_token": bool(answer.get("created"))}


def live_view_text(live):
    """A deploy's line for the live view: the URL with its token only when the token is new."""
    where = f"{live['env_file']} on the device, mode 0600"
    if live.get("url_with_token"):
        return (f"{live['url_with_token']} (open it once; the browser keeps the token. It is "
                f"shown only now, and kept in {where})")
    return f"{live['url']} (the token is unchanged: in {where})"


def serve_status_text(serve):
    """status's line for the live view the unit serves (``probe``'s ``serve``, with its
    ``url``): where it is and where its token is (never the token)."""
    token = (f"token in {serve['env_file']} on the device" if serve.get("token") else
             f"no token yet: {serve['env_file']} is missing; deploy --service again")
    return f"{serve.get('url', serve['address'])} ({token})"


def byte_size(n):
    """A byte count for people: 0 B, 512 B, 1.5 KB, 3.2 MB, 1.1 GB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
