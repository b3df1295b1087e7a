"""edgekit deploy --inventory: many devices through Ansible (ansible-core), each a real user
behind one loopback OpenSSH server (tests/fleet_devices.py), with the same steps and checks as
one device; a full disk, a canary, status, rollback, a redeploy that copies nothing, Ctrl-C;
and bad input (an inventory that does not parse, a pattern matching nothing, an unknown
target, a refused key or an unknown host, Ansible missing), each one line.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fleet_devices as fd
import pytest
from conftest import ROOT, assert_clean_error, run_cli
from deploy_support import intact, local_profile
from live_view import get, wait_for
from sshd import SshServer, free_port

from edgekit.deploy.fleet import log_path, stop_control_masters
from edgekit.deploy.shipping import agent_source

pytest.importorskip("ansible", reason="needs ansible-core: pip install 'edgekit[fleet]'")

SMALL = {'formats = ["tflite-int8", "tflite-fp32"]': 'formats = ["tflite-int8"]'}


def current(device: SshServer) -> str | None:
    link = device.local_path("edgekit/current")
    return os.readlink(link) if os.path.islink(link) else None


def rows(result) -> dict[str, dict]:
    assert result.stdout.strip(), result.stderr
    return {h["host"]: h for h in json.loads(result.stdout)["hosts"]}


def inventory_for(path: Path, entries: list[tuple[str, SshServer]], target: Path | str) -> Path:
    lines = ["[lab]", *[fd.inventory_line(name, d) for name, d in entries], "",
             "[lab:vars]", f"edgekit_target={target}", ""]
    path.write_text("\n".join(lines))
    return path


# --- bad input: one line each, no traceback ---------------------------------------------------

def test_an_inventory_that_does_not_parse(lenet_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "lab.ini"
    bad.write_text("[pis\npi1 ansible_host=10.0.0.7\n")
    result = run_cli("deploy", lenet_bundle, "--inventory", bad)
    assert result.returncode == 2
    assert_clean_error(result, f"--inventory {bad} does not parse as an Ansible inventory",
                       "ini:", "ansible-inventory -i")
    yaml = tmp_path / "lab.yml"
    yaml.write_text("all:\n  hosts: [\n")
    assert_clean_error(run_cli("status", "--inventory", yaml),
                       "does not parse", "yaml", "YAML parsing failed")
    assert_clean_error(run_cli("status", "--inventory", tmp_path / "none.ini"),
                       "no such file")


def test_a_pattern_that_matches_nothing_and_an_unknown_target(lenet_bundle: Path,
                                                              tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text("all:\n  children:\n    pis:\n      hosts:\n"
                         "        pi1: {ansible_host: 10.0.0.7, edgekit_target: rpi4-cpu}\n"
                         "        pi2: {ansible_host: 10.0.0.8, edgekit_target: rpi9-cpu}\n")
    result = run_cli("status", "--inventory", inventory, "--limit", "cams")
    assert result.returncode == 2
    assert_clean_error(result, "--limit 'cams' matches no host", "its hosts: pi1, pi2",
                       "groups: pis")
    result = run_cli("deploy", lenet_bundle, "--inventory", inventory)
    assert result.returncode == 2
    assert_clean_error(result, "host pi2: edgekit_target 'rpi9-cpu'", "unknown target",
                       "set edgekit_target to a name from edgekit targets")
    result = run_cli("deploy", lenet_bundle, "--inventory", inventory, "--limit", "pi1:pi2",
                     "--target", "rpi4-cpu")
    assert_clean_error(result, "host pi2")
    plain = tmp_path / "plain.ini"
    plain.write_text("pi1 ansible_host=10.0.0.7\n")
    assert_clean_error(run_cli("deploy", lenet_bundle, "--inventory", plain),
                       "host pi1 has no edgekit_target and no --target")


def test_an_inventory_that_turns_host_key_checking_off_is_refused(lenet_bundle: Path,
                                                                  tmp_path: Path) -> None:
    inventory = tmp_path / "lab.ini"
    inventory.write_text("pi1 ansible_host=10.0.0.7 ansible_host_key_checking=false\n")
    assert_clean_error(run_cli("status", "--inventory", inventory),
                       "host pi1 sets ansible_host_key_checking=false",
                       "keeps host-key checking on", "ssh-keyscan")


def test_fleet_options_are_checked(lenet_bundle: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "lab.ini"
    inventory.write_text("pi1 ansible_host=10.0.0.7 edgekit_target=rpi4-cpu\n")
    for args, needle in [
            (("--limit", "pis", "--host", "pi@x"), "--limit goes with --inventory"),
            (("--inventory", inventory, "--host", "pi@x"), "drop --host"),
            (("--inventory", inventory, "--rollout", "serial=0"), "--rollout serial takes"),
            (("--inventory", inventory, "--rollout", "serial=120%"), "1% to 100%"),
            (("--inventory", inventory, "--rollout", "max-fail=101"), "--rollout max_fail"),
            (("--inventory", inventory, "--rollout", "max-fail=nan"), "--rollout max_fail"),
            (("--inventory", inventory, "--rollout", "serial"), "'serial' is not KEY=VALUE"),
            (("--host", "pi@x", "--rollout", "canary"), "--rollout goes with --inventory"),
            (("--inventory", inventory, "--serial", "1"), "--serial is now --rollout serial=N|N%"),
            (("--host", "pi@x", "--port", "22"), "--port is now --ssh port=N"),
            (("--inventory", inventory, "--ssh", "port=22"), "drop --host and --ssh port"),
            (("--inventory", inventory, "--dry-run"), "edgekit playbook writes")]:
        result = run_cli("deploy", lenet_bundle, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert_clean_error(result, needle)
    assert_clean_error(run_cli("deploy", lenet_bundle), "--host USER@HOST", "--inventory")
    assert_clean_error(run_cli("playbook", lenet_bundle, "-o", tmp_path / "pb"),
                       "playbook needs --inventory")


def test_without_ansible_the_error_names_the_extra(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.ini"
    inventory.write_text("pi1 ansible_host=10.0.0.7\n")
    blocker = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):"
               "\n        if name == 'ansible' or name.startswith('ansible.'):\n"
               "            raise ModuleNotFoundError(name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "from edgekit.cli import main\nsys.argv[0] = 'edgekit'\nmain()\n")
    result = subprocess.run([sys.executable, "-c", blocker, "status",
                             "--inventory", str(inventory)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 1
    assert_clean_error(result, "ansible-core is not installed", "pip install 'edgekit[fleet]'")


def test_a_refused_key_and_an_unknown_host_are_named_per_host(
        ssh_server: SshServer, wrong_identity_file: Path, tmp_path: Path) -> None:
    """The loopback sshd three times over: one host with a key it refuses, one under a name
    the known_hosts file does not list (localhost), one nobody listens for; one line each."""
    inventory = tmp_path / "lab.ini"
    closed = fd.device_with(ssh_server, port=free_port())
    inventory.write_text("\n".join([
        fd.inventory_line("good", ssh_server),
        fd.inventory_line("wrongkey", fd.device_with(ssh_server,
                                                     identity_file=wrong_identity_file)),
        fd.inventory_line("unknown", fd.device_with(ssh_server, host="localhost")),
        fd.inventory_line("closed", closed), ""]))
    result = run_cli("status", "--inventory", inventory, "--ssh",
                     f"known_hosts={ssh_server.known_hosts_file}", "--json")
    assert result.returncode == 1
    assert_clean_error(result, "3 of 4 hosts failed (wrongkey, unknown, closed)")
    hosts = rows(result)
    assert hosts["good"]["status"] == "ok" and hosts["good"]["device"]["releases"] == []
    assert "refused the key" in hosts["wrongkey"]["error"]
    assert "ssh-copy-id" in hosts["wrongkey"]["error"]
    assert "is not a known host" in hosts["unknown"]["error"]
    assert "ssh-keyscan -p" in hosts["unknown"]["error"]
    assert "connection refused" in hosts["closed"]["error"]
    assert all("\n" not in h["error"] for h in hosts.values())
    text = run_cli("status", "--inventory", inventory, "--ssh",
                   f"known_hosts={ssh_server.known_hosts_file}")
    assert text.returncode == 1 and "wrongkey" in text.stdout and "refused the key" in text.stdout


def test_emit_playbook_writes_a_self_contained_folder(lenet_bundle: Path,
                                                      tmp_path: Path) -> None:
    profile = local_profile(tmp_path)
    inventory = tmp_path / "lab.ini"
    inventory.write_text(f"[pis]\npi1 ansible_host=10.0.0.7\npi2 ansible_host=10.0.0.8 "
                         f"edgekit_target={profile}\n")
    out = tmp_path / "playbook"
    result = run_cli("playbook", lenet_bundle, "--inventory", inventory, "--target", "rpi4-cpu",
                     "--rollout", "serial=1,max-fail=0", "-o", out)
    assert result.returncode == 0, result.stderr
    assert (out / "roles/edgekit_release/files/agent.py").read_bytes() == agent_source()
    assert (out / "roles/edgekit_release/action_plugins/edgekit_release.py").is_file()
    play = (out / "deploy.yml").read_text()
    assert "serial: 1" in play and "max_fail_percentage: 0" in play
    assert "host_key_checking = True" in (out / "ansible.cfg").read_text()
    assert "StrictHostKeyChecking=yes" in (out / "ansible.cfg").read_text()
    plans = json.loads((out / "plans.json").read_text())["edgekit_plans"]
    assert set(plans) == {"rpi4-cpu", str(profile)}
    for plan in plans.values():
        for f in plan["files"]:
            local = out / f["local"]
            assert not Path(f["local"]).is_absolute() and local.stat().st_size == f["size"]
    readme = (out / "README.md").read_text()
    assert "ansible-playbook -i INVENTORY deploy.yml" in readme and "pi2" in readme
    # ansible-playbook itself accepts it.
    check = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", str(inventory),
                            "deploy.yml", "--syntax-check"], cwd=out, capture_output=True,
                           text=True, check=False,
                           env={**os.environ, "ANSIBLE_CONFIG": str(out / "ansible.cfg")})
    assert check.returncode == 0, check.stdout + check.stderr
    again = run_cli("playbook", lenet_bundle, "--inventory", inventory, "--target", "rpi4-cpu",
                    "-o", out)
    assert_clean_error(again, "not empty")


def test_emit_playbook_with_the_live_view(detector_bundle: Path, tmp_path: Path) -> None:
    """A camera target with --service: the unit serves the view and reads the token from the
    device's service.env (its own folder, filled in on each host); no token anywhere here; the
    role's second task shows what the action leaves for it. Without --service, a note."""
    inventory = tmp_path / "lab.ini"
    inventory.write_text("cam1 ansible_host=10.0.0.7 edgekit_target=rpi4-camera\n"
                         "cam2 ansible_host=10.0.0.8 edgekit_target=rpi4-cpu\n")
    out = tmp_path / "playbook"
    result = run_cli("playbook", detector_bundle, "--inventory", inventory, "--service",
                     "-o", out)
    assert result.returncode == 0, result.stderr
    plans = json.loads((out / "plans.json").read_text())["edgekit_plans"]
    camera, cpu = plans["rpi4-camera"], plans["rpi4-cpu"]
    assert camera["serve"] == "0.0.0.0:8080" and cpu["serve"] == ""
    base = camera["unit_base"]
    assert f"EnvironmentFile=-{base}/service.env\n" in camera["unit"]
    assert "--serve 0.0.0.0:8080\n" in camera["unit"] and "TOKEN" not in camera["unit"]
    assert "EnvironmentFile" not in cpu["unit"] and "--serve" not in cpu["unit"]
    tasks = (out / "roles/edgekit_release/tasks/main.yml").read_text()
    assert "register: edgekit_result" in tasks and "edgekit_result.edgekit_show" in tasks
    readme = (out / "README.md").read_text()
    assert "## The live view" in readme and "`rpi4-camera` (0.0.0.0:8080)" in readme
    assert "service.env" in readme
    check = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", str(inventory),
                            "deploy.yml", "status.yml", "--syntax-check"], cwd=out,
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "ANSIBLE_CONFIG": str(out / "ansible.cfg")})
    assert check.returncode == 0, check.stdout + check.stderr
    plain = tmp_path / "plain"
    result = run_cli("playbook", detector_bundle, "--inventory", inventory, "-o", plain)
    assert result.returncode == 0, result.stderr
    plans = json.loads((plain / "plans.json").read_text())["edgekit_plans"]
    assert plans["rpi4-camera"]["serve"] == "" and plans["rpi4-camera"]["unit"] == ""
    assert "target rpi4-camera asks for the live view (0.0.0.0:8080); it runs with the " \
        "service: deploy --service" in plans["rpi4-camera"]["notes"]
    assert "write this folder again with `--service`" in (plain / "README.md").read_text()


# --- several devices: real users behind one loopback sshd ---------------------------------------

@pytest.fixture(scope="module")
def fleet() -> Iterator[fd.FleetSshd]:
    reason = fd.missing_requirement()
    if reason:
        pytest.skip(reason)
    sshd = fd.FleetSshd(4)
    sshd.start()
    yield sshd
    for device in sshd.devices:
        releases = device.local_path("edgekit/releases")
        if os.path.ismount(releases):
            subprocess.run(["umount", str(releases)], check=False)
    sshd.stop()


def small_disk(device: SshServer) -> Path:
    """The device's releases folder on a 3 MB tmpfs (owned by the device's user)."""
    folder = device.local_path("edgekit/releases")
    folder.mkdir(parents=True, exist_ok=True)
    uid, gid = folder.parent.parent.stat().st_uid, folder.parent.parent.stat().st_gid
    for path in (folder.parent, folder):
        os.chown(path, uid, gid)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=3m,uid={uid},gid={gid}",
                              "tmpfs", str(folder)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    return folder


def fleet_cli(command: str, *args: str | Path, known_hosts: Path) -> object:
    return run_cli(command, *args, "--ssh", f"known_hosts={known_hosts}", "--release",
                   "python=/usr/bin/python3",
                   "--json")


@pytest.mark.slow
def test_deploy_to_several_devices_a_full_disk_redeploy_status_rollback(
        fleet: fd.FleetSshd, lenet_bundle: Path, tmp_path: Path) -> None:
    ok_devices, full = fleet.devices[:3], fleet.devices[3]
    known = ok_devices[0].known_hosts_file
    small_disk(full)
    entries = [(f"dev{i}", d) for i, d in enumerate(ok_devices, 1)] + [("full", full)]
    inventory = inventory_for(tmp_path / "lab.ini", entries, local_profile(tmp_path))
    first = fleet_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline",
                      known_hosts=known)
    assert first.returncode == 1
    assert_clean_error(first, "1 of 4 hosts failed (full)", "keeps the release it had")
    hosts = rows(first)
    for name, device in entries[:3]:
        row = hosts[name]
        assert row["status"] == "ok" and row["target"] == "loopback-cpu", row
        assert current(device) == f"releases/{row['release']}"
        assert intact(device.local_path(f"edgekit/releases/{row['release']}"))
        assert row["bytes_copied"] == row["bytes_total"] > 0
        assert row["smoke"]["matches"] == 10 and row["smoke"]["runtime"] == \
            "tflite-runtime 2.14.0"
        assert device.local_path("edgekit").stat().st_uid != 0  # the device's own user
    assert hosts["full"]["status"] == "failed" and hosts["full"]["step"] == "stage"
    assert "not enough space on the device" in hosts["full"]["error"]
    assert "Nothing was running there before, and nothing is now" in hosts["full"]["error"]
    assert current(full) is None and os.listdir(full.local_path("edgekit/releases")) == []
    releases = {name: hosts[name]["release"] for name, _ in entries[:3]}

    # A redeploy of the unchanged bundle copies 0 bytes to every device.
    again = fleet_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline", "--limit",
                      "dev*", known_hosts=known)
    assert again.returncode == 0, again.stderr
    second = rows(again)
    assert set(second) == {"dev1", "dev2", "dev3"}
    for name, device in entries[:3]:
        assert second[name]["bytes_copied"] == 0 and second[name]["files_copied"] == 0
        assert second[name]["venv_reused"] and second[name]["previous"] == releases[name]
        assert current(device) == f"releases/{second[name]['release']}"

    # --status lists every host's current release; --rollback rolls every host back.
    status = fleet_cli("status", "--inventory", inventory, known_hosts=known)
    assert status.returncode == 0, status.stderr
    seen = rows(status)
    for name, _ in entries[:3]:
        assert seen[name]["device"]["current"] == second[name]["release"]
    assert seen["full"]["device"]["current"] is None
    text = run_cli("status", "--inventory", inventory, "--ssh", f"known_hosts={known}",
                   "--release", "python=/usr/bin/python3")
    assert text.returncode == 0 and second["dev2"]["release"] in text.stdout
    back = fleet_cli("rollback", "--inventory", inventory, "--limit", "dev*",
                     known_hosts=known)
    assert back.returncode == 0, back.stderr
    for name, device in entries[:3]:
        assert rows(back)[name]["current"] == releases[name]
        assert current(device) == f"releases/{releases[name]}"


@pytest.mark.slow
def test_a_failing_canary_stops_the_rollout(fleet: fd.FleetSshd, lenet_bundle: Path,
                                            tmp_path: Path) -> None:
    """--rollout canary (serial 1, max-fail 0) with the full-disk device first: nothing else
    changes (the others keep their release and get no new folder)."""
    full = fleet.devices[3]
    if not os.path.ismount(full.local_path("edgekit/releases")):
        small_disk(full)
    others = fleet.devices[:3]
    known = others[0].known_hosts_file
    profile = local_profile(tmp_path, "small", edits=SMALL)
    entries = [("canary", full)] + [(f"dev{i}", d) for i, d in enumerate(others, 1)]
    inventory = inventory_for(tmp_path / "lab.ini", entries, profile)
    before = {name: (current(d), sorted(os.listdir(d.local_path("edgekit/releases")))
                     if d.local_path("edgekit/releases").is_dir() else [])
              for name, d in entries[1:]}
    result = fleet_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline", "--rollout",
                       "canary", known_hosts=known)
    assert result.returncode == 1
    assert_clean_error(result, "1 of 4 hosts failed (canary)", "3 not run",
                       "the rollout stopped after a failed batch")
    hosts = rows(result)
    assert hosts["canary"]["status"] == "failed"
    for name, device in entries[1:]:
        assert hosts[name]["status"] == "not run"
        releases = device.local_path("edgekit/releases")
        after = (current(device), sorted(os.listdir(releases)) if releases.is_dir() else [])
        assert after == before[name]
    text = run_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline", "--rollout",
                   "canary", "--ssh", f"known_hosts={known}", "--release",
                   "python=/usr/bin/python3")
    assert text.returncode == 1 and "not run" in text.stdout and "serial 1" in text.stdout


@pytest.mark.slow
def test_ctrl_c_ends_the_fleet_deploy_and_its_children(fleet: fd.FleetSshd,
                                                       lenet_bundle: Path,
                                                       tmp_path: Path) -> None:
    devices = fleet.devices[:2]
    known = devices[0].known_hosts_file
    profile = local_profile(tmp_path, "interrupted", edits={
        'formats = ["tflite-int8", "tflite-fp32"]': 'formats = ["tflite-fp32"]'})
    inventory = inventory_for(tmp_path / "lab.ini", [("a", devices[0]), ("b", devices[1])],
                              profile)
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "deploy", str(lenet_bundle), "--inventory",
         str(inventory), "--ssh", f"known_hosts={known}", "--release", "python=/usr/bin/python3",
         "--offline"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen = ""
    deadline = time.monotonic() + 300
    while "stage a new release folder" not in seen and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
    assert "stage a new release folder" in seen, seen
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 2.5
    time.sleep(0.5)
    run_folder = re.compile(rb"edgekit-fleet-(?!devices-)")  # the run's, not the test sshd's
    leftover = [pid for pid in os.listdir("/proc") if pid.isdigit() and
                run_folder.search(_cmdline(pid))]
    assert leftover == [], [_cmdline(p) for p in leftover]
    # The devices' locks were released: a deploy goes ahead at once.
    retry = fleet_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline",
                      known_hosts=known)
    assert retry.returncode == 0, retry.stderr


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_the_service_with_the_live_view_on_every_host(fleet: fd.FleetSshd,
                                                      detector_bundle: Path,
                                                      tmp_path: Path) -> None:
    """--service to a camera target on two hosts: each device makes its own token into its
    own service.env (0600, its user's); the report shows each host's URL with its token once,
    and Ansible's output (its log) never holds it; a redeploy and --status show the URLs
    without it, except for a host whose service.env was removed: a new token, shown once in
    the table's text; the URL a host got opens the view its unit's command serves there, and the
    other host's token does not. The emitted playbook, run by ansible-playbook itself, makes,
    shows and keeps a token the same way."""
    devices = fleet.devices[:2]
    known = devices[0].known_hosts_file
    port = free_port()
    profile = local_profile(tmp_path, "pi-camera", base="rpi4-camera",
                            edits={'serve = "0.0.0.0:8080"': f'serve = "0.0.0.0:{port}"'})
    entries = [("cam1", devices[0]), ("cam2", devices[1])]
    inventory = inventory_for(tmp_path / "lab.ini", entries, profile)
    first = fleet_cli("deploy", detector_bundle, "--inventory", inventory, "--offline", "--service",
                      known_hosts=known)
    assert first.returncode == 0, first.stderr
    ansible_output = log_path().read_text()
    hosts = rows(first)
    url = f"http://127.0.0.1:{port}/"
    tokens, envs = {}, {}
    for name, device in entries:
        live = hosts[name]["live_view"]
        assert live["new_token"] and live["url"] == url, live
        tokens[name] = re.fullmatch(rf"{re.escape(url)}\?token=([\w-]+)",
                                    live["url_with_token"])[1]
        env = envs[name] = device.local_path("edgekit/service.env")
        assert live["env_file"] == str(env)
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        assert env.stat().st_uid == device.local_path("edgekit").stat().st_uid != 0
        assert f"EDGEKIT_SERVE_TOKEN={tokens[name]}\n" in env.read_text()
        unit = device.local_path(".config/systemd/user/edgekit.service").read_text()
        assert f"EnvironmentFile=-{env}\n" in unit and tokens[name] not in unit
        assert f" --serve 0.0.0.0:{port}\n" in unit
        assert tokens[name] not in ansible_output + first.stderr
    assert tokens["cam1"] != tokens["cam2"]

    # A redeploy keeps cam1's token and shows the URL without it; cam2, its service.env gone
    # (how a token is changed), gets a new one, shown once in the table's text; --status shows
    # the URLs without a token.
    envs["cam2"].unlink()
    again = run_cli("deploy", detector_bundle, "--inventory", inventory, "--offline",
                    "--service", "--ssh", f"known_hosts={known}", "--release",
                    "python=/usr/bin/python3")
    assert again.returncode == 0, again.stderr
    made = re.search(rf"^live view: cam2: {re.escape(url)}\?token=([\w-]+) \(open it once; the "
                     rf"browser keeps the token\. It is shown only now, and kept in "
                     rf"{re.escape(str(envs['cam2']))} on the device, mode 0600\)$",
                     again.stdout, re.MULTILINE)
    assert made and made[1] != tokens["cam2"], again.stdout
    assert again.stdout.count(made[1]) == 1 and made[1] not in log_path().read_text()
    assert stat.S_IMODE(envs["cam2"].stat().st_mode) == 0o600
    tokens["cam2"] = made[1]
    status = fleet_cli("status", "--inventory", inventory, known_hosts=known)
    assert status.returncode == 0, status.stderr
    text = run_cli("status", "--inventory", inventory, "--ssh", f"known_hosts={known}",
                   "--release", "python=/usr/bin/python3")
    assert text.returncode == 0, text.stderr
    assert (f"live view: cam1: {url} (the token is unchanged: in {envs['cam1']} on the "
            "device, mode 0600)") in again.stdout
    for name, _ in entries:
        assert f"EDGEKIT_SERVE_TOKEN={tokens[name]}\n" in envs[name].read_text()
        serve = rows(status)[name]["device"]["serve"]
        assert serve == {"address": f"0.0.0.0:{port}", "env_file": str(envs[name]),
                         "token": True, "url": url}
        assert f"live view: {name}: {url} (token in {envs[name]} on the device)" in text.stdout
        for output in (again.stderr, status.stdout, text.stdout):
            assert tokens[name] not in output
    assert tokens["cam1"] not in again.stdout

    # cam1's unit command, run there as systemd would (its environment file read; Picamera2's
    # stand-in): the URL with cam1's token opens the view, cam2's token does not.
    device = devices[0]
    unit = device.local_path(".config/systemd/user/edgekit.service").read_text()
    argv = shlex.split(next(x for x in unit.splitlines()
                            if x.startswith("ExecStart="))[len("ExecStart="):])
    standins = ROOT / "tests" / "standins"
    pidfile = device.local_path("live-view.pid")
    running = subprocess.Popen(device.ssh_command(
        ["sh", "-c", f"echo $$ > {shlex.quote(str(pidfile))}; export PYTHONPATH="
         f"{standins / 'picamera2'}:{standins / 'libcamera'}; set -a; "
         f". {shlex.quote(str(envs['cam1']))}; set +a; exec {shlex.join(argv)}"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def serving() -> bool:
            try:
                return get(port, f"/stats.json?token={tokens['cam1']}").status == 200
            except OSError:
                return running.poll() is not None
        assert wait_for(serving, timeout=120) and running.poll() is None, \
            running.communicate(timeout=10)[1].decode()
        assert get(port, "/stats.json").status == 401
        assert get(port, f"/stats.json?token={tokens['cam2']}").status == 401
    finally:
        if pidfile.exists():
            device.run(["kill", "-INT", pidfile.read_text().strip()])
        running.wait(timeout=60)

    # The emitted playbook: cam2 without its service.env (how a token is changed) gets a new
    # one, shown once by the role's second task; the next run and status.yml show the URL.
    envs["cam2"].unlink()
    out = tmp_path / "playbook"
    emitted = run_cli("playbook", detector_bundle, "--inventory", inventory, "--offline",
                      "--service", "--ssh", f"known_hosts={known}", "--release",
                      "python=/usr/bin/python3",
                      "-o", out)
    assert emitted.returncode == 0, emitted.stderr
    home = tmp_path / "ansible-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(out / "ansible.cfg"), ANSIBLE_HOME=str(home),
               ANSIBLE_NOCOLOR="1")

    def playbook(name: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i",
                               str(inventory), name, "--limit", "cam2"], cwd=out, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    try:
        made = playbook("deploy.yml")
        token = envs["cam2"].read_text().split("EDGEKIT_SERVE_TOKEN=")[1].strip()
        assert token != tokens["cam2"] and stat.S_IMODE(envs["cam2"].stat().st_mode) == 0o600
        assert f'"msg": "live view: {url}?token={token} (open it once;' in made
        assert made.count(token) == 1
        kept, shown = playbook("deploy.yml"), playbook("status.yml")
    finally:
        stop_control_masters(home / "cp")
    assert f'"msg": "live view: {url} (the token is unchanged: in {envs["cam2"]}' in kept
    assert f'"msg": "live view: {url} (token in {envs["cam2"]} on the device)"' in shown
    assert token not in kept + shown
    assert f"EDGEKIT_SERVE_TOKEN={token}\n" in envs["cam2"].read_text()


@pytest.mark.slow
@pytest.mark.pi
def test_the_emulated_pi_is_one_more_host(fleet: fd.FleetSshd, emulated_pi: SshServer,
                                          lenet_bundle: Path, tmp_path: Path) -> None:
    """Two loopback devices and the emulated arm64 Pi in one inventory, the Pi with its own
    edgekit_target (rpi4-cpu): all get a verified current. What an earlier test left on the Pi
    stays (test_deploy_pi's releases and environment, which is then reused: building it under
    qemu takes two minutes, and test_deploy_pi deploys to a fresh Pi already)."""
    devices = fleet.devices[:2]
    known = tmp_path / "known_hosts"
    known.write_text(devices[0].known_hosts_file.read_text()
                     + emulated_pi.known_hosts_file.read_text())
    inventory = tmp_path / "lab.ini"
    inventory.write_text("\n".join([
        "[loopback]", *[fd.inventory_line(f"dev{i}", d) for i, d in enumerate(devices, 1)],
        "[loopback:vars]", f"edgekit_target={local_profile(tmp_path)}",
        "edgekit_python=/usr/bin/python3",
        "[pis]", fd.inventory_line("pi", emulated_pi, edgekit_target="rpi4-cpu"), ""]))
    result = run_cli("deploy", lenet_bundle, "--inventory", inventory, "--ssh",
                     f"known_hosts={known}",
                     "--json")
    assert result.returncode == 0, result.stderr
    hosts = rows(result)
    assert hosts["pi"]["target"] == "rpi4-cpu" and hosts["dev1"]["target"] == "loopback-cpu"
    for name, device in [("dev1", devices[0]), ("dev2", devices[1]), ("pi", emulated_pi)]:
        assert hosts[name]["status"] == "ok" and hosts[name]["smoke"]["matches"] == 10
        assert current(device) == f"releases/{hosts[name]['release']}"
        assert intact(device.local_path(f"edgekit/releases/{hosts[name]['release']}"))


@pytest.mark.slow
def test_the_service_s_secrets_reach_each_device_and_status_shows_its_counters(
        fleet: fd.FleetSshd, lenet_bundle: Path, tmp_path: Path) -> None:
    """deploy --inventory --service with events and a camera URL with a password: both reach
    the device's 0600 service.env (the unit says --source env:EDGEKIT_SOURCE); neither is in the
    unit, the report or Ansible's output; status --inventory shows the service's counters."""
    device = fleet.devices[0]
    known = device.known_hosts_file
    camera = "rtsp://admin:pa55@127.0.0.1:9/live"
    profile = local_profile(tmp_path, edits={'camera = "0"': f'camera = "{camera}"\n\n'
                                             '[service]\nevents = ["events.jsonl"]'})
    inventory = inventory_for(tmp_path / "lab.ini", [("cam1", device)], profile)
    done = run_cli("deploy", lenet_bundle, "--inventory", inventory, "--offline", "--service",
                   "--ssh", f"known_hosts={known}", "--release", "python=/usr/bin/python3",
                   env={"EDGEKIT_EVENTS_USERNAME": "cam", "EDGEKIT_EVENTS_PASSWORD": "s3cret"})
    assert done.returncode == 0, done.stderr
    env = device.local_path("edgekit/service.env")
    lines = env.read_text().splitlines()
    assert "EDGEKIT_EVENTS_PASSWORD=s3cret" in lines and f"EDGEKIT_SOURCE={camera}" in lines
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    unit = device.local_path(".config/systemd/user/edgekit.service").read_text()
    assert " --source env:EDGEKIT_SOURCE " in unit and f"EnvironmentFile=-{env}\n" in unit
    for text in (unit, done.stdout, done.stderr, log_path().read_text()):
        assert "s3cret" not in text and "pa55" not in text
    # the service's loop writes its counters there every second (edgekit.events.sink)
    state = {"time": time.time(), "device": "cam1", "destinations": [
        {"destination": "events.jsonl", "delivered": 7, "dropped": 0, "queued": 0,
         "spooled": 0, "last_error": ""}]}
    device.local_path("edgekit/events-state.json").write_text(json.dumps(state))
    shown = run_cli("status", "--inventory", inventory, "--ssh", f"known_hosts={known}",
                    "--release", "python=/usr/bin/python3")
    assert shown.returncode == 0, shown.stderr
    assert "cam1: events: events.jsonl: 7 delivered, 0 dropped; 0 queued (as of " in shown.stdout
    assert "pa55" not in shown.stdout
