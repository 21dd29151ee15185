//! Starting a loaded agent: its sockets bound first, its environment
//! checked, its state directory made, bubblewrap around it, and a wait for
//! it to become ready.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use par_rules::env::MAX_ENV_VARS;
use par_rules::names::{is_safe_component, is_socket_name};

use super::Orchestrator;
use super::agent_env::{Start, environment};
use crate::exec::agent::{AgentChild, AgentCommand};
use crate::exec::confine::{self, Bubblewrap, Mounts, Tmp};
use crate::exec::listener::{Listener, SocketFile};
use crate::exec::process::Step;
use crate::exec::ready::{AcceptProbe, http_ok};
use crate::fs::agents::{AgentRecord, Registration};
use crate::fs::lock::AppLock;
use crate::fs::root::{Area, fd_path, open_dir_nofollow};
use crate::types::config::SandboxChoice;
use crate::types::error::{EnvFileRefused, NoCommand, SpawnError};
use crate::types::package::AgentPackage;
use crate::types::spawn::{AgentNetwork, BoundSocket, Endpoint, HealthCheck, Listen, SpawnSpec};

/// The agent's pid inside its sandbox: bubblewrap's init is 1, and the
/// agent the first process it starts.
const SANDBOXED_AGENT_PID: &str = "2";

/// Longest health or base path accepted.
const MAX_URL_PATH_BYTES: usize = 1024;

/// Longest wait between two readiness probes.
const MAX_PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// A started agent, from the start until it is stopped.
#[derive(Debug)]
pub(crate) struct Running {
    child: AgentChild,
    /// Par's own copies of the sockets, for the readiness probe; closed once
    /// the agent is ready or stopped, so the sockets end with the agent.
    listeners: Mutex<Vec<Listener>>,
    ports: Vec<BoundSocket>,
    /// The unix sockets' files, removed once the agent is gone.
    socket_files: Mutex<Vec<SocketFile>>,
    health: Option<HealthCheck>,
    sandbox: &'static str,
    started: Instant,
    ready_timeout: Duration,
    stop_grace: Duration,
    probe: Mutex<AcceptProbe>,
}

impl Orchestrator {
    /// Starts `package`'s agent as `spec` says; returns once it runs (see [`Running::wait_ready`]).
    pub(crate) fn spawn(&self, package: &AgentPackage, mut spec: SpawnSpec) -> Result<Running, SpawnError> {
        if spec.listen.is_empty() {
            spec.listen = exposed_sockets(package);
        }
        check_spec(&spec)?;
        if !is_safe_component(&package.app_id, false) {
            return Err(SpawnError::InvalidSpec(format!(
                "app id `{}` is not a safe name",
                package.app_id.escape_default()
            )));
        }
        // Held until the agent's record is written: a `gc` or `remove` sees
        // the agent, or runs before it starts (and then it finds no tree).
        let _app = AppLock::shared(&self.root, &package.app_id).map_err(|e| SpawnError::Io {
            action: "cannot lock the app",
            source: std::io::Error::other(e.to_string()),
        })?;
        let (tree_name, venv_name) = self.names_of(package)?;
        let tree =
            open_dir_nofollow(self.root.dir(Area::Trees), tree_name).map_err(io("cannot open the package's tree"))?;
        let state = self.state_dir(&package.app_id)?;
        let dotenv = match spec.package_env {
            true => self.package_env(&tree)?,
            false => Vec::new(),
        };
        let bwrap = self.agent_sandbox(spec.sandbox)?;
        let mut listeners = Vec::with_capacity(spec.listen.len());
        let mut ports = Vec::with_capacity(spec.listen.len());
        let mut socket_files = Vec::new();
        for listen in &spec.listen {
            let (listener, bound, file) =
                Listener::bind(&listen.addr, spec.socket_group).map_err(|source| SpawnError::Bind {
                    name: listen.name.clone(),
                    addr: listen.addr.clone(),
                    source,
                })?;
            ports.push(BoundSocket {
                name: listen.name.clone(),
                addr: bound,
            });
            listeners.push(listener);
            socket_files.extend(file);
        }
        // Inside the sandbox's PID namespace bubblewrap's init is 1 and the
        // agent 2; without one, the agent sets its own pid as it starts.
        let listen_pid = (!ports.is_empty() && bwrap.is_some()).then_some(SANDBOXED_AGENT_PID);
        let env = environment(
            package,
            Start {
                state: &state,
                ports: &ports,
                listen_pid,
                dotenv,
                caller: &spec.env,
                base_path: spec.base_path.as_deref(),
            },
        )?;
        let argv = match spec.argv.is_empty() {
            true => default_command(package, &spec)?,
            false => spec.argv.clone(),
        };
        let (program, args) = match argv.split_first() {
            Some((first, rest)) if first == "python" => (package.python_path.clone().into_os_string(), rest.to_vec()),
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => return Err(SpawnError::InvalidSpec("no command to run".into())),
        };
        let mut step = Step::new("agent", program, &package.path, Duration::ZERO).args(args);
        step.env = env;
        step.limits = spec.limits;
        for listener in &listeners {
            let fd = listener
                .as_fd()
                .try_clone_to_owned()
                .map_err(io("cannot pass a socket to the agent"))?;
            step.pass_fd(Arc::new(fd));
        }
        let mut sandbox_info = None;
        if let Some(bwrap) = &bwrap {
            let python = self
                .python
                .resolve()
                .map_err(|e| SpawnError::SandboxUnavailable(e.to_string()))?;
            let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| io("cannot make a pipe for the sandbox's report")(e.into()))?;
            sandbox_info = Some(reader);
            let mounts = Mounts {
                writable: vec![state.clone()],
                readonly: [package.path.clone(), package.venv_path.clone()]
                    .into_iter()
                    .chain(python.prefixes.iter().cloned())
                    .collect(),
                protected: Vec::new(),
                network: spec.network == AgentNetwork::Outbound,
                tmp: Tmp::Writable,
                tmp_bytes: spec.limits.tmp_bytes,
                info: Some(Arc::new(writer)),
            };
            step = bwrap.confine(step, &mounts).map_err(io("cannot prepare the sandbox"))?;
        }
        let child = AgentChild::start(AgentCommand {
            step,
            #[cfg(feature = "test-hooks")]
            cgroups: spec.cgroups,
            #[cfg(not(feature = "test-hooks"))]
            cgroups: true,
            sandbox_info,
            own_listen_pid: !ports.is_empty() && bwrap.is_none(),
            app_id: package.app_id.clone(),
        })
        .map_err(io("cannot start the agent"))?;
        let record = AgentRecord {
            process: child.id(),
            sandbox: child.sandbox(),
            owner: std::process::id(),
            app_id: package.app_id.clone(),
            tree: tree_name.to_owned(),
            venv: venv_name.to_owned(),
            started: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        // The record goes the moment the agent is reaped, not when this handle does.
        let registration =
            Registration::register(&self.root, &record).map_err(io("cannot record the running agent"))?;
        child.hold_until_exit(Box::new(registration));
        let sandbox = confine::label(bwrap.as_ref());
        tracing::info!(
            app_id = %package.app_id,
            pid = child.id().pid,
            sandbox,
            ports = %ports.iter().map(|p| format!("{}={}", p.name, p.addr)).collect::<Vec<_>>().join(","),
            "Agent started"
        );
        Ok(Running {
            child,
            listeners: Mutex::new(listeners),
            ports,
            socket_files: Mutex::new(socket_files),
            health: spec.health,
            sandbox,
            started: Instant::now(),
            ready_timeout: spec.ready_timeout,
            stop_grace: spec.stop_grace,
            probe: Mutex::new(AcceptProbe::default()),
        })
    }

    /// The names of the package's tree and venv under this root: an agent
    /// starts only from a tree par published, with a venv par made.
    fn names_of<'a>(&self, package: &'a AgentPackage) -> Result<(&'a str, &'a str), SpawnError> {
        let root = &self.root;
        match (
            root.name_in(&package.path, Area::Trees),
            root.name_in(&package.venv_path, Area::Venvs),
        ) {
            (Some(tree), Some(venv)) if package.python_path.starts_with(&package.venv_path) => Ok((tree, venv)),
            _ => Err(SpawnError::InvalidSpec(format!(
                "`{}` is not a package this loader published under `{}`",
                package.path.display(),
                root.path().display()
            ))),
        }
    }

    /// The package's `.env`, parsed in the sandbox and checked again here.
    fn package_env(&self, tree: &cap_std::fs::Dir) -> Result<Vec<(String, String)>, SpawnError> {
        let vars = self
            .sandbox
            .read_env_file(&fd_path(tree))
            .map_err(|e| SpawnError::EnvFileSandbox(Box::new(e)))?
            .map_err(SpawnError::EnvFile)?;
        if vars.len() > MAX_ENV_VARS {
            return Err(SpawnError::EnvFile(EnvFileRefused {
                line: 0,
                key: None,
                reason: format!("more than {MAX_ENV_VARS} variables"),
            }));
        }
        Ok(vars)
    }

    /// `{root}/state/{app_id}`, made if missing, never through a link.
    fn state_dir(&self, app_id: &str) -> Result<PathBuf, SpawnError> {
        let area = self.root.dir(Area::State);
        match area.create_dir(app_id) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot make the agent's state directory")(e)),
        }
        open_dir_nofollow(area, app_id).map_err(io("cannot open the agent's state directory"))?;
        Ok(self.root.join(Area::State, app_id))
    }

    /// Bubblewrap for the agent, per `choice`: `auto` runs it unconfined,
    /// with a warning, where bubblewrap does not work.
    fn agent_sandbox(&self, choice: SandboxChoice) -> Result<Option<Bubblewrap>, SpawnError> {
        if choice == SandboxChoice::None {
            tracing::warn!(
                "Agent sandbox off (--sandbox none): the agent runs with the loader's own files and network"
            );
        }
        self.bubblewrap_for(choice, |why| {
            tracing::warn!(reason = %why, "Agent sandbox unavailable: the agent runs with the loader's own files and network");
        })
        .map_err(SpawnError::SandboxUnavailable)
    }
}

impl Running {
    /// Waits until the agent is ready, and returns how long it took from the
    /// start; on a timeout or an early exit the agent is stopped.
    pub(crate) fn wait_ready(&self) -> Result<Duration, SpawnError> {
        let deadline = self.started + self.ready_timeout;
        let mut interval = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child.status() {
                return Err(SpawnError::ExitedEarly {
                    status: status.to_string(),
                });
            }
            if self.ready(deadline) {
                self.close_listeners();
                let took = self.started.elapsed();
                tracing::info!(
                    pid = self.child.id().pid,
                    ready_ms = took.as_millis() as u64,
                    "Agent ready"
                );
                return Ok(took);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                self.stop(None);
                return Err(SpawnError::NotReady {
                    timeout: self.ready_timeout,
                });
            };
            // Wakes at once when the agent exits.
            self.child.wait_timeout(interval.min(left));
            interval = (interval * 2).min(MAX_PROBE_INTERVAL);
        }
    }

    /// One readiness probe, which ends by `deadline` whatever the agent does.
    fn ready(&self, deadline: Instant) -> bool {
        match &self.health {
            Some(health) => self
                .ports
                .iter()
                .find(|port| port.name == health.socket)
                .is_some_and(|port| http_ok(&port.addr, &health.path, deadline)),
            None => {
                let (Ok(listeners), Ok(mut probe)) = (self.listeners.lock(), self.probe.lock()) else {
                    return false;
                };
                listeners
                    .first()
                    .is_none_or(|listener| probe.accepted(listener, deadline).unwrap_or(false))
            }
        }
    }

    /// The process par started.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().pid
    }

    /// The sockets, with the ports chosen.
    pub(crate) fn ports(&self) -> &[BoundSocket] {
        &self.ports
    }

    /// `bwrap` or `none`.
    pub(crate) fn sandbox(&self) -> &'static str {
        self.sandbox
    }

    /// How it ended, if it has.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        self.child.status()
    }

    /// Waits until it ends.
    pub(crate) fn wait(&self) -> Option<ExitStatus> {
        let status = self.child.wait();
        self.remove_socket_files();
        status
    }

    /// SIGTERM to all of it, `grace` (the spec's when `None`), then SIGKILL.
    pub(crate) fn stop(&self, grace: Option<Duration>) -> Option<ExitStatus> {
        let status = self.child.stop(grace.unwrap_or(self.stop_grace));
        self.close_listeners();
        self.remove_socket_files();
        status
    }

    /// SIGTERM and, at once, SIGKILL to all of it.
    pub(crate) fn kill(&self) {
        self.stop(Some(Duration::ZERO));
    }

    /// The agent is gone: its unix sockets' files go too.
    fn remove_socket_files(&self) {
        if let Ok(mut files) = self.socket_files.lock() {
            files.clear();
        }
    }

    fn close_listeners(&self) {
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.clear();
        }
    }
}

/// The sockets a package's `deploy.json` exposes, for a caller that names
/// none: each surface on 127.0.0.1, at the port `ports` gives it (any free
/// port when it gives none), in `expose`'s order, so the first is the one
/// the default command serves on.
fn exposed_sockets(package: &AgentPackage) -> Vec<Listen> {
    let Some(deploy) = &package.manifest.deploy else {
        return Vec::new();
    };
    let sockets: Vec<Listen> = deploy
        .expose
        .iter()
        .map(|name| {
            let port = deploy
                .ports
                .iter()
                .find(|(surface, _)| surface == name)
                .map_or(0, |(_, port)| *port);
            Listen {
                name: name.clone(),
                addr: Endpoint::Tcp(std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))),
            }
        })
        .collect();
    if !sockets.is_empty() {
        tracing::info!(
            sockets = %sockets.iter().map(|s| format!("{}={}", s.name, s.addr)).collect::<Vec<_>>().join(","),
            "Binding the sockets deploy.json exposes"
        );
    }
    sockets
}

/// The socket names and the health check make sense.
fn check_spec(spec: &SpawnSpec) -> Result<(), SpawnError> {
    let mut names = std::collections::BTreeSet::new();
    for listen in &spec.listen {
        if !is_socket_name(&listen.name) {
            return Err(SpawnError::InvalidSpec(format!(
                "socket name `{}`: use letters, digits and `_`",
                listen.name.escape_default()
            )));
        }
        if !names.insert(listen.name.to_ascii_uppercase()) {
            return Err(SpawnError::InvalidSpec(format!(
                "socket name `{}` given twice",
                listen.name
            )));
        }
    }
    if let Some(health) = &spec.health {
        if !names.contains(&health.socket.to_ascii_uppercase()) {
            return Err(SpawnError::InvalidSpec(format!(
                "health check on `{}`, which is not a socket",
                health.socket
            )));
        }
        if !is_url_path(&health.path) {
            return Err(SpawnError::InvalidSpec(
                "the health path must start with `/` and hold no spaces".into(),
            ));
        }
    }
    if let Some(base_path) = &spec.base_path
        && !is_url_path(base_path)
    {
        return Err(SpawnError::InvalidSpec(
            "the base path must start with `/` and hold no spaces or control characters".into(),
        ));
    }
    Ok(())
}

/// What a spec without a command starts: the manifest's `http_server`
/// under the venv's uvicorn on the first socket (descriptor 3).
fn default_command(package: &AgentPackage, spec: &SpawnSpec) -> Result<Vec<OsString>, SpawnError> {
    let Some(app) = &package.manifest.http_server else {
        return Err(SpawnError::NoCommand(NoCommand::NoHttpServer));
    };
    if spec.listen.is_empty() {
        return Err(SpawnError::NoCommand(NoCommand::NoSocket));
    }
    if !venv_holds(&package.venv_path, "uvicorn") {
        return Err(SpawnError::NoCommand(NoCommand::NoUvicorn));
    }
    let app = format!("{}:{}", app.module, app.attr.as_deref().unwrap_or_default());
    Ok(["python", "-m", "uvicorn", &app, "--fd", "3"]
        .map(OsString::from)
        .to_vec())
}

/// Whether the venv holds the top-level module `name` (a package directory
/// in its `site-packages`).
fn venv_holds(venv: &std::path::Path, name: &str) -> bool {
    let Ok(lib) = std::fs::read_dir(venv.join("lib")) else {
        return false;
    };
    lib.flatten().any(|python| {
        python
            .path()
            .join("site-packages")
            .join(name)
            .join("__init__.py")
            .is_file()
    })
}

/// A URL path as a proxy routes it: `/` first, no spaces or control characters.
fn is_url_path(path: &str) -> bool {
    path.starts_with('/') && path.len() <= MAX_URL_PATH_BYTES && !path.chars().any(|c| c.is_control() || c == ' ')
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Io { action, source }
}
