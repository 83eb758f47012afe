#!/usr/bin/env bash
# Stops the Keystone + Glance that start.sh started in STATE_DIR, by the PIDs it wrote.
#   scripts/openstack/stop.sh STATE_DIR
# Each server runs in its own session (setsid), so its gunicorn workers share its process
# group: TERM the master, wait up to 5 s, then KILL the group. Idempotent.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
state="$1"

for name in glance keystone; do
    pidfile="$state/$name.pid"
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    # Only signal what start.sh started: a gunicorn whose group is its own PID.
    if [ -n "$pid" ] && grep -qa gunicorn "/proc/$pid/cmdline" 2>/dev/null \
        && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
done
rm -f "$state/env"
