#!/usr/bin/env bash
# The longer local fuzz run (issue 16): every cargo-fuzz target of fuzz/, one after the other, for
# SECONDS_PER_TARGET seconds each (default 60), starting from the committed seed corpus.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Without them it says so and
# exits 0: CI covers the same entry points on stable (armored_crypto::fuzz_targets tests).
# New inputs go to fuzz/corpus-local/<target>/ (not committed); findings to fuzz/artifacts/<target>/.
# Prints executions and seconds per target, from libFuzzer's final statistics.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "!! scripts/fuzz.sh: no nightly toolchain (rustup toolchain install nightly); nothing fuzzed." >&2
    echo "!! CI covers the same entry points on stable: cargo test -p armored-crypto fuzz_" >&2
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "!! scripts/fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz); nothing fuzzed." >&2
    echo "!! CI covers the same entry points on stable: cargo test -p armored-crypto fuzz_" >&2
    exit 0
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Sanitizer builds differ from normal ones: keep them in their own target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# -a: debug assertions and overflow checks on (an overflow is a finding).
cargo +nightly fuzz build -a

printf '%-16s %12s %8s %10s  %s\n' target executions seconds exec/s result
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus-local/$t" "artifacts/$t"
    log="$(mktemp)"
    # Seeds are read from the committed corpus; new inputs land in corpus-local (first directory).
    if cargo +nightly fuzz run -a "$t" "corpus-local/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        result=ok
    else
        result="FINDING (see artifacts/$t/, log $log)"
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    printf '%-16s %12s %8s %10s  %s\n' "$t" "$execs" "$secs" "$rate" "$result"
    [ "$result" = ok ] && rm -f "$log"
done
exit "$status"
