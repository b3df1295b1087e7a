"""scripts/ci_system_deps.sh against stand-ins for apt-get, systemctl, dpkg-query, update-rc.d
and update-binfmts, which record every call and do what the real ones' maintainer scripts do:
openssh-server's install enables ssh.service (as deb-systemd-helper does: no systemctl call)
and asks policy-rc.d before starting it. Only the stand-ins and a few plain tools are on PATH,
so nothing real is installed, started or registered, whoever runs the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from system_packages import install_hint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ci_system_deps.sh"
TOOLS = ("awk", "basename", "cat", "chmod", "comm", "grep", "mktemp", "mv", "readlink", "rm",
         "sleep", "sort")
# Every package the script lists (its `group "PACKAGES" "REASON"` lines), openssh-* first.
ALL_PACKAGES = tuple(" ".join(re.findall(r'^group "([^"]+)"', SCRIPT.read_text(), re.M)).split())
OTHERS = tuple(p for p in ALL_PACKAGES if not p.startswith("openssh-"))
DOCKER_POLICY = "#!/bin/sh\n# Docker's: no services in image builds\nexit 101\n"

# What the stand-ins know: a log of calls, installed packages, enabled units, rc links.
STANDINS = {
    "dpkg-query": r"""
echo "dpkg-query $*" >>"$STATE/calls"
package=${@: -1}
grep -qx "$package" "$STATE/installed" || exit 1
printf installed
""",
    "id": r"""
[[ $1 == -u ]] && echo "${FAKE_UID:-0}"
""",
    "apt-get": r"""
echo "apt-get $*" >>"$STATE/calls"
[[ $* == *update* ]] && exit 0
packages=()
for arg in "$@"; do
    case $arg in -*|install|Dpkg::*|APT::*) ;; *) packages+=("$arg") ;; esac
done
if [[ " $* " == *" -s "* ]]; then
    for package in "${packages[@]}"; do
        echo "Inst $package (1:9.2 Debian:12/stable [amd64])"
        [[ $package == openssh-server ]] && echo "Inst openssh-sftp-server (1:9.2 Debian:12)"
    done
    exit 0
fi
policy=$EDGEKIT_SYSTEM_ROOT/usr/sbin/policy-rc.d
for package in "${packages[@]}"; do
    echo "$package" >>"$STATE/installed"
    case $package in  # their postinsts register qemu for good
        binfmt-support | qemu-user-static) update-binfmts --import ;;
    esac
    [[ $package == openssh-server ]] || continue
    # openssh-server's postinst: enable (deb-systemd-helper or update-rc.d), then start through
    # deb-systemd-invoke or invoke-rc.d, which ask policy-rc.d first.
    if [[ -f $STATE/systemd ]]; then
        grep -qx ssh.service "$STATE/enabled" || echo ssh.service >>"$STATE/enabled"
    else
        mkdir -p "$EDGEKIT_SYSTEM_ROOT/etc/rc2.d"
        ln -sfn ../init.d/ssh "$EDGEKIT_SYSTEM_ROOT/etc/rc2.d/S01ssh"
    fi
    if [[ -x $policy ]]; then
        "$policy" ssh start && allowed=0 || allowed=$?
    else
        allowed=0
    fi
    echo "policy-rc.d ssh start: $allowed" >>"$STATE/calls"
    if [[ $allowed != 101 && -f $STATE/systemd ]]; then systemctl start ssh.service; fi
    [[ $allowed != 101 && ! -f $STATE/systemd ]] && echo "started ssh" >>"$STATE/calls"
    if [[ -f $STATE/hang ]]; then echo "hanging" >>"$STATE/calls"; sleep 60; fi
    if [[ -f $STATE/fail ]]; then
        echo "E: Sub-process /usr/bin/dpkg returned an error code (1)"
        exit 100
    fi
done
""",
    "systemctl": r"""
echo "systemctl $*" >>"$STATE/calls"
case $1 in
    list-unit-files) sed 's/$/ enabled enabled/' "$STATE/enabled" ;;
    disable) grep -vx "${@: -1}" "$STATE/enabled" >"$STATE/enabled.new" || true
             mv "$STATE/enabled.new" "$STATE/enabled" ;;
esac
""",
    "update-rc.d": r"""
echo "update-rc.d $*" >>"$STATE/calls"
rc=$EDGEKIT_SYSTEM_ROOT/etc/rc2.d
[[ $2 == disable ]] && mv "$rc/S01$1" "$rc/K01$1"
exit 0
""",
    "update-binfmts": r"""
echo "update-binfmts $*" >>"$STATE/calls"
""",
}


@dataclass
class Machine:
    """A pretend Debian machine: its root folder, the stand-ins' state, and how to run the
    script on it."""

    root: Path
    state: Path
    env: dict[str, str]

    @property
    def policy(self) -> Path:
        return self.root / "usr" / "sbin" / "policy-rc.d"

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def enabled(self) -> list[str]:
        return (self.state / "enabled").read_text().split()

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60, check=False)


def make_machine(tmp_path: Path, *, systemd: bool = True, booted: bool = False,
                 installed: tuple[str, ...] = OTHERS,
                 enabled: tuple[str, ...] = ("postgresql.service",)) -> Machine:
    """Stand-ins on PATH (nothing else of the real system), a root folder, packages, units."""
    root, state, bin_dir = tmp_path / "root", tmp_path / "state", tmp_path / "bin"
    for folder in (root / "usr" / "sbin", state, bin_dir):
        folder.mkdir(parents=True)
    if booted:
        (root / "run" / "systemd" / "system").mkdir(parents=True)
    bash = shutil.which("bash")
    assert bash is not None
    for tool in (*TOOLS, "bash", "sed", "mkdir", "ln"):
        real = shutil.which(tool)
        assert real is not None, tool
        (bin_dir / tool).symlink_to(real)
    for name, body in STANDINS.items():
        if name == "systemctl" and not systemd:
            continue
        (bin_dir / name).write_text(f"#!{bash}\n{body}")
        (bin_dir / name).chmod(0o755)
    if systemd:
        (state / "systemd").touch()
    (state / "installed").write_text("".join(f"{p}\n" for p in installed))
    (state / "enabled").write_text("".join(f"{u}\n" for u in enabled))
    env = {"PATH": str(bin_dir), "STATE": str(state), "EDGEKIT_SYSTEM_ROOT": str(root),
           "LANG": "C.UTF-8"}
    return Machine(root, state, env)


def assert_nothing_started_or_enabled(machine: Machine) -> None:
    calls = machine.calls()
    assert "policy-rc.d ssh start: 101" in calls  # asked during the install, and told no
    assert not [c for c in calls if c.startswith(("systemctl start", "systemctl enable",
                                                  "systemctl restart", "update-binfmts",
                                                  "started"))]
    assert "ssh.service" not in machine.enabled()
    assert not list(machine.root.glob("etc/rc*.d/S*"))


@pytest.mark.parametrize("booted", [False, True], ids=["systemd-not-running", "systemd-booted"])
def test_install_starts_nothing_and_leaves_nothing_enabled(tmp_path: Path, booted: bool) -> None:
    machine = make_machine(tmp_path, booted=booted)
    result = machine.run()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = next(i for i, line in enumerate(lines) if "openssh-server openssh-client" in line)
    assert "own OpenSSH server on 127.0.0.1" in lines[listed]
    assert listed < next(i for i, line in enumerate(lines) if "installing" in line)
    assert ("system packages: installing 3 packages (with dependencies): openssh-server "
            "openssh-sftp-server openssh-client") in lines
    assert "system packages: disabled ssh.service (enabled by this install; it was not started)" \
        in lines
    assert_nothing_started_or_enabled(machine)
    disable = "systemctl disable --now ssh.service" if booted else "systemctl disable ssh.service"
    assert [c for c in machine.calls() if "disable" in c] == [disable]
    assert machine.enabled() == ["postgresql.service"]  # someone else's: untouched
    assert not machine.policy.exists()
    assert not list(machine.policy.parent.iterdir())


def test_a_fresh_machine_gets_every_package_and_no_binfmt_registration(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, installed=())
    result = machine.run()
    assert result.returncode == 0, result.stderr
    installing = next(line for line in result.stdout.splitlines() if "installing" in line)
    assert sorted(installing.split(": ", 2)[2].split()) == sorted(
        [*ALL_PACKAGES, "openssh-sftp-server"])
    assert_nothing_started_or_enabled(machine)  # update-binfmts never called, either
    assert sorted((machine.state / "installed").read_text().split()) == sorted(ALL_PACKAGES)


def test_policy_in_place_during_the_install_only(tmp_path: Path) -> None:
    machine = make_machine(tmp_path)
    (machine.state / "hang").touch()
    process = subprocess.Popen(["bash", str(SCRIPT)], env=machine.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "hanging" not in machine.calls():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.05)
        policy = machine.policy.read_text()
        assert policy.startswith("#!/bin/sh\n") and policy.endswith("\nexit 101\n")
        assert subprocess.run([machine.policy, "ssh", "start"]).returncode == 101
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the middle of the install
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert_nothing_started_or_enabled(machine)
    assert not machine.policy.exists()


def test_failed_install_still_puts_everything_back(tmp_path: Path) -> None:
    machine = make_machine(tmp_path)
    machine.policy.write_text(DOCKER_POLICY)
    machine.policy.chmod(0o700)
    (machine.state / "fail").touch()
    result = machine.run()
    assert result.returncode == 1
    assert "returned an error code (1)" in result.stderr  # apt-get's own words, shown
    assert result.stderr.splitlines()[-1] == "system packages: apt-get install failed"
    assert_nothing_started_or_enabled(machine)
    assert machine.policy.read_text() == DOCKER_POLICY  # the one that was there, as it was
    assert machine.policy.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in machine.policy.parent.iterdir()] == ["policy-rc.d"]


def test_without_systemd_the_init_script_is_disabled(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, systemd=False)
    result = machine.run()
    assert result.returncode == 0, result.stderr
    assert_nothing_started_or_enabled(machine)
    assert "update-rc.d ssh disable" in machine.calls()
    assert (machine.root / "etc" / "rc2.d" / "K01ssh").is_symlink()
    assert not machine.policy.exists()


def test_a_service_enabled_before_is_left_alone(tmp_path: Path) -> None:
    """ssh.service was enabled before (openssh-server removed, not purged): not ours to undo."""
    machine = make_machine(tmp_path, enabled=("ssh.service",))
    result = machine.run()
    assert result.returncode == 0, result.stderr
    assert "policy-rc.d ssh start: 101" in machine.calls()
    assert not [c for c in machine.calls() if "disable" in c or "systemctl start" in c]
    assert machine.enabled() == ["ssh.service"]


def test_a_killed_run_leaves_the_policy_to_the_next(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, installed=ALL_PACKAGES)
    machine.policy.write_text("#!/bin/sh\n# edgekit: temporary, while scripts/ci_system_deps.sh "
                              "installs packages\nexit 101\n")
    machine.policy.with_name("policy-rc.d.edgekit-saved").write_text(DOCKER_POLICY)
    result = machine.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("system packages: all present (openssh-server")
    assert machine.policy.read_text() == DOCKER_POLICY
    assert [p.name for p in machine.policy.parent.iterdir()] == ["policy-rc.d"]


def test_no_system_packages_installs_nothing_and_says_why(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, installed=())
    result = machine.run("--optional", EDGEKIT_NO_SYSTEM_PACKAGES="1")
    assert result.returncode == 0, result.stderr
    for package in ALL_PACKAGES:
        assert package in result.stdout
    assert "chromium" in result.stdout and "live-view browser tests" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "system packages: not installing them (EDGEKIT_NO_SYSTEM_PACKAGES=1): the tests that "
        "need them skip, saying why")
    assert not [c for c in machine.calls() if not c.startswith("dpkg-query")]
    assert not machine.policy.exists()


def test_not_root(tmp_path: Path) -> None:
    machine = make_machine(tmp_path)
    optional = machine.run("--optional", FAKE_UID="1000")
    assert optional.returncode == 0, optional.stderr
    assert "not installing them (not root: `sudo " in optional.stdout
    required = machine.run(FAKE_UID="1000")
    assert required.returncode == 1
    assert required.stderr.startswith("system packages: not root: `sudo ")
    assert not [c for c in machine.calls() if not c.startswith("dpkg-query")]


def test_bad_argument(tmp_path: Path) -> None:
    result = make_machine(tmp_path).run("--ssh")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")


def test_skip_reasons_say_when_the_user_chose_no_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEKIT_NO_SYSTEM_PACKAGES", raising=False)
    assert install_hint("mmdebstrap") == \
        "apt-get install mmdebstrap (as root, `make setup-tests` does)"
    monkeypatch.setenv("EDGEKIT_NO_SYSTEM_PACKAGES", "1")
    assert install_hint("mmdebstrap").startswith(
        "not installed, as EDGEKIT_NO_SYSTEM_PACKAGES=1 asks: apt-get install mmdebstrap")


def test_a_failed_test_names_the_versions_of_the_tools_it_drives(tmp_path: Path) -> None:
    """A failing test marked with the tools it drives gets a "system tools" report section with
    their versions (conftest's makereport hook); a passing one and an unmarked one do not."""
    tests = Path(__file__).resolve().parent
    (tmp_path / "test_inner.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.system_tools('bash', 'no-such-tool-here')\n"
        "def test_fails():\n    assert False\n\n"
        "@pytest.mark.system_tools('bash')\n"
        "def test_passes():\n    pass\n\n"
        "def test_fails_unmarked():\n    assert False\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    system_tools: tools\n    pi: pi\n    systemd: systemd\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "-rA",
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(tests)})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    sections = re.findall(r"-+ system tools -+\n(.*?)\n(?:[=_-]|$)", output, re.S)
    assert len(sections) == 1, output  # the failed marked test only
    assert re.search(r"^bash: GNU bash, version \d", sections[0], re.M), output
    assert "no-such-tool-here: not installed" in sections[0]


def test_the_pi_and_systemd_marks_name_their_tools() -> None:
    from system_packages import tools_of
    marks = [pytest.mark.slow.mark, pytest.mark.pi.mark, pytest.mark.systemd.mark,
             pytest.mark.system_tools("chromium", "openssh").mark]
    assert tools_of(marks) == ["qemu-aarch64-static", "mmdebstrap", "openssh", "systemd-nspawn",
                               "chromium"]
