//! The agent's environment, composed as PAR composes it, lowest first:
//!
//! 1. par's defaults: the locale and time zone of the loader's own
//!    environment (nothing else of it), `PATH`, `HOME`, `TMPDIR`,
//!    `VIRTUAL_ENV`, Python's output settings, and `MULTIPLEXED` (from
//!    `deploy.json`, `true` as PAR sets it);
//! 2. the package's: its `.env` (when asked), then `agent.yaml`'s
//!    `environment`, then `deploy.json`'s, each key under the package rules;
//! 3. the caller's, under the caller rules, never logged;
//! 4. what par knows of this start, which nothing overrides:
//!    `AGENT_PACKAGE_PATH`, `AGENT_APP_ID`, the sockets (`LISTEN_*`,
//!    `PAR_PORT_<NAME>`, and PAR's `REST_PORT`, `A2A_PORT`, `UI_PORT` for
//!    sockets of those names), and `BASE_PATH` when the caller gives one.
//!
//! The package's values may hold `${NAME}` or `${NAME:-default}` (as PAK
//! writes `deploy.json`), resolved against the composed environment alone,
//! never the loader's own (which holds the runtime's secrets): a name no
//! layer sets is empty (with a warning naming it), as a shell and Docker
//! Compose have it; `${NAME}` in `NAME`'s own value reads the layers below
//! it (PAK's `A2A_PORT: ${A2A_PORT:-50051}`); a chain of other names that
//! comes back to itself is refused, naming it. Every other `$` stays as
//! written, and the caller's and par's values are never read for
//! placeholders.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use par_rules::env::{MAX_VALUE_BYTES, caller_refusal, package_refusal};

use crate::types::error::SpawnError;
use crate::types::package::AgentPackage;
use crate::types::spawn::{BoundSocket, EnvSource};

/// Variables of the loader's own environment an agent gets: locale and time zone.
const PASS_ENV: [&str; 4] = ["LANG", "LC_ALL", "LC_CTYPE", "TZ"];

/// PAR's variable for the port of each socket it serves, by socket name.
const PAR_PORTS: [(&str, &str); 3] = [("rest", "REST_PORT"), ("a2a", "A2A_PORT"), ("ui", "UI_PORT")];

/// Who set a variable, from the lowest layer to the highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// par's defaults.
    Default,
    /// One of the package's layers.
    Package(EnvSource),
    /// The caller.
    Caller,
    /// What par knows of this start.
    Fact,
}

/// One variable as composed so far.
struct Var {
    layer: Layer,
    value: OsString,
}

/// What par knows of a start, beyond the package and the caller's spec.
pub(crate) struct Start<'a> {
    /// The agent's state directory: its `HOME`.
    pub state: &'a Path,
    /// The sockets bound for it, in order.
    pub ports: &'a [BoundSocket],
    /// `LISTEN_PID` when par knows it ahead (the agent's pid in its sandbox).
    pub listen_pid: Option<&'a str>,
    /// The package's `.env`, when the caller asked for it.
    pub dotenv: Vec<(String, String)>,
    /// The caller's variables.
    pub caller: &'a [(String, String)],
    /// `BASE_PATH`, when the caller gives one.
    pub base_path: Option<&'a str>,
}

/// The agent's whole environment (see the module's documentation).
pub(crate) fn environment(
    package: &AgentPackage,
    mut start: Start<'_>,
) -> Result<Vec<(OsString, OsString)>, SpawnError> {
    let dotenv = std::mem::take(&mut start.dotenv);
    let mut vars: BTreeMap<String, Stack> = BTreeMap::new();
    let mut set = |layer: Layer, key: &str, value: OsString| {
        vars.entry(key.to_owned()).or_default().push(Var { layer, value });
    };
    for name in PASS_ENV {
        if let Some(value) = std::env::var_os(name) {
            set(Layer::Default, name, value);
        }
    }
    let mut path = OsString::from(package.venv_path.join("bin"));
    path.push(":/usr/local/bin:/usr/bin:/bin");
    let multiplexed = package
        .manifest
        .deploy
        .as_ref()
        .and_then(|d| d.multiplex)
        .unwrap_or(true);
    for (key, value) in [
        ("PATH", path),
        ("HOME", start.state.as_os_str().to_owned()),
        ("TMPDIR", "/tmp".into()),
        ("VIRTUAL_ENV", package.venv_path.as_os_str().to_owned()),
        ("PYTHONUNBUFFERED", "1".into()),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
        ("MULTIPLEXED", multiplexed.to_string().into()),
    ] {
        set(Layer::Default, key, value);
    }
    let deploy = package
        .manifest
        .deploy
        .iter()
        .flat_map(|d| d.environment.iter().cloned());
    let package_layers = (dotenv.into_iter().map(|kv| (EnvSource::DotEnv, kv)))
        .chain(
            manifest_environment(package)?
                .into_iter()
                .map(|kv| (EnvSource::Manifest, kv)),
        )
        .chain(deploy.map(|kv| (EnvSource::Deploy, kv)));
    for (from, (key, value)) in package_layers {
        if let Some(refusal) = package_refusal(&key) {
            return Err(SpawnError::EnvRefused {
                key,
                from,
                reason: refusal.reason(),
            });
        }
        check_value(&key, &value, from)?;
        set(Layer::Package(from), &key, value.into());
    }
    for (key, value) in start.caller {
        if let Some(refusal) = caller_refusal(key) {
            return Err(SpawnError::EnvRefused {
                key: key.clone(),
                from: EnvSource::Caller,
                reason: refusal.reason(),
            });
        }
        check_value(key, value, EnvSource::Caller)?;
        set(Layer::Caller, key, value.into());
    }
    for (key, value) in facts(package, &start) {
        set(Layer::Fact, &key, value);
    }
    let resolved = Resolver::new(&vars).resolve_all()?;
    Ok(vars
        .into_iter()
        .filter_map(|(key, mut stack)| {
            let top = stack.pop()?.value;
            let value = resolved.get(&key).map_or(top, |text| text.into());
            Some((key.into(), value))
        })
        .collect())
}

/// What par knows of this start, as variables.
fn facts(package: &AgentPackage, start: &Start<'_>) -> Vec<(String, OsString)> {
    let mut facts = vec![
        ("AGENT_PACKAGE_PATH".to_owned(), package.path.as_os_str().to_owned()),
        ("AGENT_APP_ID".to_owned(), package.app_id.clone().into()),
    ];
    if let Some(base_path) = start.base_path {
        facts.push(("BASE_PATH".into(), base_path.into()));
    }
    if !start.ports.is_empty() {
        let names: Vec<&str> = start.ports.iter().map(|p| p.name.as_str()).collect();
        facts.push(("LISTEN_FDS".into(), start.ports.len().to_string().into()));
        facts.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
        if let Some(pid) = start.listen_pid {
            facts.push(("LISTEN_PID".into(), pid.into()));
        }
    }
    for port in start.ports {
        // A unix socket has no port: its name is in LISTEN_FDNAMES alone.
        let Some(addr) = port.addr.tcp() else {
            continue;
        };
        let number: OsString = addr.port().to_string().into();
        facts.push((format!("PAR_PORT_{}", port.name.to_ascii_uppercase()), number.clone()));
        if let Some((_, variable)) = PAR_PORTS.iter().find(|(name, _)| port.name.eq_ignore_ascii_case(name)) {
            facts.push(((*variable).to_owned(), number));
        }
    }
    facts
}

fn check_value(key: &str, value: &str, from: EnvSource) -> Result<(), SpawnError> {
    if value.contains('\0') || value.len() > MAX_VALUE_BYTES {
        return Err(SpawnError::EnvValue { key: key.into(), from });
    }
    Ok(())
}

/// Every layer's value of one variable, lowest first: the last is what the
/// agent gets, unless a placeholder reads one below.
type Stack = Vec<Var>;

/// Resolves the package's placeholders against the composed variables.
struct Resolver<'a> {
    vars: &'a BTreeMap<String, Stack>,
    done: BTreeMap<(String, usize), String>,
    /// The chain being resolved, for cycles.
    chain: Vec<(String, usize)>,
}

impl<'a> Resolver<'a> {
    fn new(vars: &'a BTreeMap<String, Stack>) -> Self {
        Self {
            vars,
            done: BTreeMap::new(),
            chain: Vec::new(),
        }
    }

    /// The value the agent gets of every variable a package layer set last, resolved.
    fn resolve_all(mut self) -> Result<BTreeMap<String, String>, SpawnError> {
        let mut resolved = BTreeMap::new();
        for (key, stack) in self.vars {
            let top = stack.len() - 1;
            if matches!(stack[top].layer, Layer::Package(_)) {
                let value = self.resolve(key, top)?;
                resolved.insert(key.clone(), value);
            }
        }
        Ok(resolved)
    }

    /// `key`'s value at layer `at` of its stack: `None` when no layer sets it.
    /// Only the package's values are read for placeholders; a value par
    /// cannot read as text (a path) resolves to nothing.
    fn value(&mut self, key: &str, at: Option<usize>) -> Result<Option<String>, SpawnError> {
        let Some(stack) = self.vars.get(key) else {
            return Ok(None);
        };
        let Some(at) = at.or(stack.len().checked_sub(1)) else {
            return Ok(None);
        };
        match stack[at].layer {
            Layer::Package(_) => self.resolve(key, at).map(Some),
            _ => Ok(stack[at].value.to_str().map(str::to_owned)),
        }
    }

    /// The package value at layer `at` of `key`, its placeholders replaced:
    /// `${KEY}` in `KEY`'s own value reads the layers below it (as PAK's
    /// `A2A_PORT: ${A2A_PORT:-50051}` means), any other name its value as
    /// the agent gets it.
    fn resolve(&mut self, key: &str, at: usize) -> Result<String, SpawnError> {
        let id = (key.to_owned(), at);
        if let Some(done) = self.done.get(&id) {
            return Ok(done.clone());
        }
        let var = &self.vars[key][at];
        let Layer::Package(from) = var.layer else {
            return Ok(var.value.to_string_lossy().into_owned());
        };
        if let Some(start) = self.chain.iter().position(|link| *link == id) {
            let mut chain: Vec<String> = self.chain[start..].iter().map(|(k, _)| k.clone()).collect();
            chain.push(key.to_owned());
            return Err(SpawnError::EnvCycle { chain, from });
        }
        self.chain.push(id.clone());
        // Package values passed `check_value`, so they are text.
        let text = var.value.to_string_lossy().into_owned();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(found) = rest.find("${") {
            out.push_str(&rest[..found]);
            let after = &rest[found + 2..];
            let Some((name, default, tail)) = placeholder(after) else {
                out.push_str("${");
                rest = after;
                continue;
            };
            let below = match name == key {
                true => Some(at.checked_sub(1)),
                false => None,
            };
            let value = match below {
                Some(None) => None,
                Some(Some(below)) => self.value(name, Some(below))?,
                None => self.value(name, None)?,
            };
            match (value, default) {
                (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
                (Some(value), None) => out.push_str(&value),
                (_, Some(default)) => out.push_str(default),
                (None, None) => {
                    tracing::warn!(
                        variable = key,
                        refers_to = name,
                        "a placeholder names a variable no layer sets: it is empty"
                    )
                }
            }
            if out.len() > MAX_VALUE_BYTES {
                return Err(SpawnError::EnvValue { key: key.into(), from });
            }
            rest = tail;
        }
        out.push_str(rest);
        if out.len() > MAX_VALUE_BYTES {
            return Err(SpawnError::EnvValue { key: key.into(), from });
        }
        self.chain.pop();
        self.done.insert(id, out.clone());
        Ok(out)
    }
}

/// After `${`: the name, the default after `:-` if any, and the text after
/// `}`; `None` when this is not a placeholder (no `}`, or not a name).
fn placeholder(after: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = after.find('}')?;
    let inside = &after[..end];
    let (name, default) = match inside.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inside, None),
    };
    let is_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then_some((name, default, &after[end + 1..]))
}

/// `agent.yaml`'s `environment` map: strings, numbers and booleans, as text.
fn manifest_environment(package: &AgentPackage) -> Result<Vec<(String, String)>, SpawnError> {
    let Some(map) = package.manifest.document.get("environment") else {
        return Ok(Vec::new());
    };
    let Some(map) = map.as_object() else {
        return match map.is_null() {
            true => Ok(Vec::new()),
            false => Err(SpawnError::EnvValue {
                key: "environment".into(),
                from: EnvSource::Manifest,
            }),
        };
    };
    map.iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key.clone(), text.clone())),
            serde_json::Value::Number(n) => Ok((key.clone(), n.to_string())),
            serde_json::Value::Bool(b) => Ok((key.clone(), b.to_string())),
            _ => Err(SpawnError::EnvValue {
                key: key.clone(),
                from: EnvSource::Manifest,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(items: &[(Layer, &str, &str)]) -> BTreeMap<String, Stack> {
        let mut vars: BTreeMap<String, Stack> = BTreeMap::new();
        for (layer, key, value) in items {
            vars.entry((*key).to_owned()).or_default().push(Var {
                layer: *layer,
                value: (*value).into(),
            });
        }
        vars
    }

    const DEPLOY: Layer = Layer::Package(EnvSource::Deploy);
    const MANIFEST: Layer = Layer::Package(EnvSource::Manifest);

    #[test]
    fn placeholders_resolve_against_the_layers_with_defaults() {
        let vars = vars(&[
            (DEPLOY, "A2A_PORT", "${A2A_PORT_BOUND:-50051}"),
            (DEPLOY, "URL", "http://${HOST}:${REST_PORT}/${BASE}"),
            (MANIFEST, "HOST", "${NAME:-localhost}"),
            (MANIFEST, "NAME", ""),
            (Layer::Fact, "REST_PORT", "8123"),
            (Layer::Caller, "SECRET", "s3cr${et}"),
            (DEPLOY, "COPY", "${SECRET}"),
            (DEPLOY, "LITERAL", "$HOME ${not a name} ${UNCLOSED"),
        ]);
        let resolved = Resolver::new(&vars).resolve_all().expect("resolves");
        assert_eq!(resolved["A2A_PORT"], "50051");
        assert_eq!(resolved["HOST"], "localhost");
        assert_eq!(resolved["URL"], "http://localhost:8123/");
        assert_eq!(
            resolved["COPY"], "s3cr${et}",
            "the caller's values are never read for placeholders"
        );
        assert_eq!(resolved["LITERAL"], "$HOME ${not a name} ${UNCLOSED");
        assert!(!resolved.contains_key("SECRET"));
    }

    #[test]
    fn a_name_in_its_own_value_reads_the_layers_below() {
        let vars = vars(&[
            (MANIFEST, "GREETING", "hello"),
            (DEPLOY, "GREETING", "${GREETING:-hi}, world"),
            (DEPLOY, "A2A_PORT", "${A2A_PORT:-50051}"),
            (DEPLOY, "PORTS", "${A2A_PORT}/${REST_PORT:-8080}"),
            (Layer::Default, "MULTIPLEXED", "true"),
            (DEPLOY, "MULTIPLEXED", "${MULTIPLEXED}-ish"),
        ]);
        let resolved = Resolver::new(&vars).resolve_all().expect("resolves");
        assert_eq!(resolved["GREETING"], "hello, world");
        assert_eq!(resolved["A2A_PORT"], "50051");
        assert_eq!(resolved["PORTS"], "50051/8080");
        assert_eq!(resolved["MULTIPLEXED"], "true-ish");
    }

    #[test]
    fn a_cycle_is_refused_naming_the_chain() {
        let vars = vars(&[
            (DEPLOY, "A", "x${B}"),
            (MANIFEST, "B", "${C:-y}"),
            (DEPLOY, "C", "${A}"),
        ]);
        match Resolver::new(&vars).resolve_all() {
            Err(SpawnError::EnvCycle { chain, .. }) => assert_eq!(chain, ["A", "B", "C", "A"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_expansion_past_the_value_limit_is_refused() {
        let mut items = vec![(DEPLOY, "V0", "0123456789abcdef")];
        let names: Vec<String> = (1..16).map(|i| format!("V{i}")).collect();
        let values: Vec<String> = (1..16).map(|i| format!("${{V{p}}}${{V{p}}}", p = i - 1)).collect();
        for (name, value) in names.iter().zip(&values) {
            items.push((DEPLOY, name, value));
        }
        match Resolver::new(&vars(&items)).resolve_all() {
            Err(SpawnError::EnvValue { key, .. }) => assert!(key.starts_with('V'), "{key}"),
            other => panic!("{other:?}"),
        }
    }
}
