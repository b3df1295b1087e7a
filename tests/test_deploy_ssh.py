"""Real deploys to a real OpenSSH server on loopback: files, checksums, the current link, a
redeploy that copies nothing, rollback, status, a link cut or stalled mid-copy, a full disk,
the service unit and --offline.

The server runs on this machine, so the profile is rpi4-cpu's packages for this machine's
architecture (deploy_support.local_profile); the device's environment is made for real
(python -m venv + pip install tflite-runtime 2.14.0, numpy<2, OpenCV <= 4.11) by the device's
own python3, and the smoke test runs tflite-runtime there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli_json, run_cli
from deploy_support import intact, local_profile, release_files, sha256, ssh_args
from sshd import CuttingProxy, SshServer

from edgekit.bundle.manifest import read_manifest
from edgekit.deploy import DeployRequest, SshOptions, deploy, parse_host
from edgekit.deploy.remote import SshLink
from edgekit.deploy.ssh import SshClient
from edgekit.deploy.targets import find_target
from edgekit.errors import ConnectionFailed, DeployError

pytestmark = [pytest.mark.slow, pytest.mark.system_tools("openssh")]

INT8_ONLY = {'formats = ["tflite-int8", "tflite-fp32"]': 'formats = ["tflite-int8"]'}
THREE = {'formats = ["tflite-int8", "tflite-fp32"]':
         'formats = ["tflite-int8", "tflite-fp32", "tflite-dynamic"]'}


def run_deploy(bundle: Path, profile: Path, server: SshServer, *extra: str) -> dict:
    result = run_cli("deploy", bundle, "--target", profile, *ssh_args(server), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def current(server: SshServer) -> str:
    return os.readlink(server.local_path("edgekit/current"))


def request(bundle: Path, profile: Path, server: SshServer, **kwargs) -> DeployRequest:
    ssh = SshOptions(identity=server.identity_file, known_hosts=server.known_hosts_file,
                     timeout=kwargs.pop("timeout", 60.0))
    return DeployRequest(bundle=bundle, target=find_target(str(profile)),
                         host=parse_host(server.destination, server.port), ssh=ssh, **kwargs)


def test_deploy_redeploy_rollback_status(ssh_server: SshServer, lenet_bundle: Path,
                                         tmp_path: Path) -> None:
    profile = local_profile(tmp_path)
    first = run_deploy(lenet_bundle, profile, ssh_server)
    base = ssh_server.local_path("edgekit")
    release = base / "releases" / first["release"]
    assert current(ssh_server) == f"releases/{first['release']}"
    # Only what the target runs, each file with the workstation's bytes.
    assert sorted(p.name for p in (release / "bundle").iterdir()) == [
        "edgekit.json", "lenet5_digits_fp32.tflite", "lenet5_digits_int8.tflite",
        "validation.npz"]
    for name in ("lenet5_digits_int8.tflite", "lenet5_digits_fp32.tflite", "validation.npz"):
        assert sha256(release / "bundle" / name) == sha256(lenet_bundle / name)
    assert [a.format for a in read_manifest(release / "bundle").artifacts] == \
        ["tflite-fp32", "tflite-int8"]
    assert intact(release) and len(release_files(release)) == first["files"] == 5
    assert first["bytes_copied"] == first["bytes_total"] and not first["venv_reused"]
    smoke = first["smoke"]
    assert smoke["runtime"] == "tflite-runtime 2.14.0" and smoke["format"] == "tflite-int8"
    assert smoke["devices"] == ["CPU"] and smoke["matches"] == 10
    assert [s["device"] for s in smoke["samples"]] == [s["workstation"] for s in
                                                       smoke["samples"]]
    # A dry run asks the device (read-only) and plans to copy nothing; nothing changes.
    plan = run_deploy(lenet_bundle, profile, ssh_server, "--dry-run")
    assert plan["would_copy"] == {"files": 0, "bytes": 0, "files_reused": 5,
                                  "venv_reused": True, "device_asked": True}
    assert plan["bytes_copied"] == plan["files_copied"] == 0
    assert [p.name for p in (base / "releases").iterdir()] == [first["release"]]
    # A redeploy of the same bundle copies nothing and reinstalls nothing.
    second = run_deploy(lenet_bundle, profile, ssh_server)
    assert second["bytes_copied"] == 0 and second["files_copied"] == 0
    assert second["files_reused"] == 5 and second["venv_reused"]
    assert second["previous"] == first["release"] != second["release"]
    assert current(ssh_server) == f"releases/{second['release']}"
    again = base / "releases" / second["release"] / "bundle" / "lenet5_digits_int8.tflite"
    assert again.stat().st_ino == (release / "bundle" / "lenet5_digits_int8.tflite").stat().st_ino
    assert second["seconds"]["total"] < first["seconds"]["total"]
    # Status, rollback, and no rollback past the first release.
    status = cli_json("status", "--json", *ssh_args(ssh_server))
    assert [(r["id"], r["current"], r["complete"]) for r in status["releases"]] == [
        (first["release"], False, True), (second["release"], True, True)]
    text = run_cli("status", *ssh_args(ssh_server)).stdout
    assert second["release"] in text and "current" in text and "lenet5_digits" in text
    back = run_cli("rollback", "--json", *ssh_args(ssh_server))
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["current"] == first["release"]
    assert current(ssh_server) == f"releases/{first['release']}"
    assert_clean_error(run_cli("rollback", *ssh_args(ssh_server)),
                       "no earlier release")
    forward = run_cli("rollback", "--to", second["release"], *ssh_args(ssh_server))
    assert forward.returncode == 0 and current(ssh_server) == f"releases/{second['release']}"
    # The release that runs, run again on the device through its own edgekit.
    python = base / "current" / "venv" / "bin" / "python"
    check = ssh_server.run([str(python), "-m", "edgekit", "verify",
                            str(base / "current" / "bundle"), "--json"])
    assert check.returncode == 0 and json.loads(check.stdout)["agreement"] == 1.0


def test_a_cut_link_mid_copy_leaves_the_running_release(
        ssh_server: SshServer, cutting_proxy: CuttingProxy, lenet_bundle: Path,
        tmp_path: Path) -> None:
    first = run_deploy(lenet_bundle, local_profile(tmp_path, "small", edits=INT8_ONLY),
                       ssh_server)
    running = ssh_server.local_path("edgekit/releases") / first["release"]
    via = ssh_server.through(cutting_proxy.port)
    bigger = local_profile(tmp_path, "bigger", edits=THREE)

    def cut_during_copy(message: str) -> None:
        if message.startswith("copy the files"):
            cutting_proxy.cut_after(upload=100_000)  # mid-way through ~330 KB of new files

    with pytest.raises(ConnectionFailed) as failure:
        deploy(request(lenet_bundle, bigger, via), progress=cut_during_copy)
    message = str(failure.value).lower()
    assert "copying the release" in message and "dropped" in message
    assert f"the running release ({first['release'].lower()}) is untouched" in message
    assert cutting_proxy.cuts == 1
    assert current(ssh_server) == f"releases/{first['release']}" and intact(running)
    releases = sorted(p.name for p in ssh_server.local_path("edgekit/releases").iterdir())
    assert releases == [first["release"]]  # the partial one is gone (or never used)
    # The next deploy through the same (healed) link copies only what the device lacks.
    retry = deploy(request(lenet_bundle, bigger, via))
    assert retry.files_reused == 3  # int8, validation set, wheel
    assert retry.files_copied == 3  # fp32, dynamic, and the manifest that now lists them
    assert current(ssh_server) == f"releases/{retry.release}" and retry.previous == \
        first["release"]


def test_a_stalled_link_fails_in_bounded_time(ssh_server: SshServer, lenet_bundle: Path,
                                              tmp_path: Path) -> None:
    first = run_deploy(lenet_bundle, local_profile(tmp_path, "small", edits=INT8_ONLY),
                       ssh_server)
    bigger = local_profile(tmp_path, "bigger", edits=THREE)
    with CuttingProxy(ssh_server.host, ssh_server.port, mode="stall") as proxy:
        def stall_during_copy(message: str) -> None:
            if message.startswith("copy the files"):
                proxy.cut_after(upload=100_000)

        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match="stalled|dropped") as failure:
            deploy(request(lenet_bundle, bigger, ssh_server.through(proxy.port), timeout=4),
                   progress=stall_during_copy)
        assert time.monotonic() - started < 40
    assert "is untouched" in str(failure.value)
    assert current(ssh_server) == f"releases/{first['release']}"
    assert intact(ssh_server.local_path("edgekit/releases") / first["release"])


@pytest.fixture
def small_disk(ssh_server: SshServer) -> Path:
    """The device's releases folder on a 3 MB tmpfs: a disk that really fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder = ssh_server.local_path("edgekit/releases")
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_the_running_release(ssh_server: SshServer, small_disk: Path,
                                                lenet_bundle: Path, tmp_path: Path) -> None:
    first = run_deploy(lenet_bundle, local_profile(tmp_path, "small", edits=INT8_ONLY),
                       ssh_server)
    running = small_disk / first["release"]
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 200_000))  # 200 KB stay free
    bigger = local_profile(tmp_path, "bigger", edits=THREE)
    result = run_cli("deploy", lenet_bundle, "--target", bigger, *ssh_args(ssh_server))
    assert_clean_error(result, "not enough space on the device",
                       f"the running release ({first['release']}) is untouched")
    assert current(ssh_server) == f"releases/{first['release']}" and intact(running)
    assert sorted(p.name for p in small_disk.iterdir()) == [first["release"], "filler"]
    # With 1 MB taken by the device's own files meanwhile, a full disk in the middle of the
    # copy (not foreseen by the check before it) fails the same way.
    filler.unlink()

    def fill_during_copy(message: str) -> None:
        if message.startswith("copy the files"):
            stat = os.statvfs(small_disk)
            filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 50_000))

    with pytest.raises(DeployError, match="is untouched") as failure:
        deploy(request(lenet_bundle, bigger, ssh_server), progress=fill_during_copy)
    assert "disk is full" in str(failure.value) or "No space left" in str(failure.value)
    assert current(ssh_server) == f"releases/{first['release']}" and intact(running)
    assert sorted(p.name for p in small_disk.iterdir()) == [first["release"], "filler"]


def test_service_unit_and_fallback_backend(ssh_server: SshServer, detector_bundle: Path,
                                           demo_clip: Path, tmp_path: Path) -> None:
    """rpi4-coral-usb's choices on this machine: no edgetpu artifact, so tflite runs the
    detector (the service runs the detection loop)."""
    coral = local_profile(tmp_path, "coral", base="rpi4-coral-usb")
    report = run_deploy(detector_bundle, coral, ssh_server, "--service")
    assert report["formats"] == ["tflite-int8"] and report["smoke"]["backend"] == "tflite"
    assert any("nothing in this bundle runs on edgetpu" in n for n in report["notes"])
    unit = ssh_server.local_path(".config/systemd/user/edgekit.service")
    text = unit.read_text()
    base = ssh_server.local_path("edgekit")
    assert (f"ExecStart={base}/current/venv/bin/edgekit run {base}/current/bundle "
            "--source 0 --backend tflite\n") in text  # no --device usb: the CPU runs it
    assert (base / "current" / "venv" / "bin" / "edgekit").is_file()
    # The unit's command, run on the device with the deployed environment (tflite-runtime 2.14,
    # numpy < 2, OpenCV <= 4.11), on a clip instead of the camera.
    ran = ssh_server.run([f"{base}/current/venv/bin/edgekit", "run", f"{base}/current/bundle",
                          "--source", str(demo_clip), "--backend", "tflite", "--capture",
                          "max_frames=20", "--json"], timeout=300)
    assert ran.returncode == 0, ran.stderr.decode()
    loop = json.loads(ran.stdout)
    assert loop["frames"] == 20 and "tflite-runtime 2.14.0" in loop["backend"]
    assert loop["map50"] is not None
    service = report["service"]
    assert service["unit"] == str(unit) and service["installed"]
    if not service["systemd"]:  # as here: a container without systemd
        assert service["check"] is None
        again = run_cli("deploy", detector_bundle, "--target", coral, *ssh_args(ssh_server),
                        "--service")
        assert again.returncode == 0, again.stderr
        assert "systemd is not running on the device, so it was not started" in again.stdout
        assert "systemctl --user daemon-reload && systemctl --user enable --now" in again.stdout
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stderr


def test_offline_ships_the_wheels(ssh_server: SshServer, lenet_bundle: Path,
                                  tmp_path: Path) -> None:
    report = run_deploy(lenet_bundle, local_profile(tmp_path), ssh_server, "--offline")
    release = ssh_server.local_path("edgekit/releases") / report["release"]
    wheels = sorted(p.name.split("-")[0] for p in (release / "wheels").iterdir())
    assert {"numpy", "tflite_runtime", "opencv_python_headless", "click", "edgekit"} <= \
        set(wheels)
    assert json.loads((release / "release.json").read_text())["offline"] is True
    assert report["smoke"]["runtime"] == "tflite-runtime 2.14.0"
    log = next(ssh_server.local_path("edgekit/logs").glob("venv-*.log")).read_text()
    assert "--no-index" in log and "Downloading" not in log


def test_damaged_files_on_the_device_are_never_used(ssh_server: SshServer, lenet_bundle: Path,
                                                    tmp_path: Path) -> None:
    first = run_deploy(lenet_bundle, local_profile(tmp_path, "small", edits=INT8_ONLY),
                       ssh_server)
    second = run_deploy(lenet_bundle, local_profile(tmp_path), ssh_server)
    releases = ssh_server.local_path("edgekit/releases")
    damaged = releases / first["release"] / "bundle" / "lenet5_digits_int8.tflite"
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[-64] ^= 0xFF  # a flipped bit on the SD card (both releases share the file)
    damaged.write_bytes(bytes(data))
    result = run_cli("rollback", *ssh_args(ssh_server))
    assert_clean_error(result, f"release {first['release']} is damaged",
                       "lenet5_digits_int8.tflite: sha256 differs")
    assert current(ssh_server) == f"releases/{second['release']}"
    third = run_deploy(lenet_bundle, local_profile(tmp_path), ssh_server)
    assert third["files_copied"] == 1 and third["bytes_copied"] == damaged.stat().st_size
    assert intact(releases / third["release"])  # a fresh copy, not the damaged one
    assert third["smoke"]["matches"] == 10


def test_a_failed_smoke_test_switches_nothing(ssh_server: SshServer, lenet_bundle: Path,
                                              tmp_path: Path) -> None:
    """A profile that forgets the TFLite runtime: the new release cannot run, so it never
    becomes current."""
    first = run_deploy(lenet_bundle, local_profile(tmp_path), ssh_server)
    broken = local_profile(tmp_path, "no-runtime",
                           edits={'"tflite-runtime==2.14.0", ': ""})
    result = run_cli("deploy", lenet_bundle, "--target", broken, *ssh_args(ssh_server))
    assert_clean_error(result, "the smoke test failed on the device",
                       "no TFLite runtime is installed",
                       f"the running release ({first['release']}) is untouched")
    assert current(ssh_server) == f"releases/{first['release']}"
    releases = ssh_server.local_path("edgekit/releases")
    assert sorted(p.name for p in releases.iterdir()) == [first["release"]]


def lock_owner(server: SshServer) -> dict:
    return json.loads(server.local_path("edgekit/lock").read_text())


def test_one_deploy_at_a_time_and_a_dead_holders_lock_is_taken_over(
        ssh_server: SshServer, lenet_bundle: Path, tmp_path: Path) -> None:
    small = local_profile(tmp_path, "small", edits=INT8_ONLY)
    first = run_deploy(lenet_bundle, small, ssh_server)
    host = parse_host(ssh_server.destination, ssh_server.port)
    device = SshLink(SshClient(host, SshOptions(identity=ssh_server.identity_file,
                                               known_hosts=ssh_server.known_hosts_file)))
    with device.lock("deploy of a test (target small)") as held:
        assert held["ok"] and lock_owner(ssh_server)["workstation_pid"] == os.getpid()
        for args in (("deploy", lenet_bundle, "--target", small), ("rollback",)):
            assert_clean_error(run_cli(*args, *ssh_args(ssh_server)),
                               "another deploy holds this device's lock (edgekit/lock): deploy "
                               f"of a test (target small) from {socket.gethostname()} (pid "
                               f"{os.getpid()}", "refused at once",
                               "--release lock_timeout=SECONDS")
        status = run_cli("status", *ssh_args(ssh_server))  # reading needs no lock
        assert status.returncode == 0 and "lock: held by deploy of a test" in status.stdout
        os.kill(lock_owner(ssh_server)["pid"], signal.SIGKILL)  # the holder dies on the device
        taken = run_deploy(lenet_bundle, small, ssh_server)
    assert any("took over the device's lock from deploy of a test" in n for n in taken["notes"])
    assert taken["previous"] == first["release"] and current(ssh_server) == \
        f"releases/{taken['release']}"
    # A deploy that waits (--lock-timeout) goes ahead once the holder lets go.
    with device.lock("deploy of a slow one"):
        started = time.monotonic()
        waiter = subprocess.Popen(
            [sys.executable, "-m", "edgekit", "deploy", str(lenet_bundle), "--target",
             str(small), *map(str, ssh_args(ssh_server)), "--release", "lock_timeout=120",
             "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, err
    assert json.loads(out)["previous"] == taken["release"] and time.monotonic() - started > 3


def test_a_deploy_that_loses_its_lock_stops_before_the_switch(
        ssh_server: SshServer, lenet_bundle: Path, tmp_path: Path) -> None:
    first = run_deploy(lenet_bundle, local_profile(tmp_path, "small", edits=INT8_ONLY),
                       ssh_server)

    def holder_dies_during_copy(message: str) -> None:
        if message.startswith("copy the files"):
            os.kill(lock_owner(ssh_server)["pid"], signal.SIGKILL)

    with pytest.raises(DeployError) as failure:
        deploy(request(lenet_bundle, local_profile(tmp_path, "bigger", edits=THREE), ssh_server),
               progress=holder_dies_during_copy)
    message = str(failure.value)
    assert "no longer holds the device's lock" in message
    assert f"The running release ({first['release']}) is untouched" in message
    assert current(ssh_server) == f"releases/{first['release']}"
    assert intact(ssh_server.local_path("edgekit/releases") / first["release"])
