//! `agent.yaml`: parsed with serde_yaml, validated into typed fields.
//!
//! Real packages differ a lot (runtime as a string or a mapping, optional
//! entrypoint, many optional sections), so only the fields the loader relies
//! on are typed and checked; every other field is kept verbatim in
//! [`Manifest::document`] and never makes a manifest invalid.

use par_rules::names::{MAX_LABEL_BYTES, MAX_LABELS, is_label};
use serde::Serialize;
use serde_yaml::Value;

use crate::deploy::Deploy;
use crate::error::GuestError;
use crate::yaml_events;

/// Deepest nesting accepted anywhere in the document.
const MAX_DEPTH: usize = 64;
/// Most YAML nodes accepted, so a large document stays cheap to convert.
const MAX_NODES: usize = 100_000;

/// The validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Package name: a safe path component, it becomes part of a directory name.
    pub name: String,
    /// Version exactly as written (`1.10` stays `1.10`); also a safe path component.
    pub version: String,
    /// `module.path:attr` the runtime starts, if the package names one.
    pub entrypoint: Option<Entrypoint>,
    /// `http_server`: the ASGI app (`module:app`) served on the REST socket.
    pub http_server: Option<Entrypoint>,
    /// `a2a.http_server`: the ASGI app serving the agent-to-agent protocol.
    pub a2a_http_server: Option<Entrypoint>,
    /// `permissions`: what the agent asks its users to grant.
    pub permissions: Option<Permissions>,
    /// `data_access`: which user data and outside services the agent reaches.
    pub data_access: Option<DataAccess>,
    /// `deploy.json` beside `agent.yaml`, if the package has one (set by the
    /// archive reader, which finds it).
    pub deploy: Option<Deploy>,
    /// The whole document as JSON, unknown fields included, `version` as text.
    pub document: serde_json::Value,
}

/// `permissions`, as PAK writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Permissions {
    /// Granted before the agent runs.
    pub required: Vec<String>,
    /// Asked for when a feature needs them.
    pub optional: Vec<String>,
}

/// `data_access`, as PAK writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DataAccess {
    /// OAuth providers the agent signs users in with.
    pub oauth_providers: Vec<String>,
    /// Kinds of user data it reads.
    pub user_data: Vec<String>,
    /// Outside APIs it calls.
    pub external_apis: Vec<String>,
}

/// A Python entrypoint: a dotted module path and an optional attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    /// Dotted module path, each part a Python identifier.
    pub module: String,
    /// Attribute looked up on the module, if given after `:`.
    pub attr: Option<String>,
}

/// Parses and validates `agent.yaml`'s bytes.
pub fn parse(bytes: &[u8]) -> Result<Manifest, GuestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| GuestError::ManifestInvalid {
        field: None,
        message: format!("not UTF-8: {e}"),
    })?;
    let value: Value = serde_yaml::from_str(text).map_err(|e| GuestError::ManifestInvalid {
        field: None,
        message: e.to_string(),
    })?;
    let mut nodes = 0;
    check_shape(&value, "", 0, &mut nodes)?;
    let findings = yaml_events::scan(bytes).map_err(|e| match e {
        yaml_events::EventError::Tag { field, tag } => GuestError::ManifestInvalid {
            field: (!field.is_empty()).then_some(field),
            message: format!("YAML tags are not allowed (found `{}`)", tag.escape_default()),
        },
        yaml_events::EventError::Parse(message) => GuestError::ManifestInvalid { field: None, message },
    })?;
    let Value::Mapping(map) = &value else {
        return Err(GuestError::ManifestInvalid {
            field: None,
            message: "the document must be a mapping of fields".into(),
        });
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => return Err(GuestError::field("name", "is required")),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(GuestError::field("name", "must be a string")),
    };
    check_path_component("name", &name, false)?;
    let version = match map.get("version") {
        None | Some(Value::Null) => return Err(GuestError::field("version", "is required")),
        Some(Value::String(version)) => version.clone(),
        Some(Value::Number(number)) => findings.plain_version.clone().unwrap_or_else(|| number.to_string()),
        Some(_) => return Err(GuestError::field("version", "must be a string or a number")),
    };
    check_path_component("version", &version, true)?;
    let entrypoint = match map.get("entrypoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(spec)) => Some(parse_entrypoint("entrypoint", spec)?),
        Some(_) => return Err(GuestError::field("entrypoint", "must be a string `module.path:attr`")),
    };
    let http_server = app("http_server", map.get("http_server"))?;
    let a2a_http_server = match map.get("a2a") {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(a2a)) => app("a2a.http_server", a2a.get("http_server"))?,
        Some(_) => return Err(GuestError::field("a2a", "must be a mapping")),
    };
    let permissions = section(map, "permissions", |fields| {
        Ok(Permissions {
            required: labels(fields, "permissions", "required")?,
            optional: labels(fields, "permissions", "optional")?,
        })
    })?;
    let data_access = section(map, "data_access", |fields| {
        Ok(DataAccess {
            oauth_providers: labels(fields, "data_access", "oauth_providers")?,
            user_data: labels(fields, "data_access", "user_data")?,
            external_apis: labels(fields, "data_access", "external_apis")?,
        })
    })?;
    match map.get("runtime") {
        None | Some(Value::Null | Value::String(_) | Value::Mapping(_)) => {}
        Some(_) => {
            return Err(GuestError::field(
                "runtime",
                "must be a string (`python3.11`) or a mapping (`python: \">=3.8\"`)",
            ));
        }
    }
    let mut document = to_json(&value, "")?;
    if let serde_json::Value::Object(fields) = &mut document {
        fields.insert("version".into(), serde_json::Value::String(version.clone()));
    }
    Ok(Manifest {
        name,
        version,
        entrypoint,
        http_server,
        a2a_http_server,
        permissions,
        data_access,
        deploy: None,
        document,
    })
}

/// A mapping section of the manifest read by `read`; absent or null is none.
fn section<T>(
    map: &serde_yaml::Mapping,
    name: &str,
    read: impl FnOnce(&serde_yaml::Mapping) -> Result<T, GuestError>,
) -> Result<Option<T>, GuestError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Mapping(fields)) => read(fields).map(Some),
        Some(_) => Err(GuestError::field(name, "must be a mapping")),
    }
}

/// A list of names in a section (absent or null: empty): each a non-empty
/// string of printable characters, at most [`MAX_LABELS`] of at most
/// [`MAX_LABEL_BYTES`].
fn labels(fields: &serde_yaml::Mapping, section: &str, key: &str) -> Result<Vec<String>, GuestError> {
    let at = format!("{section}.{key}");
    let items = match fields.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(GuestError::field(&at, "must be a list of strings")),
    };
    if items.len() > MAX_LABELS {
        return Err(GuestError::field(&at, format!("has more than {MAX_LABELS} entries")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(label) if is_label(label) => Ok(label.clone()),
            _ => Err(GuestError::field(
                &format!("{at}[{i}]"),
                format!("must be a string of 1 to {MAX_LABEL_BYTES} printable characters"),
            )),
        })
        .collect()
}

/// An ASGI app, `module.path:app`: the attribute is required, since a
/// server is handed the object itself.
fn app(field: &str, value: Option<&Value>) -> Result<Option<Entrypoint>, GuestError> {
    let spec = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(spec)) => spec,
        Some(_) => return Err(GuestError::field(field, "must be a string `module.path:app`")),
    };
    let app = parse_entrypoint(field, spec)?;
    if app.attr.is_none() {
        return Err(GuestError::field(
            field,
            format!("`{}` names no app: write `module.path:app`", spec.escape_default()),
        ));
    }
    Ok(Some(app))
}

/// Refuses YAML tags, excessive nesting and excessive size anywhere in the document.
fn check_shape(value: &Value, at: &str, depth: usize, nodes: &mut usize) -> Result<(), GuestError> {
    *nodes += 1;
    let field = || (!at.is_empty()).then(|| at.to_owned());
    if *nodes > MAX_NODES {
        return Err(GuestError::ManifestInvalid {
            field: None,
            message: format!("more than {MAX_NODES} values"),
        });
    }
    if depth > MAX_DEPTH {
        return Err(GuestError::ManifestInvalid {
            field: field(),
            message: format!("nested deeper than {MAX_DEPTH} levels"),
        });
    }
    match value {
        Value::Tagged(tagged) => Err(GuestError::ManifestInvalid {
            field: field(),
            message: format!("YAML tags are not allowed (found `{}`)", tagged.tag),
        }),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_shape(item, &format!("{at}[{i}]"), depth + 1, nodes)),
        Value::Mapping(map) => map.iter().try_for_each(|(key, item)| {
            check_shape(key, at, depth + 1, nodes)?;
            check_shape(item, &join_field(at, &key_text(key)), depth + 1, nodes)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}

fn join_field(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => "<complex key>".into(),
    }
}

/// Names become directory names (`{name}@{version}`), so only a conservative alphabet passes.
fn check_path_component(field: &str, value: &str, allow_plus: bool) -> Result<(), GuestError> {
    let max = par_rules::names::MAX_NAME_BYTES;
    if value.is_empty() || value.len() > max {
        return Err(GuestError::field(field, format!("must be 1 to {max} characters")));
    }
    if !par_rules::names::is_safe_component(value, allow_plus) {
        let extra = if allow_plus { ", `+`" } else { "" };
        return Err(GuestError::field(
            field,
            format!(
                "`{}` must start with a letter or digit and hold only letters, digits, `.`, `_`, `-`{extra}",
                value.escape_default()
            ),
        ));
    }
    Ok(())
}

/// Parses `module.path:attr` (attribute optional), each part a Python
/// identifier; errors name `field`.
pub fn parse_entrypoint(field: &str, spec: &str) -> Result<Entrypoint, GuestError> {
    let (module, attr) = match spec.split_once(':') {
        Some((module, attr)) => (module, Some(attr)),
        None => (spec, None),
    };
    if !is_dotted_identifier(module) {
        return Err(GuestError::field(
            field,
            format!("module `{}` is not a dotted Python identifier", module.escape_default()),
        ));
    }
    if let Some(attr) = attr
        && !is_identifier(attr)
    {
        return Err(GuestError::field(
            field,
            format!("attribute `{}` is not a Python identifier", attr.escape_default()),
        ));
    }
    Ok(Entrypoint {
        module: module.to_owned(),
        attr: attr.map(str::to_owned),
    })
}

pub use par_rules::names::{is_dotted_identifier, is_identifier};

/// Converts YAML to JSON; non-string scalar keys become their text.
fn to_json(value: &Value, at: &str) -> Result<serde_json::Value, GuestError> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| serde_json::Value::String(n.to_string()), serde_json::Value::Number)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => {
            let mut object = serde_json::Map::new();
            for (key, item) in map {
                if matches!(key, Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_)) {
                    return Err(GuestError::ManifestInvalid {
                        field: (!at.is_empty()).then(|| at.to_owned()),
                        message: "mapping keys must be plain scalars".into(),
                    });
                }
                let key = key_text(key);
                let item = to_json(item, &join_field(at, &key))?;
                object.insert(key, item);
            }
            serde_json::Value::Object(object)
        }
        Value::Tagged(_) => {
            return Err(GuestError::ManifestInvalid {
                field: (!at.is_empty()).then(|| at.to_owned()),
                message: "YAML tags are not allowed".into(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(yaml: &str) -> Manifest {
        parse(yaml.as_bytes()).expect("manifest should parse")
    }

    fn field_of(yaml: &str) -> Option<String> {
        match parse(yaml.as_bytes()) {
            Err(GuestError::ManifestInvalid { field, .. }) => field,
            other => panic!("expected ManifestInvalid, got {other:?}"),
        }
    }

    #[test]
    fn minimal_manifest() {
        let m = ok("name: vivid-commenter\nversion: 1.0.1\nentrypoint: src.main:agent\n");
        assert_eq!(m.name, "vivid-commenter");
        assert_eq!(m.version, "1.0.1");
        let ep = m.entrypoint.expect("entrypoint");
        assert_eq!(ep.module, "src.main");
        assert_eq!(ep.attr.as_deref(), Some("agent"));
    }

    #[test]
    fn numeric_version_keeps_its_spelling() {
        assert_eq!(ok("name: a\nversion: 1.10\n").version, "1.10");
        assert_eq!(ok("name: a\nversion: 1.10 # trailing\n").version, "1.10");
        assert_eq!(ok("name: a\nversion: 2\n").version, "2");
        assert_eq!(ok("name: a\nversion: '1.10'\n").version, "1.10");
        assert_eq!(ok("name: a\nversion: 1.10\n").document["version"], "1.10");
    }

    #[test]
    fn real_world_variants_are_accepted() {
        let string_runtime = ok("name: a\nversion: '1'\nruntime: python3.11\n");
        assert_eq!(string_runtime.document["runtime"], "python3.11");
        let map_runtime = ok("name: a\nversion: '1'\nruntime:\n  python: \">=3.8\"\n");
        assert_eq!(map_runtime.document["runtime"]["python"], ">=3.8");
        let rich = ok(concat!(
            "name: rich\nversion: 0.3.0\n",
            "exports: [agent]\n",
            "a2a: {service: src.a2a.server:serve}\n",
            "rest: {entry: src.rest:app}\n",
            "ui: {path: ui, basePath: /ui}\n",
            "environment: {LOG_LEVEL: info}\n",
            "dependencies: [fastapi>=0.100]\n",
            "metadata: {sub_agents: [{name: x, description: y}]}\n",
            "mcp: {enabled: true}\n",
            "future_field: {anything: [1, 2, 3]}\n",
            "200: numeric key\n",
        ));
        assert!(rich.entrypoint.is_none());
        assert_eq!(rich.document["ui"]["basePath"], "/ui");
        assert_eq!(rich.document["metadata"]["sub_agents"][0]["name"], "x");
        assert_eq!(rich.document["future_field"]["anything"][2], 3);
        assert_eq!(rich.document["200"], "numeric key");
        assert!(ok("name: a\nversion: '1'\nentrypoint: main\n").entrypoint.is_some());
    }

    #[test]
    fn required_fields_are_named() {
        assert_eq!(field_of("version: '1'\n").as_deref(), Some("name"));
        assert_eq!(field_of("name: a\n").as_deref(), Some("version"));
        assert_eq!(field_of("name: ../../x\nversion: '1'\n").as_deref(), Some("name"));
        assert_eq!(field_of("name: a\nversion: 1/2\n").as_deref(), Some("version"));
        assert_eq!(field_of("name: a@b\nversion: '1'\n").as_deref(), Some("name"));
        assert_eq!(field_of("name: [a]\nversion: '1'\n").as_deref(), Some("name"));
        assert_eq!(
            field_of("name: a\nversion: '1'\nentrypoint: 'os; rm:x'\n").as_deref(),
            Some("entrypoint")
        );
        assert_eq!(
            field_of("name: a\nversion: '1'\nentrypoint: 'class:x'\n").as_deref(),
            Some("entrypoint")
        );
        assert_eq!(
            field_of("name: a\nversion: '1'\nentrypoint: 'a.b:c-d'\n").as_deref(),
            Some("entrypoint")
        );
        assert_eq!(
            field_of("name: a\nversion: '1'\nruntime: [1]\n").as_deref(),
            Some("runtime")
        );
        assert_eq!(field_of("- just\n- a list\n"), None);
        assert_eq!(field_of("name: [unclosed\n"), None);
    }

    #[test]
    fn servers_are_typed_apps() {
        let m = ok(concat!(
            "name: a\nversion: '1'\n",
            "http_server: app.server:app\n",
            "a2a: {service: a2a.server:serve, http_server: a2a.http:asgi}\n",
        ));
        let http = m.http_server.expect("http_server");
        assert_eq!(
            (http.module.as_str(), http.attr.as_deref()),
            ("app.server", Some("app"))
        );
        let a2a = m.a2a_http_server.expect("a2a.http_server");
        assert_eq!((a2a.module.as_str(), a2a.attr.as_deref()), ("a2a.http", Some("asgi")));
        assert!(
            ok("name: a\nversion: '1'\na2a: {service: x:y}\n")
                .a2a_http_server
                .is_none()
        );
        for (yaml, field) in [
            ("http_server: app.server\n", "http_server"),
            ("http_server: 'app;os:app'\n", "http_server"),
            ("http_server: [app]\n", "http_server"),
            ("a2a: {http_server: 'a:b c'}\n", "a2a.http_server"),
            ("a2a: {http_server: a2a.http}\n", "a2a.http_server"),
            ("a2a: a2a.server:serve\n", "a2a"),
        ] {
            let yaml = format!("name: a\nversion: '1'\n{yaml}");
            assert_eq!(field_of(&yaml).as_deref(), Some(field), "{yaml}");
        }
    }

    #[test]
    fn hostile_yaml_is_refused_quickly() {
        assert_eq!(
            field_of("name: a\nversion: '1'\nx: !python/object {a: 1}\n").as_deref(),
            Some("x")
        );
        assert_eq!(
            field_of("name: !!binary aGVsbG8=\nversion: '1'\n").as_deref(),
            Some("name")
        );
        let bomb = concat!(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n",
            "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
            "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
            "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
            "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n",
            "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
            "name: a\nversion: '1'\n",
        );
        assert!(matches!(
            parse(bomb.as_bytes()),
            Err(GuestError::ManifestInvalid { .. })
        ));
        let deep = format!(
            "name: a\nversion: '1'\nx: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(GuestError::ManifestInvalid { .. })
        ));
        assert!(matches!(
            parse(b"name: a\xff\n"),
            Err(GuestError::ManifestInvalid { field: None, .. })
        ));
    }
}
