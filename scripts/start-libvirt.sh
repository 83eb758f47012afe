#!/usr/bin/env bash
# Starts virtlogd and libvirtd (no systemd on these machines) unless qemu:///system already answers.
set -euo pipefail
if timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
pgrep -x virtlogd >/dev/null || $SUDO virtlogd -d
pgrep -x libvirtd >/dev/null || $SUDO libvirtd -d
for _ in $(seq 1 60); do
    if timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "start-libvirt: qemu:///system did not answer after 30 s" >&2
exit 1
