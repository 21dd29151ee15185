//! A server on 127.0.0.1 for the tests' stand-ins for remote services (an
//! attacker's index, a package index): one connection at a time, each
//! handed over with its request head, until the server is stopped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// A listening server; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Loopback {
    port: u16,
    thread: Option<JoinHandle<()>>,
}

/// What [`Loopback::stop`] sends.
const STOP: &[u8] = b"PAR-LOOPBACK-STOP\r\n\r\n";

impl Loopback {
    /// Binds a free port and hands every connection to `handle`, with its
    /// request head (read with a bound; a client that sends nothing still
    /// comes through, with an empty head).
    pub(crate) fn serve(mut handle: impl FnMut(TcpStream, &str) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("the port").port();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let head = read_head(&stream);
                if head.as_bytes() == STOP {
                    break;
                }
                handle(stream, &head);
            }
        });
        Self {
            port,
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving. Connections queued before the stop request are
    /// handled first, so nothing that arrived earlier is missed.
    pub(crate) fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(STOP);
            }
            thread.join().expect("the loopback server's thread");
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a request head, at most 64 KiB, waiting at most 5 s for it.
fn read_head(mut stream: &TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
