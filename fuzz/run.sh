#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, starting from the
# seeds (par_tests::fuzz) and past findings (fuzz/regressions/TARGET/).
# Needs a nightly toolchain and cargo-fuzz, both pinned here and installed if
# missing. Findings land in fuzz/artifacts/TARGET/; once fixed, copy each into
# fuzz/regressions/TARGET/ so the replay test (tests/fuzz_replay.rs) keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest entry_name requirements build_system archive component dotenv lock deploy registry)

nightly="nightly-2026-05-20"
cargo_fuzz="0.13.1"
rustup toolchain list | grep -q "^${nightly}" || rustup toolchain install "${nightly}" --profile minimal
if [ "$(cargo "+${nightly}" fuzz --version 2> /dev/null)" != "cargo-fuzz ${cargo_fuzz}" ]; then
    # Built with the pinned stable toolchain: its locked dependencies predate this nightly.
    cargo install cargo-fuzz --version "${cargo_fuzz}" --locked
fi

cargo run -q -p par-tests --example write_corpus -- fuzz/corpus
cd fuzz
for target in "${targets[@]}"; do
    echo "fuzzing ${target} for ${seconds}s"
    mkdir -p "regressions/${target}"
    cargo "+${nightly}" fuzz run "${target}" "corpus/${target}" "regressions/${target}" -- \
        -max_total_time="${seconds}" -rss_limit_mb=2048
done
