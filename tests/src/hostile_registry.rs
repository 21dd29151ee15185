//! A stand-in registry on 127.0.0.1: one that misbehaves on purpose,
//! answering every request the same bad way, so a test can show par
//! refuses each misbehaviour with a typed error and writes nothing; or one
//! that takes every push and has the OCI 1.1 referrers API, which the
//! reference registry the other tests run does not.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use crate::loopback::Loopback;

/// How the registry misbehaves.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Every request is redirected to `location` (another host).
    Redirect(String),
    /// Every request is answered 200 with this many bytes of body.
    Huge(usize),
    /// Every request is answered with a head promising a body that never
    /// comes; the connection stays open until the registry is dropped.
    Stall,
    /// Not a misbehaviour: a registry that has every blob already, takes
    /// every manifest, and answers the referrers API with an empty index.
    Referrers,
    /// Not a misbehaviour: a registry that asks for a Bearer token from its
    /// own token service (`/token`), gives `token` to a request with the
    /// Basic login `user:password`, and answers 404 to every request that
    /// carries it.
    Bearer {
        /// The login the token service takes.
        login: (String, String),
        /// The token it gives.
        token: String,
    },
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The value of its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its body.
    pub body: String,
}

/// A misbehaving registry; stops when dropped.
#[derive(Debug)]
pub struct HostileRegistry {
    server: Loopback,
    /// Connections held open by [`Misbehaviour::Stall`].
    held: Arc<Mutex<Vec<TcpStream>>>,
    /// Every request, in order.
    received: Arc<Mutex<Vec<Received>>>,
}

impl HostileRegistry {
    /// Starts answering every request as `misbehaviour` says.
    pub fn start(misbehaviour: Misbehaviour) -> Self {
        let held = Arc::new(Mutex::new(Vec::new()));
        let holding = held.clone();
        let received = Arc::new(Mutex::new(Vec::new()));
        let receiving = received.clone();
        let port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
        let own_port = port.clone();
        let server = Loopback::serve(move |mut stream, head| match &misbehaviour {
            Misbehaviour::Bearer { login, token } => {
                let request = read_request(&mut stream, head);
                let basic = format!("Basic {}", base64_of(&format!("{}:{}", login.0, login.1)));
                let answer = if request.path.starts_with("/token") {
                    match request.authorization.as_deref() == Some(basic.as_str()) {
                        true => {
                            let body = format!("{{\"token\": \"{token}\"}}");
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        false => {
                            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                        }
                    }
                } else if request.authorization.as_deref() == Some(format!("Bearer {token}").as_str()) {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else {
                    let port = own_port.get().copied().unwrap_or_default();
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"stand-in\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = stream.write_all(answer.as_bytes());
                receiving.lock().expect("the requests").push(request);
            }
            Misbehaviour::Referrers => {
                let request = read_request(&mut stream, head);
                let (method, path) = (request.method.as_str(), request.path.as_str());
                let answer = if method == "GET" && path.contains("/referrers/") {
                    let index =
                        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{index}",
                        index.len()
                    )
                } else if method == "PUT" && path.contains("/manifests/") {
                    "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else if method == "HEAD" && path.contains("/blobs/") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                };
                let _ = stream.write_all(answer.as_bytes());
                receiving.lock().expect("the requests").push(request);
            }
            Misbehaviour::Redirect(location) => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(head.as_bytes());
            }
            Misbehaviour::Huge(bytes) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(head.as_bytes());
                let chunk = vec![b' '; 64 << 10];
                let mut left = *bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
            Misbehaviour::Stall => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{");
                holding.lock().expect("the held connections").push(stream);
            }
        });
        let _ = port.set(server.port());
        Self { server, held, received }
    }

    /// Every request received so far: method, path, body.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the requests").clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.held.lock().map(|mut held| held.clear()).unwrap_or_default();
        self.server.stop();
    }
}

/// The request whose head (and perhaps some of its body) `head` holds,
/// reading the rest of a `Content-Length` body.
fn read_request(stream: &mut TcpStream, head: &str) -> Received {
    use std::io::Read as _;
    let (headers, started) = head.split_once("\r\n\r\n").unwrap_or((head, ""));
    let mut words = headers.split_whitespace();
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let header = |wanted: &str| {
        headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted).then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = started.as_bytes().to_vec();
    if body.len() < length {
        let mut rest = vec![0; length - body.len()];
        if stream.read_exact(&mut rest).is_ok() {
            body.extend(rest);
        }
    }
    Received {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization: header("authorization"),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Standard base64, as a Basic login is sent.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
