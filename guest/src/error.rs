//! The guest's typed errors: one variant per cause, each naming the entry or field at fault.

use crate::limits::LimitKind;

pub use par_rules::archive::{EntryProblem, Inconsistency};

/// Everything that can make the guest refuse a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The archive is not a readable zip file at all.
    #[error("archive unreadable: {0}")]
    ArchiveUnreadable(String),
    /// The archive's structures disagree (see [`Inconsistency`]).
    #[error("archive inconsistent{}: {inconsistency}", entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default())]
    ArchiveInconsistent {
        /// The entry whose records disagree, if the fault is one entry's.
        entry: Option<String>,
        /// How they disagree.
        inconsistency: Inconsistency,
    },
    /// One entry breaks a safety rule.
    #[error("unsafe entry `{entry}`: {problem}")]
    UnsafeEntry {
        /// The entry's name as stored (control characters escaped).
        entry: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// The archive needs more resources than the limits allow.
    #[error("limit exceeded: {} over {max}{}", kind.as_str(), entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default())]
    LimitExceeded {
        /// Which limit.
        kind: LimitKind,
        /// The entry being processed when it tripped, if any.
        entry: Option<String>,
        /// The limit's value.
        max: u64,
    },
    /// No `agent.yaml` at the archive root.
    #[error("manifest missing: the archive has no agent.yaml at its root")]
    ManifestMissing,
    /// `agent.yaml` exists but is not acceptable.
    #[error("manifest invalid{}: {message}", field.as_ref().map(|f| format!(" at field `{f}`")).unwrap_or_default())]
    ManifestInvalid {
        /// The offending field (dotted path), or `None` for document-level errors.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// `deploy.json` exists but is not acceptable.
    #[error("deploy.json invalid{}: {message}", field.as_ref().map(|f| format!(" at field `{f}`")).unwrap_or_default())]
    DeployInvalid {
        /// The offending field (dotted path), or `None` for document-level errors.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// `requirements.txt` or a file it includes cannot be used.
    #[error("requirements invalid at {file}:{line}: {reason}")]
    RequirementsInvalid {
        /// File relative to the package root.
        file: String,
        /// 1-based line (0 for the whole file).
        line: u32,
        /// The offending text.
        text: String,
        /// Why.
        reason: String,
    },
    /// Writing the extracted tree failed (disk full, permission …).
    #[error("i/o error{}: {message}", entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default())]
    Io {
        /// The entry being written, if any.
        entry: Option<String>,
        /// The operating system's message.
        message: String,
    },
}

impl GuestError {
    /// Shorthand for an [`GuestError::UnsafeEntry`].
    pub fn unsafe_entry(entry: &str, problem: EntryProblem) -> Self {
        GuestError::UnsafeEntry {
            entry: entry.to_owned(),
            problem,
        }
    }

    /// Shorthand for a [`GuestError::ManifestInvalid`] naming a field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        GuestError::ManifestInvalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}
