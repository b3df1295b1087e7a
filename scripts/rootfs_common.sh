# What the scripts that build a Debian root file system with mmdebstrap share
# (pi_userland.sh, systemd_device.sh): messages, the host's mirrors, publishing a build.
#
#   log MESSAGE / die MESSAGE   to stderr, led by $LOG_NAME; die exits 1
#   require_root WHY            die unless root
#   debian_mirror SUITE         the main archive, e.g. http://deb.debian.org/debian
#   security_mirror SUITE       the security archive
#   marker_matches ROOT MARKER ID   whether ROOT/MARKER's first line is ID (a finished build)
#   publish_root BUILD ROOT     BUILD takes ROOT's place (the old one, if any, is removed)
# EDGEKIT_PI_MIRROR, when set, replaces the main archive (for both scripts).

log() { echo "${LOG_NAME:-rootfs}: $*" >&2; }
die() { log "$*"; exit 1; }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root ($1 need it)"
}

marker_matches() {
    [[ -f $1/$2 ]] && [[ $(head -n 1 "$1/$2") == "$3" ]]
}

publish_root() {
    local build=$1 root=$2 old
    if [[ -e $root ]]; then
        old=$(mktemp -d "$root.old.XXXXXX")
        mv "$root" "$old/"
        rm -rf "$old"
    fi
    mv "$build" "$root"
}

# Print the first URI the host's apt sources use for a suite (deb822 and one-line formats).
host_mirror_for() {
    local suite=$1 file
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f $file ]] || continue
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0 }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
            END { if (uri != "" && hit) print uri }' "$file"
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $file ]] || continue
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }' "$file"
    done
}

debian_mirror() {
    local uri
    uri=${EDGEKIT_PI_MIRROR:-$(host_mirror_for "$1" | head -n 1)}
    echo "${uri:-http://deb.debian.org/debian}"
}

security_mirror() {
    local uri
    uri=$(host_mirror_for "$1-security" | head -n 1)
    echo "${uri:-http://deb.debian.org/debian-security}"
}
