"""pytest fixtures for SSH tests: a loopback OpenSSH server, keys, a cutting proxy, a Pi.

Load it from tests/conftest.py with ``pytest_plugins = ["conftest_sshd"]``.

- ``ssh_server``: an ``SshServer`` for a fresh sshd on 127.0.0.1 (per test, starts in ~0.05 s;
  one ssh round trip ~0.3 s). Logs in as the user running the tests, root included.
- ``loopback_sshd``: the ``LoopbackSshd`` behind it (``session_pids()``, ``log_text()``).
- ``wrong_identity_file``: a key pair the server does not accept.
- ``empty_known_hosts``: a known_hosts file that knows no host.
- ``cutting_proxy``: a ``CuttingProxy`` in front of ``ssh_server``
  (reach it with ``ssh_server.through(cutting_proxy.port)``).
- ``emulated_pi``: an ``SshServer`` for the emulated arm64 Raspberry Pi (user pi), per session.
  Skips unless the userland is built (``scripts/pi_userland.sh build``) or EDGEKIT_PI_BUILD=1
  lets the fixture build it (several minutes, once; cached in ~/.cache/edgekit). qemu is
  registered with binfmt_misc only while the fixture lives, removed after even when it fails.
- ``systemd_device``: a ``SystemdDevice``, Debian bookworm booted by systemd-nspawn (users pi
  and root), per test module. Skips without root, systemd-nspawn or mmdebstrap; builds its
  root file system the first time (about a minute; cached in ~/.cache/edgekit).

For example::

    def test_copy(ssh_server, tmp_path):
        bundle = tmp_path / "bundle.tar"
        bundle.write_bytes(b"...")
        subprocess.run(ssh_server.scp_command([bundle], "bundle.tar"), check=True)
        assert ssh_server.run(["ls", "bundle.tar"]).returncode == 0
        assert ssh_server.local_path("bundle.tar").read_bytes() == b"..."

Code under test gets ``ssh_server.host``, ``.port``, ``.user``, ``.identity_file`` and
``.known_hosts_file`` and must pass them to ssh itself (``client_options()`` shows how).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import emulated_pi as pi
import pytest
import systemd_device as sd
from sshd import CuttingProxy, LoopbackSshd, SshdUnavailable, SshServer, make_key_pair


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pi: needs the emulated Raspberry Pi (root, qemu-user-static; see conftest_sshd)"
    )


@pytest.fixture
def loopback_sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    """A running loopback sshd (Debian's) with throwaway keys, stopped after the test."""
    try:
        sshd = LoopbackSshd(tmp_path / "sshd")
    except SshdUnavailable as missing:
        pytest.skip(str(missing))
    sshd.start()
    yield sshd
    sshd.stop()


@pytest.fixture
def ssh_server(loopback_sshd: LoopbackSshd) -> SshServer:
    """How to reach the loopback sshd: host, port, user, key, known_hosts, home."""
    assert loopback_sshd.server is not None
    return loopback_sshd.server


@pytest.fixture
def wrong_identity_file(tmp_path: Path) -> Path:
    """A private key that no test server accepts."""
    return make_key_pair(tmp_path / "wrong_id_ed25519", "edgekit-wrong-key")


@pytest.fixture
def empty_known_hosts(tmp_path: Path) -> Path:
    """A known_hosts file with no hosts in it: every host key is unknown."""
    path = tmp_path / "empty_known_hosts"
    path.write_text("")
    return path


@pytest.fixture
def cutting_proxy(ssh_server: SshServer) -> Iterator[CuttingProxy]:
    """A proxy in front of ``ssh_server`` that passes everything until told to cut."""
    with CuttingProxy(ssh_server.host, ssh_server.port) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def emulated_pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """The emulated Raspberry Pi's sshd on a free loopback port; user pi, a throwaway key."""
    reason = pi.missing_requirement()
    if reason:
        pytest.skip(reason)
    if not pi.is_built():
        if os.environ.get("EDGEKIT_PI_BUILD") != "1":
            pytest.skip(
                f"no emulated Pi userland at {pi.pi_root()}: run `{pi.BUILD_COMMAND}` once "
                "(several minutes), or set EDGEKIT_PI_BUILD=1 to let the tests build it"
            )
        reason = pi.missing_build_requirement()
        if reason:
            pytest.skip(reason)
        pi.build()
    with pi.running(tmp_path_factory.mktemp("emulated-pi")) as server:
        yield server


@pytest.fixture(scope="module")
def systemd_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sd.SystemdDevice]:
    """A Debian bookworm device booted by its own systemd, sshd on a free loopback port."""
    reason = sd.missing_requirement()
    if reason:
        pytest.skip(reason)
    sd.build()  # about a minute the first time; cached in ~/.cache/edgekit
    device = sd.start(tmp_path_factory.mktemp("systemd-device"))
    try:
        yield device
    finally:
        sd.stop(device.run_dir)
