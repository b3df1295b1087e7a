"""The Ansible route (deploy --inventory) and a deployed service's secrets and counters: the
events' credentials and a camera URL with a password reach each device's 0600 service.env
through a 0600 secrets file the role's action reads (never the plan or the playbook), and
status --inventory shows each host's delivery counters, URLs masked."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import stat
from pathlib import Path

import pytest

from edgekit.deploy.fleet import write_secrets
from edgekit.deploy.fleet_report import FleetReport, HostRow, status_text
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.playbook import ROLE
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo

CAMERA = "rtsp://admin:pa55@10.0.0.9/live"


def _plans(tmp_path: Path, bundle: Path) -> dict:
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    plan = plan_release(bundle, find_target("rpi4-cpu"), wheel,
                        WheelInfo("edgekit", "0.1.0", "", ("numpy>=1.23",)), tmp_path)
    events = dataclasses.replace(plan, run_args=["--events", "mqtt://broker.lan/door"])
    camera = dataclasses.replace(plan, target=dataclasses.replace(plan.target, camera=CAMERA))
    return {"plain": plan, "events": events, "camera": camera}


def test_the_secrets_file_holds_each_target_s_secrets_privately(
        tmp_path: Path, lenet_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_EVENTS_USERNAME", "cam")
    monkeypatch.setenv("EDGEKIT_EVENTS_PASSWORD", "s3cret")
    plans = _plans(tmp_path, lenet_bundle)
    path = tmp_path / "secrets.json"
    assert write_secrets(path, plans) == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "events": {"EDGEKIT_EVENTS_USERNAME": "cam", "EDGEKIT_EVENTS_PASSWORD": "s3cret"},
        "camera": {"EDGEKIT_SOURCE": CAMERA}}
    assert write_secrets(tmp_path / "none.json", {"plain": plans["plain"]}) == ""
    assert not (tmp_path / "none.json").exists()
    # the role's action reads its target's part (ansible-core imports: the controller's side)
    pytest.importorskip("ansible")
    spec = importlib.util.spec_from_file_location(
        "edgekit_release_action", ROLE / "action_plugins" / "edgekit_release.py")
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    from edgekit.deploy import steps

    assert action.read_secrets(steps, str(path), "camera") == {"EDGEKIT_SOURCE": CAMERA}
    assert action.read_secrets(steps, str(path), "plain") == {}
    with pytest.raises(steps.StepFailed, match="cannot read the service's secrets file"):
        action.read_secrets(steps, str(tmp_path / "gone.json"), "camera")
    tasks = (ROLE / "tasks" / "main.yml").read_text()
    assert "secrets_file: \"{{ edgekit_secrets_file | default('') }}\"" in tasks


def test_status_of_the_fleet_shows_each_host_s_delivery_counters() -> None:
    state = {"time": 1796000000, "destinations": [
        {"destination": "http://hooks.lan/e?token=t0ken", "delivered": 12, "dropped": 1,
         "queued": 0, "spooled": 0, "last_error": ""},
        {"destination": "clips", "clips": 3, "deleted": 1, "bytes": 2_000_000, "failed": 0,
         "skipped_frames": 4, "last_error": ""}]}
    rows = [HostRow("cam1", "pi@cam1", status="ok", device={"releases": [], "events": state}),
            HostRow("cam2", "pi@cam2", status="ok", device={"releases": []})]
    text = status_text(FleetReport("status", "lab.ini", None, rows))
    assert "cam1: events: http://hooks.lan/e?token=***: 12 delivered, 1 dropped; 0 queued" in text
    assert "cam1: clips: 3 written in clips (2.0 MB), 1 deleted for max_disk, 4 frames " \
        "skipped" in text
    assert "t0ken" not in text and "cam2: events" not in text
