#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, after seeding the
# corpora from the test fixtures. Needs the nightly toolchain and cargo-fuzz
# (installed here if missing). Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi
cargo run -q -p par-tests --example write_corpus -- fuzz/corpus
cd fuzz
for target in manifest entry_name requirements build_system archive component; do
    echo "fuzzing ${target} for ${seconds}s"
    cargo +nightly fuzz run "${target}" "corpus/${target}" -- -max_total_time="${seconds}" -rss_limit_mb=2048
done
