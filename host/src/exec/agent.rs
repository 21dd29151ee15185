//! A started agent: a long-running process (bubblewrap around it when
//! sandboxed) with the listening sockets it was handed as descriptors 3, 4, …,
//! its output logged line by line, and a stop that reaches every process it
//! started: SIGTERM to each, a grace period, then SIGKILL of all of them.
//!
//! The process is signalled only while it is known not to have been reaped
//! (the reaper and every signal take one lock), so its pid and process group
//! are still its own; the processes of its sandbox only through pidfds
//! checked against the PID namespace bubblewrap reported; and what it
//! registered (its record under the root) goes the moment it is reaped.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, pidfd_send_signal};

use super::identity::{ProcessId, SandboxId};
use super::output::{Stream, log_lines};
use super::process::cgroup::Groups;
use super::process::{Step, supervised};

/// How long bubblewrap may take to report its sandbox before par gives up
/// knowing it (the agent then is stopped through bubblewrap alone).
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Debug)]
pub(crate) struct AgentCommand {
    /// Program, arguments, directory, environment, limits and descriptors
    /// (the sockets first, from 3 on); its timeout is not used.
    pub step: Step,
    /// Whether it may get cgroups (tests turn this off).
    pub cgroups: bool,
    /// The read end of bubblewrap's `--info-fd` when the step is
    /// bubblewrap with a PID namespace of its own around the agent.
    pub sandbox_info: Option<OwnedFd>,
    /// Whether the child sets `LISTEN_PID` to its own pid itself (the agent
    /// runs without a PID namespace, so only it knows its pid).
    pub own_listen_pid: bool,
    /// Names the agent's log lines.
    pub app_id: String,
}

/// The reaper's state, behind the one lock every signal takes.
#[derive(Default)]
struct State {
    status: Option<ExitStatus>,
    /// Dropped when the process is reaped: what lives exactly as long as it.
    held: Vec<Box<dyn Send>>,
}

/// A running (or finished) agent. Dropping it kills every process it started.
pub(crate) struct AgentChild {
    id: ProcessId,
    pidfd: Option<OwnedFd>,
    sandbox: Option<SandboxId>,
    sandboxed: bool,
    /// Its cgroups, which name every process it started.
    groups: Groups,
    exit: Arc<(Mutex<State>, Condvar)>,
}

impl std::fmt::Debug for AgentChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentChild")
            .field("id", &self.id)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl AgentChild {
    /// Starts `command`.
    pub(crate) fn start(command: AgentCommand) -> std::io::Result<Self> {
        let AgentCommand {
            mut step,
            cgroups,
            sandbox_info,
            own_listen_pid,
            app_id,
        } = command;
        let limits = step.limits;
        let groups = match cgroups {
            true => Groups::new(limits.processes, limits.memory_bytes),
            false => Groups::default(),
        };
        // Without a memory cgroup, each process is capped on its own.
        if let Some(bytes) = limits.memory_bytes.filter(|_| !groups.caps_memory()) {
            tracing::debug!(
                app_id,
                "no memory cgroup for the agent; its memory is capped per process (RLIMIT_AS)"
            );
            step.limits.address_space_bytes = Some(limits.address_space_bytes.map_or(bytes, |own| own.min(bytes)));
        }
        let mut process = supervised(&step, groups.procs())?;
        if own_listen_pid {
            exec_with_own_pid(process.command_mut(), &step)?;
        }
        let mut child = process.spawn()?;
        // The loader's copies of the descriptors (bubblewrap's info pipe
        // among them, whose end tells that bubblewrap is gone) close now.
        drop(process);
        drop(step);
        let sandboxed = sandbox_info.is_some();
        let sandbox = sandbox_info.and_then(|info| read_sandbox(info, &app_id));
        let pid = Pid::from_child(&child);
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
        let id = ProcessId::of(child.id()).unwrap_or(ProcessId {
            pid: child.id(),
            start_time: 0,
        });
        // The readers end when the last process holding the output does.
        if let Some(out) = child.stdout.take() {
            log_lines(out, app_id.clone(), Stream::Stdout);
        }
        if let Some(err) = child.stderr.take() {
            log_lines(err, app_id, Stream::Stderr);
        }
        let exit = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let reaped = Arc::clone(&exit);
        std::thread::spawn(move || reap(child, &reaped));
        Ok(Self {
            id,
            pidfd,
            sandbox,
            sandboxed,
            groups,
            exit,
        })
    }

    /// The process par started: bubblewrap when sandboxed, else the agent itself.
    pub(crate) fn id(&self) -> ProcessId {
        self.id
    }

    /// The sandbox around it, as bubblewrap reported it.
    pub(crate) fn sandbox(&self) -> Option<SandboxId> {
        self.sandbox
    }

    /// Keeps `guard` until the process is reaped (at once if it already is):
    /// its record under the root goes the moment its pid may be reused.
    pub(crate) fn hold_until_exit(&self, guard: Box<dyn Send>) {
        if let Some(mut state) = self.state()
            && state.status.is_none()
        {
            state.held.push(guard);
        }
    }

    fn state(&self) -> Option<MutexGuard<'_, State>> {
        self.exit.0.lock().ok()
    }

    /// How it ended, if it has.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        self.state().and_then(|state| state.status)
    }

    /// Waits until it ends or `timeout` passes (`None`: it has not ended).
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until it ends.
    pub(crate) fn wait(&self) -> Option<ExitStatus> {
        self.wait_until(None)
    }

    /// Waits until it ends, or until `deadline` when there is one.
    fn wait_until(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let (_, ended) = &*self.exit;
        let mut state = self.state()?;
        loop {
            if let Some(status) = state.status {
                return Some(status);
            }
            state = match deadline {
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    ended.wait_timeout(state, left).ok()?.0
                }
                None => ended.wait(state).ok()?,
            };
        }
    }

    /// SIGTERM to every process of the agent, up to `grace` for it to end,
    /// then SIGKILL to whatever is left; returns how it ended.
    pub(crate) fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        match &self.sandbox {
            Some(sandbox) => sandbox.signal_members(Signal::TERM),
            None if self.sandboxed => {}
            None => {
                self.while_unreaped(|| {
                    let _ = kill_process_group(self.pid(), Signal::TERM);
                });
                self.groups.signal_all(Signal::TERM);
            }
        }
        let status = self.wait_timeout(grace);
        self.kill_all();
        status.or_else(|| self.wait())
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.id.pid as i32).unwrap_or(Pid::INIT)
    }

    /// Runs `signal` only while the process is not reaped: its pid, and the
    /// process group it leads, cannot name another process meanwhile.
    fn while_unreaped(&self, signal: impl FnOnce()) {
        if let Some(state) = self.state()
            && state.status.is_none()
        {
            signal();
        }
    }

    /// SIGKILL to everything: bubblewrap (its PID namespace dies with it),
    /// the process group it leads without a sandbox, and every member of its cgroups.
    fn kill_all(&self) {
        self.while_unreaped(|| {
            if let Some(fd) = &self.pidfd {
                let _ = pidfd_send_signal(fd.as_fd(), Signal::KILL);
            } else {
                let _ = rustix::process::kill_process(self.pid(), Signal::KILL);
            }
            if !self.sandboxed {
                let _ = kill_process_group(self.pid(), Signal::KILL);
            }
        });
        self.groups.signal_all(Signal::KILL);
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        self.kill_all();
        let _ = self.wait();
    }
}

/// Waits for `child` to exit without reaping it, then reaps it under the
/// lock, so no signal sent under that lock can reach a reused pid; drops
/// what was held for as long as it lived and wakes the waiters.
fn reap(mut child: Child, exit: &(Mutex<State>, Condvar)) {
    let pid = Pid::from_child(&child);
    while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
        rustix::process::WaitId::Pid(pid),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
    ) {}
    let (lock, ended) = exit;
    let held = match lock.lock() {
        Ok(mut state) => {
            state.status = child.wait().ok();
            std::mem::take(&mut state.held)
        }
        Err(_) => Vec::new(),
    };
    drop(held);
    ended.notify_all();
}

/// What bubblewrap's `--info-fd` says of the sandbox: its init's host pid
/// and its PID namespace (read until the JSON object is whole, or bubblewrap
/// closes the pipe, or [`INFO_TIMEOUT`]).
fn read_sandbox(info: OwnedFd, app_id: &str) -> Option<SandboxId> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + INFO_TIMEOUT;
    let mut text = Vec::new();
    let mut buffer = [0u8; 1024];
    while !text.contains(&b'}') && text.len() < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = Timespec::try_from(left).ok()?;
        let mut fds = [PollFd::new(&info, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match rustix::io::read(&info, &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buffer[..n]),
        }
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "child-pid")]
        child_pid: u32,
        #[serde(rename = "pid-namespace")]
        pid_namespace: u64,
    }
    let end = text.iter().position(|&b| b == b'}').map_or(text.len(), |at| at + 1);
    let sandbox = serde_json::from_slice::<Info>(&text[..end]).ok().and_then(|info| {
        Some(SandboxId {
            init: ProcessId::of(info.child_pid)?,
            namespace: info.pid_namespace,
        })
    });
    if sandbox.is_none() {
        tracing::debug!(
            app_id,
            "bubblewrap did not report its sandbox; the agent is stopped through bubblewrap alone"
        );
    }
    sandbox
}

/// Makes `process` exec its program itself, with `LISTEN_PID` set to its
/// own pid: no shell (nor anything else that reads the environment)
/// stands between par and the agent. Everything is made before the fork;
/// the child only writes its pid's digits into a slot and calls `execve`.
#[allow(
    unsafe_code,
    reason = "`pre_exec` is unsafe: the hook runs in the forked child, where only async-signal-safe calls are sound"
)]
fn exec_with_own_pid(process: &mut std::process::Command, step: &Step) -> std::io::Result<()> {
    const SLOT: &[u8] = b"LISTEN_PID=";
    let path = step
        .env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let program = resolve(&step.program, &path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`{}` not found on the agent's PATH", step.program.display()),
        )
    })?;
    let cstring = |bytes: &[u8]| CString::new(bytes).map_err(std::io::Error::other);
    let program = cstring(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = std::iter::once(step.program.as_os_str())
        .chain(step.args.iter().map(OsString::as_os_str))
        .map(|arg| cstring(arg.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = step
        .env
        .iter()
        .filter(|(key, _)| key != "LISTEN_PID")
        .map(|(key, value)| cstring(&[key.as_bytes(), b"=", value.as_bytes()].concat()))
        .collect::<Result<_, _>>()?;
    // The slot: room for any pid's digits, filled in the child.
    let mut slot = SLOT.to_vec();
    slot.extend_from_slice(&[0u8; 21]);
    let mut exec = Exec::new(program, argv, env, slot.into_boxed_slice());
    // SAFETY: runs between fork and exec in the child: it writes digits
    // into memory allocated before the fork (the child's own copy), makes
    // no allocation, and calls only getpid and execve, both
    // async-signal-safe. On success execve does not return; on failure the
    // error goes back to the parent through std's own channel.
    unsafe {
        process.pre_exec(move || exec.run());
    }
    Ok(())
}

/// An `execve` prepared before the fork: the strings, and the pointer
/// arrays into them, allocated in the parent.
struct Exec {
    program: CString,
    _strings: (Vec<CString>, Vec<CString>),
    /// `LISTEN_PID=` and room for the digits and a NUL.
    slot: Box<[u8]>,
    argv: Vec<*const libc::c_char>,
    /// The environment; the entry before the final null is the slot's.
    envp: Vec<*const libc::c_char>,
}

#[allow(
    unsafe_code,
    reason = "raw pointers are neither Send nor Sync; `pre_exec` needs its hook to be both"
)]
// SAFETY: the pointers point into the strings the struct owns, whose heap
// buffers never move; nothing reads them but `run`, in the forked child.
unsafe impl Send for Exec {}
#[allow(
    unsafe_code,
    reason = "raw pointers are neither Send nor Sync; `pre_exec` needs its hook to be both"
)]
// SAFETY: as above; `run` takes `&mut self`.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(program: CString, argv: Vec<CString>, env: Vec<CString>, slot: Box<[u8]>) -> Self {
        let argv_ptrs = argv.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
        let envp = env
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null(), std::ptr::null()])
            .collect();
        Self {
            program,
            _strings: (argv, env),
            slot,
            argv: argv_ptrs,
            envp,
        }
    }

    /// Fills the slot with this process's pid and execs; returns only on failure.
    #[allow(
        unsafe_code,
        reason = "`execve` takes raw pointers to the argument and environment arrays"
    )]
    fn run(&mut self) -> std::io::Result<()> {
        let prefix = b"LISTEN_PID=".len();
        let mut pid = rustix::process::getpid().as_raw_nonzero().get().unsigned_abs();
        let mut digits = [0u8; 10];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (pid % 10) as u8;
            count += 1;
            pid /= 10;
            if pid == 0 || count == digits.len() {
                break;
            }
        }
        for (at, digit) in digits[..count].iter().rev().enumerate() {
            self.slot[prefix + at] = *digit;
        }
        self.slot[prefix + count] = 0;
        let last = self.envp.len() - 2;
        self.envp[last] = self.slot.as_ptr().cast();
        // SAFETY: every pointer is to a NUL-terminated string owned by
        // `self`, and both arrays end with a null pointer.
        unsafe {
            libc::execve(self.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
        }
        Err(std::io::Error::last_os_error())
    }
}

/// `program` if it holds a `/`, else the first executable of that name on `path`.
fn resolve(program: &Path, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.as_os_str().as_bytes().contains(&b'/') {
        return executable(program).then(|| program.to_owned());
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}
