"""The events options in a deployed service (the device-side parts of issue 25's deploy): the
unit's ExecStart carries them, and their credentials go into the unit's 0600 environment file,
never into the unit or onto a command line."""
from __future__ import annotations

import dataclasses
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.cli.app import all_commands
from edgekit.cli.events_options import FAMILY, FLAG, events_from
from edgekit.cli.families import parse_family
from edgekit.deploy.agent import env as agent
from edgekit.deploy.local import LocalLink
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.service import exec_start, unit_text
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo
from edgekit.events.service import run_args, service_secrets

GIVEN = ["--events", "mqtt://broker.lan/home/door", "--events", "https://hooks.lan/e",
         "--events-filter", "classes=person,7", "--events-filter", "min_score=0.6",
         "--events-filter", "min_frames=4", "--events-filter", "update=2.5",
         "--events-filter", "zone=porch=0,300,640,300,640,480", "--events-filter", "queue=50",
         "--clips", "clips?pre=3&post=2&max_disk=2G"]


def _parsed(args: list[str]):
    ctx = all_commands()["run"].make_context("run", ["bundle", "--source", "0", *args])
    texts = ctx.params["_family_events_filter"]  # the family's texts, as click's context holds
    return events_from({"events": ctx.params["events"], "clips": ctx.params["clips"],
                        "events_filter": parse_family(FLAG, FAMILY, texts, ctx)})


def test_the_service_gets_the_same_options_back() -> None:
    options = _parsed(GIVEN)
    args = run_args(options)
    assert _parsed(args) == options
    assert "track=on" not in args
    assert args[-2:] == ["--clips", f"clips?pre=3&post=2&max_disk={2 << 30}"]
    assert run_args(_parsed([])) == []
    track = ["--events-filter", "track=on"]
    assert run_args(_parsed(track)) == track


def test_the_unit_runs_them_and_reads_the_credentials_from_its_environment_file(
        tmp_path: Path, detector_bundle: Path) -> None:
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    plan = plan_release(detector_bundle, find_target("rpi4-cpu"), wheel,
                        WheelInfo("edgekit", "0.1.0", "", ("numpy>=1.23",)), tmp_path)
    assert "EnvironmentFile" not in unit_text(plan, "/home/pi/edgekit")
    plan = dataclasses.replace(plan, run_args=run_args(_parsed(GIVEN)))
    assert exec_start(plan, "/home/pi/edgekit")[-len(plan.run_args):] == plan.run_args
    text = unit_text(plan, "/home/pi/edgekit")
    assert "EnvironmentFile=-/home/pi/edgekit/service.env\n" in text
    assert "--events mqtt://broker.lan/home/door" in text and "PASSWORD" not in text


def test_the_credentials_go_into_the_private_environment_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(agent, "require_lock", lambda payload: None)
    secret = tmp_path / "mqtt-credentials"
    secret.write_text("username=cam\npassword=s3cret\n")
    variables = service_secrets({"EDGEKIT_EVENTS_CREDENTIALS": str(secret)})
    assert variables == {"EDGEKIT_EVENTS_USERNAME": "cam", "EDGEKIT_EVENTS_PASSWORD": "s3cret"}
    env = tmp_path / "edgekit" / "service.env"
    token = agent.serve_token({"base": "edgekit"})["token"]
    answer = agent.service_env({"base": "edgekit", "variables": variables})
    assert answer["set"] == ["EDGEKIT_EVENTS_PASSWORD", "EDGEKIT_EVENTS_USERNAME"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    lines = env.read_text().splitlines()
    assert f"EDGEKIT_SERVE_TOKEN={token}" in lines and "EDGEKIT_EVENTS_PASSWORD=s3cret" in lines
    agent.service_env({"base": "edgekit", "variables": {"EDGEKIT_EVENTS_PASSWORD": "new",
                                                         "EDGEKIT_EVENTS_USERNAME": ""}})
    lines = env.read_text().splitlines()
    assert "EDGEKIT_EVENTS_PASSWORD=new" in lines and "EDGEKIT_EVENTS_PASSWORD=s3cret" not in lines
    assert not any(line.startswith("EDGEKIT_EVENTS_USERNAME") for line in lines)
    assert f"EDGEKIT_SERVE_TOKEN={token}" in lines
    with pytest.raises(ValueError, match="only EDGEKIT_EVENTS_"):
        agent.service_env({"base": "edgekit", "variables": {"PATH": "/tmp"}})
    with pytest.raises(ValueError, match="one line"):
        agent.service_env({"base": "edgekit",
                           "variables": {"EDGEKIT_EVENTS_PASSWORD": "a\nEVIL=1"}})


def test_a_target_s_service_table_or_the_file_it_names(tmp_path: Path, lenet_bundle: Path) -> None:
    """deploy --service takes the events and clips settings from the target's [service] table
    (or the file its ``settings`` names, the table's own keys winning), checked in one line."""
    from deploy_support import local_profile

    from edgekit.errors import UsageError

    (tmp_path / "door-events.toml").write_text(
        'events = ["mqtt://broker.lan/door?discovery=homeassistant"]\n'
        'events_min_frames = 4\nclips = "clips"\nmax_disk = "2G"\n')
    profile = local_profile(tmp_path, edits={'camera = "0"': 'camera = "0"\n\n[service]\n'
                                             'settings = "door-events.toml"\n'
                                             'events_min_frames = 2\npre = 3'})
    target = find_target(str(profile))
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    plan = plan_release(lenet_bundle, target, wheel,
                        WheelInfo("edgekit", "0.1.0", "", ("numpy>=1.23",)), tmp_path)
    assert _parsed(plan.run_args) == _parsed([
        "--events", "mqtt://broker.lan/door?discovery=homeassistant", "--events-filter",
        "min_frames=2", "--clips", "clips?pre=3&max_disk=2G"])
    text = unit_text(plan, "/home/pi/edgekit")
    assert "Environment=EDGEKIT_EVENTS_STATE=/home/pi/edgekit/events-state.json" in text
    assert agent.EVENTS_STATE == "events-state.json"
    for table, needle in (('events = "mqtt://x"', "[service] events: must be a list"),
                          ("evnts = []", "[service] evnts: unknown"),
                          ("pre = 3", "`pre`, `post` and `max_disk` go with `clips`"),
                          ('settings = "none.toml"', "cannot read")):
        bad = local_profile(tmp_path / "bad", edits={'camera = "0"': f'camera = "0"\n\n'
                                                     f'[service]\n{table}'})
        with pytest.raises(UsageError, match=re.escape(needle)):
            find_target(str(bad))


def test_deploy_carries_the_credentials_off_the_command_line_and_status_shows_the_counters(
        tmp_path: Path, lenet_bundle: Path, demo_clip: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the local link: the events' credentials reach the unit's 0600 environment file
    through the agent's source (never its arguments, never the unit); a loop run as the unit
    sets it up writes its counters, and status shows them, a token in a webhook masked."""
    import hashlib

    from deploy_support import local_profile
    from test_deploy_local import FakeEnvironment, run

    from edgekit.deploy.playbook import plan_vars
    from edgekit.deploy.remote import SshLink
    from edgekit.deploy.report import status_text
    from edgekit.deploy.steps import Journal, status
    from edgekit.events.service import STATE_ENV
    from edgekit.events.settings import EventsOptions
    from edgekit.loop.run import run_loop
    from edgekit.model import load_model

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the unit goes under it
    hook = "http://127.0.0.1:9/hook?token=t0ken"
    profile = local_profile(tmp_path, edits={'camera = "0"': f'camera = "0"\n\n[service]\n'
                                             f'events = ["events.jsonl", "{hook}"]'})
    wheel = tmp_path / "edgekit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    shipped = ShippedFile(f"wheels/{wheel.name}", wheel,
                          hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel.stat().st_size)
    (tmp_path / "staging").mkdir()
    plan = plan_vars(plan_release(lenet_bundle, find_target(str(profile)), shipped,
                                  WheelInfo("edgekit", "0.1.0", ">=3.9", ("numpy>=1.23",)),
                                  tmp_path / "staging"), service=True)
    plan["events_env"] = {"EDGEKIT_EVENTS_USERNAME": "cam", "EDGEKIT_EVENTS_PASSWORD": "s3cret"}
    device = tmp_path / "device"

    class Watched(FakeEnvironment):
        argv: list[str] = []

        def remote(self, command: str, payload: dict) -> tuple[list[str], dict]:
            remote, sent = super().remote(command, payload)
            self.argv += remote
            return remote, sent

    link = Watched(device)
    record = run(link, plan)
    assert "service_env" in link.asked and "s3cret" not in " ".join(link.argv)
    assert any("EDGEKIT_EVENTS_PASSWORD, EDGEKIT_EVENTS_USERNAME" in t for t in record["titles"])
    env = device / "service.env"
    assert "EDGEKIT_EVENTS_PASSWORD=s3cret" in env.read_text().splitlines()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    unit = Path(record["service"]["unit"]).read_text()
    assert "s3cret" not in unit and f"EnvironmentFile=-{device}/service.env" in unit
    assert f"{STATE_ENV}={device}/events-state.json" in unit
    # The service's loop, with the environment its unit gives it.
    monkeypatch.setenv(STATE_ENV, str(device / "events-state.json"))
    with load_model(lenet_bundle) as model:
        report = run_loop(model, demo_clip, max_frames=20, smooth=3, events=EventsOptions(
            destinations=(str(tmp_path / "events.jsonl"),)))
    shown = status_text("local", status(LocalLink(device), Journal({})))
    delivered = report.events[0]["delivered"]
    assert delivered >= 2 and f"events: {tmp_path / 'events.jsonl'}: {delivered} delivered, " \
        "0 dropped; 0 queued (as of " in shown
    assert "t0ken" not in shown
    # Over ssh the secrets ride in the agent's source on stdin: the probe answers for the
    # private base, not the one on its command line.
    captured: dict = {}

    class Client:
        host = type("Host", (), {"label": "x", "host": "x"})()

        def run(self, remote: list[str], *, stdin: bytes, **_: object) -> object:
            captured.update(argv=remote, stdin=stdin)
            return subprocess.run([sys.executable, *remote[1:]], input=stdin,
                                  capture_output=True, timeout=60)

    answer = SshLink(Client()).call("probe", "probing", private={"base": str(device)})
    assert answer["base"] == str(device) and str(device) not in " ".join(captured["argv"])
