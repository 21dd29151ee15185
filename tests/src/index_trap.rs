//! A local HTTP listener standing in for an attacker's package index: it
//! counts every connection and answers each request with 404, so an
//! installer that reaches it fails fast instead of waiting on a timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A listening index trap on 127.0.0.1.
#[derive(Debug)]
pub struct IndexTrap {
    port: u16,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl IndexTrap {
    /// Binds a free port and starts answering.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the index trap");
        let port = listener.local_addr().expect("trap address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let thread = {
            let connections = connections.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    match read_head(&stream) {
                        Head::Stop => break,
                        Head::Request => {
                            connections.fetch_add(1, Ordering::SeqCst);
                            answer_not_found(stream);
                        }
                    }
                }
            })
        };
        Self {
            port,
            connections,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, the trap's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The trap's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening and returns how many connections reached the trap,
    /// counting every one the kernel had accepted by then.
    pub fn connections(mut self) -> usize {
        self.stop();
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections queued before the stop request are accepted (and
    /// counted) first, so nothing that arrived earlier is missed.
    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(STOP);
            }
            thread.join().expect("index trap thread");
        }
    }
}

impl Drop for IndexTrap {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the trap's own [`IndexTrap::stop`] sends.
const STOP: &[u8] = b"PAR-INDEX-TRAP-STOP\r\n\r\n";

enum Head {
    Stop,
    Request,
}

/// Reads a request head (bounded; a client that sends nothing still counts).
fn read_head(mut stream: &TcpStream) -> Head {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head == STOP { Head::Stop } else { Head::Request }
}

fn answer_not_found(mut stream: TcpStream) {
    let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}
