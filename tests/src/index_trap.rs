//! A local HTTP listener standing in for an attacker's package index: it
//! counts every connection and answers each request with 404, so an
//! installer that reaches it fails fast instead of waiting on a timeout.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::loopback::Loopback;

/// A listening index trap on 127.0.0.1.
#[derive(Debug)]
pub struct IndexTrap {
    server: Loopback,
    connections: Arc<AtomicUsize>,
}

impl IndexTrap {
    /// Binds a free port and starts answering.
    pub fn start() -> Self {
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let server = Loopback::serve(move |mut stream, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        Self { server, connections }
    }

    /// `http://127.0.0.1:PORT`, the trap's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// The trap's port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Stops listening and returns how many connections reached the trap,
    /// counting every one the kernel had accepted by then.
    pub fn connections(mut self) -> usize {
        self.server.stop();
        self.connections.load(Ordering::SeqCst)
    }
}
