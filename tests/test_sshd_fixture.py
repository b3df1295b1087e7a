"""The SSH test infrastructure itself: loopback sshd, host-key and key checks, cutting proxy."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sshd import CuttingProxy, LoopbackSshd, SshServer, known_hosts_line, public_key

PAYLOAD_SIZE = 8 * 1024 * 1024  # several SSH windows: a cut at 1 MB lands mid-transfer


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_ssh_runs_a_command(ssh_server: SshServer) -> None:
    result = ssh_server.run("echo hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\n"


def test_session_starts_in_the_server_home(ssh_server: SshServer) -> None:
    result = ssh_server.run('pwd; echo "$HOME"')
    assert result.stdout.decode().split() == [ssh_server.home, ssh_server.home]


def test_scp_lands_in_home(ssh_server: SshServer, tmp_path: Path) -> None:
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(100_000))
    result = subprocess.run(
        ssh_server.scp_command([local], "copied.bin"), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (ssh_server.local_path("copied.bin")).read_bytes() == local.read_bytes()


def test_unknown_host_key_is_refused(ssh_server: SshServer, empty_known_hosts: Path) -> None:
    result = ssh_server.run("echo hi", known_hosts_file=empty_known_hosts)
    assert result.returncode == 255
    assert b"Host key verification failed" in result.stderr
    assert empty_known_hosts.read_text() == ""  # StrictHostKeyChecking=yes adds nothing


def test_changed_host_key_is_refused(
    ssh_server: SshServer, wrong_identity_file: Path, tmp_path: Path
) -> None:
    impostor = tmp_path / "impostor_known_hosts"
    impostor.write_text(
        known_hosts_line(ssh_server.host, ssh_server.port, public_key(wrong_identity_file))
    )
    result = ssh_server.run("echo hi", known_hosts_file=impostor)
    assert result.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_wrong_key_is_refused(ssh_server: SshServer, wrong_identity_file: Path) -> None:
    result = ssh_server.run("echo hi", identity_file=wrong_identity_file)
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_stop_ends_open_sessions(loopback_sshd: LoopbackSshd, ssh_server: SshServer) -> None:
    client = subprocess.Popen(
        ssh_server.ssh_command("sleep 60"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: len(loopback_sshd.session_pids()) >= 2)  # sshd + sleep
        sessions = loopback_sshd.session_pids()
        loopback_sshd.stop()
        assert client.wait(timeout=10) != 0
        assert not [pid for pid in sessions if Path(f"/proc/{pid}").exists()]
    finally:
        client.kill()
        client.wait()


def test_proxy_passes_traffic(ssh_server: SshServer, cutting_proxy: CuttingProxy) -> None:
    result = ssh_server.through(cutting_proxy.port).run("echo through")
    assert result.stdout == b"through\n"
    assert cutting_proxy.bytes_up > 0 and cutting_proxy.bytes_down > 0
    assert cutting_proxy.cuts == 0


def test_cut_breaks_an_upload_and_the_server_notices(
    loopback_sshd: LoopbackSshd, ssh_server: SshServer, cutting_proxy: CuttingProxy
) -> None:
    via = ssh_server.through(cutting_proxy.port)
    cutting_proxy.cut_after(upload=1_000_000)
    result = via.run("cat > upload.bin", input=os.urandom(PAYLOAD_SIZE))
    assert result.returncode == 255, result.stderr
    assert cutting_proxy.cut_done.is_set() and cutting_proxy.cuts == 1
    assert wait_until(lambda: loopback_sshd.session_pids() == [])  # session and cat ended
    assert "Connection reset" in loopback_sshd.log_text()
    partial = ssh_server.local_path("upload.bin")  # if the remote cat even started
    assert not partial.exists() or partial.stat().st_size < PAYLOAD_SIZE


def test_cut_breaks_scp(ssh_server: SshServer, cutting_proxy: CuttingProxy, tmp_path: Path) -> None:
    local = tmp_path / "bundle.tar"
    local.write_bytes(os.urandom(PAYLOAD_SIZE))
    cutting_proxy.cut_after(upload=2_000_000)
    command = ssh_server.through(cutting_proxy.port).scp_command([local], "bundle.tar")
    result = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    remote = ssh_server.local_path("bundle.tar")
    assert not remote.exists() or remote.stat().st_size < PAYLOAD_SIZE


def test_cut_breaks_a_download(ssh_server: SshServer, cutting_proxy: CuttingProxy) -> None:
    ssh_server.local_path("big.bin").write_bytes(os.urandom(PAYLOAD_SIZE))
    cutting_proxy.cut_after(download=1_000_000)
    result = ssh_server.through(cutting_proxy.port).run("cat big.bin")
    assert result.returncode == 255
    assert len(result.stdout) < PAYLOAD_SIZE


def test_cut_is_one_shot(ssh_server: SshServer, cutting_proxy: CuttingProxy) -> None:
    via = ssh_server.through(cutting_proxy.port)
    cutting_proxy.cut_after(upload=500)
    assert via.run("echo first").returncode == 255
    assert via.run("echo again").stdout == b"again\n"


def test_cut_now_breaks_an_open_session(ssh_server: SshServer, cutting_proxy: CuttingProxy) -> None:
    client = subprocess.Popen(
        ssh_server.through(cutting_proxy.port).ssh_command("sleep 60"),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: cutting_proxy.bytes_down > 2000)  # logged in by now
        cutting_proxy.cut()
        assert client.wait(timeout=10) == 255
    finally:
        client.kill()
        client.wait()


def test_stalled_link_times_out_with_keepalives(ssh_server: SshServer) -> None:
    with CuttingProxy(ssh_server.host, ssh_server.port, mode="stall") as proxy:
        proxy.cut_after(upload=1_000_000)
        keepalive = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]
        started = time.monotonic()
        result = ssh_server.through(proxy.port).run(
            "cat > stalled.bin", input=os.urandom(PAYLOAD_SIZE), extra=keepalive, timeout=30
        )
        assert result.returncode == 255
        assert b"Timeout" in result.stderr
        assert time.monotonic() - started < 15
