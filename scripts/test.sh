#!/usr/bin/env bash
# The test suite, as CI runs it: the default workspace members on the default runtime
# (smol), then the core suite again with the async-std runtime feature and the Prometheus
# exporter (feature `prometheus`, built with it so that the core is compiled once more, not
# twice), then the core on the tokio runtime feature (its own test: the other suites drive
# the core with smol and async-std, which sqlx's tokio driver does not run under). Needs no
# system library beyond a C compiler; the Dioxus desktop example (WebKitGTK) has its own
# commands in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test
cargo test -p wavesyncdb --no-default-features --features runtime-async-std,prometheus
cargo test -p wavesyncdb --no-default-features --features runtime-tokio --test runtime_tokio
