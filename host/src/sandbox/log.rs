//! The `host-log` import: guest log lines re-emitted through `tracing`, bounded.

use super::bindings::host_log::{Field, Host, Level};
use crate::exec::output::escape_controls;

/// Longest message or field value kept; the rest is cut.
const MAX_TEXT: usize = 1024;
/// Most fields kept per call.
const MAX_FIELDS: usize = 16;
/// Most calls honoured per run, so a hostile guest cannot flood the logs.
const MAX_CALLS: u32 = 1000;

/// Per-run state of the log import.
#[derive(Debug, Default)]
pub(crate) struct GuestLog {
    calls: u32,
}

/// Cuts to `MAX_TEXT` bytes on a char boundary and escapes control characters.
fn clean(text: &str) -> String {
    escape_controls(text, MAX_TEXT)
}

impl Host for GuestLog {
    fn log(&mut self, level: Level, message: String, fields: Vec<Field>) {
        self.calls = self.calls.saturating_add(1);
        if self.calls > MAX_CALLS {
            if self.calls == MAX_CALLS + 1 {
                tracing::warn!(target: "par::guest", max = MAX_CALLS, "guest log limit reached; further guest logs dropped");
            }
            return;
        }
        let message = clean(&message);
        let fields = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|f| format!("{}={}", clean(&f.key), clean(&f.value)))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(target: "par::guest", guest_fields = %fields, "{message}"),
            Level::Debug => tracing::debug!(target: "par::guest", guest_fields = %fields, "{message}"),
            Level::Info => tracing::info!(target: "par::guest", guest_fields = %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "par::guest", guest_fields = %fields, "{message}"),
            Level::Error => tracing::error!(target: "par::guest", guest_fields = %fields, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_and_truncates() {
        assert_eq!(clean("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        let long = "x".repeat(5000);
        assert!(clean(&long).len() <= MAX_TEXT + '…'.len_utf8());
    }
}
