"""What a deployed service needs of the events options (``deploy --service``): the
``edgekit run`` arguments its unit's ExecStart carries, and the secrets that go into the unit's
0600 environment file on the device (never into the unit, the release record or a command
line). The deploy orchestration calls these; the device side is ``service_env`` in
``agent/env.py``."""
from __future__ import annotations

from collections.abc import Mapping

from edgekit.events.destinations import PASSWORD_ENV, USER_ENV, credentials
from edgekit.events.outbox import QUEUE
from edgekit.events.settings import EventsOptions

SECRET_PREFIX = "EDGEKIT_EVENTS_"


def run_args(options: EventsOptions | None) -> list[str]:
    """The ``edgekit run`` options that ask the device for the same tracks, events and clips."""
    if options is None or not options.wanted():
        return []
    args: list[str] = []
    for url in options.destinations:
        args += ["--events", url]
    if options.track and not (options.destinations or options.clips):
        args.append("--track")
    if options.classes:
        args += ["--events-classes", ",".join(options.classes)]
    if options.min_score:
        args += ["--events-min-score", f"{options.min_score:g}"]
    if options.min_frames != 1:
        args += ["--events-min-frames", str(options.min_frames)]
    if options.update_s != 5.0:
        args += ["--events-update", f"{options.update_s:g}"]
    for zone in options.zones:
        corners = ",".join(f"{v:g}" for point in zone.points for v in point)
        args += ["--events-zone", f"{zone.name}={corners}"]
    if options.queue != QUEUE:
        args += ["--events-queue", str(options.queue)]
    if options.clips is not None:
        clips = options.clips
        args += ["--clips", clips.folder, "--pre", f"{clips.pre_s:g}", "--post",
                 f"{clips.post_s:g}", "--max-disk", str(clips.max_disk)]
    return args


def service_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials the workstation has for the events (its environment, or the file
    ``EDGEKIT_EVENTS_CREDENTIALS`` names, read here), as the device's environment file
    holds them: username and password variables."""
    user, password = credentials(env)
    found = {USER_ENV: user, PASSWORD_ENV: password}
    return {k: v for k, v in found.items() if v}
