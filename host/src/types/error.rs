//! Errors a load can end with, split by who is at fault: the package
//! ([`PackageError`], [`LoadError::Sandbox`]) or the host ([`LoadError::Io`] …).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

// Why one archive entry was refused: the rules' own type and wording, the
// guest's too.
pub use par_rules::archive::EntryProblem;
pub use par_rules::archive::{Inconsistency, LimitKind};

use super::spawn::EnvSource;
use super::trust::SignatureError;

/// A fault of the sandboxed guest rather than a rule it applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The guest tried to grow its memory past the cap.
    #[error("the guest exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The cap that was hit.
        limit_bytes: usize,
    },
    /// The guest used more CPU time than its budget.
    #[error("the guest exceeded its CPU time limit of {limit:?}")]
    CpuTimeLimit {
        /// The budget that was used up.
        limit: Duration,
    },
    /// The guest panicked; the message is what it wrote to stderr (escaped).
    #[error("the guest panicked: {0}")]
    Panic(String),
    /// Any other trap (or an instantiation failure).
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// wasmtime could not be set up or could not compile the guest.
    #[error("the WebAssembly engine could not start: {0}")]
    Engine(String),
}

/// An entry that breaks a safety rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeEntry {
    /// The stored name, lossily decoded, control characters escaped.
    pub entry: String,
    /// What is wrong with it.
    pub problem: EntryProblem,
}

/// A limit the archive ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which limit.
    pub limit: LimitKind,
    /// The entry being processed when it tripped, if any.
    pub entry: Option<String>,
    /// The limit's value (bytes, entries, or the ratio).
    pub max: u64,
}

/// What is wrong with `agent.yaml` (or `deploy.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInvalid {
    /// Dotted path of the field at fault, none for document-level errors.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Writing the package tree failed inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFailure {
    /// The entry being written, if any.
    pub entry: Option<String>,
    /// What failed.
    pub message: String,
}

/// An archive whose structures disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInconsistent {
    /// The entry whose records disagree, if the fault is one entry's.
    pub entry: Option<String>,
    /// How they disagree.
    pub inconsistency: Inconsistency,
}

/// A requirement line the host's policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRequirement {
    /// The file it came from, relative to the package root.
    pub file: String,
    /// 1-based line number.
    pub line: u32,
    /// The line (at most 200 characters).
    pub text: String,
    /// Why it is refused.
    pub reason: String,
}

/// A step's subprocess that exited unsuccessfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// `venv`, `requirements`, `self-install`, `verify-import` …
    pub step: String,
    /// Its exit code.
    pub exit_code: i32,
    /// The end of its error output.
    pub stderr: String,
    /// The end of its output.
    pub stdout: String,
}

/// Why an install step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallError {
    /// A requirement line the policy refuses.
    Refused(RefusedRequirement),
    /// The step ran and failed.
    Failed(StepFailure),
    /// The step named ran past its deadline (seconds); its processes were killed.
    TimedOut((String, u64)),
    /// The host could not serve the request.
    Host(String),
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self))
    }
}

impl std::error::Error for InstallError {}

/// The spec's wording for each failure: `Dependency installation failed: …`,
/// `Agent package installation timed out after 120s` …
pub(crate) fn describe(error: &InstallError) -> String {
    let step_name = |step: &str| match step {
        "requirements" => "Dependency installation",
        "self-install" => "Agent package installation",
        "venv" => "Venv creation",
        "verify-import" => "Agent package verification",
        _ => "Installation step",
    };
    match error {
        InstallError::Failed(failure) => {
            let detail = if failure.stderr.trim().is_empty() {
                &failure.stdout
            } else {
                &failure.stderr
            };
            format!("{} failed: {}", step_name(&failure.step), detail.trim())
        }
        InstallError::TimedOut((step, seconds)) => format!("{} timed out after {seconds}s", step_name(step)),
        InstallError::Refused(r) => format!(
            "requirement refused at {}:{} (`{}`): {}",
            r.file,
            r.line,
            r.text.escape_default(),
            r.reason
        ),
        InstallError::Host(message) => message.clone(),
    }
}

/// A package refused by a rule: each variant names the entry or field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Not a readable zip archive.
    #[error("archive unreadable: {0}")]
    ArchiveUnreadable(String),
    /// A zip archive whose structures disagree, so two readers could see
    /// different files in it.
    #[error("archive inconsistent{}: {}", .0.entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default(), .0.inconsistency)]
    ArchiveInconsistent(ArchiveInconsistent),
    /// An entry breaks a safety rule.
    #[error("unsafe entry `{}`: {}", .0.entry, .0.problem)]
    UnsafeEntry(UnsafeEntry),
    /// A size or count limit was exceeded.
    #[error("limit exceeded: {}", .0)]
    LimitExceeded(LimitExceeded),
    /// No `agent.yaml` at the archive root.
    #[error("manifest missing: the archive has no agent.yaml at its root")]
    ManifestMissing,
    /// `agent.yaml` is invalid.
    #[error("invalid manifest{}: {}", .0.field.as_ref().map(|f| format!(" field `{f}`")).unwrap_or_default(), .0.message)]
    ManifestInvalid(ManifestInvalid),
    /// `deploy.json` is invalid.
    #[error("invalid deploy.json{}: {}", .0.field.as_ref().map(|f| format!(" field `{f}`")).unwrap_or_default(), .0.message)]
    DeployInvalid(ManifestInvalid),
    /// Writing the package tree failed inside the sandbox (disk full, or a
    /// write the preopen refused).
    #[error("cannot write the package tree{}: {}", .0.entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default(), .0.message)]
    Write(IoFailure),
    /// `requirements.txt` (or a file it includes) cannot be used.
    #[error("invalid requirements at {}:{} (`{}`): {}", .0.file, .0.line, .0.text.escape_default(), .0.reason)]
    RequirementsInvalid(RefusedRequirement),
    /// The guest returned something the host's own checks refuse.
    #[error("the sandbox returned an invalid {what}: {detail}")]
    InvalidGuestOutput {
        /// Which value (`manifest name`, `executable path` …).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl PackageError {
    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            PackageError::ArchiveUnreadable(_) => "archive-unreadable",
            PackageError::ArchiveInconsistent(_) => "archive-inconsistent",
            PackageError::UnsafeEntry(_) => "unsafe-entry",
            PackageError::LimitExceeded(_) => "limit-exceeded",
            PackageError::ManifestMissing => "manifest-missing",
            PackageError::ManifestInvalid(_) => "manifest-invalid",
            PackageError::DeployInvalid(_) => "deploy-invalid",
            PackageError::Write(_) => "write-failed",
            PackageError::RequirementsInvalid(_) => "requirements-invalid",
            PackageError::InvalidGuestOutput { .. } => "invalid-guest-output",
        }
    }

    /// The entry or field at fault, if the error names one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            PackageError::UnsafeEntry(e) => Some(&e.entry),
            PackageError::ArchiveInconsistent(e) => e.entry.as_deref(),
            PackageError::LimitExceeded(e) => e.entry.as_deref(),
            PackageError::ManifestInvalid(e) | PackageError::DeployInvalid(e) => e.field.as_deref(),
            PackageError::Write(e) => e.entry.as_deref(),
            PackageError::RequirementsInvalid(e) => Some(&e.file),
            _ => None,
        }
    }
}

/// A call of the `host-installer` import, in the order a load makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstallCall {
    /// `publish`
    Publish,
    /// `ensure-venv`
    EnsureVenv,
    /// `install-requirements`
    InstallRequirements,
    /// `install-self`
    InstallSelf,
    /// `verify-import`
    VerifyImport,
}

impl InstallCall {
    /// Every call, in protocol order.
    pub const ORDER: [InstallCall; 5] = [
        InstallCall::Publish,
        InstallCall::EnsureVenv,
        InstallCall::InstallRequirements,
        InstallCall::InstallSelf,
        InstallCall::VerifyImport,
    ];

    /// The name the WIT gives it.
    pub fn name(self) -> &'static str {
        match self {
            InstallCall::Publish => "publish",
            InstallCall::EnsureVenv => "ensure-venv",
            InstallCall::InstallRequirements => "install-requirements",
            InstallCall::InstallSelf => "install-self",
            InstallCall::VerifyImport => "verify-import",
        }
    }
}

impl fmt::Display for InstallCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the sandboxed guest broke the `host-installer` protocol: the guest
/// is at fault (it may be under an attacker's control), so the load fails
/// as a package refusal and nothing it created is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestProtocolError {
    /// An installer call during `inspect` or `extract`.
    #[error("`{call}` was called outside `load`")]
    Unavailable {
        /// The call.
        call: InstallCall,
    },
    /// A call made twice.
    #[error("`{call}` was called twice")]
    Repeated {
        /// The call.
        call: InstallCall,
    },
    /// A call made before one that must precede it, or after one that must follow it.
    #[error("`{call}` was called out of order (around `{before}`)")]
    OutOfOrder {
        /// The call.
        call: InstallCall,
        /// The call it should have come after, or did come after wrongly.
        before: InstallCall,
    },
    /// An install step the checked plan does not call for.
    #[error("`{call}` was called, but the checked plan does not call for it")]
    NotPlanned {
        /// The call.
        call: InstallCall,
    },
    /// A call that needs an earlier step's success, after that step failed.
    #[error("`{call}` was called after `{failed}` failed")]
    AfterFailure {
        /// The call.
        call: InstallCall,
        /// The step that had failed.
        failed: InstallCall,
    },
    /// `verify-import` asked for another entrypoint than the manifest names.
    #[error("`verify-import` asked for `{asked}`, which the checked manifest does not name")]
    WrongEntrypoint {
        /// What the guest asked for (escaped, at most 200 characters).
        asked: String,
    },
    /// The plan contradicts the published tree.
    #[error("the install plan contradicts the package tree: {0}")]
    PlanMismatch(String),
    /// A list or string larger than anything a well-behaved guest sends.
    #[error("`{call}` sent {what} of {size}, over the limit of {max}")]
    TooLarge {
        /// The call.
        call: InstallCall,
        /// Which argument (`requirement lines`, `a requirement line's bytes` …).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The most the host takes.
        max: usize,
    },
    /// The guest reported a successful load that the host's record contradicts.
    #[error("the guest reported success, but {0}")]
    FalseSuccess(String),
    /// The guest reported a failure of a step that the host saw succeed, or never ran.
    #[error("the guest reported `{0}`, which the host never saw")]
    FalseFailure(String),
}

impl GuestProtocolError {
    /// Refuses a list or string larger than anything a well-behaved guest
    /// sends: [`GuestProtocolError::TooLarge`] when `size` is over `max`.
    pub(crate) fn check_size(call: InstallCall, what: &'static str, size: usize, max: usize) -> Result<(), Self> {
        if size > max {
            return Err(GuestProtocolError::TooLarge { call, what, size, max });
        }
        Ok(())
    }

    /// The call at fault, if the error is about one call.
    pub fn call(&self) -> Option<InstallCall> {
        match self {
            GuestProtocolError::Unavailable { call }
            | GuestProtocolError::Repeated { call }
            | GuestProtocolError::OutOfOrder { call, .. }
            | GuestProtocolError::NotPlanned { call }
            | GuestProtocolError::AfterFailure { call, .. }
            | GuestProtocolError::TooLarge { call, .. } => Some(*call),
            GuestProtocolError::WrongEntrypoint { .. } => Some(InstallCall::VerifyImport),
            GuestProtocolError::PlanMismatch(_) => Some(InstallCall::EnsureVenv),
            GuestProtocolError::FalseSuccess(_) | GuestProtocolError::FalseFailure(_) => None,
        }
    }
}

/// Installation errors in the order the steps ran, shown as the spec does:
/// `Package installation failed: <each error joined by '; '>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallFailure(pub Vec<InstallError>);

impl InstallFailure {
    /// Whether a host-side problem (not the package) caused every error.
    fn host_only(&self) -> bool {
        self.0.iter().all(|e| matches!(e, InstallError::Host(_)))
    }
}

impl fmt::Display for InstallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(describe).collect();
        f.write_str(&parts.join("; "))
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {}", self.limit, self.max)?;
        if let Some(entry) = &self.entry {
            write!(f, " at entry `{entry}`")?;
        }
        Ok(())
    }
}

/// A directory par will not keep state in: another user owns it or can
/// write it (or a directory above it), so it could be swapped or filled
/// between par's checks and its use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` {reason}", path.display())]
pub struct UnsafeDir {
    /// The directory at fault.
    pub path: PathBuf,
    /// Why, naming its owner or mode.
    pub reason: String,
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The package was refused by a rule.
    #[error("package refused: {0}")]
    Package(#[from] PackageError),
    /// The sandboxed guest trapped, ran out of memory or time, or panicked.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// Installing the requirements or the agent failed (Scenarios B, C, D).
    #[error("Package installation failed: {0}")]
    Install(InstallFailure),
    /// The entrypoint did not import and `strict` was set.
    #[error("{0}")]
    Verification(InstallFailure),
    /// The sandboxed guest broke the installer protocol (see [`GuestProtocolError`]).
    #[error("the sandboxed guest broke the installer protocol: {0}")]
    GuestProtocol(#[from] GuestProtocolError),
    /// A host-side file operation failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What the host was doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The disk holding the root filled up while writing the package tree or installing.
    #[error("no space left on the device holding `{}` while {during}: {detail}", root.display())]
    DiskFull {
        /// `writing the package tree`, `installing`, or `starting the load` (under `min_free_bytes`).
        during: &'static str,
        /// The loader root.
        root: PathBuf,
        /// What failed, as reported.
        detail: String,
    },
    /// `--sandbox bwrap` was asked for, but bubblewrap is missing or cannot
    /// create a sandbox on this machine.
    #[error("installer sandbox unavailable: {0}")]
    InstallerSandbox(String),
    /// The root, one of its areas, or a directory above it could be changed
    /// by another user: par refuses to use it rather than trust what is there.
    #[error("unsafe root: {0}; use a root this user made, closed to others (see --root)")]
    RootUnsafe(UnsafeDir),
    /// Trusted keys are configured and the package's signature is missing,
    /// invalid, by another key, or names another package.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// The lock given for the load cannot be used, or does not satisfy the
    /// package's requirements.
    #[error("{0}")]
    Lock(#[from] LockRefused),
    /// An offline bundle holds something it may not, lacks a member, or
    /// holds a file whose hash differs from its lock's.
    #[error("{0}")]
    Bundle(#[from] BundleRefused),
    /// A push or pull failed, or a registry gave what par refuses.
    #[error("{0}")]
    Registry(#[from] crate::types::registry::RegistryError),
    /// A bug or runtime failure in the host itself.
    #[error("internal error: {0}")]
    Internal(String),
    /// A caller-supplied value is unusable (for example an app id that is not a safe name).
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl LoadError {
    /// Builds an [`LoadError::Io`] with its context.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LoadError::Io { action, path, source }
    }

    /// One failed installer step as [`LoadError::Install`].
    pub(crate) fn install(error: InstallError) -> Self {
        LoadError::Install(InstallFailure(vec![error]))
    }

    /// Whether the package (not the host) is to blame: the CLI's "bad package" exit code.
    pub fn is_package_fault(&self) -> bool {
        match self {
            LoadError::Install(failure) | LoadError::Verification(failure) => !failure.host_only(),
            LoadError::Package(_)
            | LoadError::GuestProtocol(_)
            | LoadError::Signature(_)
            | LoadError::Lock(_)
            | LoadError::Bundle(_) => true,
            LoadError::Sandbox(error) => !matches!(error, SandboxError::Engine(_)),
            LoadError::Registry(error) => error.is_content_fault(),
            LoadError::Io { .. }
            | LoadError::DiskFull { .. }
            | LoadError::InvalidInput { .. }
            | LoadError::InstallerSandbox(_)
            | LoadError::RootUnsafe(_)
            | LoadError::Internal(_) => false,
        }
    }

    /// The entry, field or import call at fault, if the error names one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            LoadError::Package(e) => e.subject(),
            LoadError::GuestProtocol(e) => e.call().map(InstallCall::name),
            LoadError::Lock(e) => Some(e.subject()),
            LoadError::Bundle(e) => Some(&e.member),
            LoadError::Registry(e) => e.subject(),
            _ => None,
        }
    }

    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Package(e) => e.kind(),
            LoadError::Sandbox(SandboxError::MemoryLimit { .. }) => "guest-memory-limit",
            LoadError::Sandbox(SandboxError::CpuTimeLimit { .. }) => "guest-cpu-time-limit",
            LoadError::Sandbox(SandboxError::Panic(_)) => "guest-panic",
            LoadError::Sandbox(SandboxError::Trap(_)) => "guest-trap",
            LoadError::Sandbox(SandboxError::Engine(_)) => "engine",
            LoadError::GuestProtocol(_) => "guest-protocol",
            LoadError::Signature(e) => e.kind(),
            LoadError::Lock(e) => e.kind(),
            LoadError::Bundle(_) => "bundle-invalid",
            LoadError::Registry(e) => e.kind(),
            LoadError::Io { .. } => "io",
            LoadError::InvalidInput { .. } => "invalid-input",
            LoadError::Internal(_) => "internal",
            LoadError::RootUnsafe(_) => "root-unsafe",
            LoadError::InstallerSandbox(_) => "installer-sandbox",
            LoadError::DiskFull { .. } => "disk-full",
            LoadError::Install(_) => "install-failed",
            LoadError::Verification(_) => "verification-failed",
        }
    }
}

/// Why the lock given for a load (`--lock`) was refused: nothing was installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockRefused {
    /// The lock cannot be read, or one of its entries breaks a rule of the
    /// format or of the host's policy.
    #[error("lock `{}` refused at {entry}: {problem}", lock.display())]
    Invalid {
        /// The lock file.
        lock: PathBuf,
        /// The entry at fault (`packages[3] (requests)`), or the file.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The lock does not satisfy one of the package's requirement lines.
    #[error("lock `{}` does not satisfy {}:{} (`{}`): {}", lock.display(), requirement.file, requirement.line, requirement.text.escape_default(), requirement.reason)]
    Unsatisfied {
        /// The lock file.
        lock: PathBuf,
        /// The requirement line it does not satisfy, and how it falls short.
        requirement: RefusedRequirement,
    },
}

impl LockRefused {
    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            LockRefused::Invalid { .. } => "lock-invalid",
            LockRefused::Unsatisfied { .. } => "lock-unsatisfied",
        }
    }

    /// The lock's entry, or the requirement line, at fault.
    pub fn subject(&self) -> &str {
        match self {
            LockRefused::Invalid { entry, .. } => entry,
            LockRefused::Unsatisfied { requirement, .. } => &requirement.text,
        }
    }
}

/// Why an offline bundle was refused: nothing was installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle `{}` refused at {member}: {problem}", bundle.display())]
#[non_exhaustive]
pub struct BundleRefused {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The member at fault (`wheels/x-1.0-py3-none-any.whl`, `pylock.toml`),
    /// or the lock entry (`pylock.toml packages[2] (x)`).
    pub member: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The guest's reason to refuse a package's `.env` (its text escaped and capped by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileRefused {
    /// The 1-based line at fault (0: the file as a whole).
    pub line: u32,
    /// The variable at fault, when the line names one.
    pub key: Option<String>,
    /// Why.
    pub reason: String,
}

impl fmt::Display for EnvFileRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Why a start without a command has no default to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoCommand {
    /// The manifest names no `http_server`.
    #[error("the manifest names no `http_server` to serve: give the command after `--`")]
    NoHttpServer,
    /// The default serves on the first socket, and none was asked for.
    #[error(
        "`http_server` is served on the first socket: give one with `--listen NAME=ADDR` or deploy.json's `expose`"
    )]
    NoSocket,
    /// The venv has no uvicorn to serve the app with.
    #[error("`http_server` is served with uvicorn, which the venv does not hold: add it to the package's requirements")]
    NoUvicorn,
}

/// Why an agent could not be started, or did not become ready (it is
/// stopped then). Caller-supplied values never appear here: they may be secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A variable the package or the caller may not set.
    #[error("{from} sets `{key}`, which is refused: {reason}")]
    EnvRefused {
        /// The variable.
        key: String,
        /// Who set it.
        from: EnvSource,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A value that cannot be an environment variable's: not a string, a
    /// number or a boolean in `agent.yaml`, or holding a NUL, or too long.
    #[error(
        "{from}: the value of `{key}` cannot be a variable's (a string, number or boolean, without NUL, at most 32 KiB)"
    )]
    EnvValue {
        /// The variable.
        key: String,
        /// Who set it.
        from: EnvSource,
    },
    /// A package's `${NAME}` placeholders refer back to themselves.
    #[error("{from}: `{}` refers to itself through {}", chain.first().map_or("", String::as_str), chain.join(" -> "))]
    EnvCycle {
        /// The variables of the cycle, the first one again at the end.
        chain: Vec<String>,
        /// Who set the first.
        from: EnvSource,
    },
    /// The package's `.env` was refused while parsing it in the sandbox.
    #[error("the package's .env: {0}")]
    EnvFile(EnvFileRefused),
    /// Parsing the package's `.env` in the sandbox failed (the guest
    /// trapped, ran out of time, or broke the protocol).
    #[error("reading the package's .env in the sandbox: {0}")]
    EnvFileSandbox(Box<LoadError>),
    /// No command was given, and the package's default cannot be started.
    #[error("no command to run: {0}")]
    NoCommand(NoCommand),
    /// The spec itself is unusable (no command, a duplicate socket name …).
    #[error("invalid spawn spec: {0}")]
    InvalidSpec(String),
    /// A socket could not be bound.
    #[error("cannot bind socket `{name}` to {addr}: {source}")]
    Bind {
        /// The socket's name.
        name: String,
        /// The address asked for.
        addr: super::spawn::Endpoint,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `--sandbox bwrap` was asked for and bubblewrap cannot confine here.
    #[error("agent sandbox unavailable: {0}")]
    SandboxUnavailable(String),
    /// The agent could not be started, or waited for.
    #[error("{action}: {source}")]
    Io {
        /// What the host was doing.
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The agent exited before it became ready.
    #[error("the agent exited before it was ready: {status}")]
    ExitedEarly {
        /// How it ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
        status: String,
    },
    /// The agent did not become ready in time; it was stopped.
    #[error("the agent was not ready after {}s; it was stopped", timeout.as_secs_f64())]
    NotReady {
        /// The limit that passed.
        timeout: Duration,
    },
}

impl SpawnError {
    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            SpawnError::EnvRefused { .. } => "env-refused",
            SpawnError::EnvValue { .. } | SpawnError::EnvCycle { .. } | SpawnError::EnvFile(_) => "env-invalid",
            SpawnError::EnvFileSandbox(error) => error.kind(),
            SpawnError::InvalidSpec(_) => "invalid-input",
            SpawnError::NoCommand(_) => "no-command",
            SpawnError::Bind { .. } => "bind",
            SpawnError::SandboxUnavailable(_) => "agent-sandbox",
            SpawnError::Io { .. } => "io",
            SpawnError::ExitedEarly { .. } => "exited-before-ready",
            SpawnError::NotReady { .. } => "not-ready",
        }
    }

    /// The variable or socket at fault, if the error names one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            SpawnError::EnvRefused { key, .. } | SpawnError::EnvValue { key, .. } => Some(key),
            SpawnError::EnvFile(refused) => refused.key.as_deref(),
            SpawnError::EnvCycle { chain, .. } => chain.first().map(String::as_str),
            SpawnError::Bind { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether the package (its manifest, its `.env`, its code) is to blame.
    pub fn is_package_fault(&self) -> bool {
        match self {
            SpawnError::EnvRefused { from, .. } => *from != EnvSource::Caller,
            SpawnError::EnvValue { from, .. } => *from != EnvSource::Caller,
            SpawnError::EnvFile(_)
            | SpawnError::EnvCycle { .. }
            | SpawnError::ExitedEarly { .. }
            | SpawnError::NotReady { .. } => true,
            SpawnError::EnvFileSandbox(error) => error.is_package_fault(),
            _ => false,
        }
    }
}

/// Why `list`, `remove` or `gc` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// `remove` or `sbom` named an app (or version) with nothing under the root.
    #[error("no deployment of `{app_id}`{} under the root", version.as_deref().map(|v| format!(" version `{v}`")).unwrap_or_default())]
    NotFound {
        /// The app asked for.
        app_id: String,
        /// The version asked for, if one was.
        version: Option<String>,
    },
    /// `remove` would take what a running agent uses.
    #[error("`{app_id}` is in use by running agents (pids {}); stop them first, or pass --force", pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))]
    InUse {
        /// The app.
        app_id: String,
        /// Host pids of the agents using it.
        pids: Vec<u32>,
    },
    /// A running agent could not be stopped (`remove --force`).
    #[error("cannot stop agent {pid}: {detail}")]
    Stop {
        /// Its host pid.
        pid: u32,
        /// What went wrong.
        detail: String,
    },
    /// A file operation under the root failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What par was doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A caller-supplied value is unusable (an app id that is not a safe name).
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The root could be changed by another user (see [`LoadError::RootUnsafe`]).
    #[error("unsafe root: {0}")]
    RootUnsafe(UnsafeDir),
}

impl LifecycleError {
    /// Builds a [`LifecycleError::Io`] with its context.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LifecycleError::Io { action, path, source }
    }

    /// A stable, kebab-case name for machine output.
    pub fn kind(&self) -> &'static str {
        match self {
            LifecycleError::NotFound { .. } => "not-found",
            LifecycleError::InUse { .. } => "in-use",
            LifecycleError::Stop { .. } => "stop-failed",
            LifecycleError::Io { .. } => "io",
            LifecycleError::InvalidInput { .. } => "invalid-input",
            LifecycleError::RootUnsafe(_) => "root-unsafe",
        }
    }

    /// The app at fault, if the error names one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            LifecycleError::NotFound { app_id, .. } | LifecycleError::InUse { app_id, .. } => Some(app_id),
            _ => None,
        }
    }
}

impl From<LoadError> for LifecycleError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Io { action, path, source } => LifecycleError::Io { action, path, source },
            LoadError::InvalidInput { what, detail } => LifecycleError::InvalidInput { what, detail },
            LoadError::RootUnsafe(problem) => LifecycleError::RootUnsafe(problem),
            other => LifecycleError::Io {
                action: "cannot continue",
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}
