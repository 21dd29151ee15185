//! An agent for the tests that start agents: a standard-library HTTP
//! server on its inherited socket, packaged as an APKG.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::Apkg;

/// A standard-library HTTP server (`agent_server.py`, which the Python
/// package's tests start too) on the socket it was handed (fd 3), or
/// on `AGENT_BIND` (`HOST:PORT`) when started by hand:
/// `/env` answers its environment, `/read?PATH` a file's first bytes,
/// `/write?PATH` writes there, `/connect?HOST:PORT` opens a connection,
/// `/fork?N` starts up to N processes and says how many it could,
/// `/alloc?MIB` allocates; each answers `ok …` or `refused` and the
/// exception's name.
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
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
