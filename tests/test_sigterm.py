"""SIGTERM (``systemctl stop``, ``docker stop``, ``timeout``, ``kill``) and SIGHUP are one Ctrl-C.

Every command that writes, spawns or deploys ends within 2 s with exit 128 + the signal
(143, 129) and one line ("terminated", "hung up"); what it was saving is kept, its child
processes are gone (checked: no descendant alive), and no temporary path is left (checked in
its TMPDIR and beside its outputs). A second signal soon after the first does not discard what
the first was saving.

The helpers (``Running``, ``alive``, ``tree``) are the Ctrl-C tests' own (test_interrupt.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from conftest import LENET
from test_interrupt import Running, alive, longer_clip, tree

from edgekit.helpers import interrupt
from edgekit.helpers.interrupt import REPEAT_S, descendants
from edgekit.helpers.subproc import run_json

LIMIT_S = 2.0
LINE = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


@pytest.fixture(autouse=True)
def hangup_as_a_terminal_leaves_it() -> Iterator[None]:
    """The commands start with SIGHUP at its default, as from a terminal, even when the suite
    itself runs under nohup (SIGHUP ignored, which children inherit and edgekit rightly keeps)."""
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, before)


def stop(run: Running, *signals: int, gap: float = 0.02) -> tuple[int, float, list[int]]:
    """Send ``signals`` to the command alone, ``gap`` seconds apart; (exit code, seconds from
    the first signal to the exit, descendants alive at the first signal)."""
    children = descendants(run.process.pid)
    start = time.monotonic()
    for i, signum in enumerate(signals):
        if i:
            time.sleep(gap)
        if run.process.poll() is None:
            run.process.send_signal(signum)
    run.process.wait(timeout=60)
    seconds = time.monotonic() - start
    for reader in run._readers:
        reader.join(timeout=10)
    return run.process.returncode, seconds, children


def assert_stopped(run: Running, signum: int, code: int, seconds: float,
                   children: list[int]) -> None:
    """Exit 128 + signum within LIMIT_S, the one line, and no child left running."""
    said = [line for line in run.lines if line.strip() and not line.startswith("  ")]
    assert code == 128 + signum, run.lines[-5:]
    assert said == [LINE[signum]], run.lines[-5:]
    assert seconds <= LIMIT_S, f"took {seconds:.2f} s"
    time.sleep(0.2)  # SIGKILLed children are reaped by init
    assert not alive(children), f"children left: {alive(children)}"


def leftovers(folder: Path) -> list[str]:
    """What a command left in its TMPDIR (its own temporary folders and pip's)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder, {"TMPDIR": str(folder)}


@pytest.fixture
def short_tmpdir() -> Iterator[tuple[Path, dict[str, str]]]:
    """A TMPDIR short enough for ssh's control sockets (a Unix socket's path is < 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ek-"))
    yield folder, {"TMPDIR": str(folder)}
    shutil.rmtree(folder, ignore_errors=True)


# --- the mechanism, in small scripts ------------------------------------------------------------

def script(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` with the interrupt handling installed, and ending on
    KeyboardInterrupt as the CLI does; ``code`` prints when the signals may come."""
    whole = ("import sys, time, subprocess\nfrom pathlib import Path\n"
             "from edgekit.helpers import interrupt\ninterrupt.install()\ntry:\n"
             + textwrap.indent(code.strip("\n"), "    ")
             + "\nexcept KeyboardInterrupt:\n    interrupt.leave()\n")
    return subprocess.Popen([sys.executable, "-c", whole, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_the_watchdog_ends_what_python_cannot_interrupt(signum: int, tmp_path: Path) -> None:
    """As for Ctrl-C: code that holds the interrupt off (a runtime busy in C++) is ended by
    the watchdog: the temporary folder removed, the child killed, one line, 128 + signum.
    Without a handler SIGTERM killed Python at once, leaving both."""
    partial = tmp_path / ".bundle.partial"
    process = script(f"""
Path({str(partial)!r}).mkdir()
interrupt.remember({str(partial)!r})
child = subprocess.Popen(["sleep", "60"])
with interrupt.deferred():
    print(child.pid, flush=True)
    time.sleep(30)
""")
    child = int(process.stdout.readline())
    start = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, err.strip()) == (128 + signum, LINE[signum])
    assert time.monotonic() - start <= LIMIT_S
    assert not partial.exists() and not alive([child])


def test_sighup_stays_ignored_under_nohup() -> None:
    """A command started with SIGHUP ignored (nohup) is not stopped when its terminal closes."""
    code = """
import signal
signal.signal(signal.SIGHUP, signal.SIG_IGN)
from edgekit.helpers import interrupt
interrupt.install()
print("ready", flush=True)
time.sleep(1.5)
print("done", flush=True)
"""
    process = subprocess.Popen([sys.executable, "-c", "import time\n" + code],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out.strip(), err.strip()) == (0, "done", "")


SAVING = """
partial, final = Path(sys.argv[1]), Path(sys.argv[2])
partial.write_text("frames\\n")
interrupt.remember(partial)
try:
    print("ready", flush=True)
    time.sleep(30)
finally:
    with interrupt.saving():  # closing the outputs takes a while (a long video's index)
        time.sleep(1.5)
        partial.rename(final)
        interrupt.forget(partial)
"""


@pytest.mark.parametrize("gap", [0.02, REPEAT_S + 0.2], ids=["soon", "later"])
def test_a_second_signal_while_saving_keeps_the_outputs(gap: float, tmp_path: Path) -> None:
    """Two signals ``gap`` apart while the outputs are being closed: the file is kept. Soon
    after the first, the second is the same request; later, it is the hard exit, which waits
    for what is being saved. Before, either one removed the file being saved (two Ctrl-Cs
    20 ms apart in `run --save`: exit 130, both outputs gone)."""
    partial, final = tmp_path / ".out.partial.jsonl", tmp_path / "out.jsonl"
    process = script(SAVING, str(partial), str(final))
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    time.sleep(gap)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143 and err.strip() == "terminated", err
    assert final.read_text() == "frames\n" and not partial.exists()


def test_a_childs_own_process_group_is_ended(tmp_path: Path) -> None:
    """A child that leads its own process group (ansible-playbook) may have processes in it
    whose parent is gone (a double fork): they end with the command too."""
    pidfile = tmp_path / "orphan.pid"
    process = script(f"""
leader = subprocess.Popen(["sh", "-c", "(sleep 60 & echo $! > {pidfile}); sleep 60"],
                          start_new_session=True)
while not Path({str(pidfile)!r}).exists() or not Path({str(pidfile)!r}).read_text():
    time.sleep(0.01)
print(leader.pid, flush=True)
time.sleep(30)
""")
    leader = int(process.stdout.readline())
    orphan = int(pidfile.read_text())
    assert orphan not in descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, err.strip()) == (143, "terminated")
    time.sleep(0.2)
    assert not alive([leader, orphan])


def test_a_crashed_child_is_named_as_a_crash(tmp_path: Path) -> None:
    """A child that dies of SIGSEGV is reported as a crash with the signal's name, not as
    "signal 11: <its last stderr line>" (a bench worker's once read "signal 11:
    KeyboardInterrupt")."""
    code = ("import os, signal, sys\nprint('KeyboardInterrupt', file=sys.stderr, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGSEGV)")
    answer = run_json([sys.executable, "-c", code], 60)
    assert answer.died_of == signal.SIGSEGV
    assert answer.why() == ("crashed (signal 11, SIGSEGV); its last line on stderr: "
                            "KeyboardInterrupt")
    answer = run_json([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], 60)
    assert answer.why().startswith("was killed (signal 9, SIGKILL")
    answer = run_json([sys.executable, "-c", "import sys; sys.exit('no runtime')"], 60)
    assert answer.died_of is None and answer.why() == "exit 1: no runtime"


def test_a_crashed_bench_worker_is_reported_as_a_crash(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import edgekit.bench as bench
    from edgekit.helpers.subproc import Answer

    monkeypatch.setattr(bench, "run_json", lambda *a, **k: Answer(None, -11, ""))
    pair = bench.Pair(tmp_path / "m.onnx", "onnx", "onnxruntime")
    outcome = bench._run_worker(pair, None, bench.BenchSettings())
    assert outcome == {"status": "failed",
                       "reason": "the bench worker crashed (signal 11, SIGSEGV)"}


def test_a_stopped_service_is_a_clean_stop(tmp_path: Path, lenet_bundle: Path) -> None:
    """systemctl stop sends SIGTERM, and edgekit then exits 143: the unit counts that (and
    129, 130) as a clean stop, not a failure (the unit shown failed after every stop, and an
    edgekit killed with SIGTERM restarted by Restart=on-failure). systemd-analyze checks the
    whole unit in test_deploy.py::test_unit_file."""
    from edgekit.deploy.plan import ShippedFile, plan_release
    from edgekit.deploy.service import unit_text
    from edgekit.deploy.targets import find_target
    from edgekit.deploy.wheels import WheelInfo

    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    plan = plan_release(lenet_bundle, find_target("rpi4-cpu"), wheel,
                        WheelInfo("edgekit", "0.1.0", "", ("numpy>=1.23",)), tmp_path)
    codes = sorted(128 + signum for signum in interrupt.LINES)
    assert f"\nSuccessExitStatus={' '.join(map(str, codes))}\n" in unit_text(plan, "/home/pi/e")


def test_the_exit_code_and_line_follow_the_first_signal() -> None:
    """In-process: the first signal decides (a later different one does not change it)."""
    saved = (interrupt._State.signum, interrupt._State.first_at, interrupt._State.count)
    try:
        interrupt._State.first_at, interrupt._State.count = None, 0
        interrupt._seen(signal.SIGHUP)
        interrupt._seen(signal.SIGINT)
        assert (interrupt.exit_code(), interrupt.line()) == (129, "hung up")
    finally:
        interrupt._State.signum, interrupt._State.first_at, interrupt._State.count = saved


# --- every command that writes, spawns or deploys ----------------------------------------------

def _frames(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def _start_run(bundle: Path, clip: Path, folder: Path) -> Running:
    run = Running("run", bundle, "--source", clip, "--capture", "repeat=on", "--capture",
                  "realtime=30",
                  "--save", folder / "a.avi", "--save", folder / "a.jsonl")
    partial = next(iter(folder.glob(".a*.jsonl")), None)
    deadline = time.monotonic() + 120
    while partial is None or partial.read_bytes().count(b"\n") < 20:
        assert time.monotonic() < deadline and run.process.poll() is None, run.lines
        time.sleep(0.05)
        partial = next(iter(folder.glob(".a*.jsonl")), None)
    return run


def _assert_outputs_kept(folder: Path) -> None:
    records = [json.loads(line) for line in (folder / "a.jsonl").read_text().splitlines()]
    assert _frames(folder / "a.avi") == len(records) >= 20
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert sorted(p.name for p in folder.iterdir()) == ["a.avi", "a.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGHUP,),
                                     (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGTERM)],
                         ids=["TERM", "HUP", "INT-INT", "TERM-TERM"])
def test_run_keeps_its_outputs(signals: tuple[int, ...], detector_bundle: Path,
                               demo_clip: Path, tmp_path: Path) -> None:
    """`run --save --jsonl` stopped as a service is (and two signals 20 ms apart): both
    outputs complete, the same frames, nothing hidden left beside them. Before: SIGTERM left
    neither (only .a.partial.* files); two Ctrl-Cs deleted both."""
    out = tmp_path / "out"
    out.mkdir()
    run = _start_run(detector_bundle, demo_clip, out)
    assert_stopped(run, signals[0], *stop(run, *signals))
    _assert_outputs_kept(out)


@pytest.mark.slow
def test_convert(lenet_bundle: Path, tmp_path: Path, tmpdir_env) -> None:
    """SIGTERM while TensorFlow converts: the old bundle stays whole, no .NAME.partial-* beside
    it, no SavedModel folder in TMPDIR. Before, both stayed."""
    temp, env = tmpdir_env
    out = Path(shutil.copytree(lenet_bundle, tmp_path / "out" / "bundle"))
    before = tree(out.parent)
    run = Running("convert", LENET / "lenet5_digits.keras", "-o", out, "--force", "--formats",
                  "tflite-fp32,onnx", env=env)
    run.wait_for("tflite-fp32: converting")
    time.sleep(0.2)
    assert_stopped(run, signal.SIGTERM, *stop(run, signal.SIGTERM))
    assert tree(out.parent) == before
    assert leftovers(temp) == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_bench(mode: str, lenet_bundle: Path, tmpdir_env) -> None:
    """SIGTERM mid-row: the worker is gone. Before, in throughput mode it ran on at 100% CPU
    for the rest of --duration."""
    temp, env = tmpdir_env
    run = Running("bench", lenet_bundle, "--backends", "onnxruntime", "--infer", f"mode={mode}",
                  "--duration", "30", "--no-fidelity", env=env)
    run.wait_for(": running")
    time.sleep(2.0)  # the worker is loading or timing
    code, seconds, children = stop(run, signal.SIGTERM)
    assert children, "a worker process was running"
    assert_stopped(run, signal.SIGTERM, code, seconds, children)
    assert leftovers(temp) == []


@pytest.mark.slow
def test_bench_killed(lenet_bundle: Path) -> None:
    """SIGKILL cannot be handled, so the command cannot end its worker: the worker ends
    itself when its parent dies (it ran on at 100% CPU for the rest of --duration)."""
    run = Running("bench", lenet_bundle, "--backends", "onnxruntime", "--infer", "mode=throughput",
                  "--duration", "30", "--no-fidelity")
    run.wait_for(": running")
    time.sleep(2.0)
    workers = descendants(run.process.pid)
    assert workers, "a worker process was running"
    stop(run, signal.SIGKILL)
    time.sleep(0.5)
    assert not alive(workers), f"left running: {alive(workers)}"


@pytest.mark.slow
def test_compare(detector_bundle: Path, demo_clip: Path, tmp_path: Path, tmpdir_env) -> None:
    temp, env = tmpdir_env
    clip = longer_clip(demo_clip, tmp_path / "long.avi", 10)
    run = Running("compare", detector_bundle, "--source", clip,
                  "--backends", "openvino,onnxruntime", env=env)
    run.wait_for("onnxruntime: running")
    time.sleep(0.5)
    assert_stopped(run, signal.SIGTERM, *stop(run, signal.SIGTERM))
    assert leftovers(temp) == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (ssh waits for its
    banner)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_deploy_to_a_silent_host(signum: int, silent_port: int, lenet_bundle: Path,
                                 tmpdir_env) -> None:
    """`deploy --host` waiting for a host that never answers: its ssh child ends, and its
    staging folder (/tmp/edgekit-deploy-*) is removed. Before, SIGTERM left the ssh running,
    and Ctrl-C (ssh held on for its timeout, so the hard exit came) the staging folder."""
    temp, env = tmpdir_env
    run = Running("deploy", lenet_bundle, "--target", "rpi4-cpu", "--host", "pi@127.0.0.1",
                  "--ssh", f"port={silent_port}", env=env)
    run.wait_for("take the device's deploy lock")
    deadline = time.monotonic() + 30
    while not any("ssh" in _cmdline(pid) for pid in descendants(run.process.pid)):
        assert time.monotonic() < deadline, "no ssh started"
        time.sleep(0.05)
    time.sleep(0.3)
    assert_stopped(run, signum, *stop(run, signum))
    assert leftovers(temp) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def two_devices() -> Iterator[object]:
    """Two fleet devices (real users behind one loopback sshd), as in test_fleet.py."""
    pytest.importorskip("ansible", reason="needs ansible-core: pip install 'edgekit[fleet]'")
    import fleet_devices as fd

    reason = fd.missing_requirement()
    if reason:
        pytest.skip(reason)
    sshd = fd.FleetSshd(2)
    sshd.start()
    yield sshd
    sshd.stop()


@pytest.mark.slow
def test_deploy_to_an_inventory(two_devices, lenet_bundle: Path, tmp_path: Path,
                                short_tmpdir) -> None:
    """SIGTERM mid-rollout: ansible-playbook (its own session) and every ssh it started end,
    its run folder is removed, and the devices' locks are free (a deploy goes ahead at once).
    Before, ansible-playbook kept deploying."""
    import fleet_devices as fd
    from conftest import ROOT
    from deploy_support import local_profile

    temp, env = short_tmpdir
    devices = two_devices.devices
    known = devices[0].known_hosts_file
    profile = local_profile(tmp_path, "sigterm", edits={
        'formats = ["tflite-int8", "tflite-fp32"]': 'formats = ["tflite-fp32"]'})
    inventory = tmp_path / "lab.ini"
    inventory.write_text("\n".join(["[lab]", *[fd.inventory_line(f"d{i}", d)
                                               for i, d in enumerate(devices)],
                                     "", "[lab:vars]", f"edgekit_target={profile}", ""]))
    args = ("deploy", lenet_bundle, "--inventory", inventory, "--ssh", f"known_hosts={known}",
            "--release", "python=/usr/bin/python3", "--offline")
    run = Running(*args, env=env)
    run.wait_for("stage a new release folder")
    playbook = [pid for pid in descendants(run.process.pid) if "ansible" in _cmdline(pid)]
    assert playbook, "ansible-playbook was running"
    assert_stopped(run, signal.SIGTERM, *stop(run, signal.SIGTERM))
    assert leftovers(temp) == []
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if str(temp) in _cmdline(pid)], "an ssh it started is still running"
    retry = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stderr
