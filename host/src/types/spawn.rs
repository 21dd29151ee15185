//! What starting an agent takes and reports: the spec of a start, the
//! sockets par binds for it, and how it ended.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::config::{Choice, ResourceLimits, SandboxChoice};

/// How to start a loaded agent ([`crate::PackageLoader::spawn`]). Its
/// `Debug` shows the caller's variables by name only.
#[derive(Clone)]
pub struct SpawnSpec {
    /// The command; a first word of `python` means the venv's interpreter.
    pub argv: Vec<OsString>,
    /// Sockets par binds before the start and hands to the agent, in order
    /// (descriptors 3, 4, …): the systemd convention (`LISTEN_FDS`,
    /// `LISTEN_FDNAMES`, `LISTEN_PID`) plus `PAR_PORT_<NAME>`. Empty: the
    /// surfaces the package's `deploy.json` exposes, on 127.0.0.1 at its ports.
    pub listen: Vec<Listen>,
    /// When the agent counts as ready: an HTTP GET on a named socket
    /// answers 2xx; without one, the agent accepted a connection on the first socket.
    pub health: Option<HealthCheck>,
    /// What the agent may reach.
    pub network: AgentNetwork,
    /// Whether the agent runs under bubblewrap.
    pub sandbox: SandboxChoice,
    /// Variables the caller sets: secrets, never logged, never in a result or an error.
    pub env: Vec<(String, String)>,
    /// Also apply the package's own `.env` file (below `agent.yaml`'s and
    /// `deploy.json`'s `environment`, as PAR layers them).
    pub package_env: bool,
    /// The group unix sockets are made in (so a proxy in it may connect);
    /// none keeps par's own.
    pub socket_group: Option<u32>,
    /// `BASE_PATH` for the agent, as PAR sets it behind its proxy
    /// (`/agents/{id}`): a path starting with `/`.
    pub base_path: Option<String>,
    /// How long the agent may take to become ready.
    pub ready_timeout: Duration,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// `setrlimit` ceilings, the processes and memory caps of its cgroups
    /// (memory as `RLIMIT_AS` where no memory cgroup can be made), and the
    /// size of its `/tmp` and `/dev/shm`.
    pub limits: ResourceLimits,
    /// Whether it may get cgroups (only tests turn this off, to show the
    /// caps that hold without them).
    #[cfg(feature = "test-hooks")]
    pub(crate) cgroups: bool,
}

impl SpawnSpec {
    /// A spec running `argv` with the defaults: no sockets, no network, the sandbox where it works.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            listen: Vec::new(),
            health: None,
            network: AgentNetwork::None,
            sandbox: SandboxChoice::Auto,
            env: Vec::new(),
            package_env: false,
            base_path: None,
            socket_group: None,
            ready_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            limits: ResourceLimits {
                address_space_bytes: None,
                file_size_bytes: Some(1024 * 1024 * 1024),
                open_files: Some(4096),
                cpu_seconds: None,
                processes: Some(512),
                memory_bytes: Some(2 * 1024 * 1024 * 1024),
                tmp_bytes: Some(1024 * 1024 * 1024),
            },
            #[cfg(feature = "test-hooks")]
            cgroups: true,
        }
    }

    /// Starts the agent without any cgroup, as where the loader may make
    /// none: for tests of what holds then. Never available in production builds.
    #[cfg(feature = "test-hooks")]
    pub fn without_cgroups(mut self) -> Self {
        self.cgroups = false;
        self
    }
}

impl std::fmt::Debug for SpawnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self.env.iter().map(|(key, _)| format!("{key}=…")).collect();
        f.debug_struct("SpawnSpec")
            .field("argv", &self.argv)
            .field("listen", &self.listen)
            .field("health", &self.health)
            .field("network", &self.network)
            .field("sandbox", &self.sandbox)
            .field("env", &env)
            .field("package_env", &self.package_env)
            .field("base_path", &self.base_path)
            .field("socket_group", &self.socket_group)
            .field("ready_timeout", &self.ready_timeout)
            .field("stop_grace", &self.stop_grace)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A socket to bind for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Its name (`LISTEN_FDNAMES`, `PAR_PORT_<NAME>`): letters, digits, `_`.
    pub name: String,
    /// Where; port 0 takes any free port.
    pub addr: Endpoint,
}

/// Where a socket listens: a TCP address, or a unix socket's path (as PAR's
/// supervisor serves agents behind a proxy on the same machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `ADDR:PORT`.
    Tcp(SocketAddr),
    /// `unix:/absolute/path`: at most [`MAX_UNIX_PATH_BYTES`], made with mode
    /// 0660 (connecting takes write permission) in the group asked for.
    Unix(PathBuf),
}

/// Longest unix socket path: `sun_path` holds 108 bytes with the NUL.
pub const MAX_UNIX_PATH_BYTES: usize = 107;

impl Endpoint {
    /// The TCP address, for a TCP socket.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `unix:/absolute/path`, or a TCP `ADDR:PORT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(Endpoint::Unix(PathBuf::from(path))),
            Some(path) => Err(format!("`{path}`: a unix socket's path must be absolute")),
            None => text.parse().map(Endpoint::Tcp).map_err(|e| format!("`{text}`: {e}")),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => addr.fmt(f),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An HTTP readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The socket it is asked on.
    pub socket: String,
    /// The path asked for (`/health`).
    pub path: String,
}

/// What a started agent may reach over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentNetwork {
    /// Nothing: a network namespace of its own, where only the sockets it
    /// was handed work.
    #[default]
    None,
    /// The host's network, to call out (model APIs, databases).
    Outbound,
}

impl Choice for AgentNetwork {
    const NAMES: &'static [(&'static str, Self)] = &[("none", Self::None), ("outbound", Self::Outbound)];
}

/// A socket par bound for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundSocket {
    /// Its name.
    pub name: String,
    /// Where it is bound (with the port chosen, for port 0).
    pub addr: Endpoint,
}

/// Where a variable the agent gets came from, for errors that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvSource {
    /// `agent.yaml`'s `environment` map.
    Manifest,
    /// `deploy.json`'s `environment` map.
    Deploy,
    /// The package's `.env` file.
    DotEnv,
    /// The caller.
    Caller,
}

impl std::fmt::Display for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvSource::Manifest => "agent.yaml `environment`",
            EnvSource::Deploy => "deploy.json `environment`",
            EnvSource::DotEnv => "the package's .env",
            EnvSource::Caller => "the caller's environment",
        })
    }
}
