#!/usr/bin/env bash
# The whole test suite, as CI runs it: every crate on the default runtime (smol), then the
# core suite again with the async-std runtime feature.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
cargo test -p wavesyncdb --no-default-features --features runtime-async-std
