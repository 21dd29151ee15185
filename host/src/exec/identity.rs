//! Knowing a process by more than its pid. A pid is reused as soon as its
//! process is reaped, so par records an agent as its pid together with the
//! time the kernel says it started (and, in a sandbox, the PID namespace it
//! is the init of), and signals a process only through a pidfd opened first
//! and checked against that identity after: a pid reused meanwhile is never
//! signalled, and neither is a namespace or a group par did not create.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

pub(crate) use crate::types::process::{ProcessId, SandboxId};

impl ProcessId {
    /// The process `pid` is now, if there is one.
    pub(crate) fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: stat(pid)?.start_time,
        })
    }

    /// A pidfd on this process, if it still runs: opened first, then the
    /// pid's start time checked, so the pidfd is on this process and no
    /// other (a pid reused before the check shows a later start time).
    pub(crate) fn open(&self) -> Option<OwnedFd> {
        open_if(self.pid, |stat| stat.start_time == self.start_time)
    }
}

impl SandboxId {
    /// Whether the sandbox still runs: its init is the one recorded, in the namespace recorded.
    pub(crate) fn is_live(&self) -> bool {
        self.init.open().is_some() && pid_namespace(self.init.pid) == Some(self.namespace)
    }

    /// Sends `signal` to every process in the sandbox's namespace but its
    /// init (which would take the others down at once, with no grace), each
    /// through a pidfd checked to be in that namespace.
    pub(crate) fn signal_members(&self, signal: Signal) {
        if !self.is_live() {
            return;
        }
        for pid in all_pids().into_iter().filter(|&pid| pid != self.init.pid) {
            if pid_namespace(pid) == Some(self.namespace) {
                signal_if(pid, signal, |_| pid_namespace(pid) == Some(self.namespace));
            }
        }
    }
}

/// What par reads of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The process group.
    pub pgid: u32,
    /// When it started, in clock ticks after boot.
    pub start_time: u64,
}

/// `/proc/{pid}/stat`'s process group and start time.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields that follow start after its last `)`.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 3 (state) is fields[0]; field 5 (pgrp) is [2]; field 22 (starttime) is [19].
    Some(Stat {
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The inode of `pid`'s PID namespace.
pub(crate) fn pid_namespace(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// A pidfd on `pid`, if once it is open `still` holds for the process's stat.
pub(crate) fn open_if(pid: u32, still: impl Fn(&Stat) -> bool) -> Option<OwnedFd> {
    let raw = Pid::from_raw(i32::try_from(pid).ok()?)?;
    let fd = pidfd_open(raw, PidfdFlags::empty()).ok()?;
    stat(pid).filter(|stat| still(stat)).map(|_| fd)
}

/// Sends `signal` to `pid` through a pidfd, if once that is open `still`
/// holds; returns whether it was sent.
pub(crate) fn signal_if(pid: u32, signal: Signal, still: impl Fn(u32) -> bool) -> bool {
    let Some(fd) = open_if(pid, |_| still(pid)) else {
        return false;
    };
    pidfd_send_signal(&fd, signal).is_ok()
}

/// Sends `signal` to every process of the group `leader` leads, each
/// through a pidfd checked to be in that group, while `leader` is the
/// process recorded (so the group is still the one par made).
pub(crate) fn signal_group(leader: &ProcessId, signal: Signal) {
    let Some(_leader) = leader.open() else {
        return;
    };
    if stat(leader.pid).is_none_or(|stat| stat.pgid != leader.pid) {
        return;
    }
    for pid in all_pids() {
        if stat(pid).is_some_and(|stat| stat.pgid == leader.pid) {
            signal_if(pid, signal, |pid| stat(pid).is_some_and(|stat| stat.pgid == leader.pid));
        }
    }
}

/// Every pid in `/proc`.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse().ok()))
        .collect()
}

/// Whether the process behind `pidfd` ends before `deadline` (a pidfd turns
/// readable when it does).
pub(crate) fn ends_by(pidfd: &OwnedFd, deadline: Instant) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timespec = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX as _,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timespec)) {
            Ok(0) if left.is_zero() => return false,
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
}

/// Stops a process par recorded, known by its identity only (an agent
/// another loader started): SIGTERM to the processes of its sandbox, or of
/// its process group without one, up to `grace` for it to end, then
/// SIGKILL; returns whether it ended (or was already gone).
pub(crate) fn stop(process: &ProcessId, sandbox: Option<&SandboxId>, grace: Duration) -> bool {
    const KILL_WAIT: Duration = Duration::from_secs(10);
    let Some(fd) = process.open() else {
        return true;
    };
    match sandbox {
        Some(sandbox) => sandbox.signal_members(Signal::TERM),
        None => signal_group(process, Signal::TERM),
    }
    if ends_by(&fd, Instant::now() + grace) {
        return true;
    }
    if sandbox.is_none() {
        signal_group(process, Signal::KILL);
    }
    let _ = pidfd_send_signal(&fd, Signal::KILL);
    ends_by(&fd, Instant::now() + KILL_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;
    use std::process::Command;

    #[test]
    fn a_process_is_known_by_its_start_time_not_its_pid_alone() {
        let me = ProcessId::of(std::process::id()).expect("this process");
        assert!(me.open().is_some());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(reused.open().is_none(), "another process that had this pid");
    }

    #[test]
    fn a_stale_identity_signals_nothing_neither_the_process_nor_its_group_nor_a_namespace() {
        // An unrelated process group: what a pid reused after an agent ended could name.
        // Its output goes nowhere: a `sleep` left behind must not hold the
        // test runner's output open. Started as par starts every child (see
        // `fs::lock`): a fork outside that rule holds copies of the other
        // tests' lock descriptors until it execs, and a test that tries a
        // lock one of them let go would see it held.
        let in_flight = crate::fs::lock::spawning();
        let mut unrelated = Command::new("sh")
            .args(["-c", "sleep 600 & wait"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn");
        drop(in_flight);
        let pid = unrelated.id();
        let now = ProcessId::of(pid).expect("running");
        let stale = ProcessId {
            start_time: now.start_time.saturating_sub(1),
            ..now
        };
        let sandbox = SandboxId {
            init: stale,
            namespace: pid_namespace(pid).expect("a namespace"),
        };
        assert!(stop(&stale, None, Duration::ZERO), "a stale record counts as gone");
        assert!(stop(&stale, Some(&sandbox), Duration::ZERO));
        assert!(
            unrelated.try_wait().expect("wait").is_none(),
            "the unrelated process was signalled"
        );
        assert!(stop(&now, None, Duration::from_secs(30)), "its own identity stops it");
        let _ = unrelated.wait();
        // The group this test made, `sleep` with it.
        if let Some(group) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}
