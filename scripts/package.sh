#!/usr/bin/env bash
# Builds the .deb (cargo-deb from crates.io; installed if missing), installs it with dpkg on
# this machine, and checks the installed pieces: `inflow check-config /etc/inflow/inflow.toml`,
# the system user, the unit. Prints the package's size.
# Usage: scripts/package.sh [--profile dev]   (default: release, as users build it)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version '^3'
PROFILE=release
[ "${1:-}" = "--profile" ] && PROFILE=${2:-release}
DEB=$(cargo deb --locked --profile "$PROFILE" --no-dbgsym 2>/dev/null | tail -1)
[ -f "$DEB" ] || { echo "cargo deb did not produce a package" >&2; exit 1; }
echo "package: $DEB ($(du -k "$DEB" | cut -f1) KiB)"
dpkg-deb --info "$DEB" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  \1:/p'
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO dpkg -i "$DEB"
/usr/bin/inflow --version
/usr/bin/inflow check-config /etc/inflow/inflow.toml
getent passwd inflow >/dev/null || { echo "postinst did not create the inflow user" >&2; exit 1; }
test "$(stat -c %U:%G:%a /etc/inflow/inflow.toml)" = "root:inflow:640" || { echo "unexpected owner/mode of /etc/inflow/inflow.toml" >&2; exit 1; }
systemd-analyze verify /lib/systemd/system/inflow.service
echo "installed and checked"
