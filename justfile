# kiln — declarative image pipelines for OpenStack.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Build the kiln binary (debug).
build:
    cargo build --locked -p kiln

# Run the whole test suite (what CI runs); installs host packages it needs first.
test: setup
    cargo nextest run --workspace --locked --no-fail-fast

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

# The main job on the bundled demo pipelines.
demo: setup
    cargo run --quiet --locked -p kiln -- check pipelines/

# Install the host packages and tools the tests and the demo need (idempotent).
setup:
    scripts/setup-host.sh

# Benchmark the guest runner: tiny ISO via libvirt vs plain QEMU, phases, 4 parallel vs sequential.
bench-exec: setup
    cargo bench --locked -p kiln-exec --bench exec
