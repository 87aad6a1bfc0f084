#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it too).
# Runs the whole test suite (the workspace builds the blst group backend), then the crypto suite again
# on its own, which builds the arkworks backend (same vectors, same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Proptest cases per property: CI-sized by default, raise it for a deeper local run.
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
echo "== cargo test --workspace (blst backend) =="
cargo test --workspace --all-targets
cargo test --workspace --doc
echo "== cargo test -p armored-crypto (arkworks backend) =="
cargo test -p armored-crypto --all-targets
