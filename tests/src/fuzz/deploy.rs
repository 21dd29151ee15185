//! The guest's `deploy.json` reader on arbitrary bytes: must return, never
//! panic, and whatever it accepts the host accepts too (surface names that
//! can become variable names, each once; ports that can be bound; variables
//! a package may set, within the limits).

use par_guest::deploy::parse;
use par_rules::env::{MAX_ENV_VARS, MAX_VALUE_BYTES, package_refusal};
use par_rules::names::{MAX_SOCKETS, is_socket_name};

/// One input.
pub(crate) fn run(data: &[u8]) {
    let Ok(deploy) = parse(data) else {
        return;
    };
    assert!(deploy.expose.len() <= MAX_SOCKETS && deploy.ports.len() <= MAX_SOCKETS);
    for (i, name) in deploy.expose.iter().enumerate() {
        assert!(is_socket_name(name), "expose {name:?}");
        assert!(!deploy.expose[..i].contains(name), "{name} exposed twice");
    }
    for (i, (name, port)) in deploy.ports.iter().enumerate() {
        assert!(is_socket_name(name) && *port != 0, "port {name:?} {port}");
        assert!(deploy.ports[..i].iter().all(|(other, _)| other != name), "{name} twice");
    }
    assert!(deploy.environment.len() <= MAX_ENV_VARS);
    for (key, value) in &deploy.environment {
        assert_eq!(package_refusal(key), None, "key {key:?} accepted");
        assert!(
            !value.contains('\0') && value.len() <= MAX_VALUE_BYTES,
            "value of {key}"
        );
    }
}
