//! A registry that misbehaves on purpose, on 127.0.0.1: it answers every
//! request the same bad way, so a test can show par refuses each
//! misbehaviour with a typed error and writes nothing.

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
}

/// A misbehaving registry; stops when dropped.
#[derive(Debug)]
pub struct HostileRegistry {
    server: Loopback,
    /// Connections held open by [`Misbehaviour::Stall`].
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl HostileRegistry {
    /// Starts answering every request as `misbehaviour` says.
    pub fn start(misbehaviour: Misbehaviour) -> Self {
        let held = Arc::new(Mutex::new(Vec::new()));
        let holding = held.clone();
        let server = Loopback::serve(move |mut stream, _| match &misbehaviour {
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
        Self { server, held }
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
