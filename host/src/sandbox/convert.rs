//! The boundary's conversions: values the guest returns become the crate's
//! own types only after the host's own checks.

use std::collections::BTreeMap;

use par_rules::env::{MAX_ENV_VARS, MAX_VALUE_BYTES, package_refusal};
use par_rules::names::{MAX_LABELS, MAX_SOCKETS, is_entrypoint, is_label, is_safe_component, is_socket_name};

use super::bindings::host_copy::{CopyError, WriteFailure as WitWriteFailure};
use super::bindings::types as wit;
use super::bindings::types::{
    Deploy as GuestDeploy, Entrypoint as GuestEntrypoint, Limits as WitLimits, Manifest as GuestManifest,
};
use crate::exec::output::escape_controls;
use crate::fs::tree_writes::{CopyRefusal, problem_refusal};
use crate::fs::write_behind::WriteFailure;
use crate::install::pylock::{Claim, PylockArtifact, PylockDirectory, PylockVcs};
use crate::types::error::{
    ArchiveInconsistent, EntryProblem, EnvFileRefused, Inconsistency, InstallError, InstallFailure, IoFailure,
    LimitExceeded, LimitKind, LoadError, ManifestInvalid, PackageError, RefusedRequirement, StepFailure, UnsafeEntry,
};
use crate::types::package::{DataAccess, Deploy, Entrypoint, Manifest, Permissions};

/// The limits as the WIT carries them to the guest.
pub(crate) fn to_wit_limits(limits: par_rules::limits::Limits) -> WitLimits {
    let par_rules::limits::Limits {
        max_entries,
        max_total_bytes,
        max_file_bytes,
        max_ratio,
        ratio_min_bytes,
        max_manifest_bytes,
    } = limits;
    WitLimits {
        max_entries,
        max_total_bytes,
        max_file_bytes,
        max_ratio,
        ratio_min_bytes,
        max_manifest_bytes,
    }
}

/// Longest text (a `.env` key or reason, a lock entry or problem) from the guest kept in an error.
const MAX_GUEST_TEXT: usize = 200;

/// Largest manifest document (as JSON) the host accepts back from the guest.
const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Re-checks the guest's manifest: names and versions become paths, modules become argv.
pub(crate) fn check_manifest(manifest: GuestManifest) -> Result<Manifest, PackageError> {
    let invalid = |what, detail: String| PackageError::InvalidGuestOutput { what, detail };
    if !is_safe_component(&manifest.name, false) {
        return Err(invalid("manifest name", manifest.name.escape_default().to_string()));
    }
    if !is_safe_component(&manifest.version, true) {
        return Err(invalid(
            "manifest version",
            manifest.version.escape_default().to_string(),
        ));
    }
    let entrypoint = checked_entrypoint("entrypoint", manifest.entrypoint, false)?;
    let http_server = checked_entrypoint("http_server", manifest.http_server, true)?;
    let a2a_http_server = checked_entrypoint("a2a.http_server", manifest.a2a_http_server, true)?;
    let permissions = match manifest.permissions {
        None => None,
        Some(p) => Some(Permissions {
            required: checked_labels("permissions.required", p.required)?,
            optional: checked_labels("permissions.optional", p.optional)?,
        }),
    };
    let data_access = match manifest.data_access {
        None => None,
        Some(d) => Some(DataAccess {
            oauth_providers: checked_labels("data_access.oauth_providers", d.oauth_providers)?,
            user_data: checked_labels("data_access.user_data", d.user_data)?,
            external_apis: checked_labels("data_access.external_apis", d.external_apis)?,
        }),
    };
    if manifest.document.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(
            "manifest document",
            format!("{} bytes", manifest.document.len()),
        ));
    }
    let document: serde_json::Value =
        serde_json::from_str(&manifest.document).map_err(|e| invalid("manifest document", e.to_string()))?;
    if !document.is_object() {
        return Err(invalid("manifest document", "not a JSON object".into()));
    }
    Ok(Manifest {
        name: manifest.name,
        version: manifest.version,
        entrypoint,
        http_server,
        a2a_http_server,
        permissions,
        data_access,
        deploy: manifest.deploy.map(checked_deploy).transpose()?,
        document,
    })
}

/// `deploy.json` as the guest read it, under the guest's rules again: its
/// names become sockets and variables.
fn checked_deploy(deploy: GuestDeploy) -> Result<Deploy, PackageError> {
    let invalid = |what, detail: &str| PackageError::InvalidGuestOutput {
        what,
        detail: detail
            .chars()
            .take(MAX_GUEST_TEXT)
            .collect::<String>()
            .escape_default()
            .to_string(),
    };
    if deploy.expose.len() > MAX_SOCKETS || deploy.ports.len() > MAX_SOCKETS {
        return Err(invalid("deploy.json surfaces", "too many"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(bad) = deploy
        .expose
        .iter()
        .find(|name| !is_socket_name(name) || !seen.insert(name.as_str()))
    {
        return Err(invalid("deploy.json expose", bad));
    }
    seen.clear();
    if let Some((bad, _)) = deploy
        .ports
        .iter()
        .find(|(name, port)| !is_socket_name(name) || *port == 0 || !seen.insert(name.as_str()))
    {
        return Err(invalid("deploy.json ports", bad));
    }
    if deploy.environment.len() > MAX_ENV_VARS {
        return Err(invalid("deploy.json environment", "too many variables"));
    }
    let mut environment = Vec::with_capacity(deploy.environment.len());
    for var in deploy.environment {
        if package_refusal(&var.key).is_some() || var.value.contains('\0') || var.value.len() > MAX_VALUE_BYTES {
            return Err(invalid("deploy.json environment", &var.key));
        }
        environment.push((var.key, var.value));
    }
    Ok(Deploy {
        expose: deploy.expose,
        ports: deploy.ports,
        multiplex: deploy.multiplex,
        environment,
    })
}

/// A list of names from `permissions` or `data_access`, as the guest's rule says.
fn checked_labels(what: &'static str, labels: Vec<String>) -> Result<Vec<String>, PackageError> {
    if labels.len() > MAX_LABELS {
        return Err(PackageError::InvalidGuestOutput {
            what,
            detail: format!("{} entries", labels.len()),
        });
    }
    match labels.iter().find(|label| !is_label(label)) {
        Some(bad) => Err(PackageError::InvalidGuestOutput {
            what,
            detail: bad
                .chars()
                .take(MAX_GUEST_TEXT)
                .collect::<String>()
                .escape_default()
                .to_string(),
        }),
        None => Ok(labels),
    }
}

/// A module path and attribute the host will put in an argv: identifiers
/// only, and an attribute when `app` (a server is handed an object).
fn checked_entrypoint(
    what: &'static str,
    entrypoint: Option<GuestEntrypoint>,
    app: bool,
) -> Result<Option<Entrypoint>, PackageError> {
    let Some(ep) = entrypoint else {
        return Ok(None);
    };
    if !is_entrypoint(&ep.module, ep.attr.as_deref()) || (app && ep.attr.is_none()) {
        return Err(PackageError::InvalidGuestOutput {
            what,
            detail: format!("{}:{:?}", ep.module.escape_default(), ep.attr),
        });
    }
    Ok(Some(Entrypoint {
        module: ep.module,
        attr: ep.attr,
    }))
}

impl From<wit::LoadError> for LoadError {
    fn from(error: wit::LoadError) -> Self {
        let package = |e: PackageError| LoadError::Package(e);
        match error {
            wit::LoadError::ArchiveUnreadable(message) => package(PackageError::ArchiveUnreadable(message)),
            wit::LoadError::ArchiveInconsistent(e) => package(PackageError::ArchiveInconsistent(ArchiveInconsistent {
                entry: e.entry,
                inconsistency: inconsistency(e.inconsistency),
            })),
            wit::LoadError::UnsafeEntry(e) => package(PackageError::UnsafeEntry(UnsafeEntry {
                entry: e.entry,
                problem: entry_problem(e.problem),
            })),
            wit::LoadError::LimitExceeded(e) => package(PackageError::LimitExceeded(LimitExceeded {
                limit: limit_kind(e.limit),
                entry: e.entry,
                max: e.max,
            })),
            wit::LoadError::ManifestMissing => package(PackageError::ManifestMissing),
            wit::LoadError::ManifestInvalid(e) => package(PackageError::ManifestInvalid(ManifestInvalid {
                field: e.field,
                message: e.message,
            })),
            wit::LoadError::DeployInvalid(e) => package(PackageError::DeployInvalid(ManifestInvalid {
                field: e.field,
                message: e.message,
            })),
            wit::LoadError::Io(e) => package(PackageError::Write(IoFailure {
                entry: e.entry,
                message: e.message,
            })),
            wit::LoadError::RequirementsInvalid(e) => package(PackageError::RequirementsInvalid(refused_from(e))),
            wit::LoadError::Install(e) => LoadError::install(install_error_from(e)),
            wit::LoadError::InstallFailed(errors) => {
                LoadError::Install(InstallFailure(errors.into_iter().map(install_error_from).collect()))
            }
            wit::LoadError::VerificationFailed(e) => {
                LoadError::Verification(InstallFailure(vec![install_error_from(e)]))
            }
        }
    }
}

fn refused_from(r: wit::RefusedRequirement) -> RefusedRequirement {
    RefusedRequirement {
        file: r.file,
        line: r.line,
        text: r.text,
        reason: r.reason,
    }
}

/// An install error the guest reported, in the crate's own type (only ever
/// described: the host's own record decides a load).
fn install_error_from(error: wit::InstallError) -> InstallError {
    match error {
        wit::InstallError::Refused(r) => InstallError::Refused(refused_from(r)),
        wit::InstallError::Failed(f) => InstallError::Failed(StepFailure {
            step: f.step,
            exit_code: f.exit_code,
            stderr: f.stderr,
            stdout: f.stdout,
        }),
        wit::InstallError::TimedOut(t) => InstallError::TimedOut(t),
        wit::InstallError::Host(message) => InstallError::Host(message),
    }
}

/// An install error as the WIT carries it back to the guest.
pub(crate) fn to_wit_install_error(error: InstallError) -> wit::InstallError {
    match error {
        InstallError::Refused(r) => wit::InstallError::Refused(wit::RefusedRequirement {
            file: r.file,
            line: r.line,
            text: r.text,
            reason: r.reason,
        }),
        InstallError::Failed(f) => wit::InstallError::Failed(wit::StepFailure {
            step: f.step,
            exit_code: f.exit_code,
            stderr: f.stderr,
            stdout: f.stdout,
        }),
        InstallError::TimedOut(t) => wit::InstallError::TimedOut(t),
        InstallError::Host(message) => wit::InstallError::Host(message),
    }
}

fn limit_kind(kind: wit::LimitKind) -> LimitKind {
    match kind {
        wit::LimitKind::Entries => LimitKind::Entries,
        wit::LimitKind::TotalBytes => LimitKind::TotalBytes,
        wit::LimitKind::FileBytes => LimitKind::FileBytes,
        wit::LimitKind::CompressionRatio => LimitKind::CompressionRatio,
        wit::LimitKind::ManifestBytes => LimitKind::ManifestBytes,
    }
}

fn entry_problem(problem: wit::EntryProblem) -> EntryProblem {
    use wit::EntryProblem as W;
    match problem {
        W::AbsolutePath => EntryProblem::AbsolutePath,
        W::ParentComponent => EntryProblem::ParentComponent,
        W::CurrentComponent => EntryProblem::CurrentComponent,
        W::EmptyComponent => EntryProblem::EmptyComponent,
        W::Backslash => EntryProblem::Backslash,
        W::DriveLetter => EntryProblem::DriveLetter,
        W::ControlCharacter => EntryProblem::ControlCharacter,
        W::NotUtf8 => EntryProblem::NotUtf8,
        W::TooDeep => EntryProblem::TooDeep,
        W::ComponentTooLong => EntryProblem::ComponentTooLong,
        W::Symlink => EntryProblem::Symlink,
        W::HardLink => EntryProblem::HardLink,
        W::SpecialFile(kind) => EntryProblem::SpecialFile(kind),
        W::Duplicate(first) => EntryProblem::Duplicate(first),
        W::Encrypted => EntryProblem::Encrypted,
        W::UnsupportedCompression(method) => EntryProblem::UnsupportedCompression(method),
        W::Corrupt(message) => EntryProblem::Corrupt(message),
        W::NotInBundle => EntryProblem::NotInBundle,
    }
}

fn inconsistency(inconsistency: wit::Inconsistency) -> Inconsistency {
    use wit::Inconsistency as W;
    match inconsistency {
        W::LocalName => Inconsistency::LocalName,
        W::LocalFlags => Inconsistency::LocalFlags,
        W::LocalMethod => Inconsistency::LocalMethod,
        W::LocalCrc => Inconsistency::LocalCrc,
        W::LocalSizes => Inconsistency::LocalSizes,
        W::Descriptor => Inconsistency::Descriptor,
        W::StoredWithDescriptor => Inconsistency::StoredWithDescriptor,
        W::MissingLocalHeader => Inconsistency::MissingLocalHeader,
        W::UnlistedBytes => Inconsistency::UnlistedBytes,
        W::Overlap => Inconsistency::Overlap,
        W::TrailingBytes => Inconsistency::TrailingBytes,
        W::WrongOffset => Inconsistency::WrongOffset,
        W::CentralDirectory => Inconsistency::CentralDirectory,
    }
}

/// The guest's refusal of a `.env`, its text escaped and capped: it is
/// untrusted and ends up in logs and errors.
pub(crate) fn env_file_refused(error: wit::EnvFileError) -> EnvFileRefused {
    EnvFileRefused {
        line: error.line,
        key: error.key.map(|key| escape_controls(&key, MAX_GUEST_TEXT)),
        reason: escape_controls(&error.reason, MAX_GUEST_TEXT),
    }
}

/// The guest's reading of a lock, as claims the host checks again
/// ([`crate::install::pylock::Lock::from_claims`]).
pub(crate) fn lock_claims(packages: Vec<wit::LockedPackage>) -> Vec<Claim> {
    let file = |file: wit::LockedFile| {
        let (url, path) = match file.location {
            wit::LockedLocation::Url(url) => (Some(url), None),
            wit::LockedLocation::Path(path) => (None, Some(path)),
        };
        PylockArtifact {
            url,
            path,
            hashes: BTreeMap::from([("sha256".to_owned(), file.sha256)]),
        }
    };
    packages
        .into_iter()
        .map(|package| {
            let mut claim = Claim {
                name: package.name,
                version: package.version,
                index: package.index,
                ..Claim::default()
            };
            match package.source {
                wit::LockedSource::Distributions(files) => {
                    claim.wheels = (!files.wheels.is_empty()).then(|| files.wheels.into_iter().map(file).collect());
                    claim.sdist = files.sdist.map(file);
                }
                wit::LockedSource::Archive(archive) => claim.archive = Some(file(archive)),
                wit::LockedSource::Directory(directory) => {
                    claim.directory = Some(PylockDirectory {
                        path: directory.path,
                        editable: Some(directory.editable),
                    })
                }
                wit::LockedSource::Vcs(vcs) => {
                    claim.vcs = Some(PylockVcs {
                        kind: vcs.kind,
                        url: Some(vcs.url),
                        commit_id: vcs.commit,
                    })
                }
            }
            claim
        })
        .collect()
}

/// The guest's reason to refuse a lock: the entry and the problem, escaped and capped.
pub(crate) fn lock_refused(error: wit::LockError) -> (String, String) {
    (
        escape_controls(&error.entry, MAX_GUEST_TEXT),
        escape_controls(&error.problem, MAX_GUEST_TEXT),
    )
}

/// A refused or failed native copy, as the guest sees it.
pub(crate) fn to_wit_copy_error(refusal: CopyRefusal) -> CopyError {
    match refusal {
        CopyRefusal::OutOfRange => CopyError::OutOfRange,
        CopyRefusal::OverLimit(limit) => CopyError::OverLimit(limit),
        CopyRefusal::RefusedPath => CopyError::RefusedPath,
        CopyRefusal::ChecksumMismatch(actual) => CopyError::ChecksumMismatch(actual),
        CopyRefusal::Io(message) => CopyError::Io(message),
    }
}

/// A file the host could not write behind the guest, as the guest sees it.
pub(crate) fn to_wit_write_failure(failure: WriteFailure) -> WitWriteFailure {
    WitWriteFailure {
        reason: to_wit_copy_error(problem_refusal(&failure.problem)),
        path: failure.path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `entry-problem` case of the WIT becomes the rules' variant of the
    /// same name, with the same payload: the host words it as the guest does.
    #[test]
    fn each_entry_problem_crosses_the_boundary_as_itself() {
        use wit::EntryProblem as W;
        let payload = || "payload".to_owned();
        let cases = [
            W::AbsolutePath,
            W::ParentComponent,
            W::CurrentComponent,
            W::EmptyComponent,
            W::Backslash,
            W::DriveLetter,
            W::ControlCharacter,
            W::NotUtf8,
            W::TooDeep,
            W::ComponentTooLong,
            W::Symlink,
            W::HardLink,
            W::SpecialFile(payload()),
            W::Duplicate(payload()),
            W::Encrypted,
            W::UnsupportedCompression(payload()),
            W::Corrupt(payload()),
            W::NotInBundle,
        ];
        for case in cases {
            let wit_name = format!("{case:?}");
            let problem = entry_problem(case);
            assert_eq!(wit_name, format!("EntryProblem::{problem:?}"));
            assert!(!problem.to_string().is_empty());
        }
    }
}
