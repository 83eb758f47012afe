#!/usr/bin/env bash
# `just bench-glance`: upload the same file through kiln-glance and through `curl -T` to one local
# Glance, alternating, and report throughput, the ratio and kiln's peak RSS. curl's time is its PUT
# alone (the image is created before the clock starts); kiln's is given twice: its PUT alone (the
# `upload_seconds` kiln-glance reports — the like-for-like throughput ratio) and the whole process
# (Keystone auth, stale check, create, PUT, verify).
#   scripts/openstack/bench-glance.sh [SIZE_MIB (1024)] [ROUNDS (2)]
# kiln runs with --force (no dedup pass), so it reads the file once, hashing md5 + sha512 as it
# sends; both uploads are verified against md5sum/sha512sum of the file afterwards. Fails when a
# hash differs or kiln's peak RSS reaches 64 MiB.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size_mib=${1:-1024}
rounds=${2:-2}

work="$(mktemp -d /var/tmp/kiln-bench-glance.XXXXXX)"
state="$work/openstack"
cleanup() { "$here/stop.sh" "$state" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# KILN_GLANCE_BIN: use this binary instead of building the release one.
if [ -n "${KILN_GLANCE_BIN:-}" ]; then
    kiln="$KILN_GLANCE_BIN"
else
    echo "bench-glance: building kiln-glance (release)" >&2
    cargo build --quiet --release --locked -p kiln-glance --manifest-path "$root/Cargo.toml"
    target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    kiln="$target_dir/release/kiln-glance"
fi

"$here/start.sh" "$state"
# shellcheck disable=SC1091
. "$state/env"
export OS_CLIENT_CONFIG_FILE OS_CLIENT_SECURE_FILE OS_CLOUD=kiln-alpha

file="$work/image.raw"
echo "bench-glance: writing $size_mib MiB of random data" >&2
head -c "$((size_mib << 20))" /dev/urandom >"$file"
md5=$(md5sum "$file" | cut -d' ' -f1)
sha512=$(sha512sum "$file" | cut -d' ' -f1)
bytes=$(stat -c %s "$file")

token() {
    curl -sf -D - -o /dev/null -H 'Content-Type: application/json' -d '{"auth":{"identity":
        {"methods":["password"],"password":{"user":{"name":"alpha-user","domain":{"id":"default"},
        "password":"kiln-test-password"}}},"scope":{"project":{"name":"alpha","domain":{"id":"default"}}}}}' \
        "$KEYSTONE_URL/v3/auth/tokens" | awk 'tolower($1)=="x-subject-token:" {print $2}' | tr -d '\r'
}
image_field() { # ID FIELD
    curl -sf -H "X-Auth-Token: $tok" "$GLANCE_URL/v2/images/$1" \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
verify() { # ID WHO
    local c h
    c=$(image_field "$1" checksum); h=$(image_field "$1" os_hash_value)
    if [ "$c" != "$md5" ] || [ "$h" != "$sha512" ]; then
        echo "bench-glance: $2 upload $1: glance has md5 $c / sha512 ${h:0:16}…, file has $md5 / ${sha512:0:16}…" >&2
        exit 1
    fi
    curl -sf -X DELETE -H "X-Auth-Token: $tok" "$GLANCE_URL/v2/images/$1"
}
now() { date +%s.%N; }

curl_times=() kiln_times=() kiln_put=() kiln_rss=()
for r in $(seq 1 "$rounds"); do
    tok=$(token)
    id=$(curl -sf -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench-curl-$r\",\"disk_format\":\"raw\",\"container_format\":\"bare\"}" \
        "$GLANCE_URL/v2/images" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    t0=$(now)
    curl -sf -X PUT -H "X-Auth-Token: $tok" -H 'Content-Type: application/octet-stream' \
        -T "$file" "$GLANCE_URL/v2/images/$id/file"
    t1=$(now)
    curl_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    verify "$id" curl

    t0=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$kiln" publish --force --disk-format raw \
        --name "bench-kiln-$r" "$file" >"$work/kiln.json"
    t1=$(now)
    kiln_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    kiln_rss+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")")
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/kiln.json")
    kiln_put+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload_seconds"])' "$work/kiln.json")")
    verify "$id" kiln
    printf 'round %d: curl -T %6.2f s   kiln-glance PUT %6.2f s, whole publish %6.2f s (peak RSS %d KiB)\n' \
        "$r" "${curl_times[-1]}" "${kiln_put[-1]}" "${kiln_times[-1]}" "${kiln_rss[-1]}"
done

python3 - "$bytes" "${curl_times[*]}" "${kiln_times[*]}" "${kiln_rss[*]}" "${kiln_put[*]}" <<'EOF'
import sys
size = int(sys.argv[1]); mib = size / 2**20
curl = [float(x) for x in sys.argv[2].split()]
kiln = [float(x) for x in sys.argv[3].split()]
rss = [int(x) for x in sys.argv[4].split()]
put = [float(x) for x in sys.argv[5].split()]
best_c, best_k, best_p = min(curl), min(kiln), min(put)
row = lambda ts: ', '.join(f'{t:.2f}' for t in ts)
print(f"size {mib:.0f} MiB, {len(curl)} rounds each, alternating; hashes verified against md5sum/sha512sum")
print(f"curl -T (PUT)           best {best_c:6.2f} s = {mib / best_c:6.1f} MiB/s   (all: {row(curl)})")
print(f"kiln-glance PUT         best {best_p:6.2f} s = {mib / best_p:6.1f} MiB/s   (all: {row(put)})")
print(f"kiln-glance whole run   best {best_k:6.2f} s = {mib / best_k:6.1f} MiB/s   (all: {row(kiln)})")
print(f"upload throughput ratio kiln/curl, PUT vs PUT (best of each): {best_c / best_p:.2f}x")
print(f"kiln's whole publish (auth, create, PUT, verify) vs curl's PUT alone: {best_c / best_k:.2f}x")
print(f"kiln-glance peak RSS: {max(rss) / 1024:.1f} MiB (limit 64 MiB)")
if max(rss) >= 64 * 1024:
    sys.exit("bench-glance: peak RSS over 64 MiB")
EOF
