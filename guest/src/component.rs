//! The WIT glue: exports `inspect` and `extract`, converting to and from the
//! types in `wit/types.wit`. Only compiled for `wasm32`.

use std::fs::File;
use std::path::Path;

use crate::seek_buffered::SeekBuffered;

use crate::archive;
use crate::error::{EntryProblem, GuestError};
use crate::install_plan::{self, InstallPlan, Requirement, SelfInstall};
use crate::limits::{LimitKind, Limits};
use crate::manifest::Manifest;

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "loader",
    });
}

use bindings::Guest;
use bindings::pixell::apkg::host_installer;
use bindings::pixell::apkg::host_log::{self, Field, Level};
use bindings::pixell::apkg::types as wit;

/// Where the host preopens the archive (read-only) and the package tree (read-write).
const ARCHIVE: &str = "/archive/package.apkg";
const PACKAGE_DIR: &str = "/package";

struct Loader;

impl Guest for Loader {
    fn inspect(options: wit::ExtractOptions) -> Result<wit::Manifest, wit::LoadError> {
        let limits = limits_from(&options.limits);
        let file = open_archive()?;
        let manifest = archive::inspect(file, &limits).map_err(to_wit_error)?;
        log_info(
            "Manifest validated",
            &[("name", &manifest.name), ("version", &manifest.version)],
        );
        Ok(manifest_to_wit(manifest))
    }

    fn extract(options: wit::ExtractOptions) -> Result<wit::ExtractReport, wit::LoadError> {
        let extract_options = archive::ExtractOptions {
            limits: limits_from(&options.limits),
            enforce_path_rules: options.enforce_path_rules,
        };
        let file = open_archive()?;
        let report = archive::extract(file, Path::new(PACKAGE_DIR), &extract_options).map_err(to_wit_error)?;
        log_info(
            "Package tree written",
            &[
                ("files", &report.files.to_string()),
                ("bytes", &report.bytes.to_string()),
            ],
        );
        Ok(wit::ExtractReport {
            manifest: manifest_to_wit(report.manifest),
            files: report.files,
            dirs: report.dirs,
            bytes: report.bytes,
            executables: report.executables,
        })
    }

    fn load(options: wit::LoadOptions) -> Result<wit::LoadReport, wit::LoadError> {
        let extracted = Self::extract(options.extract)?;
        let plan = install_plan::plan(Path::new(PACKAGE_DIR)).map_err(to_wit_error)?;
        host_installer::publish(&extracted.manifest, &extracted.executables).map_err(wit::LoadError::Install)?;
        let venv = host_installer::ensure_venv(&plan_to_wit(&plan)).map_err(wit::LoadError::Install)?;
        // Requirements first, then the agent; both are attempted and every
        // failure is reported (a failed dependency fails the load even if the
        // agent itself installed).
        let mut errors = Vec::new();
        let mut requirements_count = 0;
        if !plan.requirements.is_empty() {
            match host_installer::install_requirements() {
                Ok(report) => requirements_count = report.packages_count,
                Err(error) => errors.push(error),
            }
        }
        let mut installed_as_package = false;
        if plan.self_install != SelfInstall::None {
            match host_installer::install_self() {
                Ok(_) => installed_as_package = true,
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            return Err(wit::LoadError::InstallFailed(errors));
        }
        let verified = match &extracted.manifest.entrypoint {
            None => None,
            Some(entrypoint) => match host_installer::verify_import(entrypoint) {
                Ok(()) => Some(true),
                Err(error) if options.strict => return Err(wit::LoadError::VerificationFailed(error)),
                Err(_) => Some(false),
            },
        };
        Ok(wit::LoadReport {
            extract: extracted,
            venv,
            installed_as_package,
            verified,
            requirements_count,
        })
    }
}

fn plan_to_wit(plan: &InstallPlan) -> wit::InstallPlan {
    let lines = |list: &[Requirement]| {
        list.iter()
            .map(|r| wit::Requirement {
                file: r.file.clone(),
                line: r.line,
                text: r.text.clone(),
            })
            .collect()
    };
    wit::InstallPlan {
        requirements: lines(&plan.requirements),
        constraints: lines(&plan.constraints),
        self_install: match plan.self_install {
            SelfInstall::None => wit::SelfInstall::None,
            SelfInstall::SetupPy => wit::SelfInstall::SetupPy,
            SelfInstall::Pyproject => wit::SelfInstall::Pyproject,
        },
    }
}

bindings::export!(Loader with_types_in bindings);

fn open_archive() -> Result<SeekBuffered<File>, wit::LoadError> {
    File::open(ARCHIVE)
        .map(SeekBuffered::new)
        .map_err(|e| wit::LoadError::ArchiveUnreadable(format!("cannot open the archive: {e}")))
}

fn log_info(message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<Field> = fields
        .iter()
        .map(|(key, value)| Field {
            key: (*key).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    host_log::log(Level::Info, message, &fields);
}

fn limits_from(limits: &wit::Limits) -> Limits {
    Limits {
        max_entries: limits.max_entries,
        max_total_bytes: limits.max_total_bytes,
        max_file_bytes: limits.max_file_bytes,
        max_ratio: limits.max_ratio,
        ratio_min_bytes: limits.ratio_min_bytes,
        max_manifest_bytes: limits.max_manifest_bytes,
    }
}

fn manifest_to_wit(manifest: Manifest) -> wit::Manifest {
    wit::Manifest {
        name: manifest.name,
        version: manifest.version,
        entrypoint: manifest.entrypoint.map(|ep| wit::Entrypoint {
            module: ep.module,
            attr: ep.attr,
        }),
        document: manifest.document.to_string(),
    }
}

fn to_wit_error(error: GuestError) -> wit::LoadError {
    match error {
        GuestError::ArchiveUnreadable(message) => wit::LoadError::ArchiveUnreadable(message),
        GuestError::UnsafeEntry { entry, problem } => wit::LoadError::UnsafeEntry(wit::UnsafeEntry {
            entry,
            problem: problem_to_wit(problem),
        }),
        GuestError::LimitExceeded { kind, entry, max } => wit::LoadError::LimitExceeded(wit::LimitExceeded {
            limit: limit_to_wit(kind),
            entry,
            max,
        }),
        GuestError::ManifestMissing => wit::LoadError::ManifestMissing,
        GuestError::ManifestInvalid { field, message } => {
            wit::LoadError::ManifestInvalid(wit::ManifestInvalid { field, message })
        }
        GuestError::Io { entry, message } => wit::LoadError::Io(wit::IoFailure { entry, message }),
        GuestError::RequirementsInvalid {
            file,
            line,
            text,
            reason,
        } => wit::LoadError::RequirementsInvalid(wit::RefusedRequirement {
            file,
            line,
            text,
            reason,
        }),
    }
}

fn limit_to_wit(kind: LimitKind) -> wit::LimitKind {
    match kind {
        LimitKind::Entries => wit::LimitKind::Entries,
        LimitKind::TotalBytes => wit::LimitKind::TotalBytes,
        LimitKind::FileBytes => wit::LimitKind::FileBytes,
        LimitKind::CompressionRatio => wit::LimitKind::CompressionRatio,
        LimitKind::ManifestBytes => wit::LimitKind::ManifestBytes,
    }
}

fn problem_to_wit(problem: EntryProblem) -> wit::EntryProblem {
    use wit::EntryProblem as W;
    match problem {
        EntryProblem::AbsolutePath => W::AbsolutePath,
        EntryProblem::ParentComponent => W::ParentComponent,
        EntryProblem::CurrentComponent => W::CurrentComponent,
        EntryProblem::EmptyComponent => W::EmptyComponent,
        EntryProblem::Backslash => W::Backslash,
        EntryProblem::DriveLetter => W::DriveLetter,
        EntryProblem::ControlCharacter => W::ControlCharacter,
        EntryProblem::NotUtf8 => W::NotUtf8,
        EntryProblem::TooDeep => W::TooDeep,
        EntryProblem::ComponentTooLong => W::ComponentTooLong,
        EntryProblem::Symlink => W::Symlink,
        EntryProblem::HardLink => W::HardLink,
        EntryProblem::SpecialFile(kind) => W::SpecialFile(kind),
        EntryProblem::Duplicate(first) => W::Duplicate(first),
        EntryProblem::Encrypted => W::Encrypted,
        EntryProblem::UnsupportedCompression(method) => W::UnsupportedCompression(method),
        EntryProblem::Corrupt(message) => W::Corrupt(message),
    }
}
