#!/usr/bin/env bash
# Install the Debian packages the SSH test fixtures need, quietly and only when missing.
#
#   scripts/ci_system_deps.sh          # loopback sshd + emulated Raspberry Pi (qemu)
#   scripts/ci_system_deps.sh --ssh    # loopback sshd only
#
# Runs as root (CI does) and never starts a service: Debian's policy-rc.d is honoured and
# binfmt_misc is left alone (scripts/pi_userland.sh enables qemu-aarch64 only while it runs).
set -euo pipefail

# libusb: what OpenVINO 2021.4's MYRIAD plugin loads (the NCS2 tests run it up to the stick).
ssh_packages=(openssh-server openssh-client libusb-1.0-0)
pi_packages=(qemu-user-static binfmt-support mmdebstrap arch-test debian-archive-keyring)

packages=("${ssh_packages[@]}")
case "${1:-}" in
    --ssh) ;;
    "") packages+=("${pi_packages[@]}") ;;
    *) echo "usage: $0 [--ssh]" >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "$0: run as root (apt-get install needs it)" >&2
    exit 1
fi

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system packages: all present (${packages[*]})"
    exit 0
fi

echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_options=(-q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Maintainer scripts are chatty: keep their output, show it only when something fails.
if ! { apt-get -qq update && apt-get "${apt_options[@]}" install "${missing[@]}"; } >"$log" 2>&1
then
    cat "$log" >&2
    echo "system packages: apt-get failed" >&2
    exit 1
fi
echo "system packages: done"
