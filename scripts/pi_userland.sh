#!/usr/bin/env bash
# An emulated Raspberry Pi for tests: an arm64 Debian bookworm userland (Python 3.11, like
# Raspberry Pi OS bookworm) run under qemu-user-static, reachable over its own OpenSSH server.
#
#   scripts/pi_userland.sh build     # once, several minutes; cached outside the repo
#   scripts/pi_userland.sh start [--port 2222] [--authorized-key KEY.pub]
#   scripts/pi_userland.sh status
#   scripts/pi_userland.sh stop
#
# `start` prints key=value lines (port, pid, user, known_hosts, host_key, identity_file when it
# made the key itself) for programs; messages go to stderr. Root only (chroot, mount, binfmt).
#
# One instance per userland at a time. After a test run that was killed, `stop` cleans up
# (kills what runs in the userland, unmounts, restores binfmt_misc as `start` found it).
#
# binfmt_misc: `build` and `start` register qemu-aarch64-static for aarch64 executables under a
# name of their own (edgekit-aarch64-*), and `build`'s end and `stop` remove it, also after a
# failure or Ctrl-C. A registration that was there before is used as it is and never touched.
# qemu-user-static is not needed: `build` unpacks its qemu-aarch64-static beside the userland.
#
# Network: apt uses the host's Debian mirror. pip in the userland goes straight to
# https://pypi.org: the host's pip configuration and local wheel folders are not visible in the
# chroot (and hold x86-64 wheels). The host's extra CA certificates
# (/usr/local/share/ca-certificates, such as a TLS-intercepting egress proxy's) are copied in,
# so pip works behind such a proxy too.
#
# Environment:
#   EDGEKIT_PI_ROOT    the userland (default ~/.cache/edgekit/pi-bookworm-arm64); the running
#                      instance keeps its state (pid, port, log, what to undo) in ROOT.run/
#   EDGEKIT_PI_MIRROR  Debian mirror (default: the host's own, from /etc/apt/sources.list*)
#   EDGEKIT_PI_QEMU    the qemu-aarch64-static to register (default: the system's, else the
#                      copy `build` unpacks to ~/.cache/edgekit/qemu-aarch64-static)
#   EDGEKIT_BINFMT_DIR where binfmt_misc is (default /proc/sys/fs/binfmt_misc; tests use a private
#                      instance in a user namespace)
set -euo pipefail

PI_ROOT=${EDGEKIT_PI_ROOT:-$HOME/.cache/edgekit/pi-bookworm-arm64}
PI_ROOT=${PI_ROOT%/}
RUN_DIR=$PI_ROOT.run
SUITE=bookworm
# What Raspberry Pi OS Lite has and a deployment needs: Python with venv and pip, an SSH
# server, CA certificates for pip, procps (ps, pkill) and rsync.
PACKAGES=(python3 python3-venv python3-pip openssh-server ca-certificates procps rsync)
# Changing this (or PACKAGES) makes `build` replace an existing userland.
USERLAND_ID="edgekit-pi-userland 1 $SUITE arm64 minbase ${PACKAGES[*]}"
MARKER=.edgekit-userland
QEMU_CACHE=${PI_ROOT%/*}/qemu-aarch64-static
BINFMT_DIR=${EDGEKIT_BINFMT_DIR:-/proc/sys/fs/binfmt_misc}
BINFMT_DIR=${BINFMT_DIR%/}
# An aarch64 ELF executable's header, as qemu-user-static registers it.
AARCH64_MAGIC=7f454c460201010000000000000000000200b700
AARCH64_MASK=ffffffffffffff00fffffffffffffffffeffffff
AARCH64_MAGIC_ESCAPED=$(sed 's/../\\x&/g' <<<"$AARCH64_MAGIC")
AARCH64_MASK_ESCAPED=$(sed 's/../\\x&/g' <<<"$AARCH64_MASK")
SELF=$(readlink -f "$0")

LOG_NAME=pi_userland
# shellcheck source=scripts/rootfs_common.sh
source "${SELF%/*}/rootfs_common.sh"

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null \
            || die "$tool is missing: run scripts/ci_system_deps.sh (apt-get install" \
                "mmdebstrap debian-archive-keyring openssh-client)"
    done
}

userland_complete() { marker_matches "$PI_ROOT" "$MARKER" "$USERLAND_ID"; }

# --- qemu and binfmt_misc: aarch64 runs through qemu only while we need it -------------------

# qemu-aarch64-static: $EDGEKIT_PI_QEMU, else the system's (qemu-user-static), else the copy
# `build` unpacks beside the userland from the qemu-user-static package without installing it.
# (Installing qemu-user-static would register qemu for ~30 architectures: through binfmt-support
# if that is installed, and through /usr/lib/binfmt.d, which systemd-binfmt loads at every boot.)
qemu_binary() {
    local candidate
    for candidate in "${EDGEKIT_PI_QEMU:-}" "$(command -v qemu-aarch64-static || true)" \
                     "$QEMU_CACHE"; do
        [[ -n $candidate && -x $candidate ]] && { echo "$candidate"; return 0; }
    done
    return 1
}

fetch_qemu() {  # unpack qemu-aarch64-static from the qemu-user-static package into the cache
    local dir deb
    require_tools apt-get dpkg-deb
    dir=$(mktemp -d)
    chown _apt "$dir" 2>/dev/null || true  # apt-get download runs as _apt where it can
    log "fetching qemu-aarch64-static from Debian's qemu-user-static package into $QEMU_CACHE" \
        "(unpacked, not installed)"
    (cd "$dir" && apt-get download -q qemu-user-static) >&2 \
        || { rm -rf "$dir"; die "apt-get download qemu-user-static failed"; }
    deb=$(echo "$dir"/qemu-user-static_*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" ./usr/bin/qemu-aarch64-static
    install -D -m 755 "$dir/usr/bin/qemu-aarch64-static" "$QEMU_CACHE"
    rm -rf "$dir"
}

# Is an aarch64 interpreter registered that works in a chroot (flag F: the kernel opened it at
# registration)? Ours (edgekit-*) do not count: each run registers and removes its own.
aarch64_registered() {
    local entry
    for entry in "$BINFMT_DIR"/*; do
        case ${entry##*/} in register | status | edgekit-*) continue ;; esac
        [[ $(head -n 1 "$entry") == enabled ]] \
            && grep -qx "magic $AARCH64_MAGIC" "$entry" \
            && grep -q '^flags: [A-Z]*F' "$entry" \
            && return 0
    done
    return 1
}

# binfmt_on TAG: make the kernel run aarch64 ELF files through qemu, without touching any
# registration that is already there; what to undo goes to a file, before it is done.
binfmt_on() {
    local undo=$RUN_DIR/binfmt-undo.$1 name qemu interpreter
    mkdir -p "$RUN_DIR"
    touch "$undo"  # appended to: steps left by a run that died are still ours to undo
    if ! mountpoint -q "$BINFMT_DIR"; then
        echo unmount >>"$undo"
        mount -t binfmt_misc binfmt_misc "$BINFMT_DIR"
    fi
    if aarch64_registered; then
        return 0  # someone's own registration: use it, leave it
    fi
    qemu=$(qemu_binary) || die "qemu-aarch64-static is missing: run $0 build"
    # qemu takes "argv[0] preserved" (flag P) from an interpreter name ending in -binfmt-P.
    interpreter=$RUN_DIR/qemu-aarch64-binfmt-P
    ln -sfn "$qemu" "$interpreter"
    name=edgekit-aarch64-$1-$$  # our own entry: newer entries take precedence while they exist
    echo "unregister $name" >>"$undo"
    printf ':%s:M::%s:%s:%s:PF' "$name" "$AARCH64_MAGIC_ESCAPED" "$AARCH64_MASK_ESCAPED" \
        "$interpreter" >"$BINFMT_DIR/register"
    [[ $(head -n 1 "$BINFMT_DIR/$name") == enabled ]] \
        || die "could not register qemu-aarch64 in $BINFMT_DIR"
}

# binfmt_off TAG: undo what binfmt_on TAG did (in reverse order), nothing more.
binfmt_off() {
    local undo=$RUN_DIR/binfmt-undo.$1 step name
    [[ -f $undo ]] || return 0
    while read -r step name; do
        case $step in
            unregister) [[ ! -e $BINFMT_DIR/$name ]] || echo -1 >"$BINFMT_DIR/$name" ;;
            unmount) ! mountpoint -q "$BINFMT_DIR" || umount "$BINFMT_DIR" ;;
        esac
    done < <(tac "$undo")
    rm -f "$undo"
}

# --- mounts inside the userland ---------------------------------------------------------------

mounts_under() {  # every mount point at or below $1, deepest first
    awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r
}

mount_recorded() {  # mount_recorded TARGET MOUNT-ARGS...: mount and note it for `stop`
    local target=$1
    shift
    mountpoint -q "$target" && return 0
    mount "$@" "$target"
    echo "$target" >>"$RUN_DIR/mounts"
}

mount_userland() {
    mount_recorded "$PI_ROOT/proc" -t proc proc
    mount_recorded "$PI_ROOT/dev" --bind /dev
    mount_recorded "$PI_ROOT/dev/pts" --bind /dev/pts
    mount_recorded "$PI_ROOT/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev tmpfs  # POSIX semaphores
    mount_recorded "$PI_ROOT/sys" -t sysfs -o ro sysfs
}

unmount_userland() {
    local target
    [[ -f $RUN_DIR/mounts ]] || return 0
    for target in $(tac "$RUN_DIR/mounts"); do
        mountpoint -q "$target" || continue
        umount "$target" || { sleep 1; umount "$target"; } \
            || { log "$target is busy: detaching it lazily"; umount --lazy "$target"; }
    done
    rm -f "$RUN_DIR/mounts"
}

# --- files copied in from the host ------------------------------------------------------------

# Trust the host's extra CA certificates (a TLS-intercepting proxy's, say) so that pip in the
# userland reaches PyPI the way the host does. Hosts without extra CAs copy nothing.
sync_host_cas() {
    local root=$1 dest=$1/usr/local/share/ca-certificates/host cert changed=0
    shopt -s nullglob
    local certs=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    [[ ${#certs[@]} -gt 0 ]] || return 0
    mkdir -p "$dest"
    for cert in "${certs[@]}"; do
        cmp -s "$cert" "$dest/${cert##*/}" && continue
        cp "$cert" "$dest/"
        changed=1
    done
    if [[ $changed -eq 1 ]]; then
        log "trusting the host's extra CA certificates in the userland"
        chroot "$root" update-ca-certificates >/dev/null
    fi
}

# --- build ------------------------------------------------------------------------------------

BUILD_DIR=""
MMDEBSTRAP_PID=""

cleanup_build() {
    if [[ -n $MMDEBSTRAP_PID ]]; then  # interrupted: mmdebstrap unmounts what it mounted
        kill -TERM "$MMDEBSTRAP_PID" 2>/dev/null || true
        wait "$MMDEBSTRAP_PID" 2>/dev/null || true
    fi
    binfmt_off build
    [[ -n $BUILD_DIR && -d $BUILD_DIR ]] || return 0
    if [[ -n $(mounts_under "$BUILD_DIR") ]]; then
        log "left $BUILD_DIR in place: something is still mounted in it"
        return 0
    fi
    rm -rf "$BUILD_DIR"
}

lock_builds() {  # one build at a time per userland; waits for another to finish
    mkdir -p "$(dirname "$PI_ROOT")"
    exec {lock_fd}>"$PI_ROOT.lock"
    flock "$lock_fd"
}

remove_stale_builds() {  # what killed builds left behind (we hold the lock)
    local dir
    for dir in "$PI_ROOT".building.* "$PI_ROOT".old.*; do
        if [[ -d $dir && -z $(mounts_under "$dir") ]]; then
            log "removing $dir, left by a build that did not finish"
            rm -rf "$dir"
        fi
    done
}

build() {
    require_root "chroot, mount and binfmt_misc"
    lock_builds
    qemu_binary >/dev/null || fetch_qemu
    if userland_complete; then
        log "up to date: $PI_ROOT"
        return 0
    fi
    require_tools mmdebstrap
    [[ -z $(mounts_under "$PI_ROOT") ]] || die "$PI_ROOT is in use (mounted): run $0 stop first"
    local started=$SECONDS mirror security
    mirror=$(debian_mirror "$SUITE")
    security=$(security_mirror "$SUITE")
    trap cleanup_build EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    remove_stale_builds
    binfmt_off build  # steps a killed build left undone
    BUILD_DIR=$(mktemp -d "$PI_ROOT.building.XXXXXX")
    chmod 755 "$BUILD_DIR"
    binfmt_on build
    log "building arm64 $SUITE from $mirror into $BUILD_DIR (several minutes)"
    # The hooks run in mmdebstrap's shell, where $1 is the new root. check/qemu would want
    # arch-test and /usr/bin/qemu-aarch64-static; binfmt_on has made arm64 run already.
    # shellcheck disable=SC2016
    mmdebstrap --mode=root --variant=minbase --architectures=arm64 --skip=check/qemu \
        --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --uid 1000 pi' \
        --customize-hook='chroot "$1" usermod --password "*" pi' \
        --customize-hook='printf "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" >"$1/etc/hosts"' \
        --customize-hook="\"$SELF\" _sync-host-cas \"\$1\"" \
        "$SUITE" "$BUILD_DIR" \
        "deb $mirror $SUITE main" \
        "deb $mirror $SUITE-updates main" \
        "deb $security $SUITE-security main" &
    MMDEBSTRAP_PID=$!
    wait "$MMDEBSTRAP_PID"  # in the background, so that a signal reaches our traps at once
    MMDEBSTRAP_PID=""
    printf '%s\nmirror %s\nbuilt %s in %ss\n' "$USERLAND_ID" "$mirror" "$(date -u +%FT%TZ)" \
        "$((SECONDS - started))" >"$BUILD_DIR/$MARKER"
    publish_root "$BUILD_DIR" "$PI_ROOT"
    BUILD_DIR=""
    log "built $PI_ROOT in $((SECONDS - started)) s ($(du -sh "$PI_ROOT" | cut -f1))"
}

# --- start / stop / status --------------------------------------------------------------------

sshd_pid() {  # the running instance's sshd pid, if it is alive and really ours
    local pid
    [[ -f $RUN_DIR/sshd.pid ]] || return 1
    pid=$(<"$RUN_DIR/sshd.pid")
    [[ -d /proc/$pid && $(readlink -f "/proc/$pid/root") == "$(readlink -f "$PI_ROOT")" ]] \
        || return 1
    echo "$pid"
}

authorize_key() {  # authorize_key PUBLIC-KEY-FILE: the only key that logs in as pi
    local ids
    ids=$(awk -F: '$1 == "pi" { print $3 ":" $4 }' "$PI_ROOT/etc/passwd")
    [[ -n $ids ]] || die "no user pi in $PI_ROOT"
    install -d -m 700 -o "${ids%:*}" -g "${ids#*:}" "$PI_ROOT/home/pi/.ssh"
    install -m 600 -o "${ids%:*}" -g "${ids#*:}" "$1" "$PI_ROOT/home/pi/.ssh/authorized_keys"
}

wait_for_sshd() {  # wait_for_sshd PID PORT: until sshd says it listens, or give up
    local pid=$1 port=$2 tries
    for tries in $(seq 600); do
        grep -q "Server listening on 127.0.0.1 port $port" "$RUN_DIR/sshd.log" && return 0
        [[ -d /proc/$pid ]] || { cat "$RUN_DIR/sshd.log" >&2; die "sshd exited"; }
        sleep 0.1
    done
    die "sshd did not listen on port $port within 60 s"
}

start() {
    require_root "chroot, mount and binfmt_misc"
    require_tools ssh-keygen
    local port=2222 key="" pid host_key
    while [[ $# -gt 0 ]]; do
        case $1 in
            --port) port=$2; shift 2 ;;
            --authorized-key) key=$(readlink -f "$2"); shift 2 ;;
            *) die "start: unknown option $1" ;;
        esac
    done
    userland_complete || die "no userland at $PI_ROOT: run $0 build"
    sshd_pid >/dev/null && die "already running (port $(<"$RUN_DIR/port")): run $0 stop first"
    mkdir -p "$RUN_DIR"
    trap 'stop_quietly' EXIT  # a failed start leaves nothing running, mounted or registered
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    binfmt_on start
    mount_userland
    cp -L /etc/resolv.conf "$PI_ROOT/etc/resolv.conf"
    sync_host_cas "$PI_ROOT"
    if [[ -z $key ]]; then
        rm -f "$RUN_DIR/id_ed25519" "$RUN_DIR/id_ed25519.pub"
        ssh-keygen -q -t ed25519 -N "" -C edgekit-pi-test -f "$RUN_DIR/id_ed25519"
        key=$RUN_DIR/id_ed25519.pub
    fi
    authorize_key "$key"
    chroot "$PI_ROOT" ssh-keygen -A
    mkdir -p "$PI_ROOT/run/sshd"
    : >"$RUN_DIR/sshd.log"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        setsid chroot "$PI_ROOT" /usr/sbin/sshd -D -e -p "$port" \
        -o ListenAddress=127.0.0.1 -o PidFile=none -o UsePAM=no \
        -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
        -o PermitRootLogin=no -o AllowUsers=pi \
        </dev/null >>"$RUN_DIR/sshd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN_DIR/sshd.pid"
    echo "$port" >"$RUN_DIR/port"
    wait_for_sshd "$pid" "$port"
    trap - EXIT INT TERM HUP
    host_key=$(cut -d ' ' -f 1,2 "$PI_ROOT/etc/ssh/ssh_host_ed25519_key.pub")
    echo "[127.0.0.1]:$port $host_key" >"$RUN_DIR/known_hosts"
    echo "port=$port"
    echo "pid=$pid"
    echo "user=pi"
    echo "root=$PI_ROOT"
    echo "log=$RUN_DIR/sshd.log"
    echo "known_hosts=$RUN_DIR/known_hosts"
    echo "host_key=$host_key"
    if [[ $key == "$RUN_DIR/id_ed25519.pub" ]]; then
        echo "identity_file=$RUN_DIR/id_ed25519"
    fi
    log "listening: ssh -i ${key%.pub} -o UserKnownHostsFile=$RUN_DIR/known_hosts" \
        "-p $port pi@127.0.0.1"
}

kill_userland_processes() {  # every process whose root is the userland (sshd, its sessions)
    local root pid signal tries
    root=$(readlink -f "$PI_ROOT")
    for signal in TERM KILL; do
        for tries in $(seq 50); do
            local pids=()
            for pid in /proc/[0-9]*; do
                [[ $(readlink "$pid/root" 2>/dev/null) == "$root" ]] && pids+=("${pid#/proc/}")
            done
            [[ ${#pids[@]} -eq 0 ]] && return 0
            [[ $tries -eq 1 ]] && { kill "-$signal" "${pids[@]}" 2>/dev/null || true; }
            sleep 0.1
        done
    done
    log "processes still running in $root"
}

stop() {
    require_root "chroot, mount and binfmt_misc"
    kill_userland_processes
    unmount_userland
    binfmt_off start
    if [[ -d ${PI_ROOT%/*} ]] && exec {lock_fd}>"$PI_ROOT.lock" && flock -n "$lock_fd"; then
        binfmt_off build  # what a killed build left enabled, unless a build is running
    fi
    rm -f "$RUN_DIR/sshd.pid" "$RUN_DIR/port"
    log "stopped"
}

stop_quietly() { stop 2>/dev/null || true; }

status() {
    local pid
    echo "root=$PI_ROOT"
    if userland_complete; then
        echo "built=yes"
        sed -n 's/^built /built_at=/p' "$PI_ROOT/$MARKER" | cut -d ' ' -f 1
        echo "size=$(du -sh "$PI_ROOT" 2>/dev/null | cut -f1)"
    else
        echo "built=no"
    fi
    if pid=$(sshd_pid); then
        echo "running=yes"
        echo "pid=$pid"
        echo "port=$(<"$RUN_DIR/port")"
    else
        echo "running=no"
    fi
    echo "qemu=$(qemu_binary || echo missing)"
    local entries=("$BINFMT_DIR"/edgekit-*)
    [[ -e ${entries[0]} ]] || entries=()
    echo "binfmt_edgekit=${entries[*]##*/}"  # registrations of running or killed instances
    echo "mounts=$(mounts_under "$PI_ROOT" | tr '\n' ' ')"
}

case ${1:-} in
    build) build ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    _sync-host-cas) sync_host_cas "$2" ;;  # used by build's mmdebstrap hook
    _userland-id) echo "$USERLAND_ID" ;;  # what a complete userland's marker starts with (tests)
    *) echo "usage: $0 build | start [--port N] [--authorized-key FILE.pub] | stop | status" >&2
       exit 2 ;;
esac
