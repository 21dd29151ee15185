//! Runs the guest component under wasmtime with hard limits.
//!
//! The guest gets exactly what the world in `wit/world.wit` promises: a
//! read-only `/archive` preopen, an optional read-write `/package` preopen,
//! the `host-log` import, and nothing else (no network, no environment, no
//! stdin). Its linear memory is capped, its CPU time is metered by epoch
//! interruption, and every trap, limit or panic comes back as a
//! [`SandboxError`] instead of taking the host down.

pub(crate) mod bindings;
pub(crate) mod cache;
mod convert;
pub(crate) mod install_session;
mod log;
mod protocol;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cap_std::fs::Dir;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use bindings::types::{ExtractOptions, LoadOptions};
use bindings::{Loader, LoaderPre};
use convert::{check_manifest, to_wit_limits};

use crate::fs::staging::Staging;
use crate::fs::tree_writes::TreeWrites;
use crate::install::pylock::Claim;
use crate::install::resolve::Wanted;
use crate::types::config::{Limits, RequirementPolicy, SandboxLimits};
use crate::types::error::EnvFileRefused;
use crate::types::error::{LoadError, SandboxError};
use crate::types::package::Manifest;
use install_session::Facts;
use install_session::InstallSession;

/// How often the epoch advances; the CPU-time check runs at this granularity.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of guest stderr kept, enough for a panic message.
const STDERR_CAPACITY: usize = 16 * 1024;

/// The rules a guest run reads the archive under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArchiveRules {
    /// Ceilings on the archive.
    pub limits: Limits,
    /// The guest's entry-name rules (only tests turn them off).
    pub path_rules: bool,
}

impl ArchiveRules {
    fn to_wit(self) -> ExtractOptions {
        ExtractOptions {
            limits: to_wit_limits(self.limits),
            enforce_path_rules: self.path_rules,
        }
    }
}

/// What an extraction wrote, its manifest checked by the host.
#[derive(Debug, Clone)]
pub(crate) struct Extracted {
    /// The manifest.
    pub manifest: Manifest,
    /// Regular files written.
    pub files: u32,
    /// Directory entries listed in the archive.
    pub dirs: u32,
    /// Uncompressed bytes written.
    pub bytes: u64,
    /// Files the archive marks executable (checked when published).
    pub executables: Vec<String>,
}

/// Directories the guest may see.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preopens<'a> {
    /// Holds only `package.apkg`; mapped read-only at `/archive`.
    pub archive_dir: Option<&'a Path>,
    /// The empty staging directory, mapped read-write at `/package`; or a
    /// published tree, mapped read-only there ([`Preopens::package_writable`]).
    pub package_dir: Option<&'a Path>,
    /// Whether `/package` is writable.
    pub package_writable: bool,
}

/// A staging directory as the guest sees it: the archive's directory and
/// the tree, reached through their handles, owned so [`Self::writable`]
/// can lend them.
#[derive(Debug)]
pub(crate) struct StagedPreopens {
    archive: PathBuf,
    tree: PathBuf,
}

impl StagedPreopens {
    /// The preopens of `staging`.
    pub(crate) fn of(staging: &Staging) -> Self {
        Self {
            archive: staging.archive_preopen(),
            tree: staging.tree_preopen(),
        }
    }

    /// The archive read-only at `/archive`, the tree writable at `/package`.
    pub(crate) fn writable(&self) -> Preopens<'_> {
        Preopens {
            archive_dir: Some(&self.archive),
            package_dir: Some(&self.tree),
            package_writable: true,
        }
    }
}

/// A compiled guest ready to be instantiated, once per run.
pub(crate) struct Sandbox {
    pre: LoaderPre<GuestState>,
    limits: SandboxLimits,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Everything a run's store holds.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    log: log::GuestLog,
    session: InstallSession,
    /// The thread's CPU time when the run began: the guest runs on this thread.
    cpu_started: Duration,
    cpu_exceeded: bool,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the cap and remembers that it did.
struct MemoryCap {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// One engine per process: settings never vary, and one epoch ticker serves all stores.
fn engine() -> Result<&'static Engine, SandboxError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.epoch_interruption(true);
            config.wasm_component_model(true);
            let engine = Engine::new(&config).map_err(|e| e.to_string())?;
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("par-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(TICK);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| SandboxError::Engine(e.clone()))
}

impl Sandbox {
    /// Compiles (or loads from `cache_dir`) the guest and links its imports;
    /// `replacement` is another component to run instead, compiled in memory.
    pub(crate) fn new(
        cache_dir: Option<&Path>,
        limits: SandboxLimits,
        replacement: Option<&[u8]>,
    ) -> Result<Self, SandboxError> {
        let engine = engine()?;
        let component = match replacement {
            None => cache::load(engine, cache_dir),
            Some(wasm) => wasmtime::component::Component::new(engine, wasm),
        }
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::<GuestState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let link_error = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        bindings::host_log::add_to_linker::<GuestState, HasSelf<log::GuestLog>>(&mut linker, |state| &mut state.log)
            .map_err(link_error)?;
        bindings::host_installer::add_to_linker::<GuestState, HasSelf<InstallSession>>(&mut linker, |state| {
            &mut state.session
        })
        .map_err(link_error)?;
        bindings::host_copy::add_to_linker::<GuestState, HasSelf<InstallSession>>(&mut linker, |state| {
            &mut state.session
        })
        .map_err(link_error)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(LoaderPre::new)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        Ok(Self { pre, limits })
    }

    /// Runs the guest's `inspect` export. A guest that called the installer
    /// broke the protocol, whatever it returned.
    pub(crate) fn inspect(&self, preopens: Preopens<'_>, rules: &ArchiveRules) -> Result<Manifest, LoadError> {
        let options = rules.to_wit();
        let (outcome, session) = self.run(preopens, InstallSession::unavailable(), |loader, store| {
            loader.call_inspect(store, options)
        });
        Ok(check_manifest(without_installer(outcome, &session)??)?)
    }

    /// Runs the guest's `extract` export, with the same rule as `inspect`;
    /// `copies` serves the guest's `host-copy` calls.
    pub(crate) fn extract(
        &self,
        preopens: Preopens<'_>,
        rules: &ArchiveRules,
        copies: Option<TreeWrites>,
    ) -> Result<Extracted, LoadError> {
        let options = rules.to_wit();
        let session = InstallSession::unavailable().with_copies(copies);
        let (outcome, mut session) = self.run(preopens, session, |loader, store| loader.call_extract(store, options));
        let written = session.finish_writes();
        let report = without_installer(outcome, &session)??;
        // Whatever the guest reported, a file the host could not write fails the extraction.
        written
            .map_err(|failure| LoadError::io("cannot write", failure.path)(std::io::Error::other(failure.problem)))?;
        Ok(Extracted {
            manifest: check_manifest(report.manifest)?,
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
            executables: report.executables,
        })
    }

    /// Runs the guest's `plan` export: extracts into the staging tree
    /// `tree` (`copies` serving `host-copy` as for `extract`) and returns what
    /// the package asks to have installed, checked as `ensure-venv` checks it.
    pub(crate) fn plan(
        &self,
        preopens: Preopens<'_>,
        rules: &ArchiveRules,
        copies: TreeWrites,
        tree: &Dir,
        policy: RequirementPolicy,
    ) -> Result<Wanted, LoadError> {
        let options = rules.to_wit();
        let session = InstallSession::unavailable().with_copies(Some(copies));
        let (outcome, mut session) = self.run(preopens, session, |loader, store| loader.call_plan(store, options));
        let written = session.finish_writes();
        let plan = without_installer(outcome, &session)??;
        written
            .map_err(|failure| LoadError::io("cannot write", failure.path)(std::io::Error::other(failure.problem)))?;
        install_session::wanted(&plan, tree, policy)
    }

    /// Runs the guest's `unbundle` export: unpacks the offline bundle in
    /// the archive preopen into the staging tree (`copies` serving
    /// `host-copy` as for `extract`). The caller checks what it finds.
    pub(crate) fn unbundle(
        &self,
        preopens: Preopens<'_>,
        rules: &ArchiveRules,
        copies: TreeWrites,
    ) -> Result<(), LoadError> {
        let options = rules.to_wit();
        let session = InstallSession::unavailable().with_copies(Some(copies));
        let (outcome, mut session) = self.run(preopens, session, |loader, store| loader.call_unbundle(store, options));
        let written = session.finish_writes();
        without_installer(outcome, &session)??;
        written.map_err(|failure| LoadError::io("cannot write", failure.path)(std::io::Error::other(failure.problem)))
    }

    /// Runs the guest's `read-env-file` export on the published tree `tree`
    /// (read-only, and no archive): the variables of its `.env`, or the
    /// guest's reason to refuse it; the host checks both again.
    pub(crate) fn read_env_file(
        &self,
        tree: &Path,
    ) -> Result<Result<Vec<(String, String)>, EnvFileRefused>, LoadError> {
        let preopens = Preopens {
            archive_dir: None,
            package_dir: Some(tree),
            package_writable: false,
        };
        let (outcome, session) = self.run(preopens, InstallSession::unavailable(), |loader, store| {
            loader.call_read_env_file(store)
        });
        Ok(without_installer(outcome, &session)?
            .map(|vars| vars.into_iter().map(|var| (var.key, var.value)).collect())
            .map_err(convert::env_file_refused))
    }

    /// Runs the guest's `read-lock` export on `text` (no preopens): the
    /// lock's entries as claims the host checks again, or the guest's
    /// reason to refuse it (entry, problem).
    pub(crate) fn read_lock(&self, text: Vec<u8>) -> Result<Result<Vec<Claim>, (String, String)>, LoadError> {
        let preopens = Preopens {
            archive_dir: None,
            package_dir: None,
            package_writable: false,
        };
        let (outcome, session) = self.run(preopens, InstallSession::unavailable(), |loader, store| {
            loader.call_read_lock(store, &text)
        });
        Ok(without_installer(outcome, &session)?
            .map(convert::lock_claims)
            .map_err(convert::lock_refused))
    }

    /// Runs the guest's `load` export; the session serves its installer
    /// requests, decides the result from its own record, and is handed back
    /// with what they did.
    pub(crate) fn load(
        &self,
        preopens: Preopens<'_>,
        rules: &ArchiveRules,
        strict: bool,
        session: InstallSession,
    ) -> (Result<Facts, LoadError>, InstallSession) {
        let options = LoadOptions {
            extract: rules.to_wit(),
            strict,
        };
        let (outcome, mut session) = self.run(preopens, session, |loader, store| loader.call_load(store, options));
        (session.conclude(outcome), session)
    }

    /// Instantiates a fresh guest with the given preopens, calls `f`, and turns
    /// any trap into the [`SandboxError`] that explains it.
    fn run<R>(
        &self,
        preopens: Preopens<'_>,
        session: InstallSession,
        f: impl FnOnce(&Loader, &mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> (Result<R, SandboxError>, InstallSession) {
        let engine = self.pre.engine();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        // No network of any kind: the defaults already deny it; saying so keeps
        // the capability list auditable in one place.
        wasi.allow_blocking_current_thread(true)
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let preopen_error = |e: wasmtime::Error| SandboxError::Engine(format!("cannot preopen a directory: {e:#}"));
        if let Some(archive_dir) = preopens.archive_dir
            && let Err(e) = wasi.preopened_dir(archive_dir, "/archive", FsPerms::ReadOnly)
        {
            return (Err(preopen_error(e)), session);
        }
        let package_perms = match preopens.package_writable {
            true => FsPerms::ReadWrite,
            false => FsPerms::ReadOnly,
        };
        if let Some(package_dir) = preopens.package_dir
            && let Err(e) = wasi.preopened_dir(package_dir, "/package", package_perms)
        {
            return (Err(preopen_error(e)), session);
        }
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: self.limits.memory_bytes,
                exceeded: false,
            },
            log: log::GuestLog::default(),
            session,
            cpu_started: crate::exec::process::thread_cpu_time(),
            cpu_exceeded: false,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.memory);
        let budget = self.limits.cpu_time;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            let used = crate::exec::process::thread_cpu_time()
                .saturating_sub(state.cpu_started)
                .saturating_sub(state.session.host_cpu);
            if used > budget {
                state.cpu_exceeded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let outcome = self
            .pre
            .instantiate(&mut store)
            .and_then(|loader| f(&loader, &mut store));
        let outcome = outcome.map_err(|error| {
            let state = store.data();
            if state.memory.exceeded {
                return SandboxError::MemoryLimit {
                    limit_bytes: state.memory.limit,
                };
            }
            if state.cpu_exceeded {
                return SandboxError::CpuTimeLimit { limit: budget };
            }
            let written = String::from_utf8_lossy(&stderr.contents()).trim().to_owned();
            if written.contains("panicked") {
                return SandboxError::Panic(crate::exec::output::escape_controls(&written, STDERR_CAPACITY));
            }
            SandboxError::Trap(format!("{error:#}"))
        });
        (outcome, store.into_data().session)
    }
}

/// The result of a run that had no installer: any installer call the guest
/// made is a protocol violation, which decides the outcome.
fn without_installer<T>(outcome: Result<T, SandboxError>, session: &InstallSession) -> Result<T, LoadError> {
    if let Some(violation) = session.violation() {
        return Err(violation.into());
    }
    Ok(outcome?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_guest_is_a_component_that_links() {
        let sandbox = Sandbox::new(None, SandboxLimits::default(), None);
        assert!(sandbox.is_ok(), "{sandbox:?}");
    }
}
