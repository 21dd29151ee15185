//! The fuzz targets' bodies and their seed inputs, in one place so that the
//! same code runs three ways: under libFuzzer (`fuzz/`, `just fuzz`), as an
//! ordinary test replaying every seed and every past finding
//! (`tests/fuzz_replay.rs`, in CI), and as the seeds written out for
//! libFuzzer's corpora (`examples/write_corpus.rs`).

mod archive;
mod build_system;
mod component;
mod deploy;
mod dotenv;
mod entry_name;
mod lock;
mod manifest;
mod registry;
mod requirements;
mod seeds;

/// One fuzz target: a binary in `fuzz/Cargo.toml` of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `agent.yaml` parsing.
    Manifest,
    /// The entry-name rules.
    EntryName,
    /// The guest's requirements reader feeding the host's line policy.
    Requirements,
    /// The guest's `[build-system]` reader feeding the host's check.
    BuildSystem,
    /// The extractor on archive bytes.
    Archive,
    /// The real component run by the real host.
    Component,
    /// The guest's `.env` parser.
    DotEnv,
    /// The guest's lock (`pylock.toml`) reader.
    Lock,
    /// The guest's `deploy.json` reader.
    Deploy,
    /// The host's readers of what a registry answers.
    Registry,
}

impl Target {
    /// Every target, in the order `fuzz/run.sh` runs them.
    pub const ALL: [Target; 10] = [
        Target::Manifest,
        Target::EntryName,
        Target::Requirements,
        Target::BuildSystem,
        Target::Archive,
        Target::Component,
        Target::DotEnv,
        Target::Lock,
        Target::Deploy,
        Target::Registry,
    ];

    /// The target's name: its binary, corpus and regression directories.
    pub fn name(self) -> &'static str {
        match self {
            Target::Manifest => "manifest",
            Target::EntryName => "entry_name",
            Target::Requirements => "requirements",
            Target::BuildSystem => "build_system",
            Target::Archive => "archive",
            Target::Component => "component",
            Target::DotEnv => "dotenv",
            Target::Lock => "lock",
            Target::Deploy => "deploy",
            Target::Registry => "registry",
        }
    }

    /// Runs one input; a finding panics.
    pub fn run(self, data: &[u8]) {
        match self {
            Target::Manifest => manifest::run(data),
            Target::EntryName => entry_name::run(data),
            Target::Requirements => requirements::run(data),
            Target::BuildSystem => build_system::run(data),
            Target::Archive => archive::run(data),
            Target::Component => component::run(data),
            Target::DotEnv => dotenv::run(data),
            Target::Lock => lock::run(data),
            Target::Deploy => deploy::run(data),
            Target::Registry => registry::run(data),
        }
    }

    /// The inputs the target's corpus starts from, as `(file name, bytes)`.
    pub fn seeds(self) -> Vec<(String, Vec<u8>)> {
        seeds::of(self)
    }
}
