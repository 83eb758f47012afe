#!/usr/bin/env bash
# Installs the Debian packages and tools that kiln's tests and demo need, and starts
# the libvirt daemons when no init system does. Idempotent: a second run does nothing.
set -euo pipefail

PACKAGES=(
    qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
    xorriso genisoimage ovmf swtpm mtools dosfstools debootstrap syslinux isolinux extlinux syslinux-common
    busybox-static squashfs-tools e2fsprogs fdisk nasm debian-archive-keyring time grub-efi-amd64-bin
    gnu-efi python3-venv curl
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    # These machines ship qemu-utils from backports (10.x), which Breaks the release's
    # qemu-system (7.2). Pin every qemu package to the release's own version, the pair
    # that libvirt 9.0 is built and tested with.
    qv=$(apt-cache madison qemu-system-x86 | awk -F'|' '$3 ~ /bookworm\/main/ {gsub(/ /,"",$2); print $2; exit}')
    pinned=()
    for p in "${missing[@]}" qemu-utils; do
        case "$p" in qemu-*) pinned+=("$p=$qv") ;; *) pinned+=("$p") ;; esac
    done
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --allow-downgrades \
        -o Dpkg::Options::=--force-confnew "${pinned[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
fi

exec "$(dirname "$0")/start-libvirt.sh"
