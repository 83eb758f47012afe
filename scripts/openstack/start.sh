#!/usr/bin/env bash
# Starts a real Keystone + Glance on free 127.0.0.1 ports for kiln's tests, benchmark and demo.
#   scripts/openstack/start.sh STATE_DIR
# Installs the pinned requirements into a venv cached under $KILN_VENV_CACHE (default
# /var/cache/kiln) keyed by the requirements' hash, configures Keystone (sqlite, fernet) and
# Glance (sqlite, file store, paste flavor keystone), bootstraps, provisions two projects
# (see provision.py), writes STATE_DIR/{clouds.yaml,secure.yaml,env} and the servers' PIDs.
# Stop with scripts/openstack/stop.sh STATE_DIR.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
mkdir -p "$1"
state="$(cd "$1" && pwd)"
t0=$(date +%s.%N)
log() { awk -v m="$1" -v t0="$t0" -v t="$(date +%s.%N)" 'BEGIN { printf "openstack: %s (%.1fs)\n", m, t - t0 }' >&2; }

if [ -e "$state/env" ]; then
    echo "openstack: $state/env exists; run stop.sh $state first" >&2
    exit 1
fi

# --- venv, cached by the hash of the requirements and the interpreter version ---
python="${KILN_PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}"
key=$( (cat "$here/requirements.txt"; "$python" --version) | sha256sum | cut -c1-16)
cache="${KILN_VENV_CACHE:-/var/cache/kiln}"
venv="$cache/venv-openstack-$key"
mkdir -p "$cache"
(
    flock 9
    if [ ! -e "$venv/.complete" ]; then
        echo "openstack: installing Keystone + Glance into $venv (once)" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            -r "$here/requirements.txt" >&2
        touch "$venv/.complete"
    fi
) 9>"$cache/venv-openstack.lock"
log "venv ready"

# --- ports and passwords ---
read -r ks_port gl_port < <("$venv/bin/python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
keystone="http://127.0.0.1:$ks_port"
glance="http://127.0.0.1:$gl_port"
# A snapshot of a provisioned Keystone (its database, keys, clouds.yaml) is kept beside the venv
# after the first start; later starts restore it and rewrite the endpoint URLs, which skips
# keystone-manage and provisioning (most of the start time). The schema of a fresh Glance is kept too.
snap="$venv/snapshot-v2"
if [ -e "$snap/.complete" ]; then
    admin_password="$(cat "$snap/admin_password")"
else
    admin_password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
fi

mkdir -p "$state"/{keystone,glance}/ "$state"/glance/{images,staging,tasks,locks}
cat >"$state/keystone/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$state/keystone/keystone.sqlite?timeout=60
[token]
provider = fernet
expiration = ${KILN_KEYSTONE_TOKEN_EXPIRATION:-3600}
[fernet_tokens]
key_repository = $state/keystone/fernet-keys
[fernet_receipts]
key_repository = $state/keystone/fernet-receipts
[credential]
key_repository = $state/keystone/credential-keys
EOF
cat >"$state/glance/glance-api.conf" <<EOF
[DEFAULT]
use_stderr = true
enabled_backends = fs:file
enabled_import_methods = [glance-direct,web-download,copy-image]
[database]
connection = sqlite:///$state/glance/glance.sqlite?timeout=60
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $state/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $state/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $state/glance/tasks/
[paste_deploy]
flavor = keystone
config_file = $venv/etc/glance/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = $keystone/v3
auth_url = $keystone/v3
auth_type = password
username = admin
password = $admin_password
project_name = admin
user_domain_name = Default
project_domain_name = Default
[oslo_concurrency]
lock_path = $state/glance/locks
[oslo_policy]
policy_file = $state/glance/policy.yaml
EOF
# Glance's default rule for PUT …/file, minus users with the role image_import_only (project gamma):
# they must use the interoperable import (stage + glance-direct), as on clouds that forbid direct uploads.
cat >"$state/glance/policy.yaml" <<'EOF'
"upload_image": "(role:admin or (role:member and project_id:%(project_id)s)) and not role:image_import_only"
EOF
export OS_KEYSTONE_CONFIG_FILES="$state/keystone/keystone.conf"
export OS_GLANCE_CONFIG_DIR="$state/glance"

# --- databases: the empty schemas are cached beside the venv (db_sync takes seconds) ---
schema() { # NAME COMMAND...: copy the cached schema to $state/NAME/NAME.sqlite or build it
    local name=$1; shift
    local db="$state/$name/$name.sqlite" tpl="$venv/schema-$name.sqlite"
    if [ -e "$tpl" ]; then cp "$tpl" "$db"; else
        "$@" >"$state/$name/db_sync.log" 2>&1
        cp "$db" "$tpl.$$" && mv "$tpl.$$" "$tpl"
    fi
}
schema glance "$venv/bin/glance-manage" --config-file "$state/glance/glance-api.conf" db_sync &
gl_sync=$!
if [ -e "$snap/.complete" ]; then
    cp -a "$snap/keystone/." "$state/keystone/"
    "$venv/bin/python" - "$state/keystone/keystone.sqlite" "$(cat "$snap/keystone_url")" \
        "$keystone" "$(cat "$snap/glance_url")" "$glance" <<'EOF2'
import sqlite3, sys
db, old_ks, new_ks, old_gl, new_gl = sys.argv[1:]
with sqlite3.connect(db) as c:
    for old, new in ((old_ks + "/v3", new_ks + "/v3"), (old_gl, new_gl)):
        c.execute("UPDATE endpoint SET url = ? WHERE url = ?", (new, old))
EOF2
    for f in clouds.yaml secure.yaml; do
        sed "s#$(cat "$snap/keystone_url")/v3#$keystone/v3#g" "$snap/$f" >"$state/$f"
        chmod 600 "$state/$f"
    done
    wait $gl_sync
    provisioned=1
else
    schema keystone "$venv/bin/keystone-manage" --config-file "$state/keystone/keystone.conf" db_sync
    owner=(--keystone-user "$(id -un)" --keystone-group "$(id -gn)")
    manage=("$venv/bin/keystone-manage" --config-file "$state/keystone/keystone.conf")
    "${manage[@]}" fernet_setup "${owner[@]}" >>"$state/keystone/setup.log" 2>&1
    "${manage[@]}" credential_setup "${owner[@]}" >>"$state/keystone/setup.log" 2>&1
    "${manage[@]}" bootstrap --bootstrap-password "$admin_password" \
        --bootstrap-region-id RegionOne --bootstrap-admin-url "$keystone/v3" \
        --bootstrap-public-url "$keystone/v3" --bootstrap-internal-url "$keystone/v3" \
        >>"$state/keystone/setup.log" 2>&1
    provisioned=0
    wait $gl_sync
fi
# WAL (kept in the file) lets readers and one writer work at once; with the 60 s busy timeout above,
# concurrent requests wait for each other instead of failing with "database is locked".
for db in "$state/keystone/keystone.sqlite" "$state/glance/glance.sqlite"; do
    "$venv/bin/python" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$db"
done
log "databases ready"

# --- servers: own session each, so stop.sh can end a server and its workers by group ---
# Keystone serves one request at a time: concurrent token requests on sqlite fail with "database is
# locked". Glance needs threads (a list must answer while an upload streams); kiln-glance retries
# the idempotent calls that hit the same sqlite lock.
serve() { # NAME PORT APP THREADS
    setsid "$venv/bin/gunicorn" --bind "127.0.0.1:$2" --workers 1 --threads "$4" \
        --worker-class gthread --timeout 900 --graceful-timeout 5 --no-control-socket \
        --pythonpath "$here" \
        --pid "$state/$1.pid" "$3" </dev/null >"$state/$1/server.log" 2>&1 &
    echo $! >"$state/$1.pid"
}
serve keystone "$ks_port" keystone_wsgi:application 1
serve glance "$gl_port" glance.wsgi.api:application 8

wait_http() { # URL NAME
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "openstack: $2 did not answer at $1; see $state/$2/server.log" >&2
    exit 1
}
wait_http "$keystone/v3" keystone
log "keystone up at $keystone"
if [ "$provisioned" = 0 ]; then
    "$venv/bin/python" "$here/provision.py" "$state" "$keystone" "$glance" "$admin_password"
    # Snapshot for later starts (sqlite's backup API: consistent while Keystone runs).
    tmp="$snap.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp/keystone"
    cp -a "$state/keystone/fernet-keys" "$state/keystone/fernet-receipts" \
        "$state/keystone/credential-keys" "$tmp/keystone/"
    "$venv/bin/python" -c 'import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()' \
        "$state/keystone/keystone.sqlite" "$tmp/keystone/keystone.sqlite"
    cp "$state/clouds.yaml" "$state/secure.yaml" "$tmp/"
    echo "$admin_password" >"$tmp/admin_password"
    echo "$keystone" >"$tmp/keystone_url"
    echo "$glance" >"$tmp/glance_url"
    touch "$tmp/.complete"
    mv -T "$tmp" "$snap" 2>/dev/null || rm -rf "$tmp" # another start made it first
fi
wait_http "$glance/healthcheck" glance
log "glance up at $glance"

cat >"$state/env.tmp" <<EOF
KEYSTONE_URL=$keystone
GLANCE_URL=$glance
KEYSTONE_PID=$(cat "$state/keystone.pid")
GLANCE_PID=$(cat "$state/glance.pid")
OS_CLIENT_CONFIG_FILE=$state/clouds.yaml
OS_CLIENT_SECURE_FILE=$state/secure.yaml
EOF
mv "$state/env.tmp" "$state/env"
log "ready: clouds kiln-alpha, kiln-beta, kiln-gamma (import only), kiln-alpha-appcred, kiln-admin in $state/clouds.yaml"
