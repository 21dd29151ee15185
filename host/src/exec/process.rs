//! Running installer subprocesses: argv vectors only (never a shell), a
//! cleared environment plus an explicit allow-list, stdin closed, output
//! captured (bounded), each child in its own process group, and a deadline
//! after which the whole group is killed. When a step ends, whatever it left
//! running in its group is killed too, so nothing outlives the step.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::types::config::ResourceLimits;

pub(crate) mod cgroup;

use cgroup::Groups;

/// Bytes of each output stream kept (the end of it, where errors are).
const OUTPUT_TAIL: usize = 256 * 1024;
/// How often a running child is polled for exit when no pidfd tells, and
/// how often a cancellable step looks at its flag.
const POLL: Duration = Duration::from_millis(20);
/// [`POLL`] as `poll(2)` takes it.
const POLL_TIMESPEC: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 20_000_000,
};
/// How long the output readers go on once the step has ended and its group
/// is killed: enough for what is already in the pipes, and no longer, so a
/// daemon that escaped the group and keeps the pipes open cannot hang the load.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Applies every set limit to the calling process; runs between fork and exec.
fn apply_limits(limits: &ResourceLimits) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let pairs = [
        (Resource::As, limits.address_space_bytes),
        (Resource::Fsize, limits.file_size_bytes),
        (Resource::Nofile, limits.open_files),
        (Resource::Cpu, limits.cpu_seconds),
    ];
    for (resource, limit) in pairs {
        if let Some(limit) = limit {
            let value = Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            };
            setrlimit(resource, value).map_err(std::io::Error::from)?;
        }
    }
    Ok(())
}

/// One subprocess to run.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Name used in errors and logs (`requirements`, `self-install` …).
    pub name: &'static str,
    /// The program, by absolute path where possible.
    pub program: PathBuf,
    /// Arguments, passed as-is.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The complete environment of the child.
    pub env: Vec<(OsString, OsString)>,
    /// Wall-clock limit; the process group is killed when it passes.
    pub timeout: Duration,
    /// Resource limits for the step and its descendants.
    pub limits: ResourceLimits,
    /// Set by another thread to stop the step early (its group is killed as
    /// on a timeout): a step started ahead of need that turned out unneeded.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Descriptors the child gets as 3, 4, … in this order (listening
    /// sockets, bubblewrap's seccomp program and info pipe); every other
    /// descriptor of the loader stays closed to it.
    pub fds: Vec<Arc<OwnedFd>>,
}

impl Step {
    /// A step with no arguments and an empty environment.
    pub(crate) fn new(
        name: &'static str,
        program: impl Into<PathBuf>,
        cwd: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            name,
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
            timeout,
            limits: ResourceLimits::default(),
            cancel: None,
            fds: Vec::new(),
        }
    }

    /// Appends arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Hands `fd` to the child as the next descriptor from 3 on; returns its number there.
    pub(crate) fn pass_fd(&mut self, fd: Arc<OwnedFd>) -> i32 {
        self.fds.push(fd);
        2 + self.fds.len() as i32
    }

    /// Sets one environment variable for the child.
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }
}

/// What a finished step produced.
#[derive(Debug, Clone)]
pub(crate) struct StepOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// The end of standard output (lossy UTF-8).
    pub stdout: String,
    /// The end of standard error (lossy UTF-8).
    pub stderr: String,
}

impl StepOutput {
    /// Exit code, or `128 + signal` when killed by a signal (shell convention).
    pub(crate) fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }
}

/// Why a step did not produce an exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The program could not be started.
    #[error("cannot start `{}` for the {step} step: {source}", program.display())]
    Spawn {
        /// Which step.
        step: &'static str,
        /// The program.
        program: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The deadline passed; the process group was killed.
    #[error("the {step} step timed out after {}s", timeout.as_secs_f64())]
    TimedOut {
        /// Which step.
        step: &'static str,
        /// The limit that passed.
        timeout: Duration,
        /// Output captured before the kill.
        stdout: String,
        /// Error output captured before the kill.
        stderr: String,
    },
    /// Another thread cancelled the step; its process group was killed.
    #[error("the {step} step was cancelled")]
    Cancelled {
        /// Which step.
        step: &'static str,
    },
    /// Waiting for the child failed.
    #[error("waiting for the {step} step failed: {source}")]
    Wait {
        /// Which step.
        step: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// A command par starts: it can only be spawned under
/// [`crate::fs::lock::spawning`], so no lock par has let go is held by a
/// child on its way to exec when a lock is tried.
#[derive(Debug)]
pub(crate) struct Supervised(Command);

impl Supervised {
    /// Starts the child; returns once it has exec'd (or failed to).
    pub(crate) fn spawn(&mut self) -> std::io::Result<Child> {
        let _in_flight = crate::fs::lock::spawning();
        self.0.spawn()
    }

    /// The command, to add to what its child does before exec.
    pub(crate) fn command_mut(&mut self) -> &mut Command {
        &mut self.0
    }
}

/// The command for `step`, supervised: argv and environment exactly as
/// given, stdin closed, output piped, a process group of its own, its
/// rlimits, the cgroups whose `cgroup.procs` are `procs` joined, its
/// descriptors in place from 3 on, and death with the loader.
pub(crate) fn supervised(step: &Step, procs: Vec<std::ffi::CString>) -> std::io::Result<Supervised> {
    supervised_by(step, procs, rustix::process::getpid())
}

/// [`supervised`], the child checking that its parent is `loader`.
#[allow(
    unsafe_code,
    reason = "`pre_exec` is unsafe: the hook runs in the forked child, where only async-signal-safe calls are sound"
)]
fn supervised_by(step: &Step, procs: Vec<std::ffi::CString>, loader: Pid) -> std::io::Result<Supervised> {
    let mut command = Command::new(&step.program);
    command
        .args(&step.args)
        .current_dir(&step.cwd)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Copies of the step's descriptors above the range they go to (and
    // close-on-exec), so moving them into place in the child never
    // overwrites one not yet moved. They close with the command.
    let lowest = 3 + step.fds.len() as i32 + 16;
    let high: Vec<OwnedFd> = step
        .fds
        .iter()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, lowest))
        .collect::<Result<_, _>>()?;
    let limits = step.limits;
    // SAFETY: the hook only makes async-signal-safe system calls (prctl,
    // getppid, open and write of the cgroup's cgroup.procs, setrlimit, dup2,
    // close_range)
    // and allocates nothing on its success path. If the loader dies, the
    // child dies with it instead of running on unsupervised. A loader killed
    // between fork and the prctl would never send the signal, so the child
    // checks that its parent is still the loader and gives up otherwise.
    unsafe {
        command.pre_exec(move || {
            // Before anything else: the child holds none of the loader's locks.
            crate::fs::lock::close_held_locks();
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(std::io::Error::from)?;
            if rustix::process::getppid() != Some(loader) {
                return Err(std::io::Error::from_raw_os_error(libc::EPIPE));
            }
            for procs in &procs {
                cgroup::join(procs)?;
            }
            apply_limits(&limits)?;
            for (target, source) in (3..).zip(&high) {
                if libc::dup2(source.as_raw_fd(), target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Every other descriptor the loader has, even one it inherited
            // without close-on-exec, closes at exec. (A kernel before 5.11
            // has no flag for that; there only close-on-exec ones close.)
            let first = 3 + high.len() as libc::c_uint;
            libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    Ok(Supervised(command))
}

/// Runs `step` to completion or to its deadline.
pub(crate) fn run(step: &Step) -> Result<StepOutput, StepError> {
    let started = Instant::now();
    let groups = Groups::new(step.limits.processes, step.limits.memory_bytes);
    let spawn_error = |source| StepError::Spawn {
        step: step.name,
        program: step.program.clone(),
        source,
    };
    let mut command = supervised(step, groups.procs()).map_err(spawn_error)?;
    let mut child = command.spawn().map_err(|source| StepError::Spawn {
        step: step.name,
        program: step.program.clone(),
        source,
    })?;
    let group = Pid::from_child(&child);
    let ended = Arc::new(std::sync::OnceLock::new());
    let stdout = drain(child.stdout.take(), ended.clone());
    let stderr = drain(child.stderr.take(), ended.clone());
    let waited = wait_until(&mut child, started + step.timeout, step.cancel.as_deref());
    // Whatever the step started and left in its group dies with it; an error
    // here only means the group is already empty.
    let _ = kill_process_group(group, Signal::KILL);
    // And so does whatever left the group (a daemon that called setsid).
    groups.signal_all(Signal::KILL);
    let _ = ended.set(Instant::now() + OUTPUT_GRACE);
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match waited {
        Ok(Some(status)) => Ok(StepOutput { status, stdout, stderr }),
        Ok(None) if step.cancel.as_deref().is_some_and(|c| c.load(Ordering::Relaxed)) => {
            let _ = child.wait();
            Err(StepError::Cancelled { step: step.name })
        }
        Ok(None) => {
            let _ = child.wait();
            Err(StepError::TimedOut {
                step: step.name,
                timeout: step.timeout,
                stdout,
                stderr,
            })
        }
        Err(source) => Err(StepError::Wait {
            step: step.name,
            source,
        }),
    }
}

/// Waits until the child exits (`Some`), or the deadline passes or `cancel`
/// is set (`None`, child still running). A pidfd wakes the wait the moment
/// the child exits; where the kernel has none, the child is polled.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    cancel: Option<&AtomicBool>,
) -> std::io::Result<Option<ExitStatus>> {
    let pidfd = rustix::process::pidfd_open(Pid::from_child(child), rustix::process::PidfdFlags::empty()).ok();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline || cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Ok(None);
        }
        // A cancellable step wakes up now and then to look at its flag.
        let mut slice = deadline - now;
        if pidfd.is_none() || cancel.is_some() {
            slice = slice.min(POLL);
        }
        match &pidfd {
            Some(fd) => {
                let timeout = rustix::event::Timespec::try_from(slice).map_err(std::io::Error::other)?;
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => std::thread::sleep(slice),
        }
    }
}

/// Reads a pipe on a thread, keeping only the last [`OUTPUT_TAIL`] bytes,
/// until its end or until the cutoff set in `ended` (once the step is over)
/// has passed: a process that outlived the step may hold the pipe open forever.
fn drain(
    pipe: Option<impl Read + std::os::fd::AsFd + Send + 'static>,
    ended: Arc<std::sync::OnceLock<Instant>>,
) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if ended.get().is_some_and(|cutoff| Instant::now() >= *cutoff) {
                break;
            }
            let mut fds = [rustix::event::PollFd::new(&pipe, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&POLL_TIMESPEC)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            let n = match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            kept.extend_from_slice(&buffer[..n]);
            if kept.len() > 2 * OUTPUT_TAIL {
                kept.drain(..kept.len() - OUTPUT_TAIL);
            }
        }
        let start = kept.len().saturating_sub(OUTPUT_TAIL);
        kept.split_off(start)
    }))
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// CPU time the calling thread has used: what the guest's CPU cap is measured
/// in, since the guest runs on the thread that calls into it.
pub(crate) fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec.max(0) as u64, now.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Resolves a program name on `PATH` to a canonical path; see [`find_program_in`].
pub(crate) fn find_program(program: &Path) -> Option<PathBuf> {
    find_program_in(program, &[])
}

/// Resolves a program name on `PATH` (a path with a `/` is taken as is) to a
/// canonical path, honouring `PATH` order. When the program found is a `#!`
/// script and one of `extra` holds a compiled executable of the same file
/// name, that one is taken: version managers put
/// shims on `PATH` that re-exec the real tool through their own state, which
/// a confined step cannot see, and the real binary sits in a known place
/// (for `uv`, the interpreter's scripts directory).
pub(crate) fn find_program_in(program: &Path, extra: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let is_script = |p: &Path| {
        let mut magic = [0u8; 2];
        std::fs::File::open(p)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok_and(|()| &magic == b"#!")
    };
    let found = if program.components().count() > 1 || program.is_absolute() {
        executable(program).then(|| program.to_owned())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| executable(candidate))
    }?;
    let found = match (is_script(&found), found.file_name()) {
        (true, Some(name)) => extra
            .iter()
            .map(|dir| dir.join(name))
            .find(|candidate| executable(candidate) && !is_script(candidate))
            .unwrap_or(found),
        _ => found,
    };
    found.canonicalize().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Step {
        Step::new("test", "/bin/sh", std::env::temp_dir(), timeout).args(["-c", script])
    }

    /// Whether `pid` still names a live (non-zombie) process.
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
            .unwrap_or(false)
    }

    /// The pid a test script wrote to `path`.
    fn read_pid(path: &Path) -> i32 {
        std::fs::read_to_string(path)
            .expect("the script wrote a pid")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Waits for `pid` to exit (a pidfd turns readable then), allowing a
    /// loaded machine far more than the kill needs.
    fn eventually_dead(pid: i32) -> bool {
        let Some(pid) = Pid::from_raw(pid) else {
            return false;
        };
        let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            return true; // gone already
        };
        let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec { tv_sec: 60, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(1)) || !alive(pid.as_raw_nonzero().get())
    }

    /// Whether the thread `tid` of this process is blocked in `futex(2)`
    /// (waiting for a lock), as `/proc` shows it.
    fn waiting_on_a_lock(tid: libc::pid_t) -> bool {
        let path = format!("/proc/self/task/{tid}/syscall");
        std::fs::read_to_string(path)
            .is_ok_and(|call| call.split_whitespace().next() == Some(libc::SYS_futex.to_string().as_str()))
    }

    #[test]
    #[allow(
        unsafe_code,
        reason = "the test pauses a child between fork and exec with a `pre_exec` hook"
    )]
    fn a_lock_the_loader_let_go_is_never_held_by_a_child_on_its_way_to_exec() {
        use crate::fs::lock::lock_in;
        use rustix::fs::FlockOperation;
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().expect("dir");
        let handle = cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).expect("open");
        let held = lock_in(&handle, "lock", FlockOperation::LockExclusive).expect("lock");
        let (mut forked, forked_in_child) = std::io::pipe().expect("pipe");
        let (gate_in_child, mut gate) = std::io::pipe().expect("pipe");
        let mut command = supervised(&sh("true", Duration::from_secs(60)), Vec::new()).expect("command");
        let (forked_fd, gate_fd) = (forked_in_child.as_raw_fd(), gate_in_child.as_raw_fd());
        // SAFETY: write and read are async-signal-safe; the pipes outlive
        // the command, which owns them through this hook.
        unsafe {
            command.command_mut().pre_exec(move || {
                let _keep = (&forked_in_child, &gate_in_child);
                let mut byte = 0u8;
                libc::write(forked_fd, (&raw const byte).cast(), 1);
                libc::read(gate_fd, (&raw mut byte).cast(), 1);
                Ok(())
            });
        }
        let spawner = std::thread::spawn(move || command.spawn().and_then(|mut child| child.wait()));
        // The child has forked and holds a copy of the lock's descriptor.
        forked.read_exact(&mut [0]).expect("the child forked");
        drop(held);
        // SAFETY: gettid has no preconditions.
        let this_thread = unsafe { libc::gettid() };
        let tried = Arc::new(AtomicBool::new(false));
        let opener = std::thread::spawn({
            let tried = tried.clone();
            move || {
                // Lets the child exec once the try waits for it (or is over).
                while !tried.load(Ordering::Acquire) && !waiting_on_a_lock(this_thread) {
                    std::thread::yield_now();
                }
                gate.write_all(&[0]).expect("open the gate");
            }
        });
        let result = lock_in(&handle, "lock", FlockOperation::NonBlockingLockExclusive);
        tried.store(true, Ordering::Release);
        opener.join().expect("opener");
        let status = spawner.join().expect("spawner").expect("the child ran");
        assert!(status.success(), "{status}");
        assert!(
            result.is_ok(),
            "the copy in a child on its way to exec held the lock: {result:?}"
        );
    }

    #[test]
    fn captures_output_and_exit_code() {
        let out = run(&sh("echo out; echo err >&2; exit 3", Duration::from_secs(10))).expect("ran");
        assert_eq!(out.code(), 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn environment_is_only_the_allow_list() {
        assert!(
            std::env::var_os("PATH").is_some(),
            "the test process has a PATH to hide"
        );
        let out = run(&sh("env", Duration::from_secs(10)).env("ONLY", "this")).expect("ran");
        let mut lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with("PWD=")).collect();
        lines.sort();
        assert_eq!(lines, ["ONLY=this"]);
    }

    #[test]
    fn a_daemon_holding_the_output_open_does_not_hang_the_step() {
        // No cgroup and no sandbox: the daemon leaves the process group with
        // setsid and keeps stdout and stderr open for ten minutes after the
        // step ended.
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("daemon.pid");
        // The daemon writes its pid once it has left the group, and the step
        // ends only then, so the group kill cannot catch it first.
        let script = format!(
            "setsid sh -c 'echo $$ > \"$0\"; exec sleep 600' '{pid}' & while [ ! -s '{pid}' ]; do :; done; echo started; echo warned >&2",
            pid = pid_file.display()
        );
        let started = Instant::now();
        let out = run(&sh(&script, Duration::from_secs(300))).expect("ran");
        let took = started.elapsed();
        let daemon = read_pid(&pid_file);
        let daemon_alive = alive(daemon);
        if let Some(pid) = Pid::from_raw(daemon) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        assert!(daemon_alive, "the daemon outlived the step, as this test needs");
        assert!(took < Duration::from_secs(300), "the step waited for the daemon");
        assert_eq!(
            (out.code(), out.stdout.as_str(), out.stderr.as_str()),
            (0, "started\n", "warned\n")
        );
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        // The deadline must fall after the shell has started its child; a
        // loaded machine gets a longer one until it does.
        for deadline_ms in [300, 2_000, 10_000, 60_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let pidfile = dir.path().join("pid");
            let script = format!(
                "sleep 30 & echo $! > {}.tmp; mv {0}.tmp {0}; sleep 30",
                pidfile.display()
            );
            let error = run(&sh(&script, Duration::from_millis(deadline_ms))).expect_err("must time out");
            assert!(matches!(error, StepError::TimedOut { step: "test", .. }), "{error}");
            if !pidfile.exists() {
                continue;
            }
            let pid = read_pid(&pidfile);
            assert!(eventually_dead(pid), "background child {pid} survived the timeout");
            return;
        }
        panic!("the shell never started its child, even with a minute");
    }

    #[test]
    fn cancelling_kills_the_whole_group_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display());
        let cancel = Arc::new(AtomicBool::new(false));
        let mut step = sh(&script, Duration::from_secs(60));
        step.cancel = Some(cancel.clone());
        let started = Instant::now();
        let runner = std::thread::spawn(move || run(&step));
        while std::fs::metadata(&pidfile).map_or(0, |m| m.len()) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        cancel.store(true, Ordering::Relaxed);
        let error = runner.join().expect("joined").expect_err("must be cancelled");
        assert!(matches!(error, StepError::Cancelled { step: "test" }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cancel did not stop the step"
        );
        let pid = read_pid(&pidfile);
        assert!(eventually_dead(pid), "background child {pid} survived the cancel");
    }

    #[test]
    fn nothing_outlives_a_finished_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 > /dev/null 2>&1 & echo $! > {}", pidfile.display());
        let out = run(&sh(&script, Duration::from_secs(10))).expect("ran");
        assert_eq!(out.code(), 0);
        let pid = read_pid(&pidfile);
        assert!(eventually_dead(pid), "background child {pid} outlived its step");
    }

    #[test]
    fn resource_limits_hold_for_the_step() {
        let mut step = sh("ulimit -n; head -c 2000000 /dev/zero > big", Duration::from_secs(10));
        let dir = tempfile::tempdir().expect("tempdir");
        step.cwd = dir.path().to_owned();
        step.limits = ResourceLimits {
            open_files: Some(64),
            file_size_bytes: Some(1024 * 1024),
            ..ResourceLimits::default()
        };
        let out = run(&step).expect("ran");
        assert_eq!(out.stdout.trim(), "64");
        assert_ne!(out.code(), 0, "writing past RLIMIT_FSIZE must fail");
        let written = std::fs::metadata(dir.path().join("big")).expect("partial file").len();
        assert!(written <= 1024 * 1024, "{written} bytes written past the limit");
    }

    #[test]
    fn a_script_shim_gives_way_to_the_real_binary_beside_the_interpreter() {
        use std::os::unix::fs::PermissionsExt;
        let (shims, real) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let shim = shims.path().join("tool");
        std::fs::write(&shim, "#!/bin/sh\nexec somewhere-else \"$@\"\n").expect("shim");
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let binary = real.path().join("tool");
        std::fs::copy("/bin/true", &binary).expect("binary");
        let resolved = |extra: &[PathBuf]| find_program_in(&shim, extra).expect("found");
        assert_eq!(
            resolved(&[]),
            shim.canonicalize().expect("canonical"),
            "no better candidate: keep the shim"
        );
        assert_eq!(
            resolved(&[real.path().to_owned()]),
            binary.canonicalize().expect("canonical")
        );
        assert_eq!(
            find_program_in(&binary, &[shims.path().to_owned()]),
            binary.canonicalize().ok(),
            "a real binary is never replaced"
        );
        assert_eq!(find_program_in(&real.path().join("missing"), &[]), None);
    }

    fn assert_cgroups_available() {
        assert!(
            cgroup::Cgroup::pids(1).is_some(),
            "these tests need a pids cgroup the loader may create (root, or a delegated cgroup v2)"
        );
    }

    #[test]
    fn a_pids_cgroup_caps_the_processes_of_a_step() {
        assert_cgroups_available();
        let script = "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); echo $i; done";
        let mut step = sh(script, Duration::from_secs(20));
        step.limits.processes = Some(10);
        let out = run(&step).expect("ran");
        assert!(
            out.stderr.contains("Cannot fork"),
            "forking past the cap must fail: {}",
            out.stderr
        );
        let started = out.stdout.lines().count();
        assert!(
            (5..10).contains(&started),
            "{started} background processes started under a cap of 10"
        );
    }

    #[test]
    fn a_daemon_that_leaves_the_group_dies_with_its_cgroup() {
        assert_cgroups_available();
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("daemon");
        let script = format!(
            "setsid sh -c 'echo $$ > {0}; exec sleep 30' > /dev/null 2>&1 & while [ ! -s {0} ]; do sleep 0.05; done",
            pidfile.display()
        );
        let mut step = sh(&script, Duration::from_secs(20));
        step.limits.processes = Some(50);
        assert_eq!(run(&step).expect("ran").code(), 0);
        let pid = read_pid(&pidfile);
        assert!(eventually_dead(pid), "the setsid daemon {pid} outlived its step");
    }

    #[test]
    fn a_child_whose_parent_is_not_its_loader_gives_up_before_it_runs() {
        // As a child whose loader died between fork and the parent-death
        // signal finds itself: another process (init) is its parent now.
        let dir = tempfile::tempdir().expect("tempdir");
        let ran = dir.path().join("ran");
        let step = sh(&format!("touch {}", ran.display()), Duration::from_secs(10));
        let init = Pid::from_raw(1).expect("init");
        let error = supervised_by(&step, Vec::new(), init)
            .expect("command")
            .spawn()
            .expect_err("the child must give up");
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        assert!(!ran.exists(), "the step ran");
        supervised(&step, Vec::new())
            .expect("command")
            .spawn()
            .and_then(|mut child| child.wait())
            .expect("runs under its loader");
        assert!(ran.exists());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let step = Step::new(
            "test",
            "/nonexistent/python",
            std::env::temp_dir(),
            Duration::from_secs(1),
        );
        assert!(matches!(run(&step), Err(StepError::Spawn { .. })));
    }
}
