"""The emulated Pi registers qemu with binfmt_misc only while its fixture lives, also when the
fixture or a test fails or is interrupted, and never touches a registration that was there.

Each case runs the real ``emulated_pi`` fixture (scripts/pi_userland.sh start and stop) in a
pytest of its own, inside new user, mount, PID and network namespaces with a private binfmt_misc
(Linux 6.7+): nothing outside changes. Its "Pi" is this machine's own /usr and /etc (overlays:
writes stay inside) with its own sshd, so that ``start`` really comes up; no aarch64 code runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sshd import OPENSSH, SSHD
from system_packages import install_hint

pytestmark = [pytest.mark.slow, pytest.mark.system_tools("unshare", "openssh")]

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS.parent / "scripts" / "pi_userland.sh"
AARCH64 = (r"M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:"
           r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")
NAMESPACES = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork",
              "--mount-proc", "--net"]

# In the namespaces: a private binfmt_misc (or not yet mounted), registrations that were "there
# before", a Pi made of this machine's /usr and /etc, then a pytest using the real fixture.
DRIVER = r"""
set -euo pipefail
work=$1; shift
binfmt=$work/binfmt pi=$work/pi
mkdir -p "$binfmt" "$pi"/{usr,etc,dev,proc,sys,run,tmp,home} "$work/layers"
[[ $MOUNT_BINFMT == yes ]] && mount -t binfmt_misc binfmt_misc "$binfmt"
for entry in $BEFORE; do  # name:flags:state
    IFS=: read -r name flags state <<<"$entry"
    printf ':%s:%s:/usr/bin/true:%s' "$name" "$AARCH64" "$flags" >"$binfmt/register"
    [[ $state == enabled ]] || echo 0 >"$binfmt/$name"
done
mount -t tmpfs tmpfs "$work/layers"
for dir in usr etc; do
    mkdir -p "$work/layers/$dir/upper" "$work/layers/$dir/work"
    mount -t overlay overlay -o "lowerdir=/$dir,upperdir=$work/layers/$dir/upper" \
        -o "workdir=$work/layers/$dir/work" "$pi/$dir"
done
for link in bin sbin lib lib64; do ln -s "usr/$link" "$pi/$link"; done
mount --rbind /dev "$pi/dev"  # a user namespace may bind /dev only with what is mounted in it
# A host with its own user pi (a Raspberry Pi, or any workstation with such an account) must not
# change the Pi made here: its line would sit beside ours, authorize_key would read two uid:gid
# pairs and fail ("install: invalid user '1004:1004\n0'"). HOST_PI=yes plays such a host.
[[ $HOST_PI != yes ]] || echo "pi:x:1004:1004:pi:/home/pi:/bin/bash" >>"$pi/etc/passwd"
sed -i '/^pi:/d' "$pi/etc/passwd"  # the overlay's copy only: the host's /etc is not written
echo "pi:x:0:0:pi:/home/pi:/bin/sh" >>"$pi/etc/passwd"  # uid 0: the only one mapped here
[[ $BREAK_SSHD != yes ]] || rm "$pi/etc/ssh/sshd_config"
# The host's extra CA certificates, as a start before would have left them (saves seconds).
cas=$pi/usr/local/share/ca-certificates/host
mkdir -p "$cas"
cp /usr/local/share/ca-certificates/*.crt "$cas/" 2>/dev/null || true
bash "$SCRIPT" _userland-id >"$pi/.edgekit-userland"
ip link set lo up
status=0
"$@" || status=$?
mounted=no
if mountpoint -q "$binfmt"; then mounted=yes; fi
echo "AFTER pytest=$status mounted=$mounted entries=$(cd "$binfmt" && echo *)"
for entry in "$binfmt"/*; do
    case ${entry##*/} in register|status) ;; *) echo "AFTER ${entry##*/} $(head -n 1 "$entry")" ;;
    esac
done
"""

INNER_TEST = r'''
import json, os, signal, socket, time
from pathlib import Path

def test_with_the_pi(emulated_pi):
    binfmt = Path(os.environ["EDGEKIT_BINFMT_DIR"])
    entries = {p.name: p.read_text().splitlines() for p in binfmt.iterdir()
               if p.name not in ("register", "status")}
    with socket.create_connection((emulated_pi.host, emulated_pi.port), timeout=10) as link:
        banner = link.recv(64).decode()
    Path(os.environ["SEEN"]).write_text(json.dumps({"entries": entries, "banner": banner}))
    ending = os.environ["ENDING"]
    if ending == "failure":
        assert False, "a test that fails"
    if ending == "ctrl-c":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)
'''


def private_binfmt_misc_reason() -> str | None:
    """Why the namespaces this test needs are not available here, or None."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux and unshare (util-linux)"
    if os.geteuid() != 0:
        return "needs root, like the emulated Pi itself"
    if not SSHD.exists():
        return f"{SSHD} not found: {install_hint(*OPENSSH)}"
    if not Path("/bin").is_symlink() or not Path("/lib64").is_symlink():
        return "needs a merged-/usr system (/bin and /lib64 links into /usr)"
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run([*NAMESPACES, "mount", "-t", "binfmt_misc", "binfmt_misc", folder],
                               capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return (f"no private binfmt_misc in a user namespace here (Linux 6.7+): "
                f"{probe.stderr.strip()}")
    return None


def run_fixture(tmp_path: Path, *, ending: str = "pass", before: str = "",
                mount_binfmt: bool = True, break_sshd: bool = False,
                host_pi: bool = False) -> tuple[dict, dict]:
    """Run a pytest that uses ``emulated_pi`` in the namespaces; what the test saw while the Pi
    ran ({} if it never ran), and what was left after (pytest's exit status, entries)."""
    reason = private_binfmt_misc_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path / "work"
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER_TEST)
    (inner / "pytest.ini").write_text("[pytest]\n")
    seen = tmp_path / "seen.json"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path),
        "PYTHONPATH": str(TESTS), "SCRIPT": str(SCRIPT), "AARCH64": AARCH64,
        "BEFORE": before, "MOUNT_BINFMT": "yes" if mount_binfmt else "no",
        "BREAK_SSHD": "yes" if break_sshd else "no", "HOST_PI": "yes" if host_pi else "no",
        "ENDING": ending, "SEEN": str(seen),
        "EDGEKIT_PI_ROOT": str(work / "pi"), "EDGEKIT_BINFMT_DIR": str(work / "binfmt"),
        "EDGEKIT_PI_QEMU": "/usr/bin/true",  # registered, never run: the Pi here is x86-64
    }
    pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "conftest_sshd",
                      "-p", "no:cacheprovider", "--rootdir", str(inner),
                      "-c", str(inner / "pytest.ini"), "--basetemp", str(tmp_path / "basetemp"),
                      str(inner / "test_inner.py")]
    result = subprocess.run([*NAMESPACES, "bash", "-c", DRIVER, "driver", str(work),
                             *pytest_command], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    after_lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines()
                   if line.startswith("AFTER ")]
    assert after_lines, result.stdout + result.stderr
    summary = dict(item.split("=", 1) for item in after_lines[0].split(" ", 2))
    after = {"pytest": int(summary["pytest"]), "mounted": summary["mounted"] == "yes",
             "entries": dict(line.split(" ", 1) for line in after_lines[1:]),
             "output": result.stdout + result.stderr}
    return (json.loads(seen.read_text()) if seen.exists() else {}), after


def edgekit_entries(entries: dict) -> list[str]:
    return [name for name in entries if name.startswith("edgekit-")]


def test_registered_while_the_pi_runs_removed_after(tmp_path: Path) -> None:
    seen, after = run_fixture(tmp_path, before="qemu-aarch64:PF:disabled")
    assert after["pytest"] == 0, after["output"]
    assert seen["banner"].startswith("SSH-2.0-OpenSSH")
    ours = edgekit_entries(seen["entries"])
    assert len(ours) == 1 and ours[0].startswith("edgekit-aarch64-start-")
    entry = seen["entries"][ours[0]]
    assert entry[0] == "enabled"
    assert entry[1].startswith("interpreter ") and entry[1].endswith("/qemu-aarch64-binfmt-P")
    assert "flags: PF" in entry
    assert "magic 7f454c460201010000000000000000000200b700" in entry
    assert seen["entries"]["qemu-aarch64"][0] == "disabled"  # there before: left as it was
    assert after["entries"] == {"qemu-aarch64": "disabled"}
    assert after["mounted"]


@pytest.mark.parametrize("ending", ["failure", "ctrl-c"])
def test_removed_when_a_test_fails_or_is_interrupted(tmp_path: Path, ending: str) -> None:
    seen, after = run_fixture(tmp_path, ending=ending)
    assert after["pytest"] == {"failure": 1, "ctrl-c": 2}[ending], after["output"]
    assert len(edgekit_entries(seen["entries"])) == 1
    assert after["entries"] == {}, after["output"]


def test_removed_when_the_fixture_fails(tmp_path: Path) -> None:
    seen, after = run_fixture(tmp_path, break_sshd=True)
    assert seen == {}  # the test never ran
    assert after["pytest"] == 1 and "sshd exited" in after["output"], after["output"]
    assert "error" in after["output"]
    assert after["entries"] == {}, after["output"]


def test_a_working_registration_is_used_and_left_alone(tmp_path: Path) -> None:
    seen, after = run_fixture(tmp_path, before="qemu-aarch64:OCF:enabled")
    assert after["pytest"] == 0, after["output"]
    assert edgekit_entries(seen["entries"]) == []
    assert after["entries"] == {"qemu-aarch64": "enabled"}


def test_binfmt_misc_mounted_only_while_needed(tmp_path: Path) -> None:
    seen, after = run_fixture(tmp_path, mount_binfmt=False)
    assert after["pytest"] == 0, after["output"]
    assert len(edgekit_entries(seen["entries"])) == 1  # so it was mounted meanwhile
    assert not after["mounted"], after["output"]


def test_a_host_with_its_own_user_pi(tmp_path: Path) -> None:
    """The machine running the tests may have an account named pi (a Raspberry Pi, a
    workstation): the fixture's Pi is still the one it makes (issue 26)."""
    seen, after = run_fixture(tmp_path, host_pi=True)
    assert after["pytest"] == 0, after["output"]
    assert seen["banner"].startswith("SSH-2.0-OpenSSH")
    assert "invalid user" not in after["output"]
