//! `agent.yaml` parsing on arbitrary bytes: must return, never panic or hang,
//! and anything accepted must satisfy the rules the host re-checks.

use par_guest::manifest::{self, is_dotted_identifier};

/// One input.
pub(crate) fn run(data: &[u8]) {
    if let Ok(m) = manifest::parse(data) {
        assert!(!m.name.is_empty() && m.name.len() <= 128);
        assert!(!m.name.contains(['/', '\\', '@']) && m.name != "." && m.name != "..");
        assert!(!m.version.contains(['/', '\\', '@']) && !m.version.starts_with('.'));
        if let Some(ep) = &m.entrypoint {
            assert!(is_dotted_identifier(&ep.module));
        }
        assert!(m.document.is_object());
    }
}
