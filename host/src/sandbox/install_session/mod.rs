//! The `host-installer` import: the host side of one `load`.
//!
//! The guest asks, in order, to publish the tree, ensure the venv, install the
//! requirements, install the agent and verify the entrypoint. Each request is
//! checked here before anything runs, against the protocol ([`Protocol`]) and
//! against the host's own policies. The session records what each step did,
//! and that record, never the guest's report, decides the load's result
//! ([`InstallSession::conclude`]).
//!
//! Here: the session, its record, and serving each call ([`Host`]); the
//! steps themselves are in `venv.rs` (`ensure-venv`, and the editable build
//! it starts), `steps.rs` (`install-requirements`, `install-self`,
//! `verify-import`) and `plan.rs` (the checks on the guest's install plan).
//! Publishing is the file layer's ([`Published`]).

mod plan;
mod steps;
mod venv;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::host_copy::{self, CopyError};
use super::bindings::host_installer::Host;
use super::bindings::types::{
    Entrypoint, InstallError as WitInstallError, InstallPlan, LoadError as GuestLoadError, LoadReport,
    Manifest as GuestManifest, StepReport, VenvInfo,
};
use super::convert::{check_manifest, to_wit_install_error};
use super::convert::{to_wit_copy_error, to_wit_write_failure};
use super::protocol::Protocol;
use crate::exec::confine::Bubblewrap;
use crate::fs::publish::{PublishRequest, Published};
use crate::fs::root::RootDir;
use crate::fs::staging::Staging;
use crate::fs::tree_writes::TreeWrites;
use crate::fs::write_behind::WriteFailure;
use crate::install::editable::EditableBuild;
use crate::install::installer::Installer;
use crate::install::interpreter::Interpreter;
use crate::install::pylock::{GivenLock, Lock};
use crate::install::step::StepRunner;
use crate::types::config::InstallConfig;
use crate::types::error::{
    GuestProtocolError, InstallCall, InstallError, InstallFailure, LoadError, SandboxError, describe,
};
use crate::types::package::Timings;
use crate::types::trust::Signed;
pub(crate) use plan::wanted;
pub(crate) use venv::VenvState;

/// What a load may use: fixed before the guest runs.
#[derive(Debug)]
pub(crate) struct LoadContext {
    /// The loader root, opened once.
    pub root: Arc<RootDir>,
    /// App id chosen by the caller, if any (else the manifest name).
    pub app_id: Option<String>,
    /// The archive's SHA-256: names the tree this load publishes.
    pub digest: String,
    /// What the archive's signature vouches for, when one was required.
    pub signed: Option<Signed>,
    /// The lock the load installs exactly, when it was given one.
    pub lock: Option<GivenLock>,
    /// Most entries the archive may list: also the most executables it can report.
    pub max_entries: u32,
    /// Install settings.
    pub install: InstallConfig,
    /// The back end.
    pub installer: Arc<dyn Installer>,
    /// The base interpreter.
    pub python: Interpreter,
    /// The installer sandbox every step runs in, if any.
    pub sandbox: Option<Bubblewrap>,
    /// What confined steps may read besides the system.
    pub readonly: Vec<PathBuf>,
    /// par's own cache (build environments live there); `None` leaves every
    /// editable build to the installer's own `-e`.
    pub cache_dir: Option<PathBuf>,
    /// The agent's editable wheel a bundle carries: moved to the published
    /// tree and installed, instead of building one.
    pub editable_wheel: Option<PathBuf>,
}

/// What the host observed a load do: the only source of the result's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The agent itself was installed, by a step the host ran and saw succeed.
    pub installed_as_package: bool,
    /// The host's import check's outcome; none when the manifest names no entrypoint.
    pub verified: Option<bool>,
    /// Packages the host's requirements step installed.
    pub requirements_count: u32,
}

/// What happened, step by step, as the host saw it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    /// Every failed install step (venv, requirements, agent), in order.
    pub failures: Vec<InstallError>,
    /// Packages the requirements step installed.
    pub requirements_count: u32,
    /// What the requirements step installed, as the installer accounted for it.
    pub lock: Option<Lock>,
    /// Why the import check failed, if it did.
    pub verify_failure: Option<InstallError>,
    /// Wall-clock per step.
    pub timings: Timings,
}

/// Host state for the `host-installer` import during one guest run.
#[derive(Debug, Default)]
pub(crate) struct InstallSession {
    /// What `host-copy` may copy from and into: until `publish`, during
    /// `extract` and `load` only. First, so its writing thread stops before
    /// the staging tree goes.
    copies: Option<TreeWrites>,
    ctx: Option<LoadContext>,
    runner: Option<StepRunner>,
    staging: Option<Staging>,
    /// The agent's editable build, running since `ensure-venv`.
    editable: Option<EditableBuild>,
    started: Option<Instant>,
    /// Set by `publish`.
    pub published: Option<Published>,
    /// Set by `ensure-venv`.
    pub venv: Option<VenvState>,
    /// Step results.
    pub outcome: Outcome,
    /// CPU time the host spent serving installer calls on the guest's
    /// thread: excluded from the guest's CPU budget.
    pub host_cpu: Duration,
    /// The calls made, checked against the protocol.
    protocol: Protocol,
    /// A failure the host itself decided (a refused requirement line, a
    /// refused publish): the load ends with it, whatever the guest reports.
    verdict: Option<LoadError>,
}

impl InstallSession {
    /// A session for `inspect`/`extract`: every installer call is refused.
    pub(crate) fn unavailable() -> Self {
        Self {
            protocol: Protocol::unavailable(),
            ..Self::default()
        }
    }

    /// The same session, serving `host-copy` from `copies` until `publish`.
    pub(crate) fn with_copies(mut self, copies: Option<TreeWrites>) -> Self {
        self.copies = copies;
        self
    }

    /// Waits for every file `host-copy` was given to write and ends the
    /// writing: what `extract` does before it trusts the tree.
    pub(crate) fn finish_writes(&mut self) -> Result<(), WriteFailure> {
        self.copies.take().map_or(Ok(()), TreeWrites::finish)
    }

    /// A session for `load`, owning the staging directory it will publish.
    pub(crate) fn new(ctx: LoadContext, staging: Staging) -> Self {
        let runner = StepRunner::new(
            ctx.root.path(),
            &ctx.install,
            ctx.installer.as_ref(),
            ctx.sandbox.clone(),
            ctx.readonly.clone(),
        );
        Self {
            runner: Some(runner),
            ctx: Some(ctx),
            staging: Some(staging),
            started: Some(Instant::now()),
            protocol: Protocol::for_load(),
            ..Self::default()
        }
    }

    /// Decides the load's result from the host's own record. The guest's
    /// report is read only for whether it claims success or failure, and a
    /// claim the record contradicts is a protocol violation; a refusal the
    /// guest made before asking the host for anything is its rules at work.
    pub(crate) fn conclude(
        &mut self,
        guest: Result<Result<LoadReport, GuestLoadError>, SandboxError>,
    ) -> Result<Facts, LoadError> {
        if let Some(violation) = self.protocol.violation() {
            return Err(violation.clone().into());
        }
        if let Some(verdict) = self.verdict.take() {
            return Err(verdict);
        }
        let strict = self.ctx.as_ref().is_some_and(|ctx| ctx.install.strict);
        let failures = &self.outcome.failures;
        let strict_failure = self.outcome.verify_failure.as_ref().filter(|_| strict);
        // A report of success carries claims; none of them is read.
        let claimed_failure = guest?.err();
        if let Some(error) = claimed_failure {
            let install_claim = matches!(
                error,
                GuestLoadError::Install(_) | GuestLoadError::InstallFailed(_) | GuestLoadError::VerificationFailed(_)
            );
            if !self.protocol.any_call() && !install_claim {
                return Err(error.into());
            }
            if !failures.is_empty() {
                return Err(LoadError::Install(InstallFailure(failures.clone())));
            }
            if let Some(failure) = strict_failure {
                return Err(LoadError::Verification(InstallFailure(vec![failure.clone()])));
            }
            return Err(GuestProtocolError::FalseFailure(describe_guest_claim(&error)).into());
        }
        if let Some(failed) = self
            .protocol
            .first_failure()
            .filter(|c| *c != InstallCall::VerifyImport)
        {
            return Err(GuestProtocolError::FalseSuccess(format!("`{failed}` failed")).into());
        }
        if strict_failure.is_some() {
            return Err(GuestProtocolError::FalseSuccess("`verify-import` failed under --strict".into()).into());
        }
        if let Some(missing) = self.protocol.first_missing() {
            return Err(GuestProtocolError::FalseSuccess(format!("`{missing}` was never called")).into());
        }
        let has_entrypoint = self.published.as_ref().is_some_and(|p| p.manifest.entrypoint.is_some());
        Ok(Facts {
            installed_as_package: self.protocol.succeeded(InstallCall::InstallSelf),
            verified: has_entrypoint.then(|| self.protocol.succeeded(InstallCall::VerifyImport)),
            requirements_count: self.outcome.requirements_count,
        })
    }

    /// The protocol violation of an `inspect` or `extract` run, if the guest
    /// called the installer there.
    pub(crate) fn violation(&self) -> Option<GuestProtocolError> {
        self.protocol.violation().cloned()
    }

    /// Whether a step failed while the root's disk was full, or said
    /// ENOSPC: the failure is then the host's, not the package's.
    pub(crate) fn saw_disk_full(&self) -> bool {
        self.runner.as_ref().is_some_and(StepRunner::saw_disk_full)
    }

    fn ctx(&self) -> Result<&LoadContext, InstallError> {
        self.ctx
            .as_ref()
            .ok_or_else(|| InstallError::Host("installing is only available during `load`".into()))
    }

    fn runner(&self) -> Result<&StepRunner, InstallError> {
        self.runner
            .as_ref()
            .ok_or_else(|| InstallError::Host("installing is only available during `load`".into()))
    }

    fn publish_inner(&mut self, manifest: GuestManifest, executables: Vec<String>) -> Result<String, InstallError> {
        // Every file given to `host-copy` is written before the tree is
        // published, and nothing after.
        if let Err(failure) = self.finish_writes() {
            return Err(InstallError::Host(failure.to_string()));
        }
        let staging = self
            .staging
            .take()
            .ok_or_else(|| InstallError::Host("the package was already published".into()))?;
        let manifest = match check_manifest(manifest) {
            Ok(manifest) => manifest,
            Err(refusal) => {
                let error = LoadError::from(refusal);
                let message = error.to_string();
                self.verdict = Some(error);
                return Err(InstallError::Host(message));
            }
        };
        let ctx = self.ctx()?;
        let root = Arc::clone(&ctx.root);
        let request = PublishRequest {
            app_id: ctx.app_id.as_deref(),
            digest: &ctx.digest,
            signed: ctx.signed.as_ref(),
            max_entries: ctx.max_entries,
            manifest,
            executables: &executables,
        };
        let published = match Published::publish(&root, request, staging) {
            Ok(published) => published,
            Err(error) => {
                let message = error.to_string();
                if let LoadError::GuestProtocol(violation) = error {
                    self.protocol.violate(violation);
                } else {
                    self.verdict = Some(error);
                }
                return Err(InstallError::Host(message));
            }
        };
        if published.manifest.entrypoint.is_some() {
            self.protocol.plan(InstallCall::VerifyImport);
        }
        let package_id = published.package_id.clone();
        tracing::info!(path = %published.path.display(), package_id = %package_id, "Extracting package to");
        if let Some(started) = self.started {
            self.outcome.timings.extract_ms = started.elapsed().as_millis() as u64;
        }
        self.published = Some(published);
        Ok(package_id)
    }

    fn venv_and_package(&self) -> Result<(&VenvState, &Published), InstallError> {
        match (&self.venv, &self.published) {
            (Some(venv), Some(published)) => Ok((venv, published)),
            _ => Err(InstallError::Host("install requested before ensure-venv".into())),
        }
    }

    /// Serves one import call: the protocol allows it or nothing runs; how
    /// it ended is recorded; the CPU time it took is the host's, not the guest's.
    fn call<T>(
        &mut self,
        call: InstallCall,
        f: impl FnOnce(&mut Self) -> Result<T, InstallError>,
    ) -> Result<T, InstallError> {
        let cpu_before = crate::exec::process::thread_cpu_time();
        let result = match self.protocol.begin(call) {
            Err(violation) => Err(InstallError::Host(violation.to_string())),
            Ok(()) => {
                let result = f(self);
                self.protocol.end(call, result.is_ok());
                if let Err(error) = &result {
                    self.record_failure(call, error);
                }
                result
            }
        };
        self.host_cpu += crate::exec::process::thread_cpu_time().saturating_sub(cpu_before);
        result
    }

    /// Keeps a failed step's error for the result; a refusal or violation,
    /// which decides the load by itself, is not a step failure.
    fn record_failure(&mut self, call: InstallCall, error: &InstallError) {
        if self.verdict.is_some() || self.protocol.violation().is_some() {
            return;
        }
        match call {
            InstallCall::VerifyImport => self.outcome.verify_failure = Some(error.clone()),
            InstallCall::EnsureVenv | InstallCall::InstallRequirements | InstallCall::InstallSelf => {
                self.outcome.failures.push(error.clone());
            }
            InstallCall::Publish => self.verdict = Some(LoadError::Internal(describe(error))),
        }
    }
}

impl host_copy::Host for InstallSession {
    fn copy_stored(&mut self, offset: u64, length: u64, crc32: u32, path: String) -> Result<(), CopyError> {
        let copies = self.copies.as_mut().ok_or(CopyError::NotNow)?;
        copies.copy(offset, length, crc32, &path).map_err(to_wit_copy_error)
    }

    fn write_file(&mut self, path: String, contents: Vec<u8>) -> Result<(), CopyError> {
        let copies = self.copies.as_mut().ok_or(CopyError::NotNow)?;
        copies.write_file(path, contents).map_err(to_wit_copy_error)
    }

    fn flush(&mut self) -> Result<(), host_copy::WriteFailure> {
        self.copies
            .as_ref()
            .map_or(Ok(()), TreeWrites::flush)
            .map_err(to_wit_write_failure)
    }
}

impl Host for InstallSession {
    fn publish(&mut self, manifest: GuestManifest, executables: Vec<String>) -> Result<String, WitInstallError> {
        self.call(InstallCall::Publish, |s| s.publish_inner(manifest, executables))
            .map_err(to_wit_install_error)
    }

    fn ensure_venv(&mut self, plan: InstallPlan) -> Result<VenvInfo, WitInstallError> {
        self.call(InstallCall::EnsureVenv, |s| s.ensure_venv_inner(plan))
            .map_err(to_wit_install_error)
    }

    fn install_requirements(&mut self) -> Result<StepReport, WitInstallError> {
        self.call(InstallCall::InstallRequirements, Self::install_requirements_inner)
            .map_err(to_wit_install_error)
    }

    fn install_self(&mut self) -> Result<StepReport, WitInstallError> {
        self.call(InstallCall::InstallSelf, Self::install_self_inner)
            .map_err(to_wit_install_error)
    }

    fn verify_import(&mut self, entrypoint: Entrypoint) -> Result<(), WitInstallError> {
        self.call(InstallCall::VerifyImport, |s| s.verify_import_inner(entrypoint))
            .map_err(to_wit_install_error)
    }
}

/// What the guest claimed, for the message of a claim the host never saw.
fn describe_guest_claim(error: &GuestLoadError) -> String {
    let kind = LoadError::from(error.clone()).kind();
    format!("{kind} after the host's steps had succeeded")
}
