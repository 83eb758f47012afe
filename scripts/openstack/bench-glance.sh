#!/usr/bin/env bash
# `just bench-glance`: upload the same file through kiln-glance and through `curl -T` to one local
# Glance, alternating, and report throughput, the ratio and kiln's peak RSS. curl's time is its PUT
# alone (the image is created before the clock starts); kiln's is given twice: its PUT alone (the
# `upload_seconds` kiln-glance reports — the like-for-like throughput ratio) and the whole process
# (Keystone auth, stale check, create, PUT, verify).
#   scripts/openstack/bench-glance.sh [SIZE_MIB (1024)] [ROUNDS (6)]
# kiln runs with --force (no dedup pass), so it reads the file once; twice a round: hashing md5 +
# sha512 as it sends (a file kiln knows nothing about), and with the digests given (--md5/--sha512:
# kiln's own path, where the cache recorded them as it wrote the artifact, so nothing is hashed while
# sending). Every upload is verified against md5sum/sha512sum of the file afterwards. Fails when a
# hash differs or kiln's peak RSS reaches 64 MiB.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size_mib=${1:-1024}
rounds=${2:-6}

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
# Flush the new file's pages now: their writeback would otherwise fall on the first round's upload.
sync
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
    # Glance's file store leaves the upload's pages dirty; flush them now, so that writeback of one
    # upload does not run during the next one's clock.
    sync
}
now() { date +%s.%N; }

# One upload of each kind per round; the order alternates (curl, hashing, known / known, hashing, curl)
# so drift in Glance's speed over the run falls on all three alike.
put_curl() { # ROUND
    local id t0 t1
    id=$(curl -sf -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench-curl-$1\",\"disk_format\":\"raw\",\"container_format\":\"bare\"}" \
        "$GLANCE_URL/v2/images" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    t0=$(now)
    curl -sf -X PUT -H "X-Auth-Token: $tok" -H 'Content-Type: application/octet-stream' \
        -T "$file" "$GLANCE_URL/v2/images/$id/file"
    t1=$(now)
    verify "$id" curl
    echo "curl $1 $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') 0 0" >>"$work/results"
}
put_kiln() { # ROUND KIND(hashing|known)
    local id t0 t1 extra=()
    [ "$2" = known ] && extra=(--md5 "$md5" --sha512 "$sha512")
    t0=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$kiln" publish --force --disk-format raw \
        --name "bench-kiln-$2-$1" "${extra[@]}" "$file" >"$work/kiln.json"
    t1=$(now)
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/kiln.json")
    verify "$id" "kiln ($2)"
    echo "$2 $1 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload_seconds"])' "$work/kiln.json")" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        "$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")" >>"$work/results"
}

# A fresh Glance's first upload runs ~20% slower (its first store write, caches filling); one
# untimed upload first, so that round 1 is like the others.
tok=$(token)
put_curl warmup
: >"$work/results"
for r in $(seq 1 "$rounds"); do
    tok=$(token)
    if [ $((r % 2)) = 1 ]; then
        put_curl "$r"; put_kiln "$r" hashing; put_kiln "$r" known
    else
        put_kiln "$r" known; put_kiln "$r" hashing; put_curl "$r"
    fi
    awk -v r="$r" '$2 == r { printf "%s %s PUT %.2f s", (n++ ? "," : "round " r ":"), $1, $3 } END { print "" }' \
        "$work/results"
done

python3 - "$bytes" "$work/results" <<'EOF'
import statistics, sys
size = int(sys.argv[1]); mib = size / 2**20
put, whole, rss = {}, {}, []
for line in open(sys.argv[2]):
    kind, rnd, p, w, m = line.split()
    put.setdefault(kind, {})[int(rnd)] = float(p)
    if kind != "curl":
        whole.setdefault(kind, {})[int(rnd)] = float(w)
        rss.append(int(m))
curl = put["curl"]
row = lambda ts: ', '.join(f'{ts[r]:.2f}' for r in sorted(ts))
print(f"size {mib:.0f} MiB, {len(curl)} rounds, order alternating; every upload verified against md5sum/sha512sum")
label = {"curl": "curl -T", "hashing": "kiln, hashing as it sends",
         "known": "kiln, digests known (--md5/--sha512)"}
for kind in ("curl", "hashing", "known"):
    ts = put[kind]
    med = statistics.median(ts.values())
    print(f"PUT {label[kind]:<38} best {min(ts.values()):6.2f} s, median {med:6.2f} s"
          f" = {mib / med:6.1f} MiB/s   (all: {row(ts)})")
for kind in ("hashing", "known"):
    ts = put[kind]
    pairs = [curl[r] / ts[r] for r in ts if r in curl]
    # The geometric mean of the rounds' ratios: with the order alternating, a steady drift in
    # Glance's speed over the run cancels out of it.
    print(f"throughput kiln ({kind}) / curl, PUT vs PUT: geometric mean of the rounds' ratios "
          f"{statistics.geometric_mean(pairs):.3f}x (range {min(pairs):.3f}-{max(pairs):.3f}), "
          f"median {statistics.median(pairs):.3f}x, best vs best {min(curl.values()) / min(ts.values()):.3f}x")
for kind in ("hashing", "known"):
    w = whole[kind]
    print(f"kiln ({kind}) whole publish (auth, create, PUT, verify) vs curl's PUT alone: geometric mean "
          f"{statistics.geometric_mean([curl[r] / w[r] for r in w]):.3f}x")
print(f"kiln-glance peak RSS: {max(rss) / 1024:.1f} MiB (limit 64 MiB)")
if max(rss) >= 64 * 1024:
    sys.exit("bench-glance: peak RSS over 64 MiB")
EOF
