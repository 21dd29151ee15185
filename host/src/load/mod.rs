//! Orchestration: the steps of `inspect`, `extract` and `load` in order,
//! each step done by the boundary (`sandbox/`) or a mechanism (`fs/`,
//! `exec/`, `install/`). The public API ([`crate::PackageLoader`]) is a thin
//! layer over [`Orchestrator`], which holds what every operation shares:
//! the configuration, the opened root, the compiled guest and the probed
//! tools (interpreter, bubblewrap).
//!
//! One file per operation, each an `impl Orchestrator` block:
//!
//! - `mod.rs` (here): [`Orchestrator::new`] and what the operations share:
//!   the installer and its sandbox, the free-space floor, the settings
//!   fingerprint, app-id checks, and telling a full disk from a bad package.
//! - `extract.rs`: `inspect` (read the archive, publish nothing) and
//!   `extract` (publish the tree, no venv).
//! - `deploy.rs`: `load`, the spec's whole flow (extract, venv, install,
//!   verify, then switch the app's link), and the unchanged-redeploy shortcut.
//! - `spawn.rs`: `spawn`, starting a loaded agent, and [`spawn::Running`];
//!   `agent_env.rs`: the agent's environment, layered as PAR layers it.
//! - `lifecycle/`: `list`, `remove` and `gc` (`survey.rs` reads what is
//!   under the root, `plan.rs` decides what goes).

mod agent_env;
mod bundle;
mod deploy;
mod extract;
mod lifecycle;
mod lock;
mod registry;
pub(crate) mod spawn;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use par_rules::names::is_safe_component;

use crate::exec::confine::Bubblewrap;
use crate::exec::process::find_program_in;
use crate::fs::archive::Archive;
use crate::fs::redeploy;
use crate::fs::root::RootDir;
use crate::fs::staging::{disk_nearly_full, free_bytes, sweep_abandoned};
use crate::install::installer::{Installer, Pip, Uv};
use crate::install::interpreter::{Interpreter, Resolver};
use crate::install::pylock::{GivenLock, LOCK, Lock};
use crate::install::step::StepRunner;
use crate::install::uv_fetch;
use crate::sandbox::{ArchiveRules, Sandbox};
use crate::trust::signature;
use crate::types::config::{InstallConfig, InstallerChoice, LoaderConfig, SandboxChoice};
use crate::types::error::{LoadError, LockRefused, PackageError};
use crate::types::trust::Signed;
use par_rules::limits::MAX_LOCK_BYTES;

/// What a loader holds for its lifetime: the configuration, the opened
/// root, the compiled guest, and what it found out about the machine.
#[derive(Debug)]
pub(crate) struct Orchestrator {
    /// The root, opened once: every file operation under it goes through it.
    root: Arc<RootDir>,
    config: LoaderConfig,
    sandbox: Sandbox,
    /// The base interpreter, resolved past any shim on every load; an
    /// answer is reused while what decided it is unchanged.
    python: Resolver,
    /// The configured bubblewrap, probed on first use: for installer steps and agents.
    bubblewrap: std::sync::OnceLock<Result<Bubblewrap, String>>,
    /// The uv fetched into the cache when none was found, tried on first need.
    fetched_uv: std::sync::OnceLock<Option<PathBuf>>,
}

impl Orchestrator {
    /// Prepares the sandbox (compiling the guest, or loading it from the cache).
    /// Relative paths in `config` are taken from the current directory now:
    /// installer steps run elsewhere, inside their own sandbox.
    pub(crate) fn new(mut config: LoaderConfig) -> Result<Self, LoadError> {
        let started = Instant::now();
        config.root =
            std::path::absolute(&config.root).map_err(LoadError::io("cannot resolve the root", &config.root))?;
        for cache in [&mut config.component_cache, &mut config.install.installer_cache]
            .into_iter()
            .flatten()
        {
            *cache =
                std::path::absolute(&*cache).map_err(LoadError::io("cannot resolve the cache directory", &*cache))?;
        }
        // The installer runs from the package directory, where a relative
        // find-links path would mean something else.
        for link in config
            .install
            .index
            .find_links
            .iter_mut()
            .filter(|l| !l.contains("://"))
        {
            *link = std::path::absolute(&*link)
                .map_err(LoadError::io("cannot resolve a find-links directory", &*link))?
                .display()
                .to_string();
        }
        if config.install.offline {
            config.install = config.install.offline();
        }
        let sandbox = Sandbox::new(
            config.component_cache.as_deref(),
            config.sandbox_limits(),
            config.guest_component.as_deref(),
        )?;
        let root = Arc::new(RootDir::open(&config.root)?);
        sweep_abandoned(&root);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "sandbox ready");
        let python = Resolver::new(
            &config.install.python,
            config.install.import_timeout,
            config.component_cache.as_deref(),
        );
        Ok(Self {
            root,
            config,
            sandbox,
            python,
            bubblewrap: std::sync::OnceLock::new(),
            fetched_uv: std::sync::OnceLock::new(),
        })
    }

    /// The configuration this orchestrator was built with.
    pub(crate) fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Everything that shapes what a load does, so a recorded load is only
    /// taken as current under the same settings; `given` tells what the
    /// load was given besides (a lock's digest, a bundle).
    fn settings_fingerprint(
        &self,
        python: &Interpreter,
        installer: &dyn Installer,
        sandboxed: bool,
        given: &str,
    ) -> String {
        let config = &self.config;
        let install = &config.install;
        redeploy::settings_fingerprint(&[
            &given,
            &config.limits,
            &config.guest_path_rules,
            &python.identity,
            &installer.name(),
            &installer.program(),
            &sandboxed,
            &install.network,
            &install.index,
            &install.policy,
            &install.pass_env,
            &install.strict,
            &install.limits,
        ])
    }

    /// Reads and checks the lock given for a load (`--lock`): parsed in the
    /// sandbox, then every entry checked again by the host, and against the
    /// loader's index settings and requirement policy.
    fn read_given_lock(&self, path: &Path) -> Result<GivenLock, LoadError> {
        let invalid = |entry: String, problem: String| {
            LoadError::Lock(LockRefused::Invalid {
                lock: path.to_owned(),
                entry,
                problem,
            })
        };
        let file = std::fs::File::open(path).map_err(LoadError::io("cannot open the lock", path))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(LoadError::InvalidInput {
                what: "lock",
                detail: format!("`{}` is not a regular file", path.display()),
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_LOCK_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(LoadError::io("cannot read the lock", path))?;
        if bytes.len() as u64 > MAX_LOCK_BYTES {
            return Err(invalid(LOCK.into(), format!("larger than {MAX_LOCK_BYTES} bytes")));
        }
        let claims = self
            .sandbox
            .read_lock(bytes)?
            .map_err(|(entry, problem)| invalid(entry, problem))?;
        let install = &self.config.install;
        let lock =
            Lock::from_claims(claims, &install.index, install.policy).map_err(|e| invalid(e.entry, e.problem))?;
        Ok(GivenLock {
            path: path.to_owned(),
            lock,
            bundled: None,
        })
    }

    /// The configured back end; `auto` takes uv when it is on `PATH` (or
    /// beside the interpreter, where `pip install uv` puts it) or, unless
    /// the load is `offline`, fetched into par's cache ([`uv_fetch`]).
    fn installer(&self, python: &Interpreter, offline: bool) -> Result<Arc<dyn Installer>, LoadError> {
        let install = &self.config.install;
        if install.installer == InstallerChoice::Pip {
            return Ok(Arc::new(Pip));
        }
        let uv = find_program_in(&install.uv, std::slice::from_ref(&python.scripts));
        let uv = match uv {
            Some(uv) => Ok(uv),
            None => self.fetched_uv(python, offline),
        };
        Ok(match (install.installer, uv) {
            (_, Ok(uv)) => Arc::new(Uv::new(uv)),
            (InstallerChoice::Uv, Err(why)) => {
                return Err(LoadError::InvalidInput {
                    what: "installer",
                    detail: format!("`{}` was not found on PATH, {why}", install.uv.display()),
                });
            }
            (_, Err(why)) => {
                tracing::debug!(reason = %why, "installing with pip");
                Arc::new(Pip)
            }
        })
    }

    /// The uv par fetched, when the operator named no other (`--uv`), it is
    /// allowed, and the load may use the network; found or fetched once per
    /// loader, and a failed fetch (for `auto`) remembered in the cache.
    fn fetched_uv(&self, python: &Interpreter, offline: bool) -> Result<PathBuf, String> {
        let install = &self.config.install;
        let cache = match &self.config.component_cache {
            Some(cache) if install.fetch_uv && install.uv == Path::new("uv") => cache,
            _ => return Err("and fetching one is off".into()),
        };
        if let Some(Some(uv)) = self.fetched_uv.get() {
            return Ok(uv.clone());
        }
        if let Some(uv) = uv_fetch::cached(cache) {
            let _ = self.fetched_uv.set(Some(uv.clone()));
            return Ok(uv);
        }
        if offline || install.offline {
            return Err("and an offline load fetches none".into());
        }
        let fetched = self.fetched_uv.get_or_init(|| {
            let fetch = uv_fetch::Fetch {
                cache,
                python: &python.executable,
                index: &install.index,
                env: install.passed_env(),
                timeout: install.venv_timeout,
                insist: install.installer == InstallerChoice::Uv,
            };
            fetch
                .run()
                .inspect_err(|error| {
                    tracing::warn!(version = uv_fetch::UV_VERSION, %error, "Could not fetch uv; installing with pip")
                })
                .ok()
        });
        fetched
            .clone()
            .ok_or_else(|| format!("and fetching uv {} failed", uv_fetch::UV_VERSION))
    }

    /// The bubblewrap installer steps run under, per `--sandbox`; `auto`
    /// falls back to running them unconfined, and says so on every load.
    fn installer_sandbox(&self) -> Result<Option<Bubblewrap>, LoadError> {
        self.bubblewrap_for(self.config.install.sandbox, |why| {
            tracing::warn!(
                reason = %why,
                "Installer sandbox unavailable: setup.py and the installer run with the loader's own \
                 privileges, files and network (install bubblewrap, or pass --sandbox none to silence this)"
            );
        })
        .map_err(LoadError::InstallerSandbox)
    }

    /// Bubblewrap as `choice` says: none for `none`; for `auto` where it does
    /// not work here, none once `unavailable` has been told why; for `bwrap`
    /// where it does not, why as the error.
    fn bubblewrap_for(
        &self,
        choice: SandboxChoice,
        unavailable: impl FnOnce(&str),
    ) -> Result<Option<Bubblewrap>, String> {
        if choice == SandboxChoice::None {
            return Ok(None);
        }
        match (choice, self.bubblewrap()) {
            (_, Ok(found)) => Ok(Some(found.clone())),
            (SandboxChoice::Bwrap, Err(why)) => Err(why.clone()),
            (_, Err(why)) => {
                unavailable(why);
                Ok(None)
            }
        }
    }

    /// The configured bubblewrap, probed on first use and the answer kept.
    fn bubblewrap(&self) -> &Result<Bubblewrap, String> {
        self.bubblewrap
            .get_or_init(|| Bubblewrap::probe(&self.config.install.bwrap))
    }

    /// With trusted keys configured, checks the signature beside `archive`
    /// over `bytes` (the archive's, from its start) and says what it vouches
    /// for; without, `None`. Runs before the guest reads a byte.
    fn check_signature(&self, archive: &Path, bytes: &File) -> Result<Option<Signed>, LoadError> {
        if self.config.trusted_keys.is_empty() {
            return Ok(None);
        }
        self.verify_signature(archive, bytes).map(Some)
    }

    /// Checks the signature beside `archive` over `bytes` against the
    /// trusted keys (none trusted: none valid); what it vouches for.
    fn verify_signature(&self, archive: &Path, bytes: &File) -> Result<Signed, LoadError> {
        let signed = signature::verify(bytes, archive, &self.config.trusted_keys)?;
        tracing::info!(key = %signed.key_id, name = %signed.name, version = %signed.version, "Signature verified");
        Ok(signed)
    }

    /// [`Self::check_signature`] over the archive as it was opened, through
    /// its own descriptor (when no private copy is made).
    fn check_signature_of(&self, archive: &Archive) -> Result<Option<Signed>, LoadError> {
        archive.read_checked(|bytes| self.check_signature(archive.path(), bytes))?
    }

    /// Refuses to start a load that would write to a filesystem with less
    /// free space than the configured floor.
    fn check_free_space(&self) -> Result<(), LoadError> {
        let Some(floor) = self.config.min_free_bytes else {
            return Ok(());
        };
        match free_bytes(self.root.path()) {
            Some(free) if free < floor => Err(LoadError::DiskFull {
                during: "starting the load",
                root: self.root.path().to_owned(),
                detail: format!("{free} bytes free, under the floor of {floor} (min_free_bytes); nothing was written"),
            }),
            _ => Ok(()),
        }
    }

    /// The runner of confined steps under `install`'s settings, as a load's
    /// (for the steps of `par lock` and `par bundle`).
    fn step_runner(
        &self,
        install: &InstallConfig,
        python: &Interpreter,
        installer: &dyn Installer,
    ) -> Result<StepRunner, LoadError> {
        let sandbox = self.installer_sandbox()?;
        let readonly = sandbox
            .as_ref()
            .map(|_| readonly_mounts(install, python, installer))
            .unwrap_or_default();
        Ok(StepRunner::new(self.root.path(), install, installer, sandbox, readonly))
    }

    fn archive_rules(&self) -> ArchiveRules {
        ArchiveRules {
            limits: self.config.limits,
            path_rules: self.config.guest_path_rules,
        }
    }
}

/// Turns a failure caused by a full disk into [`LoadError::DiskFull`], the
/// host's fault: inside the sandbox it shows only as WASI's generic I/O
/// error (so the free space under the root is what tells); an installer step
/// is judged by the session, which looked when the step failed.
fn explain_disk_full(error: LoadError, root: &Path, install_saw_full_disk: bool) -> LoadError {
    let (during, detail) = match &error {
        LoadError::Package(PackageError::Write(failure)) if disk_nearly_full(root) => {
            let entry = failure.entry.as_deref().unwrap_or("?");
            (
                "writing the package tree",
                format!("entry `{entry}`: {}", failure.message),
            )
        }
        LoadError::Install(failure) if install_saw_full_disk => ("installing", failure.to_string()),
        _ => return error,
    };
    LoadError::DiskFull {
        during,
        root: root.to_owned(),
        detail,
    }
}

fn check_app_id(app_id: &str) -> Result<(), LoadError> {
    if is_safe_component(app_id, false) {
        Ok(())
    } else {
        Err(LoadError::InvalidInput {
            what: "app id",
            detail: format!(
                "`{}` must start with a letter or digit and hold only letters, digits, `.`, `_`, `-` (at most 128)",
                app_id.escape_default()
            ),
        })
    }
}

/// What every confined step may read besides the system: the interpreter's
/// prefixes, the installer binary, local find-links directories and the
/// certificate files the operator's environment names.
fn readonly_mounts(install: &InstallConfig, python: &Interpreter, installer: &dyn Installer) -> Vec<PathBuf> {
    const CERT_VARIABLES: [&str; 4] = ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT"];
    let certificates = CERT_VARIABLES
        .into_iter()
        .filter(|name| install.pass_env.iter().any(|passed| passed == name))
        .filter_map(std::env::var_os)
        .map(PathBuf::from);
    let find_links = install
        .index
        .find_links
        .iter()
        .filter(|link| !link.contains("://"))
        .map(PathBuf::from);
    let mut mounts: Vec<PathBuf> = python.prefixes.iter().cloned().chain(installer.program()).collect();
    for path in certificates.chain(find_links) {
        if let Ok(path) = path.canonicalize() {
            mounts.push(path);
        }
    }
    mounts
}
