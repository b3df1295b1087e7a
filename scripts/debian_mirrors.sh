# Debian mirrors for mmdebstrap: the host's own (sourced by pi_userland.sh, systemd_device.sh).
#
#   debian_mirror SUITE     the main archive, e.g. http://deb.debian.org/debian
#   security_mirror SUITE   the security archive
# EDGEKIT_PI_MIRROR, when set, replaces the main archive (for both scripts).

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
