//! Whether a started agent is ready: it answered an HTTP GET with 2xx, or
//! (without a health path) it accepted a connection on its first socket.
//! The sockets are par's own, already listening, so a connection is queued
//! before the agent runs at all: what tells is that the agent took it off
//! the listener's accept queue.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Most bytes of a health answer read.
const MAX_ANSWER: u64 = 64 * 1024;
/// How long one probe may take (and never past the caller's deadline).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What is left of one probe's time: [`PROBE_TIMEOUT`] from `started`, cut
/// at `deadline`; `None` once either has passed.
fn left(started: Instant, deadline: Instant) -> Option<Duration> {
    let end = (started + PROBE_TIMEOUT).min(deadline);
    end.checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// Where to connect to reach a socket bound to `bound`: loopback for a wildcard address.
pub(crate) fn reachable(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// A connection queued on the agent's first socket, to see the agent take it.
#[derive(Debug, Default)]
pub(crate) struct AcceptProbe {
    queued: Option<TcpStream>,
}

impl AcceptProbe {
    /// Whether the agent has accepted the probe's connection (made on the
    /// first call, waiting no later than `deadline`).
    pub(crate) fn accepted(&mut self, listener: &TcpListener, deadline: Instant) -> std::io::Result<bool> {
        if self.queued.is_none() {
            let addr = reachable(listener.local_addr()?);
            let timeout = left(Instant::now(), deadline).ok_or(std::io::ErrorKind::TimedOut)?;
            self.queued = Some(TcpStream::connect_timeout(&addr, timeout)?);
        }
        let taken = accept_queue(listener)? == 0;
        if taken {
            // Closed at once, so an agent that serves one connection at a
            // time is not left waiting for a request that never comes.
            self.queued = None;
        }
        Ok(taken)
    }
}

/// Connections waiting on `listener` for an `accept` (`TCP_INFO`'s
/// `tcpi_unacked`, which is the accept queue for a listening socket).
#[allow(
    unsafe_code,
    reason = "`getsockopt(TCP_INFO)` fills a C struct through a raw pointer; neither std nor rustix reads `tcp_info`"
)]
fn accept_queue(listener: &TcpListener) -> std::io::Result<u32> {
    // SAFETY: `info` is a plain C struct, zeroed, and `len` its size; the
    // kernel writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let done = libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(info.tcpi_unacked)
    }
}

/// Whether `GET path` on `addr` answers with a 2xx status, within
/// [`PROBE_TIMEOUT`] and never past `deadline`, however slowly the answer
/// drips in.
pub(crate) fn http_ok(addr: SocketAddr, path: &str, deadline: Instant) -> bool {
    let started = Instant::now();
    let Some(timeout) = left(started, deadline) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&reachable(addr), timeout) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let sent = left(started, deadline).is_some_and(|timeout| {
        stream.set_write_timeout(Some(timeout)).is_ok() && stream.write_all(request.as_bytes()).is_ok()
    });
    if !sent {
        return false;
    }
    // The whole answer (up to a cap), so the agent is not cut off mid-write;
    // each read waits only for what is left of the probe's time.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while (answer.len() as u64) < MAX_ANSWER {
        let Some(timeout) = left(started, deadline) else {
            break;
        };
        if stream.set_read_timeout(Some(timeout)).is_err() {
            break;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let end = answer.iter().position(|&b| b == b'\n').unwrap_or(answer.len());
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut words = line.split_whitespace();
    matches!(
        (words.next(), words.next()),
        (Some(version), Some(code)) if version.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_connection_counts_until_it_is_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut probe = AcceptProbe::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(
            !probe.accepted(&listener, deadline).expect("probe"),
            "nothing accepted yet"
        );
        let (_taken, _) = listener.accept().expect("accept");
        assert!(
            probe.accepted(&listener, deadline).expect("probe"),
            "the connection was taken"
        );
    }

    #[test]
    fn only_a_2xx_answer_is_healthy() {
        for (answer, healthy) in [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.0 204 No Content\r\n\r\n", true),
            ("HTTP/1.1 503 Busy\r\n\r\n", false),
            ("hello\r\n", false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().expect("accept");
                let mut request = [0u8; 256];
                let _ = conn.read(&mut request);
                conn.write_all(answer.as_bytes()).expect("answer");
                String::from_utf8_lossy(&request).into_owned()
            });
            assert_eq!(
                http_ok(addr, "/health", Instant::now() + Duration::from_secs(60)),
                healthy,
                "{answer:?}"
            );
            assert!(server.join().expect("server").starts_with("GET /health HTTP/1.1\r\n"));
        }
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        assert!(
            !http_ok(closed, "/", Instant::now() + Duration::from_secs(60)),
            "nothing listens there"
        );
    }
}
