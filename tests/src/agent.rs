//! An agent for the tests that start agents: a standard-library HTTP
//! server on its inherited socket, packaged as an APKG.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::Apkg;

/// A standard-library HTTP server (`agent_server.py`, which the Python
/// package's tests start too) on the socket it was handed (fd 3), or
/// on `AGENT_BIND` (`HOST:PORT`) when started by hand:
/// `/env` answers its environment, `/pid` its pid, `/read?PATH` a file's first bytes,
/// `/write?PATH` writes there, `/connect?HOST:PORT` opens a connection,
/// `/fork?N` starts up to N processes and says how many it could,
/// `/alloc?MIB` allocates; each answers `ok …` or `refused` and the
/// exception's name. `/drip` never finishes answering: a byte every half second.
pub const SERVER: &str = include_str!("agent_server.py");

/// An agent package named `name`, serving with [`SERVER`], with `environment` lines in its manifest.
pub fn agent_apkg(name: &str, environment: &str) -> Apkg {
    Apkg::new()
        .file(
            "agent.yaml",
            format!("name: {name}\nversion: 1.0.0\nentrypoint: server:main\n{environment}"),
        )
        .file("server.py", SERVER)
}

/// [`SERVER`] (`python server.py {token}`, the token marking its processes)
/// serving on one socket (`http`) of any free port, in the sandbox.
pub fn serving(token: &str) -> par::SpawnSpec {
    let mut spec = par::SpawnSpec::new(["python", "server.py", token]);
    spec.listen = vec![par::Listen {
        name: "http".into(),
        addr: "127.0.0.1:0".parse().expect("addr"),
    }];
    spec.sandbox = par::SandboxChoice::Bwrap;
    spec.ready_timeout = Duration::from_secs(30);
    spec.stop_grace = Duration::from_secs(2);
    spec
}

/// `GET path` on `addr`: the body.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let stream = TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    get_over(stream, path)
}

/// `GET path` over the unix socket at `socket`: the body.
pub fn get_unix(socket: &std::path::Path, path: &str) -> String {
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect to the agent");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    get_over(stream, path)
}

/// `GET path` on a connected stream: the body.
fn get_over(mut stream: impl Read + Write, path: &str) -> String {
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The processes holding the socket listening on `port` (by its inode in
/// `/proc/net/tcp*`), with whether each is a fork of this process that has
/// not yet exec'd: a test thread's child between fork and exec holds a
/// copy of every descriptor, close-on-exec or not, until it execs.
pub fn listening_socket_holders(port: u16) -> Vec<(i32, bool)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit_once(':')?.1;
                    let listening = fields.get(3)? == &"0A";
                    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                        .then(|| fields.get(9).map(|s| s.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let me = std::process::id() as i32;
    let my_exe = std::fs::read_link("/proc/self/exe").ok();
    let mut holders = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| {
                    inodes
                        .iter()
                        .any(|inode| target.to_str() == Some(&format!("socket:[{inode}]")))
                })
            });
        if holds {
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<i32>().ok());
            let fork_of_this_test =
                pid != me && parent == Some(me) && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == my_exe;
            holders.push((pid, fork_of_this_test));
        }
    }
    holders
}

/// A Python program that makes every call the seccomp filter refuses (from
/// `par::seccomp::REFUSED`, with arguments that do nothing if a call were
/// let through) and writes what each returned to `report` as JSON: the
/// errno per call, the process's `Seccomp:` mode, and whether threads and
/// `fork` still work. Run as `setup.py` (its report in the package) and as
/// an agent (in its state directory); `report` is a Python expression.
pub fn seccomp_probe(report: &str) -> String {
    use par::seccomp::{REFUSED, When};
    let calls: Vec<String> = REFUSED
        .iter()
        .map(|refusal| {
            let args = match (refusal.name, refusal.when) {
                // CLONE_NEWUSER | SIGCHLD: a child, were it let through, exits at once.
                ("clone", _) => "0x10000000 | 17, 0, 0, 0, 0".to_owned(),
                (_, When::AnyBit { mask, .. }) => format!("{mask}"),
                (_, When::OneOf { values, .. }) => format!("0, {}, ctypes.byref(ctypes.c_char(b'x'))", values[0]),
                (_, When::Always) => "-1, 0, 0, 0, 0".to_owned(),
            };
            format!("    ({:?}, {}, ({args},)),", refusal.name, refusal.number)
        })
        .collect();
    format!(
        r#"
import ctypes, json, os, subprocess, threading
REPORT = {report}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CALLS = [
{calls}
]
results = {{}}
for name, number, args in CALLS:
    ctypes.set_errno(0)
    returned = libc.syscall(ctypes.c_long(number), *[a if not isinstance(a, int) else ctypes.c_long(a) for a in args])
    if returned == 0 and name == "clone":
        os._exit(0)
    results[name] = ctypes.get_errno() if returned == -1 else "returned %d" % returned
status = open("/proc/self/status").read()
results["seccomp_mode"] = [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp:")][0]
box = []
thread = threading.Thread(target=lambda: box.append(1)); thread.start(); thread.join()
results["threads"] = box == [1]
results["fork"] = subprocess.run(["true"]).returncode == 0
with open(REPORT, "w") as f:
    json.dump(results, f)
"#,
        calls = calls.join("\n")
    )
}

/// A Python program that tries to outgrow its caps and writes what it got
/// to `report` (a Python expression) as JSON: how many MiB it could write
/// into `$TMPDIR` (or `/tmp`) and `/dev/shm` (8 MiB at a time, up to 96),
/// whether it could make a file in `/dev`, and how `hogs` processes that
/// each try to hold `hog_mib` MiB at once ended (`hogs`, exit codes: 0 held
/// it, 1 could not allocate it, below 0 killed by that signal).
pub fn limits_probe(report: &str, hogs: u32, hog_mib: u32) -> String {
    format!(
        r#"
import json, os, subprocess, sys
REPORT = {report}
results = {{}}
def fill(directory):
    written = 0
    try:
        for i in range(12):
            with open(os.path.join(directory, "fill-%d" % i), "wb") as f:
                f.write(b"x" * (8 << 20))
            written += 8
    except OSError:
        pass
    for i in range(12):
        try:
            os.remove(os.path.join(directory, "fill-%d" % i))
        except OSError:
            pass
    return written
results["tmp_mib"] = fill(os.environ.get("TMPDIR", "/tmp"))
results["shm_mib"] = fill("/dev/shm")
try:
    open("/dev/planted", "w").close()
    results["dev"] = "written"
except OSError as error:
    results["dev"] = error.errno
HOG = "import sys\nb = bytearray({hog_mib} << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('held', flush=True)\nsys.stdin.read()\n"
hogs = [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range({hogs})]
for hog in hogs:
    hog.stdout.readline()
for hog in hogs:
    hog.stdin.close()
results["hogs"] = [hog.wait() for hog in hogs]
with open(REPORT, "w") as f:
    json.dump(results, f)
"#
    )
}
