#!/usr/bin/env bash
# The Debian packages some tests need, installed only when missing, and only after saying which
# and why. `make setup-tests` (and so `make test`) runs this; `make demo` never does.
#
#   scripts/ci_system_deps.sh             # as root: install what is missing
#   scripts/ci_system_deps.sh --optional  # the same where it can (root, apt-get); otherwise say
#                                         # what is missing and that those tests skip; exit 0
#
# EDGEKIT_NO_SYSTEM_PACKAGES=1 installs nothing (the tests that need the packages skip, saying so).
#
# No service is started or enabled, whatever the machine: a temporary policy-rc.d forbids
# starting services while apt-get runs (one that was there is put back after, as it was), and
# every service the install enabled (openssh-server enables ssh.service) is disabled again. Both
# also happen when the install fails or is interrupted. Services enabled before are left alone.
# Nothing here touches binfmt_misc: binfmt-support and qemu-user-static, whose install registers
# qemu for ~30 architectures for good, are not installed; the emulated Pi registers qemu itself,
# only while it runs (scripts/pi_userland.sh).
#
# EDGEKIT_SYSTEM_ROOT (default: empty, meaning /) is where policy-rc.d, /run/systemd and
# /etc/rc?.d are; the tests point it at a folder, with stand-ins for apt-get & co. on PATH.
set -euo pipefail

# One line per group: the packages, then why the tests need them. Add a group the same way.
groups=()
group() { groups+=("$1"$'\t'"$2"); }
group "openssh-server openssh-client" "the deploy tests start their own OpenSSH server on 127.0.0.1"
group "libusb-1.0-0" "OpenVINO 2021.4's MYRIAD plugin loads it (the NCS2 tests run up to the stick)"
group "mmdebstrap debian-archive-keyring" "builds the emulated Raspberry Pi (arm64 Debian) for -m pi"
group "systemd-container" "systemd-nspawn boots the systemd test device for the service deploys"
group "chromium" "headless Chromium for the live-view browser tests"
group "mosquitto" "the events tests start their own MQTT broker on 127.0.0.1"
group "openjdk-17-jre-headless" "imxconv-tf (Sony's IMX500 converter) runs on Java 17"

ROOT=${EDGEKIT_SYSTEM_ROOT:-}
POLICY=$ROOT/usr/sbin/policy-rc.d
SAVED_POLICY=$POLICY.edgekit-saved
POLICY_MARK="# edgekit: temporary, while scripts/ci_system_deps.sh installs packages"

say() { echo "system packages: $*"; }
die() { echo "system packages: $*" >&2; exit 1; }

is_installed() {
    [[ $(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# --- services: none started, none left enabled ---------------------------------------------------

systemd_booted() { [[ -d $ROOT/run/systemd/system ]]; }

enabled_services() {  # what starts at boot: systemd's enabled units, or System V init scripts
    if command -v systemctl >/dev/null; then
        systemctl list-unit-files --state=enabled --no-legend --no-pager | awk '{ print $1 }'
    else
        local link
        for link in "$ROOT"/etc/rc[2345].d/S*; do
            if [[ -L $link ]]; then basename "$(readlink "$link")"; fi
        done
    fi | sort -u
}

disable_service() {
    if ! command -v systemctl >/dev/null; then
        update-rc.d "$1" disable
    elif systemd_booted; then
        systemctl disable --now "$1"
    else
        systemctl disable "$1"  # no systemd running here: nothing to stop, and --now would fail
    fi
}

# Put back the policy-rc.d that was there (or none), also after a run that was killed.
restore_service_policy() {
    if [[ -f $POLICY ]] && grep -qxF "$POLICY_MARK" "$POLICY"; then
        rm -f "$POLICY"
    fi
    if [[ -e $SAVED_POLICY && ! -e $POLICY ]]; then
        mv "$SAVED_POLICY" "$POLICY"
    fi
}

forbid_service_starts() {  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d: 101 = forbidden
    [[ ! -e $SAVED_POLICY ]] || die "$SAVED_POLICY (left by an interrupted run) and $POLICY" \
        "both exist: keep the one you want as $POLICY, delete the other, and run again"
    if [[ -e $POLICY ]]; then
        mv "$POLICY" "$SAVED_POLICY"
    fi
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY.new"
    chmod 755 "$POLICY.new"
    mv "$POLICY.new" "$POLICY"
}

# --- what is missing, and why --------------------------------------------------------------------

optional=0
case "${1:-}" in
    --optional) optional=1 ;;
    "") ;;
    *) echo "usage: $0 [--optional]" >&2; exit 2 ;;
esac

if [[ $(id -u) -eq 0 ]]; then
    restore_service_policy  # what a killed run left
fi

missing=()
reasons=()
present=()
for line in "${groups[@]}"; do
    wanted=()
    for package in ${line%%$'\t'*}; do
        if is_installed "$package"; then present+=("$package"); else wanted+=("$package"); fi
    done
    if [[ ${#wanted[@]} -gt 0 ]]; then
        missing+=("${wanted[@]}")
        reasons+=("$(printf '  %-34s %s' "${wanted[*]}" "${line#*$'\t'}")")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    say "all present (${present[*]})"
    exit 0
fi
say "the tests need these Debian packages, missing here:"
printf '%s\n' "${reasons[@]}"

not_installing() {  # not_installing WHY: say so; an error unless --optional or opted out
    if [[ $optional -eq 1 || ${EDGEKIT_NO_SYSTEM_PACKAGES:-} == 1 ]]; then
        say "not installing them ($1): the tests that need them skip, saying why"
        exit 0
    fi
    die "$1"
}
[[ ${EDGEKIT_NO_SYSTEM_PACKAGES:-} != 1 ]] || not_installing "EDGEKIT_NO_SYSTEM_PACKAGES=1"
command -v apt-get >/dev/null || not_installing "no apt-get here: install them yourself"
[[ $(id -u) -eq 0 ]] || not_installing "not root: \`sudo $0\` installs them"

# --- install -------------------------------------------------------------------------------------

enabled_before=""
installing=0
log=""
finish() {  # on every exit: disable what the install enabled, put policy-rc.d back
    local status=$? unit
    if [[ $installing -eq 1 ]]; then
        for unit in $(comm -13 <(echo "$enabled_before") <(enabled_services)); do
            if disable_service "$unit" >/dev/null 2>&1; then
                say "disabled $unit (enabled by this install; it was not started)"
            else
                say "could not disable $unit, which this install enabled: disable it" >&2
                status=1
            fi
        done
    fi
    restore_service_policy
    [[ -z $log ]] || rm -f "$log"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

export DEBIAN_FRONTEND=noninteractive
apt_options=(-q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false)
log=$(mktemp)
# Maintainer scripts are chatty: keep apt-get's output, show it only when something fails.
failed() { cat "$log" >&2; die "apt-get $1 failed"; }

apt-get -qq update >"$log" 2>&1 || failed update
# Exactly what apt-get will install, dependencies included (a simulation changes nothing).
apt-get "${apt_options[@]}" -s install "${missing[@]}" >"$log" 2>&1 || failed "install -s"
mapfile -t will_install < <(awk '$1 == "Inst" { print $2 }' "$log")
say "installing ${#will_install[@]} packages (with dependencies): ${will_install[*]}"

enabled_before=$(enabled_services)
installing=1
forbid_service_starts
say "no service starts meanwhile: $POLICY forbids it until the install ends"
apt-get "${apt_options[@]}" install "${missing[@]}" >"$log" 2>&1 || failed install
say "done"
