"""`edgekit deploy` without a full deploy: bad input, the dry run, SSH failures, and the
pieces (requirements, wheel tags, the unit file, the checks of a device).

Each failure gets one clear line and a non-zero exit, and leaves the device untouched.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, assert_clean_error, cli_json, run_cli
from deploy_support import HERE, local_profile, ssh_args
from sshd import SshServer, free_port

from edgekit.bundle.manifest import read_manifest, write_manifest
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.release import DeployRequest, Session, check_device, make_plan
from edgekit.deploy.service import systemd_quote, unit_text
from edgekit.deploy.ssh import SshClient, SshOptions, parse_host
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo, merge_requirements, platform_tags
from edgekit.errors import DeployError

CORE = ("numpy>=1.23", "click>=8.1", "opencv-python-headless>=4.8", "ai-edge-litert>=1.2",
        "tomli>=1.1; python_version < '3.11'")


def nothing_on(server: SshServer) -> bool:
    """No edgekit folder on the device and no session was ever accepted."""
    log = server.log_file.read_text() if server.log_file else ""
    return not server.local_path("edgekit").exists() and "Accepted publickey" not in log


@pytest.mark.parametrize(("host", "needle"), [
    ("pi@", "takes USER@HOST"), ("@raspberrypi", "takes USER@HOST"),
    ("pi@raspberrypi:2222", "--host takes USER@HOST, not 'pi@raspberrypi:2222': give the port "
     "as --ssh port"), ("-oProxyCommand=evil", "USER@HOST"),
    ("pi@fe80::1", "IPv6 address in brackets"), ("pi pi@host", "USER@HOST"),
    ("pi@host;rm", "USER@HOST"),
])
def test_bad_host_syntax(host: str, needle: str) -> None:
    result = run_cli("status", "--host", host)
    assert_clean_error(result, needle)
    assert result.returncode == 2


def test_host_forms() -> None:
    assert parse_host("pi@raspberrypi.local").destination == "pi@raspberrypi.local"
    assert parse_host("raspberrypi", 2222).label == "raspberrypi:2222"
    six = parse_host("pi@[fe80::1]")
    assert six.host == "fe80::1" and six.scp_path("x") == "pi@[fe80::1]:x"
    assert parse_host("pi@10.0.0.7", 2222).known_hosts_name == "[10.0.0.7]:2222"


def test_bad_input_is_one_line(tmp_path: Path, lenet_bundle: Path) -> None:
    host = ["--host", "pi@device.invalid"]
    assert_clean_error(run_cli("deploy", lenet_bundle, "--target", "rpi9", *host),
                       "unknown target 'rpi9'", "rpi4-cpu")
    assert_clean_error(run_cli("deploy", tmp_path, "--target", "rpi4-cpu", *host),
                       "not an edgekit bundle")
    assert_clean_error(run_cli("deploy", lenet_bundle, *host), "needs a BUNDLE and --target")
    assert_clean_error(run_cli("rollback", lenet_bundle, *host), "unexpected extra argument")
    assert_clean_error(run_cli("status", "--dry-run", *host), "no such option '--dry-run'")
    assert_clean_error(run_cli("status", "--to", "x", *host), "no such option '--to'")
    for old, new in (("--status", "edgekit status"), ("--rollback", "edgekit rollback"),
                     ("--emit-playbook", "edgekit playbook")):
        result = run_cli("deploy", old, *host)
        assert_clean_error(result, f"{old} is now its own command: {new}")
        assert result.returncode == 2
    assert_clean_error(run_cli("status", "--ssh", f"identity={tmp_path / 'nokey'}", *host),
                       "--ssh identity", "no such key file")


def test_a_target_that_runs_none_of_the_artifacts(tmp_path: Path, lenet_bundle: Path) -> None:
    """A bundle converted with --formats onnx, sent to a Pi that runs TFLite."""
    onnx_only = Path(shutil.copytree(lenet_bundle, tmp_path / "onnx_only"))
    manifest = read_manifest(onnx_only)
    write_manifest(replace(manifest, artifacts=[a for a in manifest.artifacts
                                                if a.format == "onnx"]), onnx_only)
    result = run_cli("deploy", onnx_only, "--target", "rpi4-cpu", "--host", "pi@device.invalid")
    assert_clean_error(result, "nothing target rpi4-cpu runs", "tflite-int8, tflite-fp32",
                       "the bundle has onnx", "--formats tflite-int8,tflite-fp32")


def test_dry_run_prints_every_step_and_touches_nothing(ssh_server: SshServer,
                                                       detector_bundle: Path,
                                                       tmp_path: Path) -> None:
    profile = local_profile(tmp_path)
    result = run_cli("deploy", detector_bundle, "--target", profile, *ssh_args(ssh_server),
                     "--dry-run", "--service", "--offline")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The device was asked, read-only, what it holds: nothing yet, so every file would go.
    first = out.splitlines()[0]
    assert first.startswith(f"dry run: nothing on {ssh_server.destination}")
    assert re.search(r"was changed; asked \(read-only\) what it holds, it would get (\d+) of "
                     r"\1 files \(.*; 0 already there, reused\) and its Python environment "
                     "created", first), first
    for step in ("deploy lock", "check ", "stage a new release", "copy the files",
                 "sha256 of every file", "Python environment", "smoke test", "switch current",
                 "systemd user unit", "watch it 10 s", "switch back"):
        assert step in out, step
    assert "hold" in out and "heartbeat" in out  # the lock's own ssh session
    ssh_lines = [line for line in out.splitlines() if line.strip().startswith("$ ssh ")]
    assert len(ssh_lines) >= 6  # hold (lock + check), stage, verify, venv, smoke, activate
    assert all("BatchMode=yes" in line and "StrictHostKeyChecking=yes" in line
               for line in ssh_lines)
    assert "$ scp " in out and "digit_detector_int8.tflite" in out
    assert "digit_detector.onnx" not in out  # only what the target runs
    assert "pip download" in out or "wheels/numpy" in out  # --offline: the wheels ship
    assert not ssh_server.local_path("edgekit").exists()
    rollback = run_cli("rollback", "--dry-run", *ssh_args(ssh_server))
    assert rollback.returncode == 0 and "python3 - rollback" in rollback.stdout
    assert not ssh_server.local_path("edgekit").exists()


def test_dry_run_json_claims_no_copies(ssh_server: SshServer, lenet_bundle: Path,
                                       tmp_path: Path) -> None:
    """--json of a dry run: what a deploy would copy, as the device said; nothing copied."""
    profile = local_profile(tmp_path)
    plan = cli_json("deploy", lenet_bundle, "--target", profile, *ssh_args(ssh_server),
                    "--dry-run", "--json")
    assert plan["dry_run"] and plan["device_unknown"] == ""
    assert plan["files_copied"] == plan["bytes_copied"] == plan["files_reused"] == 0
    assert plan["would_copy"] == {"files": plan["files"], "bytes": plan["bytes_total"],
                                  "files_reused": 0, "venv_reused": False,
                                  "device_asked": True}
    assert plan["python"] and plan["platform"]  # the device's own, as it answered
    assert not ssh_server.local_path("edgekit").exists()


def test_dry_run_of_a_device_that_cannot_be_asked(lenet_bundle: Path, tmp_path: Path) -> None:
    """Unreachable: the plan says why and assumes an empty device; still exit 0."""
    result = run_cli("deploy", lenet_bundle, "--target", local_profile(tmp_path), "--host",
                     "pi@127.0.0.1", "--ssh", f"port={free_port()},timeout=5", "--dry-run")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("dry run: nothing was sent to pi@127.0.0.1")
    assert "could not be asked what it holds" in first and "for an empty device" in first


def test_a_camera_url_s_password_never_shows(lenet_bundle: Path, tmp_path: Path) -> None:
    """deploy --dry-run (text and --json) and status mask a camera URL's credentials and query
    values: the unit runs ``--source env:EDGEKIT_SOURCE`` and the URL goes into the device's
    0600 service.env (a step named in the plan), and any URL status shows is masked."""
    camera = "rtsp://user:s3cret@cam.local/stream?token=t0ken"
    profile = local_profile(tmp_path, edits={'camera = "0"': f'camera = "{camera}"'})
    args = ("deploy", lenet_bundle, "--target", profile, "--host", "pi@127.0.0.1", "--ssh",
            f"port={free_port()},timeout=5", "--dry-run", "--service", "--offline")
    for result in (run_cli(*args), run_cli(*args, "--json")):
        assert result.returncode == 0, result.stderr
        assert "env:EDGEKIT_SOURCE" in result.stdout and "EDGEKIT_SOURCE)" in result.stdout
        assert "s3cret" not in result.stdout and "t0ken" not in result.stdout
    from edgekit.deploy.report import DeployReport

    shown = DeployReport("pi", "t", "m", [], 0, 0, live_view={"url": "http://pi:8080/?token=ab"},
                         notes=[f"source {camera}"]).to_dict()  # the token is shown once
    assert shown["live_view"]["url"].endswith("token=ab") and "s3cret" not in str(shown)
    from edgekit.helpers.text import redact_urls

    unit = {"unit": f"[Service]\\nExecStart=/x/edgekit run --source {camera}\\nRestart=no"}
    assert redact_urls([unit]) == [{"unit": "[Service]\\nExecStart=/x/edgekit run --source "
                                            "rtsp://***@cam.local/stream?token=***\\nRestart=no"}]


def test_unknown_host_key_says_how_to_trust_it(ssh_server: SshServer, lenet_bundle: Path,
                                               empty_known_hosts: Path, tmp_path: Path) -> None:
    args = ssh_args(ssh_server, known_hosts=empty_known_hosts)
    result = run_cli("deploy", lenet_bundle, "--target", local_profile(tmp_path), *args)
    assert_clean_error(result, "is not a known host",
                       f"ssh-keyscan -p {ssh_server.port} 127.0.0.1 >> {empty_known_hosts}")
    assert empty_known_hosts.read_text() == ""  # nothing was trusted behind anyone's back
    assert nothing_on(ssh_server)


def test_changed_host_key_is_refused(ssh_server: SshServer, wrong_identity_file: Path,
                                     tmp_path: Path) -> None:
    impostor = tmp_path / "known_hosts"
    pub = Path(f"{wrong_identity_file}.pub").read_text().split()
    impostor.write_text(f"[127.0.0.1]:{ssh_server.port} {pub[0]} {pub[1]}\n")
    result = run_cli("status", *ssh_args(ssh_server, known_hosts=impostor))
    assert_clean_error(result, "CHANGED", "ssh-keygen -R")


def test_wrong_key_is_refused(ssh_server: SshServer, wrong_identity_file: Path) -> None:
    result = run_cli("status", *ssh_args(ssh_server, identity=wrong_identity_file))
    assert_clean_error(result, "refused the key", "ssh-copy-id", "never a password")
    assert nothing_on(ssh_server)


def test_unreachable_host(ssh_server: SshServer) -> None:
    args = ssh_args(ssh_server)
    args[args.index(f"port={ssh_server.port}")] = f"port={free_port()}"
    assert_clean_error(run_cli("status", *args), "connection refused")


def test_a_device_of_another_architecture_or_python_is_refused(
        ssh_server: SshServer, lenet_bundle: Path, tmp_path: Path) -> None:
    result = run_cli("deploy", lenet_bundle, "--target", "rpi4-cpu", *ssh_args(ssh_server))
    assert_clean_error(result, f"is {HERE}", "target rpi4-cpu is for aarch64")
    old = local_profile(tmp_path, "old-python", edits={'version = "3.11"': 'version = "3.9"'})
    result = run_cli("deploy", lenet_bundle, "--target", old, *ssh_args(ssh_server))
    assert_clean_error(result, "is for Python 3.9", "--release python=PATH")
    assert not ssh_server.local_path("edgekit/releases").exists()


def test_the_coral_dev_boards_python_is_refused_by_the_device_itself(
        ssh_server: SshServer, lenet_bundle: Path, tmp_path: Path) -> None:
    """Mendel's Python 3.7 (a real 3.7 here, through --python): the device agent still runs
    on it and reports it, and deploy says edgekit needs 3.9."""
    python37 = subprocess.run([str(ROOT / "scripts" / "find_python.sh"), "3.7"],
                              capture_output=True, text=True, check=False).stdout.strip()
    if not python37:
        pytest.skip("no Python 3.7 here (pyenv install 3.7 to run this)")
    board = local_profile(tmp_path, "devboard-here", base="coral-devboard")
    result = run_cli("deploy", lenet_bundle, "--target", board, *ssh_args(ssh_server),
                     "--release", f"python={python37}")
    assert_clean_error(result, "is Python 3.7", "edgekit needs Python >=3.9",
                       "--release python=PATH")
    assert not ssh_server.local_path("edgekit/releases").exists()


def test_status_of_an_empty_device(ssh_server: SshServer) -> None:
    result = run_cli("status", *ssh_args(ssh_server))
    assert result.returncode == 0, result.stderr
    assert "no releases yet" in result.stdout
    data = cli_json("status", "--json", *ssh_args(ssh_server))
    assert data["releases"] == [] and data["current"] is None
    assert data["platform"] == f"linux-{HERE}"


def test_requirements_are_merged_per_package() -> None:
    merged = merge_requirements(CORE, find_target("rpi4-cpu"))
    assert merged == ["numpy>=1.23,<2", "click>=8.1", "opencv-python-headless>=4.8,<=4.11.0.86",
                      "tflite-runtime==2.14.0"]  # tomli only below Python 3.11
    ncs2 = merge_requirements(CORE, find_target("rpi4-ncs2"))  # Python 3.9: markers judged
    assert ncs2 == ["numpy>=1.23,<1.24", "click>=8.1",  # for the device, not for this Python
                    "opencv-python-headless>=4.8,<=4.11.0.86", "tomli>=1.1"]
    devboard = merge_requirements(CORE, find_target("coral-devboard"))
    assert not any(r.startswith(("opencv", "ai-edge")) for r in devboard)


def test_offline_wheel_platforms() -> None:
    tags = platform_tags(find_target("rpi4-cpu"))
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert tags[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]


def test_the_device_checks(tmp_path: Path, lenet_bundle: Path) -> None:
    target = find_target("coral-devboard")
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    info = WheelInfo("edgekit", "0.1.0", ">=3.9", CORE)
    plan = plan_release(lenet_bundle, target, wheel, info, tmp_path)
    assert plan.formats == ["tflite-int8"] and plan.backend == "tflite"  # no edgetpu artifact
    assert "nothing in this bundle runs on edgetpu" in plan.notes[0]
    assert [a.format for a in read_manifest(tmp_path).artifacts] == ["tflite-int8"]
    request = DeployRequest(bundle=lenet_bundle, target=target, host=parse_host("mendel@coral"))
    mendel = {"platform": "linux-aarch64", "python": [3, 7, 3]}
    with pytest.raises(DeployError, match="Python 3.7.3 and edgekit needs Python >=3.9"):
        check_device(mendel, plan, request)
    with pytest.raises(DeployError, match="is armv7l .* for aarch64"):
        check_device({"platform": "linux-armv7l", "python": [3, 11, 2]}, plan, request)


def test_a_deploy_reads_the_manifest_once(tmp_path: Path, lenet_bundle: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan opens the bundle once and passes the Manifest on (it was read twice)."""
    from edgekit.bundle import manifest as manifest_module

    reads: list[Path] = []
    real = manifest_module.read_small

    def counted(path: Path, *args: object) -> bytes:
        reads.append(Path(path))
        return real(path, *args)

    monkeypatch.setattr(manifest_module, "read_small", counted)
    request = DeployRequest(bundle=lenet_bundle, target=find_target("rpi4-cpu"),
                            host=parse_host("pi@pi"), dry_run=True)
    plan = make_plan(request, Session(lambda _: None, dry_run=True), tmp_path)
    assert reads == [lenet_bundle / "edgekit.json"]
    assert plan.bundle == lenet_bundle and plan.formats


def test_unit_file(tmp_path: Path, lenet_bundle: Path) -> None:
    target = find_target("rpi4-ncs2")
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    plan = plan_release(lenet_bundle, target, wheel, WheelInfo("edgekit", "0.1.0", "", CORE),
                        tmp_path)
    text = unit_text(plan, "/home/pi/my edgekit")
    assert ('ExecStart="/home/pi/my edgekit/current/venv/bin/edgekit" run '
            '"/home/pi/my edgekit/current/bundle" --source 0 --backend myriad --infer device=MYRIAD'
            ) in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    assert 'Environment=PYTHONPATH=/opt/intel/openvino_2022/python/python3.9:' in text
    assert systemd_quote("100%") == "100%%" and systemd_quote('a"b') == '"a\\"b"'
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "edgekit.service"
        unit.write_text(text.replace("/home/pi/my edgekit/current/venv/bin/edgekit",
                                     shutil.which("true")))
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stderr


def test_ssh_is_called_with_argument_lists_and_quoted_remote_arguments() -> None:
    client = SshClient(parse_host("pi@raspberrypi", 2222), SshOptions(timeout=9))
    argv = client.ssh_argv(["python3", "-", "probe", '{"base": "it\'s; rm -rf ~"}'])
    assert argv[:1] == ["ssh"] and argv[-2] == "pi@raspberrypi" and argv[-3] == "--"
    assert argv[-1] == "python3 - probe '{\"base\": \"it'\"'\"'s; rm -rf ~\"}'"
    opts = " ".join(argv)
    assert "ServerAliveInterval=3" in opts and "ServerAliveCountMax=3" in opts
    assert "ConnectTimeout=9" in opts and "BatchMode=yes" in opts


def test_deploy_modules_import_no_runtime() -> None:
    """Deploying runs the workstation's TFLite runtime only for the comparison, lazily."""
    from test_import import HEAVY, _modules_after

    loaded = _modules_after("import edgekit.deploy, edgekit.deploy.targets, edgekit.bundle.verify, "
                            "edgekit.cli.deploy_cmd")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_release_names_sort_in_deploy_order_even_with_a_clock_behind(tmp_path: Path) -> None:
    """A Pi without network time may think it is 1970: names still sort after the newest."""
    from edgekit.deploy.agent import releases as agent

    base = tmp_path / "edgekit"
    later = base / "releases" / "29990101T000000Z-abcdef12"
    later.mkdir(parents=True)
    (later / "release.json").write_text('{"files": []}')
    name = agent.new_release_id(str(base), "ff" * 32)
    assert name == "29990101T000001Z-ffffffff" and name > later.name


def test_a_wheel_that_is_not_one(tmp_path: Path, lenet_bundle: Path) -> None:
    fake = tmp_path / "edgekit-0.1.0-py3-none-any.whl"
    fake.write_text("not a zip")
    result = run_cli("deploy", lenet_bundle, "--target", "rpi4-cpu", "--host", "pi@device.invalid",
                     "--wheel", fake)
    assert_clean_error(result, "not a wheel")


def _python(version: str) -> str:
    if version == "this":
        return sys.executable
    found = subprocess.run([str(ROOT / "scripts" / "find_python.sh"), version],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not found:
        pytest.skip(f"no Python {version} here (pyenv install {version} to run this)")
    return found


class Holder:
    """The device agent's `hold`, run here as deploy runs it over ssh (python -c BOOT)."""

    def __init__(self, python: str, base: Path, token: str, wait: float = 0) -> None:
        from edgekit.deploy.remote import BOOT
        from edgekit.deploy.shipping import agent_source

        source = agent_source()
        payload = {"base": str(base), "token": token, "wait": wait,
                   "owner": {"what": f"deploy {token}", "workstation": "ws", "workstation_pid": 7,
                             "user": "me"}}
        self.process = subprocess.Popen(
            [python, "-c", BOOT, str(len(source)), "hold", json.dumps(payload)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.process.stdin.write(source)
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read().decode()
        self.answer = json.loads(line)

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(10) == 0


@pytest.mark.parametrize("python", ["this", "3.7"])
def test_the_device_lock(python: str, tmp_path: Path) -> None:
    """One holder at a time; released when its stdin ends; a dead holder's lock is taken
    over; the steps that change the device check they hold it. On Python 3.7 too."""
    from edgekit.deploy.agent import lock as agent

    exe, base = _python(python), tmp_path / "edgekit"
    first = Holder(exe, base, "a")
    assert first.answer["ok"] and first.answer["taken_over"] is None
    assert agent.lock_holder(str(base))["token"] == "a"
    refused = Holder(exe, base, "b")
    assert not refused.answer["ok"] and refused.answer["code"] == "locked"
    assert "deploy a from ws (pid 7, user me), started 20" in refused.answer["error"]
    assert "Refused at once (lock_timeout 0)" in refused.answer["error"]
    agent.require_lock({"base": str(base), "lock": "a"})  # the holder may change things
    with pytest.raises(agent.Failure, match="another deploy holds this device's lock now"):
        agent.require_lock({"base": str(base), "lock": "b"})
    # A second one that waits gets it when the first lets go.
    threading.Timer(1.0, first.release).start()
    started = time.monotonic()
    waiting = Holder(exe, base, "c", wait=30)
    assert waiting.answer["ok"] and 0.8 < time.monotonic() - started < 20
    assert waiting.answer["taken_over"] is None  # released cleanly: nothing to take over
    # A holder that dies (kill -9) leaves its record; the kernel has released the lock.
    waiting.process.kill()
    waiting.process.wait()
    assert agent.lock_holder(str(base)) is None
    with pytest.raises(agent.Failure, match="no longer holds the device's lock"):
        agent.require_lock({"base": str(base), "lock": "c"})
    after = Holder(exe, base, "d")
    assert after.answer["ok"] and after.answer["taken_over"]["token"] == "c"
    after.release()
    assert agent.lock_holder(str(base)) is None and (base / "lock").read_text() == ""


@pytest.mark.parametrize("python", ["this", "3.7"])
def test_the_agent_answers_json_whatever_the_payload(python: str, tmp_path: Path) -> None:
    """Run as deploy runs it (source on stdin): a payload that is not JSON, not an object,
    lacks a field, or has one of the wrong type gets one JSON line with the cause, never a
    traceback; no release is made."""
    from edgekit.deploy.shipping import agent_source

    exe, base = _python(python), tmp_path / "edgekit"
    cases = [("probe", "{not json", "bad_payload", "the payload is not JSON"),
             ("probe", "[1, 2]", "bad_payload", "not a JSON object"),
             ("hold", json.dumps({"base": str(base)}), "bad_payload", "the payload lacks 'token'"),
             ("probe", json.dumps({"base": 7}), "agent_error",
              "the device agent failed: TypeError"),
             ("nonsense", "{}", "bad_payload", "usage: agent COMMAND JSON")]
    for command, payload, code, says in cases:
        done = subprocess.run([exe, "-", command, payload], input=agent_source(),
                              capture_output=True, timeout=60, check=False)
        assert b"Traceback" not in done.stderr, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        assert len(lines) == 1, done.stdout
        answer = json.loads(lines[0])
        assert answer["ok"] is False and answer["code"] == code, answer
        assert says in answer["error"], answer
    assert not (base / "releases").exists()


def test_negative_waits_are_refused(tmp_path: Path) -> None:
    for args, option in ((("deploy", tmp_path / "bundle", "--target", "rpi4-cpu", "--release",
                           "settle=-1"), "--release settle"),
                         (("rollback", "--release", "lock_timeout=-5"), "--release lock_timeout"),
                         (("status", "--ssh", "timeout=0"), "--ssh timeout")):
        result = run_cli(*args, "--host", "pi@device.invalid")
        assert_clean_error(result, f"invalid value for {option}:")
        assert result.returncode == 2
