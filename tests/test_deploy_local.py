"""The deploy's steps (edgekit/deploy/steps.py) over the local link: a folder on this machine
as the device, the agent run in this process, its lock held by a real ``hold`` process.

Fast (no sshd, root or qemu): the order of the steps, what each failure leaves behind, the
lock, and the switch. The Python environment and the smoke test need pip and minutes, so here
the device answers them as the agent does when they pass (``FakeEnvironment``); the SSH tests
(test_deploy_ssh.py) and the emulated Pi run them for real.
"""
from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from deploy_support import intact, local_profile

from edgekit.deploy import steps
from edgekit.deploy.agent import files
from edgekit.deploy.agent.venv import link_venv
from edgekit.deploy.local import LocalLink
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.playbook import plan_vars
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo
from edgekit.errors import ConnectionFailed, DeployError

PASSED = {"verify_code": 0, "verify": {"files_ok": True, "files": []}, "backends": []}


class FakeEnvironment(LocalLink):
    """The agent's own answers, except ``venv`` and ``smoke``: answered as when they pass
    (``venv``: an empty environment marked complete, linked from the release; ``smoke``: the
    answer given here), and remembered in ``asked``."""

    def __init__(self, folder: Path, smoke: dict[str, Any] | None = None) -> None:
        super().__init__(folder)
        self.smoke = PASSED if smoke is None else smoke
        self.asked: list[str] = []

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        self.asked.append(command)
        if command == "venv":
            venv = Path(self.base, "venvs", payload["key"])
            venv.mkdir(parents=True, exist_ok=True)
            (venv / files.VENV_MARK).write_text("{}")
            link_venv(files.incoming_dir(self.base, payload["release"]), payload["key"])
            return {"ok": True, "key": payload["key"], "reused": False, "seconds": 0.0}
        if command == "smoke":
            return {"ok": True, **self.smoke}
        return super().call(command, step, **payload)


class CutLink(FakeEnvironment):
    """The link drops during the copy; ``free``: what the device's disk has left then."""

    def __init__(self, folder: Path, free: int | None) -> None:
        super().__init__(folder)
        self.free = free

    def send(self, files: list[tuple[str, str]], incoming: str, step: str) -> None:
        raise ConnectionFailed(f"{step}: the link to {self.label} dropped (Broken pipe)")

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        answer = super().call(command, step, **payload)
        return {**answer, "free_bytes": self.free} if command == "probe" else answer


@pytest.fixture
def plan(tmp_path: Path, lenet_bundle: Path) -> dict[str, Any]:
    """The plan for a target of this machine, with a wheel file that is only bytes."""
    wheel = tmp_path / "edgekit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    shipped = ShippedFile(f"wheels/{wheel.name}", wheel,
                          hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel.stat().st_size)
    target = find_target(str(local_profile(tmp_path / "targets")))
    info = WheelInfo("edgekit", "0.1.0", ">=3.9", ("numpy>=1.23",))
    staging = tmp_path / "staging"
    staging.mkdir()
    return plan_vars(plan_release(lenet_bundle, target, shipped, info, staging), service=False)


def run(link: steps.Link, plan: dict[str, Any], **options: Any) -> dict[str, Any]:
    titles: list[str] = []
    record = steps.deploy(link, plan, steps.Journal({}, lambda _, title: titles.append(title)),
                          **options)
    record["titles"] = titles
    return record


def current(device: Path) -> str:
    return os.readlink(device / "current")


def test_deploy_redeploy_and_rollback(tmp_path: Path, plan: dict[str, Any]) -> None:
    device = tmp_path / "device"
    link = FakeEnvironment(device)
    first = run(link, plan)
    assert link.asked == ["stage", "verify", "venv", "smoke", "activate"]
    assert [t.split(" ")[0] for t in first["titles"]] == [
        "take", "stage", "copy", "check", "create", "smoke", "switch"]
    assert current(device) == f"releases/{first['release']}" and first["previous"] is None
    assert intact(device / "releases" / first["release"])
    assert first["files_copied"] == first["files"] and first["bytes_copied"] == \
        first["bytes_total"]
    # The same bundle again: every file is already there (linked by sha256), none copied.
    again = run(FakeEnvironment(device), plan)
    assert again["files_copied"] == 0 and again["files_reused"] == again["files"]
    assert again["previous"] == first["release"]
    assert current(device) == f"releases/{again['release']}"
    back = steps.rollback(LocalLink(device), steps.Journal({}))
    assert back["release"] == first["release"] and back["previous"] == again["release"]
    assert current(device) == f"releases/{first['release']}"
    assert steps.status(LocalLink(device), steps.Journal({}))["current"] == first["release"]


def test_a_failed_smoke_test_switches_nothing(tmp_path: Path, plan: dict[str, Any]) -> None:
    device = tmp_path / "device"
    first = run(FakeEnvironment(device), plan)
    failing = FakeEnvironment(device, {"verify_code": 1, "verify_error": "no backend can run"})
    with pytest.raises(DeployError) as failure:
        run(failing, plan)
    assert str(failure.value) == (
        f"the smoke test failed on the device: no backend can run. The running release "
        f"({first['release']}) is untouched; the incomplete new release was removed")
    assert "activate" not in failing.asked and failing.asked[-1] == "cleanup"
    assert current(device) == f"releases/{first['release']}"
    assert not [p for p in (device / "releases").iterdir() if p.name.startswith(".incoming")]


@pytest.mark.parametrize(("free", "needle"), [
    (10, "the device's disk is full (10 B free, the copy needed"),
    (None, "the link to local:"),
])
def test_a_cut_copy_removes_the_new_release(tmp_path: Path, plan: dict[str, Any],
                                            free: int | None, needle: str) -> None:
    """The copy fails: a full disk is named as such (scp only says "Failure"); the new folder
    is removed while the device still answers."""
    device = tmp_path / "device"
    with pytest.raises(DeployError) as failure:
        run(CutLink(device, free), plan)
    message = str(failure.value)
    assert needle in message and message.endswith(
        "Nothing was running there before, and nothing is now; the incomplete new release was "
        "removed")
    assert isinstance(failure.value, DeployError if free else ConnectionFailed)
    assert os.listdir(device / "releases") == [] and not (device / "current").exists()


def test_a_device_that_cannot_run_the_target_is_refused_before_staging(
        tmp_path: Path, plan: dict[str, Any]) -> None:
    device = tmp_path / "device"
    other = {**plan, "target": {**plan["target"], "arch": "armv7l"}}
    link = FakeEnvironment(device)
    with pytest.raises(DeployError, match="is .* and target .* is for armv7l"):
        run(link, other)
    assert link.asked == [] and not (device / "releases").exists()


def test_one_deploy_at_a_time_and_a_dead_holders_lock_is_taken_over(
        tmp_path: Path, plan: dict[str, Any]) -> None:
    device = tmp_path / "device"
    holder = LocalLink(device)
    with holder.lock("deploy of a test", 0.0) as held:
        assert held["ok"] and held["probe"]["current"] is None
        with pytest.raises(DeployError, match="another deploy holds this device's lock .* "
                                              "deploy of a test from .* Refused at once"):
            run(FakeEnvironment(device), plan)
        os.kill(held["owner"]["pid"], signal.SIGKILL)  # the holder dies, its record stays
        taken = run(FakeEnvironment(device), plan)
    assert any("took over the device's lock from deploy of a test" in n for n in taken["notes"])
    assert current(device) == f"releases/{taken['release']}"


def test_a_step_without_the_lock_changes_nothing(tmp_path: Path, plan: dict[str, Any]) -> None:
    """A deploy whose lock is gone (its session died) stops at the next step."""
    device = tmp_path / "device"

    class LosesItsLock(FakeEnvironment):
        def send(self, files: list[tuple[str, str]], incoming: str, step: str) -> None:
            super().send(files, incoming, step)
            self.token = "stolen"

    with pytest.raises(DeployError, match="another deploy holds this device's lock now"):
        run(LosesItsLock(device), plan)
    assert not (device / "current").exists()
