"""What a deployed service needs of the events options (``deploy --service``): the
``edgekit run`` arguments its unit's ExecStart carries, and the secrets that go into the unit's
0600 environment file on the device (never into the unit, the release record or a command
line). The deploy orchestration calls these; the device side is ``service_env`` in
``agent/env.py``."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError
from edgekit.events.destinations import PASSWORD_ENV, USER_ENV, credentials
from edgekit.events.outbox import QUEUE
from edgekit.events.settings import EventsOptions, options_from

SECRET_PREFIX = "EDGEKIT_EVENTS_"
STATE_ENV = "EDGEKIT_EVENTS_STATE"  # where a service's loop writes its delivery counters
STATE_FILE = "events-state.json"  # under the deploy's folder on the device
# A target's [service] table: edgekit run's parameter names, and the TOML type of each value.
TABLE = {"events": list, "track": bool, "events_classes": list, "events_min_score": float,
         "events_min_frames": int, "events_update": float, "events_zone": list,
         "events_queue": int, "clips": str, "pre": float, "post": float, "max_disk": str}
SETTINGS_KEY = "settings"  # a TOML file, beside the target's, that holds the same keys


def service_options(table: Mapping[str, Any], where: Path) -> EventsOptions | None:
    """The events and clips options a target's ``[service]`` table (``where``: the target's
    file) asks for, checked in one line; ``settings = "FILE.toml"`` names a file with the same
    keys (the table's own win). None when it asks for none."""
    values = dict(table)
    if SETTINGS_KEY in values:
        name = values.pop(SETTINGS_KEY)
        if not isinstance(name, str):
            raise UsageError(f"{where}: [service] {SETTINGS_KEY}: a file name, such as "
                             "\"front-door-events.toml\"")
        path = (where.parent / name).expanduser()
        try:
            values = {**_read_toml(path), **values}
        except (OSError, ValueError) as exc:
            raise UsageError(f"{where}: [service] {SETTINGS_KEY}: cannot read {path} "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    given: dict[str, Any] = {}
    for key, value in values.items():
        kind = TABLE.get(key)
        if kind is None:
            raise UsageError(f"{where}: [service] {key}: unknown; it takes "
                             f"{', '.join(TABLE)} and {SETTINGS_KEY}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and key == "max_disk" and isinstance(value, int):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or (
                kind is list and not all(isinstance(v, str) for v in value)):
            raise UsageError(f"{where}: [service] {key}: must be "
                             f"{'a list of strings' if kind is list else f'a {kind.__name__}'}")
        given[key] = ",".join(value) if key == "events_classes" else value
    if not given:
        return None
    try:
        return options_from(given, {k: f"[service] {k}" for k in
                                    ("events_classes", "events_min_score", "events_min_frames",
                                     "events_zone", "events_update")})
    except UsageError as exc:
        raise UsageError(f"{where}: [service]: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.9 and 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return data.get("service", data)


def run_args(options: EventsOptions | None) -> list[str]:
    """The ``edgekit run`` options that ask the device for the same tracks, events and clips
    (``--events URL``, ``--events-filter KEY=VALUE``, ``--clips DIR?pre=S&post=S&max_disk=N``)."""
    if options is None or not options.wanted():
        return []
    args: list[str] = []
    for url in options.destinations:
        args += ["--events", url]
    keys: list[str] = []
    if options.track and not (options.destinations or options.clips):
        keys.append("track=on")
    if options.classes:
        keys.append("classes=" + ",".join(options.classes))
    if options.min_score:
        keys.append(f"min_score={options.min_score:g}")
    if options.min_frames != 1:
        keys.append(f"min_frames={options.min_frames}")
    if options.update_s != 5.0:
        keys.append(f"update={options.update_s:g}")
    if options.queue != QUEUE:
        keys.append(f"queue={options.queue}")
    for zone in options.zones:  # one each: a zone's corners hold commas
        keys.append(f"zone={zone.name}=" + ",".join(
            f"{v:g}" for point in zone.points for v in point))
    for key in keys:
        args += ["--events-filter", key]
    if options.clips is not None:
        clips = options.clips
        args += ["--clips", f"{clips.folder}?pre={clips.pre_s:g}&post={clips.post_s:g}"
                            f"&max_disk={clips.max_disk}"]
    return args


def service_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials the workstation has for the events (its environment, or the file
    ``EDGEKIT_EVENTS_CREDENTIALS`` names, read here), as the device's environment file
    holds them: username and password variables."""
    user, password = credentials(env)
    found = {USER_ENV: user, PASSWORD_ENV: password}
    return {k: v for k, v in found.items() if v}


def counters_line(row: Mapping[str, Any]) -> str:
    """A destination's (or the clips') counters: in the run's summary and edgekit status."""
    if "clips" in row:
        return (f"clips: {row['clips']} written in {row['destination']} "
                f"({row['bytes'] / 1e6:.1f} MB), {row['deleted']} deleted for max_disk"
                + (f", {row['skipped_frames']} frames skipped (the recorder fell behind)"
                   if row.get("skipped_frames") else "")
                + (f"; {row['last_error']}" if row.get("last_error") else ""))
    spooled = f", {row['spooled']} kept in the spool" if row.get("spooled") else ""
    return (f"events: {row['destination']}: {row['delivered']} delivered, {row['dropped']} "
            f"dropped{spooled}"
            + (f" (last error: {row['last_error']})" if row["last_error"] else ""))
