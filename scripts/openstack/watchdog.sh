#!/usr/bin/env bash
# Stops the servers of STATE_DIR (stop.sh) once no live lease has been in LEASE_DIR for IDLE_SECS.
#   scripts/openstack/watchdog.sh STATE_DIR LOCK_FILE LEASE_DIR IDLE_SECS
# Test processes (nextest runs each test in its own process) share one Keystone + Glance: each
# holds a lease file named `<pid>-<n>` while it uses them, under the flock LOCK_FILE. Leases of
# dead processes are dropped. The check and the stop happen under the same lock, so a test that
# takes a lease either sees the servers stopped (and starts new ones) or keeps them alive.
# Ends by itself after 4 hours whatever happens.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state=$1 lock=$2 leases=$3 idle=$4
quiet=0
deadline=$((SECONDS + 4 * 3600))

live_leases() {
    local n=0 f pid
    for f in "$leases"/*; do
        [ -e "$f" ] || continue
        pid=${f##*/}; pid=${pid%%-*}
        if kill -0 "$pid" 2>/dev/null; then n=$((n + 1)); else rm -f "$f"; fi
    done
    echo $n
}

while :; do
    sleep 1
    [ -e "$state/env" ] || exit 0 # stopped by someone else
    if [ "$(live_leases)" -gt 0 ]; then quiet=0; else quiet=$((quiet + 1)); fi
    if [ $quiet -ge "$idle" ] || [ $SECONDS -ge $deadline ]; then
        exec 9>"$lock"
        flock 9
        if [ "$(live_leases)" -gt 0 ] && [ $SECONDS -lt $deadline ]; then
            quiet=0
            flock -u 9
            exec 9>&-
            continue
        fi
        "$here/stop.sh" "$state"
        exit 0
    fi
done
