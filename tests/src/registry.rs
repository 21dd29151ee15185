//! The OCI reference registry (`docker-registry`, CNCF Distribution 2.8, as
//! Debian packages it; tests/run installs it) on 127.0.0.1, for the tests
//! that push to and pull from a real registry rather than a stand-in: its
//! own process, configuration, storage and log per test, nothing shared
//! with a registry the machine may run as a service.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the registry may take to listen before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How often a start is tried again when another process took the port
/// between our choosing it and the registry binding it.
const START_ATTEMPTS: u32 = 5;
/// What a port taken by someone else makes the registry say before it exits.
const PORT_TAKEN: &str = "address already in use";
/// The registry's log (its access log on stdout, its own messages on
/// stderr, one file, so a failure shows them in order), in its directory.
const LOG: &str = "registry.log";

/// A running registry with filesystem storage in a temporary directory of
/// its own; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    /// Holds the configuration, storage, htpasswd file and log ([`LOG`]);
    /// last, so it is removed after the child is gone.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on 127.0.0.1 with filesystem storage in its own
    /// temporary directory, open to anyone (as a local registry usually is).
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a registry like [`Registry::start`] that answers only requests
    /// with HTTP basic credentials `user`/`password` (an htpasswd file with
    /// a bcrypt hash, made with apache2-utils' `htpasswd`, which tests/run
    /// installs): for the tests of credentials and of refusals.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::launch(Some((user, password)))
    }

    /// `127.0.0.1:PORT`: the registry host to put in an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The root of the registry's filesystem storage, so a test can reach
    /// behind the API: a blob's bytes are at
    /// `docker/registry/v2/blobs/sha256/<first two hex digits>/<hex>/data`.
    /// The registry keeps no cache of blob descriptors, so what a test
    /// writes there is what the next request sees.
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// How many blob uploads the registry has completed so far: the
    /// `PUT /v2/<name>/blobs/uploads/<id>?…&digest=… HTTP/1.1" 201` lines of
    /// its access log. A test that checks what a client did not upload again
    /// reads this after the client's requests returned: the registry writes
    /// the line before its answer leaves.
    pub fn blob_uploads(&self) -> usize {
        self.log().lines().filter(|line| is_completed_blob_upload(line)).count()
    }

    /// How many blobs the registry has served whole so far (`GET
    /// /v2/<name>/blobs/sha256:…` answered 200): what pulls fetched.
    pub fn blob_downloads(&self) -> usize {
        self.log().lines().filter(|line| is_served_blob(line)).count()
    }

    /// Everything the registry has logged so far (its access log and its
    /// own messages), for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    fn launch(credentials: Option<(&str, &str)>) -> Self {
        let binary = on_path("docker-registry").unwrap_or_else(|| {
            panic!("docker-registry is not installed (Debian: apt-get install docker-registry; tests/run installs it)")
        });
        let dir = tempfile::Builder::new()
            .prefix("par-registry-")
            .tempdir()
            .expect("a directory for the registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("the registry's storage directory");
        let auth = credentials.map(|(user, password)| {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, htpasswd_line(user, password)).expect("write the htpasswd file");
            htpasswd
        });
        let log = dir.path().join(LOG);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(&storage, port, auth.as_deref())).expect("write the registry's config");
            let output = File::create(&log).expect("the registry's log");
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                // Nothing from the environment: no proxy, no REGISTRY_*
                // variable overriding the configuration, no home.
                .env_clear()
                .env("HOME", dir.path())
                .env("TMPDIR", dir.path())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("the log, for stdout"))
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            match wait_listening(&mut child, &log, port) {
                Ok(()) => {
                    return Self {
                        child,
                        port,
                        storage,
                        dir,
                    };
                }
                Err(log) if log.contains(PORT_TAKEN) => last = log,
                Err(log) => panic!("the registry did not start:\n{log}"),
            }
        }
        panic!("the registry found its port taken {START_ATTEMPTS} times; last log:\n{last}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listened on a moment ago (the registry binds the address
/// itself, so a race with another process is possible: [`Registry::start`]
/// tries again when the registry says the port is taken).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits, with a short backoff, for the registry's `listening on` line (it
/// logs it once its socket listens, so connections from then on queue for
/// it), for at most [`START_DEADLINE`]. A registry that exits, or does not
/// listen in time, is killed and its log returned.
fn wait_listening(child: &mut Child, log: &Path, port: u16) -> Result<(), String> {
    let listening = format!("listening on 127.0.0.1:{port}");
    let deadline = Instant::now() + START_DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(&listening) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().expect("the registry's status") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{text}\n(the registry exited: {status})"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{text}\n(not listening after {START_DEADLINE:?}; killed)"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The registry's configuration: filesystem storage at `storage`, no
/// descriptor cache (a blob rewritten on disk is seen as it is), deletes
/// allowed, no upload purging while a test runs, and htpasswd auth when
/// `htpasswd` is given. Paths are written as JSON strings, which YAML reads.
fn config_yaml(storage: &Path, port: u16, htpasswd: Option<&Path>) -> String {
    let quoted = |path: &Path| serde_json::to_string(&path.to_str().expect("a UTF-8 temporary path")).expect("JSON");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: par-tests-registry\n",
        quoted(storage)
    );
    if let Some(htpasswd) = htpasswd {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: par-tests\n    path: {}\n",
            quoted(htpasswd)
        ));
    }
    config
}

/// `user:<bcrypt hash of password>` and a newline, from apache2-utils'
/// `htpasswd` (the registry accepts only bcrypt; the password goes through
/// stdin, not the command line).
fn htpasswd_line(user: &str, password: &str) -> String {
    let htpasswd = on_path("htpasswd").unwrap_or_else(|| {
        panic!("htpasswd is not installed (Debian: apt-get install apache2-utils; tests/run installs it)")
    });
    let mut child = Command::new(htpasswd)
        .args(["-n", "-i", "-B"])
        .arg(user)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start htpasswd");
    child
        .stdin
        .take()
        .expect("htpasswd's stdin")
        .write_all(password.as_bytes())
        .expect("give htpasswd the password");
    let output = child.wait_with_output().expect("htpasswd's output");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout).expect("htpasswd writes text");
    format!("{}\n", line.trim())
}

/// Whether an access-log line (Apache combined format, `… "METHOD URI
/// HTTP/1.1" STATUS SIZE …`) records a completed blob upload: a `PUT` to
/// `/v2/<name>/blobs/uploads/…` answered `201 Created`.
fn is_completed_blob_upload(line: &str) -> bool {
    access(line).is_some_and(|(method, uri, status)| {
        method == "PUT" && uri.starts_with("/v2/") && uri.contains("/blobs/uploads/") && status == "201"
    })
}

/// Whether an access-log line is a blob served whole (`GET
/// /v2/<name>/blobs/sha256:… HTTP/1.1" 200`).
fn is_served_blob(line: &str) -> bool {
    access(line).is_some_and(|(method, uri, status)| {
        method == "GET" && uri.starts_with("/v2/") && uri.contains("/blobs/sha256:") && status == "200"
    })
}

/// An access-log line's method, URI and status.
fn access(line: &str) -> Option<(&str, &str, &str)> {
    let mut quoted = line.split('"');
    let (_, request, after) = (quoted.next()?, quoted.next()?, quoted.next()?);
    let mut request = request.split(' ');
    Some((request.next()?, request.next()?, after.split_whitespace().next()?))
}

/// The executable `name` on this process's `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use sha2::{Digest as _, Sha256};

    use super::*;

    /// One HTTP/1.1 request to `host`, closed after the answer: the status
    /// code, the head and the body.
    fn request(host: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(host).expect("connect to the registry");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send the request head");
        stream.write_all(body).expect("send the request body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("the answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        (status, head.to_owned(), body.to_owned())
    }

    /// The value of header `name` in an answer's head.
    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Standard base64, for a basic `Authorization` header.
    fn base64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Pushes `blob` to repository `name` by the two-step upload (POST, then
    /// PUT with the digest): the digest.
    fn push_blob(registry: &Registry, name: &str, blob: &[u8], headers: &[(&str, &str)]) -> String {
        let host = registry.host();
        let (status, head, body) = request(&host, "POST", &format!("/v2/{name}/blobs/uploads/"), headers, b"");
        assert_eq!(status, 202, "starting an upload: {head}\n{body}");
        let location = header(&head, "Location").expect("the upload's location");
        let location = location.strip_prefix(&format!("http://{host}")).unwrap_or(location);
        let digest: String = Sha256::digest(blob).iter().map(|b| format!("{b:02x}")).collect();
        let digest = format!("sha256:{digest}");
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut put_headers = vec![("Content-Type", "application/octet-stream")];
        put_headers.extend_from_slice(headers);
        let (status, head, body) = request(
            &host,
            "PUT",
            &format!("{location}{separator}digest={digest}"),
            &put_headers,
            blob,
        );
        assert_eq!(status, 201, "completing the upload: {head}\n{body}\n{}", registry.log());
        digest
    }

    #[test]
    fn serves_the_api_and_counts_blob_uploads() {
        let registry = Registry::start();
        let (status, head, _) = request(&registry.host(), "GET", "/v2/", &[], b"");
        assert_eq!(status, 200, "{head}");
        assert_eq!(header(&head, "Docker-Distribution-Api-Version"), Some("registry/2.0"));
        assert_eq!(registry.blob_uploads(), 0, "{}", registry.log());

        let digest = push_blob(&registry, "t", b"a blob", &[]);
        assert_eq!(registry.blob_uploads(), 1, "{}", registry.log());
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let data = registry
            .storage()
            .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
        assert_eq!(std::fs::read(&data).expect("the blob on disk"), b"a blob");

        // A failed upload (a digest that does not match) is not counted.
        let host = registry.host();
        let (_, head, _) = request(&host, "POST", "/v2/t/blobs/uploads/", &[], b"");
        let location = header(&head, "Location").expect("the upload's location");
        let location = location.strip_prefix(&format!("http://{host}")).unwrap_or(location);
        let (status, _, _) = request(
            &host,
            "PUT",
            &format!("{location}&digest={digest}"),
            &[],
            b"other bytes",
        );
        assert_eq!(status, 400);
        assert_eq!(registry.blob_uploads(), 1, "{}", registry.log());
    }

    #[test]
    fn asks_for_the_credentials_it_was_given() {
        let registry = Registry::start_with_auth("user", "password");
        let host = registry.host();
        let (status, head, _) = request(&host, "GET", "/v2/", &[], b"");
        assert_eq!(status, 401, "{head}");
        assert_eq!(header(&head, "WWW-Authenticate"), Some("Basic realm=\"par-tests\""));
        let wrong = format!("Basic {}", base64(b"user:wrong"));
        let (status, head, _) = request(&host, "GET", "/v2/", &[("Authorization", &wrong)], b"");
        assert_eq!(status, 401, "{head}");
        let right = format!("Basic {}", base64(b"user:password"));
        let (status, head, _) = request(&host, "GET", "/v2/", &[("Authorization", &right)], b"");
        assert_eq!(status, 200, "{head}");

        assert_eq!(registry.blob_uploads(), 0, "{}", registry.log());
        push_blob(&registry, "t", b"a blob", &[("Authorization", &right)]);
        assert_eq!(registry.blob_uploads(), 1, "{}", registry.log());
    }
    #[test]
    fn reads_completed_uploads_from_the_access_log() {
        let put = "127.0.0.1 - - [06/Dec/2026:04:02:34 +0000] \"PUT /v2/a/b/blobs/uploads/99c5?_state=x%3D&digest=sha256:2cf2 HTTP/1.1\" 201 0 \"\" \"curl/7.88.1\"";
        assert!(is_completed_blob_upload(put));
        assert!(!is_completed_blob_upload(&put.replace("\" 201 ", "\" 400 ")));
        assert!(!is_completed_blob_upload(&put.replace("PUT", "PATCH")));
        assert!(!is_completed_blob_upload(
            &put.replace("/blobs/uploads/", "/manifests/")
        ));
        // The registry's own line about the same request.
        assert!(!is_completed_blob_upload(
            "time=\"2026-12-06T04:02:34Z\" level=info msg=\"response completed\" http.request.method=PUT http.request.uri=\"/v2/t/blobs/uploads/99c5?digest=sha256:2cf2\" http.response.status=201"
        ));
    }

    #[test]
    fn reads_served_blobs_from_the_access_log() {
        let get = "127.0.0.1 - - [06/Dec/2026:04:02:34 +0000] \"GET /v2/a/b/blobs/sha256:2cf2 HTTP/1.1\" 200 11 \"\" \"par/0.1.0\"";
        assert!(is_served_blob(get));
        assert!(!is_served_blob(&get.replace("\" 200 ", "\" 404 ")));
        assert!(!is_served_blob(&get.replace("GET", "HEAD")));
        assert!(!is_served_blob(&get.replace("/blobs/", "/manifests/")));
    }
}
