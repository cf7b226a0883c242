#!/usr/bin/env bash
# The test suite, as CI runs it: the default workspace members on the default runtime
# (smol), then the core suite again with the async-std runtime feature. Needs no system
# library beyond a C compiler; the Dioxus desktop example (WebKitGTK) has its own
# commands in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test
cargo test -p wavesyncdb --no-default-features --features runtime-async-std
