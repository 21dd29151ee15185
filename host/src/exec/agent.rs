//! A started agent: a long-running process (bubblewrap around it when
//! sandboxed) with the listening sockets it was handed as descriptors 3, 4, …,
//! its output logged line by line, and a stop that reaches every process it
//! started: SIGTERM to each, a grace period, then SIGKILL of all of them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::output::{Stream, log_lines};
use super::process::cgroup::Cgroup;
use super::process::{Step, supervised};

/// What to start.
#[derive(Debug)]
pub struct AgentCommand<'a> {
    /// Program, arguments, directory, environment and rlimits (its timeout is not used).
    pub step: Step,
    /// Listening sockets, handed to the child as descriptors 3, 4, … in order.
    pub sockets: Vec<BorrowedFd<'a>>,
    /// The memory cap of its cgroup, where the memory controller allows one.
    pub memory_bytes: Option<u64>,
    /// The step is bubblewrap with a PID namespace of its own around the agent.
    pub sandboxed: bool,
    /// Names the agent's log lines.
    pub app_id: String,
}

/// A running (or finished) agent. Dropping it kills every process it started.
#[derive(Debug)]
pub struct AgentChild {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    sandboxed: bool,
    /// Its pids cgroup, which names every process it started.
    cgroup: Option<Cgroup>,
    /// Its memory cgroup, where that is one of its own.
    memory: Option<Cgroup>,
    exit: Arc<(Mutex<Option<ExitStatus>>, Condvar)>,
}

impl AgentChild {
    /// Starts `command`.
    pub fn start(command: AgentCommand<'_>) -> std::io::Result<Self> {
        let AgentCommand {
            step,
            sockets,
            memory_bytes,
            sandboxed,
            app_id,
        } = command;
        // Copies of the sockets above the range they go to, so moving them
        // into place in the child never overwrites one not yet moved.
        let lowest = 3 + sockets.len() as i32 + 16;
        let high: Vec<OwnedFd> = sockets
            .iter()
            .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, lowest))
            .collect::<Result<_, _>>()?;
        let sources: Vec<i32> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let cgroup = step.limits.processes.and_then(Cgroup::pids);
        let memory = match (memory_bytes, &cgroup) {
            (Some(bytes), Some(pids)) if pids.also_limit_memory(bytes) => None,
            (Some(bytes), _) => {
                let memory = Cgroup::memory(bytes);
                if memory.is_none() {
                    tracing::debug!(
                        app_id,
                        "no memory cgroup for the agent; its memory is capped only by rlimits"
                    );
                }
                memory
            }
            (None, _) => None,
        };
        let procs = cgroup
            .iter()
            .chain(&memory)
            .map(|group| group.procs().to_owned())
            .collect();
        let mut process = supervised(&step, procs);
        // SAFETY: dup2 is async-signal-safe; nothing is allocated. The
        // sockets land on 3, 4, … without close-on-exec.
        unsafe {
            process.pre_exec(move || {
                for (target, source) in (3..).zip(&sources) {
                    if libc::dup2(*source, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = process.spawn()?;
        drop(high);
        let pid = Pid::from_child(&child);
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
        // The readers end when the last process holding the output does.
        if let Some(out) = child.stdout.take() {
            log_lines(out, app_id.clone(), Stream::Stdout);
        }
        if let Some(err) = child.stderr.take() {
            log_lines(err, app_id, Stream::Stderr);
        }
        let exit = Arc::new((Mutex::new(None), Condvar::new()));
        let reaped = Arc::clone(&exit);
        std::thread::spawn(move || {
            let status = child.wait();
            let (lock, ended) = &*reaped;
            if let (Ok(status), Ok(mut slot)) = (status, lock.lock()) {
                *slot = Some(status);
            }
            ended.notify_all();
        });
        Ok(Self {
            pid,
            pidfd,
            sandboxed,
            cgroup,
            memory,
            exit,
        })
    }

    /// The process par started: bubblewrap when sandboxed, else the agent itself.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// How it ended, if it has.
    pub fn status(&self) -> Option<ExitStatus> {
        self.exit.0.lock().ok().and_then(|slot| *slot)
    }

    /// Waits until it ends or `timeout` passes (`None`: it has not ended).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until it ends.
    pub fn wait(&self) -> Option<ExitStatus> {
        self.wait_until(None)
    }

    /// Waits until it ends, or until `deadline` when there is one.
    fn wait_until(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let (lock, ended) = &*self.exit;
        let mut slot = lock.lock().ok()?;
        loop {
            if let Some(status) = *slot {
                return Some(status);
            }
            slot = match deadline {
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    ended.wait_timeout(slot, left).ok()?.0
                }
                None => ended.wait(slot).ok()?,
            };
        }
    }

    /// SIGTERM to every process of the agent, up to `grace` for it to end,
    /// then SIGKILL to whatever is left; returns how it ended.
    pub fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        if self.status().is_none() {
            for pid in self.members() {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = kill_process(pid, Signal::TERM);
                }
            }
            if !self.sandboxed {
                let _ = kill_process_group(self.pid, Signal::TERM);
            }
        }
        let status = self.wait_timeout(grace);
        self.kill_all();
        status.or_else(|| self.wait())
    }

    /// Every process to ask to stop: in the sandbox's PID namespace (but its
    /// init, which would take the others down at once), else in its cgroup.
    fn members(&self) -> Vec<i32> {
        if self.sandboxed {
            namespace_members(self.pid.as_raw_nonzero().get())
        } else {
            self.cgroups().flat_map(Cgroup::members).collect()
        }
    }

    /// SIGKILL to everything: bubblewrap (its PID namespace dies with it),
    /// the process group, and every member of its cgroups.
    fn kill_all(&self) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd.as_fd(), Signal::KILL);
            }
            None if self.status().is_none() => {
                let _ = kill_process(self.pid, Signal::KILL);
            }
            None => {}
        }
        let _ = kill_process_group(self.pid, Signal::KILL);
        for cgroup in self.cgroups() {
            cgroup.kill_all();
        }
    }

    /// Its cgroups (pids, and memory where that is one of its own): each names every process it started.
    fn cgroups(&self) -> impl Iterator<Item = &Cgroup> {
        self.cgroup.iter().chain(&self.memory)
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        self.kill_all();
        let _ = self.wait();
    }
}

/// Stops an agent another loader started, known by its host pid only:
/// SIGTERM to every process in its sandbox (or its process group), up to
/// `grace` for it to end, then SIGKILL. Returns once it has ended (its
/// loader reaps it); an agent already gone is not an error.
pub fn stop_elsewhere(pid: u32, sandboxed: bool, grace: Duration) -> std::io::Result<()> {
    const KILL_WAIT: Duration = Duration::from_secs(10);
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("not a pid"))?;
    let fd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if sandboxed {
        for member in namespace_members(pid.as_raw_nonzero().get())
            .into_iter()
            .filter_map(Pid::from_raw)
        {
            let _ = kill_process(member, Signal::TERM);
        }
    } else {
        let _ = kill_process_group(pid, Signal::TERM);
    }
    if ended(&fd, grace)? {
        return Ok(());
    }
    let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
    let _ = kill_process_group(pid, Signal::KILL);
    match ended(&fd, KILL_WAIT)? {
        true => Ok(()),
        false => Err(std::io::Error::other("still running after SIGKILL")),
    }
}

/// Whether the process behind `pidfd` ends within `timeout` (a pidfd turns readable when it does).
fn ended(pidfd: &OwnedFd, timeout: Duration) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timespec = Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX as _),
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timespec)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The processes in the PID namespace of `outer`'s child (bubblewrap's
/// init), but that init itself.
fn namespace_members(outer: i32) -> Vec<i32> {
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap_or_default();
    let Some(init) = children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) else {
        return Vec::new();
    };
    let Ok(namespace) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter(|&pid| pid != init)
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == namespace))
        .collect()
}
