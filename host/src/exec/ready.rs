//! Whether a started agent is ready: it answered an HTTP GET with 2xx, or
//! (without a health path) it accepted a connection on its first socket.
//! The sockets are par's own, already listening, so a connection is queued
//! before the agent runs at all: what tells is that the agent took it off
//! the listener's accept queue (`TCP_INFO` for TCP; for a unix socket, the
//! kernel's socket diagnostics over netlink, as `ss` reads it).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use super::listener::Listener;
use crate::types::spawn::Endpoint;

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
    queued: Option<Queued>,
}

/// The probe's own end of the connection, kept open until it is taken.
#[derive(Debug)]
enum Queued {
    Tcp(#[allow(dead_code, reason = "held open, never read")] TcpStream),
    Unix(#[allow(dead_code, reason = "held open, never read")] UnixStream),
}

impl AcceptProbe {
    /// Whether the agent has accepted the probe's connection (made on the
    /// first call, waiting no later than `deadline`).
    pub(crate) fn accepted(&mut self, listener: &Listener, deadline: Instant) -> std::io::Result<bool> {
        if self.queued.is_none() {
            let timeout = left(Instant::now(), deadline).ok_or(std::io::ErrorKind::TimedOut)?;
            self.queued = Some(match listener {
                Listener::Tcp(tcp) => Queued::Tcp(TcpStream::connect_timeout(&reachable(tcp.local_addr()?), timeout)?),
                // A listening unix socket takes a connection into its queue at once.
                Listener::Unix(unix) => Queued::Unix(UnixStream::connect_addr(&unix.local_addr()?)?),
            });
        }
        let waiting = match listener {
            Listener::Tcp(tcp) => accept_queue(tcp)?,
            Listener::Unix(unix) => unix_accept_queue(unix)?,
        };
        let taken = waiting == 0;
        if taken {
            // Closed at once, so an agent that serves one connection at a
            // time is not left waiting for a request that never comes.
            self.queued = None;
        }
        Ok(taken)
    }
}

/// Connections waiting on a listening unix socket for an `accept`, from the
/// kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, `UNIX_DIAG_RQLEN`,
/// which is the accept queue for a listening socket), asked by inode.
fn unix_accept_queue(listener: &UnixListener) -> std::io::Result<u32> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const TCP_LISTEN: u32 = 10;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const HEADER: usize = 16;
    const MESSAGE: usize = 16;

    let inode = u32::try_from(rustix::fs::fstat(listener.as_fd())?.st_ino)
        .map_err(|_| std::io::Error::other("a socket inode past 32 bits"))?;
    let mut request = Vec::with_capacity(HEADER + 24);
    request.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&[0; 8]); // sequence, port id
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    request.extend_from_slice(&inode.to_ne_bytes());
    request.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie
    let diag = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    rustix::net::send(&diag, &request, SendFlags::empty())?;
    let mut answer = vec![0u8; 8192];
    let (_, length) = rustix::net::recv(&diag, &mut answer[..], RecvFlags::empty())?;
    let answer = answer.get(..length).ok_or(std::io::ErrorKind::InvalidData)?;
    let u16_at = |at: usize| answer.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| {
        answer
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let unreadable = || std::io::Error::new(std::io::ErrorKind::InvalidData, "socket diagnostics unreadable");
    if u16_at(4) == Some(NLMSG_ERROR) {
        let errno = u32_at(HEADER).map_or(0, |e| e as i32);
        return Err(std::io::Error::from_raw_os_error(-errno));
    }
    let end = (u32_at(0).ok_or_else(unreadable)? as usize).min(answer.len());
    let mut at = HEADER + MESSAGE;
    while at + 4 <= end {
        let (length, kind) = (
            u16_at(at).ok_or_else(unreadable)? as usize,
            u16_at(at + 2).ok_or_else(unreadable)?,
        );
        if length < 4 {
            break;
        }
        if kind == UNIX_DIAG_RQLEN {
            return u32_at(at + 4).ok_or_else(unreadable);
        }
        at += (length + 3) & !3;
    }
    Err(unreadable())
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

/// Whether `GET path` on `at` answers with a 2xx status, within
/// [`PROBE_TIMEOUT`] and never past `deadline`, however slowly the answer
/// drips in.
pub(crate) fn http_ok(at: &Endpoint, path: &str, deadline: Instant) -> bool {
    let started = Instant::now();
    let Some(timeout) = left(started, deadline) else {
        return false;
    };
    match at {
        Endpoint::Tcp(addr) => match TcpStream::connect_timeout(&reachable(*addr), timeout) {
            Ok(stream) => get_ok(stream, &addr.to_string(), path, started, deadline),
            Err(_) => false,
        },
        Endpoint::Unix(socket) => match UnixStream::connect(socket) {
            Ok(stream) => get_ok(stream, "localhost", path, started, deadline),
            Err(_) => false,
        },
    }
}

/// Sends `GET path` on a connected stream and reads whether the answer is 2xx.
fn get_ok<S: Read + Write + Timeouts>(
    mut stream: S,
    host: &str,
    path: &str,
    started: Instant,
    deadline: Instant,
) -> bool {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
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

/// The read and write deadlines both stream kinds take.
trait Timeouts {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Timeouts for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl Timeouts for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_connection_counts_until_it_is_accepted() {
        let dir = tempfile::tempdir().expect("dir");
        let unix = Endpoint::Unix(dir.path().join("probe.sock"));
        for at in [Endpoint::Tcp("127.0.0.1:0".parse().expect("addr")), unix] {
            let (listener, _, _file) = Listener::bind(&at, None).expect("bind");
            let mut probe = AcceptProbe::default();
            let deadline = Instant::now() + Duration::from_secs(60);
            assert!(
                !probe.accepted(&listener, deadline).expect("probe"),
                "{at}: nothing accepted yet"
            );
            match &listener {
                Listener::Tcp(tcp) => drop(tcp.accept().expect("accept")),
                Listener::Unix(unix) => drop(unix.accept().expect("accept")),
            }
            assert!(
                probe.accepted(&listener, deadline).expect("probe"),
                "{at}: the connection was taken"
            );
        }
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
                http_ok(
                    &Endpoint::Tcp(addr),
                    "/health",
                    Instant::now() + Duration::from_secs(60)
                ),
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
            !http_ok(&Endpoint::Tcp(closed), "/", Instant::now() + Duration::from_secs(60)),
            "nothing listens there"
        );
    }

    #[test]
    fn health_is_asked_over_a_unix_socket_too() {
        let dir = tempfile::tempdir().expect("dir");
        let at = Endpoint::Unix(dir.path().join("health.sock"));
        let (listener, _, _file) = Listener::bind(&at, None).expect("bind");
        let Listener::Unix(unix) = listener else {
            panic!("a unix listener");
        };
        let server = std::thread::spawn(move || {
            let (mut conn, _) = unix.accept().expect("accept");
            let mut request = [0u8; 256];
            let _ = conn.read(&mut request);
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").expect("answer");
        });
        assert!(http_ok(&at, "/health", Instant::now() + Duration::from_secs(60)));
        server.join().expect("server");
    }
}
