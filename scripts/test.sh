#!/usr/bin/env bash
# The whole test suite: formatting, lints, card definitions, dependency audit, every test, then the
# container image's build (scripts/image-check.sh, no Docker daemon needed).
# Tests that need PostgreSQL read KANDJI_CONNECTOR_TEST_POSTGRES_URL and say they were skipped without it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo run --locked --quiet -- cards check
bash scripts/deny.sh
cargo test --locked
bash scripts/image-check.sh
