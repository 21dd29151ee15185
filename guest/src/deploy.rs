//! `deploy.json`: what PAK writes beside `agent.yaml` for the runtime (the
//! surfaces to expose, their ports, whether they share one server, and
//! variables), parsed into typed fields. Unknown keys are kept out of the
//! result and never make the file invalid, as for the manifest.

use par_rules::env::{MAX_ENV_VARS, MAX_VALUE_BYTES, package_refusal};
use par_rules::names::{MAX_SOCKETS, is_socket_name};
use serde::Serialize;
use serde_json::Value;

use crate::error::GuestError;

/// The file's fixed name at the archive root.
pub const DEPLOY_NAME: &str = "deploy.json";

/// The validated `deploy.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Deploy {
    /// `expose`: the surfaces the runtime serves (`rest`, `a2a`, `ui`), in order.
    pub expose: Vec<String>,
    /// `ports`: a port for each named surface, in name order.
    pub ports: Vec<(String, u16)>,
    /// `multiplex`: whether the surfaces share one server.
    pub multiplex: Option<bool>,
    /// `environment`: variables in name order, as written (`${VAR}` placeholders unresolved).
    pub environment: Vec<(String, String)>,
}

/// Parses and validates `deploy.json`'s bytes.
pub fn parse(bytes: &[u8]) -> Result<Deploy, GuestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(None, format!("not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(invalid(None, "must be a JSON object".into()));
    };
    let expose = match fields.get("expose") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_SOCKETS {
                return Err(invalid(
                    Some("expose".into()),
                    format!("more than {MAX_SOCKETS} surfaces"),
                ));
            }
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(name) if is_socket_name(name) && !names.iter().any(|n: &String| n == name) => {
                        names.push(name.to_owned())
                    }
                    _ => return Err(invalid(Some(format!("expose[{i}]")), surface_rule())),
                }
            }
            names
        }
        Some(_) => return Err(invalid(Some("expose".into()), "must be a list of surface names".into())),
    };
    let ports = match fields.get("ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(ports)) => {
            if ports.len() > MAX_SOCKETS {
                return Err(invalid(
                    Some("ports".into()),
                    format!("more than {MAX_SOCKETS} surfaces"),
                ));
            }
            let mut read = Vec::with_capacity(ports.len());
            for (name, port) in ports {
                let at = Some(format!("ports.{name}"));
                if !is_socket_name(name) {
                    return Err(invalid(at, surface_rule()));
                }
                match port.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                    Some(port) => read.push((name.clone(), port)),
                    None => return Err(invalid(at, "must be a port number from 1 to 65535".into())),
                }
            }
            read
        }
        Some(_) => return Err(invalid(Some("ports".into()), "must map surface names to ports".into())),
    };
    let multiplex = match fields.get("multiplex") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(multiplex)) => Some(*multiplex),
        Some(_) => return Err(invalid(Some("multiplex".into()), "must be true or false".into())),
    };
    let environment = match fields.get("environment") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(vars)) => environment(vars)?,
        Some(_) => return Err(invalid(Some("environment".into()), "must map names to values".into())),
    };
    Ok(Deploy {
        expose,
        ports,
        multiplex,
        environment,
    })
}

/// `environment`: names a package may set, values as text (numbers and
/// booleans as written), each within par-rules' `env` limits.
fn environment(vars: &serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, GuestError> {
    if vars.len() > MAX_ENV_VARS {
        return Err(invalid(
            Some("environment".into()),
            format!("more than {MAX_ENV_VARS} variables"),
        ));
    }
    let mut read = Vec::with_capacity(vars.len());
    for (key, value) in vars {
        let at = || Some(format!("environment.{key}"));
        if let Some(refusal) = package_refusal(key) {
            return Err(invalid(at(), refusal.reason().into()));
        }
        let value = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => return Err(invalid(at(), "must be a string, a number or a boolean".into())),
        };
        if value.contains('\0') || value.len() > MAX_VALUE_BYTES {
            return Err(invalid(
                at(),
                format!("must hold no NUL and at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
        read.push((key.clone(), value));
    }
    Ok(read)
}

fn surface_rule() -> String {
    "must be a surface name (letters, digits and `_`, at most 64), each once".into()
}

fn invalid(field: Option<String>, message: String) -> GuestError {
    GuestError::DeployInvalid { field, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> Option<String> {
        match parse(json.as_bytes()) {
            Err(GuestError::DeployInvalid { field, .. }) => field,
            other => panic!("expected DeployInvalid for {json}, got {other:?}"),
        }
    }

    #[test]
    fn reads_what_pak_writes() {
        let deploy = parse(
            br#"{"expose": ["rest", "a2a", "ui"], "ports": {"rest": 8080, "a2a": 50051, "ui": 3000},
                 "multiplex": true, "environment": {"A2A_PORT": "${A2A_PORT:-50051}", "DEBUG": false, "N": 3},
                 "future": {"x": 1}}"#,
        )
        .expect("PAK's deploy.json");
        assert_eq!(deploy.expose, ["rest", "a2a", "ui"]);
        assert_eq!(
            deploy.ports,
            [("a2a".into(), 50051), ("rest".into(), 8080), ("ui".into(), 3000)]
        );
        assert_eq!(deploy.multiplex, Some(true));
        assert_eq!(
            deploy.environment,
            [
                ("A2A_PORT".into(), "${A2A_PORT:-50051}".into()),
                ("DEBUG".into(), "false".into()),
                ("N".into(), "3".into()),
            ]
        );
        assert_eq!(parse(b"{}").expect("empty"), Deploy::default());
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(field_of("[1]"), None);
        assert_eq!(field_of("{\"expose\": "), None);
        assert_eq!(field_of(r#"{"expose": "rest"}"#).as_deref(), Some("expose"));
        assert_eq!(field_of(r#"{"expose": ["rest", "a b"]}"#).as_deref(), Some("expose[1]"));
        assert_eq!(
            field_of(r#"{"expose": ["rest", "rest"]}"#).as_deref(),
            Some("expose[1]")
        );
        assert_eq!(field_of(r#"{"ports": {"rest": 0}}"#).as_deref(), Some("ports.rest"));
        assert_eq!(field_of(r#"{"ports": {"rest": 70000}}"#).as_deref(), Some("ports.rest"));
        assert_eq!(
            field_of(r#"{"ports": {"rest": "8080"}}"#).as_deref(),
            Some("ports.rest")
        );
        assert_eq!(field_of(r#"{"multiplex": "yes"}"#).as_deref(), Some("multiplex"));
        assert_eq!(
            field_of(r#"{"environment": {"LD_PRELOAD": "/x.so"}}"#).as_deref(),
            Some("environment.LD_PRELOAD")
        );
        assert_eq!(
            field_of(r#"{"environment": {"AGENT_PACKAGE_PATH": "/"}}"#).as_deref(),
            Some("environment.AGENT_PACKAGE_PATH")
        );
        assert_eq!(
            field_of(r#"{"environment": {"A": {"b": 1}}}"#).as_deref(),
            Some("environment.A")
        );
        assert_eq!(
            field_of(r#"{"environment": {"A": "x\u0000y"}}"#).as_deref(),
            Some("environment.A")
        );
    }
}
