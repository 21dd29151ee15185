# Recipes for working on par. `just --list` shows them.

# Build the host, the CLI and (through host/build.rs) the guest component.
build:
    cargo build --workspace

# Extract the example APKG shipped in the repo into a scratch root.
demo root="/tmp/pixell-runtime":
    cargo run -p par -- extract examples/vivid-commenter.apkg --root {{root}}
    cargo run -p par -- inspect examples/vivid-commenter.apkg

# Run every test: guest unit tests (native), host tests, end-to-end tests,
# the fuzz targets on their seeds; installs what the tests need first.
test *args:
    tests/run {{args}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p par-guest --target wasm32-wasip2 -- -D warnings

# Rebuild examples/vivid-commenter.apkg from its source folder.
example:
    cd examples && python3 build_apkg.py vivid-commenter vivid-commenter.apkg

# Fuzz each target (all by default) for SECONDS (pinned nightly + cargo-fuzz, installed if missing).
fuzz seconds="60" *targets:
    fuzz/run.sh {{seconds}} {{targets}}

# Whole-process benchmarks against the spec's pip flow (release build); see docs/PERFORMANCE.md.
bench *args:
    cargo build --release -p par -p par-bench
    target/release/par-bench {{args}}
