#!/usr/bin/env bash
# A real systemd device for the deploy tests: Debian bookworm booted by its own systemd in a
# container (systemd-nspawn), on this machine's network, reachable over its own OpenSSH server.
#
#   scripts/systemd_device.sh build      # once, about 45 s; cached outside the repo
#   scripts/systemd_device.sh start --run-dir DIR --port N --authorized-key KEY.pub
#   scripts/systemd_device.sh stop --run-dir DIR
#   scripts/systemd_device.sh status [--run-dir DIR]
#
# The cached root file system is never changed: each `start` boots an overlay of it (or a copy,
# where overlayfs is not available) kept in DIR, and `stop` powers it off and removes DIR.
# Users: pi (uid 1000) and root, both letting in only KEY; sshd listens on 127.0.0.1:N only.
# A reboot inside the device (`systemctl reboot`) boots it again, as systemd-nspawn@.service
# does; a poweroff ends it. `start` prints key=value lines (port, root, user, host_key) for
# programs; messages go to stderr. Root only (mount, systemd-nspawn).
#
# systemd-nspawn runs with --register=no --keep-unit: this machine may have no systemd of its
# own (a container), so there is no machined to register with and no unit to move into.
#
# Environment:
#   EDGEKIT_SYSTEMD_ROOT  the cached root file system
#                         (default ~/.cache/edgekit/systemd-bookworm-<arch>)
#   EDGEKIT_PI_MIRROR     Debian mirror (default: the host's own, from /etc/apt/sources.list*)
set -euo pipefail

SELF=$(readlink -f "$0")
LOG_NAME=systemd_device
# shellcheck source=scripts/rootfs_common.sh
source "${SELF%/*}/rootfs_common.sh"

ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
CACHE_ROOT=${EDGEKIT_SYSTEMD_ROOT:-$HOME/.cache/edgekit/systemd-bookworm-$ARCH}
CACHE_ROOT=${CACHE_ROOT%/}
SUITE=bookworm
# A minimal Debian that boots with systemd, logs users in through PAM and logind (user
# managers, lingering) and makes Python environments.
PACKAGES=(systemd systemd-sysv dbus libpam-systemd openssh-server python3 python3-venv)
# Changing this (or PACKAGES) makes `build` replace an existing root file system.
ROOT_ID="edgekit-systemd-device 1 $SUITE $ARCH minbase ${PACKAGES[*]}"
MARKER=.edgekit-systemd-device
HOSTNAME_IN=edgekit-device


require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null \
            || die "$tool is missing: apt-get install systemd-container mmdebstrap" \
                "(as root, make setup-tests does)"
    done
}

root_complete() { marker_matches "$CACHE_ROOT" "$MARKER" "$ROOT_ID"; }

# --- build ------------------------------------------------------------------------------------

BUILD_DIR=""

cleanup_build() {
    [[ -n $BUILD_DIR && -d $BUILD_DIR ]] && rm -rf "$BUILD_DIR"
    return 0
}

build() {
    require_root "mount and systemd-nspawn"
    mkdir -p "$(dirname "$CACHE_ROOT")"
    exec {lock_fd}>"$CACHE_ROOT.lock"
    flock "$lock_fd"  # one build at a time; a second waits, then finds it done
    if root_complete; then
        log "up to date: $CACHE_ROOT"
        return 0
    fi
    require_tools mmdebstrap
    local started=$SECONDS mirror security
    mirror=$(debian_mirror "$SUITE")
    security=$(security_mirror "$SUITE")
    trap cleanup_build EXIT
    BUILD_DIR=$(mktemp -d "$CACHE_ROOT.building.XXXXXX")
    chmod 755 "$BUILD_DIR"
    log "building $ARCH $SUITE from $mirror into $BUILD_DIR (about a minute)"
    # The hooks run in mmdebstrap's shell, where $1 is the new root. The account gets '*' (no
    # password, not locked): sshd refuses a locked account even with a key. apt's timers are
    # masked: the device shares this machine's network and must not update itself.
    # shellcheck disable=SC2016
    mmdebstrap --mode=root --variant=minbase \
        --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --uid 1000 pi' \
        --customize-hook='chroot "$1" usermod --password "*" pi' \
        --customize-hook='chroot "$1" usermod --password "*" root' \
        --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer' \
        --customize-hook="echo $HOSTNAME_IN >\"\$1/etc/hostname\"" \
        --customize-hook='printf "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" >"$1/etc/hosts"' \
        "$SUITE" "$BUILD_DIR" \
        "deb $mirror $SUITE main" \
        "deb $mirror $SUITE-updates main" \
        "deb $security $SUITE-security main" >&2
    printf '%s\nmirror %s\nbuilt %s in %ss\n' "$ROOT_ID" "$mirror" "$(date -u +%FT%TZ)" \
        "$((SECONDS - started))" >"$BUILD_DIR/$MARKER"
    publish_root "$BUILD_DIR" "$CACHE_ROOT"
    BUILD_DIR=""
    log "built $CACHE_ROOT in $((SECONDS - started)) s ($(du -sh "$CACHE_ROOT" | cut -f1))"
}

# --- start / stop / status --------------------------------------------------------------------

RUN=""

parse_run_dir() {  # sets RUN from --run-dir (default: beside the cache); leaves other options
    RUN=$CACHE_ROOT.run
    ARGS=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --run-dir) RUN=$(readlink -m "$2"); shift 2 ;;
            *) ARGS+=("$1"); shift ;;
        esac
    done
}

alive() { [[ -f $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# The device's own root: an overlay on the cache (changes go to RUN/upper), else a copy.
make_root() {
    mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
    if mount -t overlay overlay \
        -o "lowerdir=$CACHE_ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/root" 2>/dev/null
    then
        echo overlay >"$RUN/mode"
    else
        log "overlayfs is not available here: copying the root file system"
        cp -a --reflink=auto "$CACHE_ROOT/." "$RUN/root/"
        echo copy >"$RUN/mode"
    fi
}

configure() {  # configure PORT KEY.pub: sshd on 127.0.0.1:PORT; KEY for pi and root
    local root=$RUN/root port=$1 key=$2
    cat >"$root/etc/ssh/sshd_config.d/edgekit-test.conf" <<EOF
# Written by scripts/systemd_device.sh start
Port $port
ListenAddress 127.0.0.1
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers pi root
EOF
    install -d -m 700 -o 1000 -g 1000 "$root/home/pi/.ssh"
    install -m 600 -o 1000 -g 1000 "$key" "$root/home/pi/.ssh/authorized_keys"
    install -d -m 700 "$root/root/.ssh"
    install -m 600 "$key" "$root/root/.ssh/authorized_keys"
}

# Boot the device; boot it again after a reboot inside it (systemd-nspawn exits with 133).
supervise() {
    local code
    while :; do
        systemd-nspawn --quiet --directory="$RUN/root" --boot --register=no --keep-unit \
            --machine="edgekit-device-$(<"$RUN/port")" --hostname=$HOSTNAME_IN </dev/null &
        echo $! >"$RUN/nspawn.pid"
        code=0
        wait $! || code=$?
        echo "$(date -u +%FT%TZ) systemd-nspawn exited with $code" >>"$RUN/boots"
        [[ $code -eq 133 && ! -e $RUN/stopping ]] || break
    done
    rm -f "$RUN/nspawn.pid"
}

wait_for_port() {  # wait_for_port PORT: until something accepts connections on it
    local port=$1 tries
    for tries in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        alive "$RUN/supervisor.pid" || { tail -n 30 "$RUN/console.log" >&2; die "it stopped"; }
        sleep 0.1
    done
    tail -n 30 "$RUN/console.log" >&2
    die "sshd did not listen on port $port within 60 s"
}

start() {
    require_root "mount and systemd-nspawn"
    require_tools systemd-nspawn ssh-keygen
    local port="" key="" host_key
    parse_run_dir "$@"
    set -- "${ARGS[@]+"${ARGS[@]}"}"
    while [[ $# -gt 0 ]]; do
        case $1 in
            --port) port=$2; shift 2 ;;
            --authorized-key) key=$(readlink -f "$2"); shift 2 ;;
            *) die "start: unknown option $1" ;;
        esac
    done
    [[ -n $port && -n $key ]] || die "start needs --port N and --authorized-key KEY.pub"
    root_complete || die "no root file system at $CACHE_ROOT: run $0 build"
    alive "$RUN/supervisor.pid" && die "already running in $RUN: run $0 stop --run-dir $RUN"
    [[ ! -e $RUN/root ]] || stop_quietly
    mkdir -p "$RUN"
    trap 'stop_quietly' EXIT  # a failed start leaves nothing running or mounted
    make_root
    echo "$port" >"$RUN/port"
    configure "$port" "$key"
    setsid "$SELF" _supervise --run-dir "$RUN" </dev/null >>"$RUN/console.log" 2>&1 &
    echo $! >"$RUN/supervisor.pid"
    wait_for_port "$port"
    trap - EXIT
    host_key=$(cut -d ' ' -f 1,2 "$RUN/root/etc/ssh/ssh_host_ed25519_key.pub")
    echo "port=$port"
    echo "user=pi"
    echo "root=$RUN/root"
    echo "console=$RUN/console.log"
    echo "host_key=$host_key"
    log "booted: ssh -i ${key%.pub} -p $port pi@127.0.0.1 (or root@)"
}

processes_in() {  # the pids whose root directory is the device's
    local root pid
    root=$(readlink -f "$RUN/root")
    for pid in /proc/[0-9]*; do
        [[ $(readlink "$pid/root" 2>/dev/null) == "$root" ]] && echo "${pid#/proc/}"
    done
    return 0
}

wait_gone() {  # wait_gone PIDFILE SECONDS
    local tries
    for tries in $(seq $(($2 * 10))); do
        alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

stop() {
    require_root "mount and systemd-nspawn"
    parse_run_dir "$@"
    [[ -d $RUN ]] || { log "nothing runs in $RUN"; return 0; }
    touch "$RUN/stopping"
    if alive "$RUN/nspawn.pid"; then  # SIGTERM: systemd-nspawn shuts the device down cleanly
        kill -TERM "$(<"$RUN/nspawn.pid")" 2>/dev/null || true
        wait_gone "$RUN/nspawn.pid" 30 || kill -KILL "$(<"$RUN/nspawn.pid")" 2>/dev/null || true
    fi
    wait_gone "$RUN/supervisor.pid" 10 || kill -KILL "$(<"$RUN/supervisor.pid")" 2>/dev/null \
        || true
    local pids
    pids=$(processes_in)
    if [[ -n $pids ]]; then
        log "killing what is left in the device: $(echo "$pids" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    fi
    if mountpoint -q "$RUN/root"; then
        umount "$RUN/root" || { sleep 1; umount --lazy "$RUN/root"; }
    fi
    rm -rf "$RUN"
    log "stopped and removed $RUN"
}

stop_quietly() { stop --run-dir "$RUN" 2>/dev/null || true; }

status() {
    parse_run_dir "$@"
    echo "root=$CACHE_ROOT"
    if root_complete; then
        echo "built=yes"
        sed -n 's/^built /built_at=/p' "$CACHE_ROOT/$MARKER" | cut -d ' ' -f 1
    else
        echo "built=no"
    fi
    if alive "$RUN/supervisor.pid"; then
        echo "running=yes"
        echo "port=$(<"$RUN/port")"
        echo "reboots=$(cat "$RUN/boots" 2>/dev/null | grep -c "exited with 133" || true)"
    else
        echo "running=no"
    fi
}

case ${1:-} in
    build) build ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    status) shift; status "$@" ;;
    _supervise) shift; parse_run_dir "$@"; supervise ;;
    *) echo "usage: $0 build | start --run-dir DIR --port N --authorized-key KEY.pub" \
            "| stop --run-dir DIR | status [--run-dir DIR]" >&2
       exit 2 ;;
esac
