//! `agent.yaml` parsing on arbitrary bytes: must return, never panic or hang,
//! and anything accepted must satisfy the rules the host re-checks.

use par_guest::manifest::{self, is_dotted_identifier};
use par_rules::names::{MAX_LABELS, is_entrypoint, is_label};

/// One input.
pub(crate) fn run(data: &[u8]) {
    if let Ok(m) = manifest::parse(data) {
        assert!(!m.name.is_empty() && m.name.len() <= 128);
        assert!(!m.name.contains(['/', '\\', '@']) && m.name != "." && m.name != "..");
        assert!(!m.version.contains(['/', '\\', '@']) && !m.version.starts_with('.'));
        if let Some(ep) = &m.entrypoint {
            assert!(is_dotted_identifier(&ep.module));
        }
        for app in [&m.http_server, &m.a2a_http_server].into_iter().flatten() {
            assert!(
                app.attr.is_some() && is_entrypoint(&app.module, app.attr.as_deref()),
                "{app:?}"
            );
        }
        let permissions = m.permissions.iter().flat_map(|p| [&p.required, &p.optional]);
        let data_access = m
            .data_access
            .iter()
            .flat_map(|d| [&d.oauth_providers, &d.user_data, &d.external_apis]);
        for labels in permissions.chain(data_access) {
            assert!(
                labels.len() <= MAX_LABELS && labels.iter().all(|l| is_label(l)),
                "{labels:?}"
            );
        }
        assert!(m.document.is_object());
    }
}
