"""The events options in a deployed service (the device-side parts of issue 25's deploy): the
unit's ExecStart carries them, and their credentials go into the unit's 0600 environment file,
never into the unit or onto a command line."""
from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from edgekit.cli.app import all_commands
from edgekit.cli.events_options import NAMES, events_from
from edgekit.deploy.agent import env as agent
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.service import exec_start, unit_text
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo
from edgekit.events.service import run_args, service_secrets

GIVEN = ["--events", "mqtt://broker.lan/home/door", "--events", "https://hooks.lan/e",
         "--events-classes", "person,7", "--events-min-score", "0.6",
         "--events-min-frames", "4", "--events-update", "2.5",
         "--events-zone", "porch=0,300,640,300,640,480", "--events-queue", "50",
         "--clips", "clips", "--pre", "3", "--post", "2", "--max-disk", "2G"]


def _parsed(args: list[str]):
    ctx = all_commands()["run"].make_context("run", ["bundle", "--source", "0", *args])
    return events_from({name: ctx.params[name] for name in NAMES})


def test_the_service_gets_the_same_options_back() -> None:
    options = _parsed(GIVEN)
    args = run_args(options)
    assert _parsed(args) == options
    assert "--track" not in args and str(2 << 30) in args
    assert run_args(_parsed([])) == [] and run_args(_parsed(["--track"])) == ["--track"]


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
