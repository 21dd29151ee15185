//! Registry credentials from the files Docker and Podman keep them in
//! (`{"auths": {"HOST": {"auth": base64("USER:PASSWORD")}}}`), and the
//! `WWW-Authenticate` challenge a registry answers with.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::types::registry::RegistryError;

/// The largest credentials file par reads.
const MAX_AUTH_FILE_BYTES: u64 = 1 << 20;

/// A login for one registry.
#[derive(Clone)]
pub(crate) struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The login for `registry`: from `file` when given (which must then
    /// be readable), else from the first of the usual files that exists.
    pub(crate) fn find(registry: &str, file: Option<&Path>) -> Result<Option<Self>, RegistryError> {
        match file {
            Some(file) => read(file, registry),
            None => {
                for file in usual_files().into_iter().filter(|file| file.is_file()) {
                    if let Some(found) = read(&file, registry)? {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The `Authorization` value for HTTP Basic.
    pub(crate) fn basic(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// Where Podman and Docker keep logins, in the order Podman reads them.
fn usual_files() -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    files.extend(var("XDG_RUNTIME_DIR").map(|dir| dir.join("containers/auth.json")));
    files.extend(var("DOCKER_CONFIG").map(|dir| dir.join("config.json")));
    files.extend(var("HOME").map(|home| home.join(".docker/config.json")));
    files
}

/// The login for `registry` in the credentials file `path`.
fn read(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    use std::io::Read as _;
    let problem = |problem: String| RegistryError::AuthFile {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| problem(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_AUTH_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| problem(e.to_string()))?;
    if text.len() as u64 > MAX_AUTH_FILE_BYTES {
        return Err(problem(format!("larger than {MAX_AUTH_FILE_BYTES} bytes")));
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: std::collections::BTreeMap<String, Entry>,
    }
    let parsed: File = serde_json::from_slice(&text).map_err(|e| problem(format!("not a config.json: {e}")))?;
    let entry = parsed.auths.iter().find(|(key, _)| {
        let key = key.trim_start_matches("https://").trim_start_matches("http://");
        key.split('/').next() == Some(registry)
    });
    let Some((key, Entry { auth: Some(auth) })) = entry else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| problem(format!("the `auth` of `{key}` is not base64 of USER:PASSWORD")))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| problem(format!("the `auth` of `{key}` is not USER:PASSWORD")))?;
    Ok(Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    }))
}

/// A challenge's scheme and its parameters (`realm="…", service="…"`);
/// `None` when it cannot be read.
pub(crate) fn parse_challenge(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let text = text.trim();
    let (scheme, mut rest) = text.split_once(' ').unwrap_or((text, ""));
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some((scheme.to_owned(), params));
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => value.push(chars.next()?.1),
                        (at, '"') => break at,
                        (_, c) => value.push(c),
                    }
                };
                (value, &quoted[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        params.push((key, value));
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_with_quoted_and_bare_values() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg,istry", scope=repository:a:pull"#,
        )
        .expect("a challenge");
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            [
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "reg,istry".into()),
                ("scope".into(), "repository:a:pull".into())
            ]
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).map(|c| c.0),
            Some("Basic".into())
        );
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
    }

    #[test]
    fn a_login_is_found_by_registry_host_in_a_config_json() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"https://other:5000": {"auth": "eDp5"}, "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="}}}"#,
        )
        .expect("write");
        let found = Credentials::find("127.0.0.1:5000", Some(&file))
            .expect("readable")
            .expect("a login");
        assert_eq!((found.user.as_str(), found.password.as_str()), ("user", "pa:ss"));
        assert!(
            Credentials::find("127.0.0.1:5001", Some(&file))
                .expect("readable")
                .is_none()
        );
        std::fs::write(&file, r#"{"auths": {"127.0.0.1:5000": {"auth": "!!"}}}"#).expect("write");
        let error = Credentials::find("127.0.0.1:5000", Some(&file)).expect_err("bad base64");
        assert!(error.to_string().contains("127.0.0.1:5000"), "{error}");
    }
}
