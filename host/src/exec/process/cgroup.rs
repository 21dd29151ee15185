//! A cgroup per step or agent. The pids one caps how many processes it may
//! have at once (`RLIMIT_NPROC` does not bind root and counts every process
//! of the user), and names every process it started, whatever session or
//! process group it moved to, so all of them can be killed when it ends. A
//! memory one (agents) caps the memory of all of them together.
//!
//! Used where the loader may create cgroups: the cgroup v1 hierarchy of the
//! controller, or a cgroup v2 directory where it is delegated. Elsewhere
//! they run without (see docs/SECURITY.md).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::exec::identity;

/// Distinguishes the cgroups of concurrent steps of one loader.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A step's or agent's own cgroup, removed (after killing what is left in it) on drop.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, ready for the child to join between fork and exec.
    procs: CString,
}

impl Cgroup {
    /// A new pids cgroup under the loader's own, holding at most `max`
    /// processes; `None` where cgroups cannot be created or have no pids controller.
    pub(crate) fn pids(max: u64) -> Option<Self> {
        let group = Self::create("pids")?;
        group.set("pids.max", max).then_some(group)
    }

    /// A new memory cgroup under the loader's own, capping all its processes
    /// together at `bytes`; `None` where the memory controller is not the loader's to use.
    pub(crate) fn memory(bytes: u64) -> Option<Self> {
        let group = Self::create("memory")?;
        let capped = group.set("memory.max", bytes) || group.set("memory.limit_in_bytes", bytes);
        // Nor may it swap past the cap (where the kernel accounts swap).
        let _ = group.set("memory.swap.max", 0) || group.set("memory.memsw.limit_in_bytes", bytes);
        capped.then_some(group)
    }

    /// Caps the memory of this cgroup too: where pids and memory share one
    /// cgroup v2 hierarchy, a process can be in only one cgroup of it.
    pub(crate) fn also_limit_memory(&self, bytes: u64) -> bool {
        self.set("memory.max", bytes)
    }

    fn create(controller: &str) -> Option<Self> {
        let parent = writable_parent(controller)?;
        static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        if let Ok(mut swept) = SWEPT.lock()
            && !swept.contains(&parent)
        {
            sweep_abandoned(&parent);
            swept.push(parent.clone());
        }
        let dir = parent.join(format!(
            "par-step-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        Some(Self {
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok()?,
            dir,
        })
    }

    fn set(&self, file: &str, value: u64) -> bool {
        std::fs::write(self.dir.join(file), value.to_string()).is_ok()
    }

    /// The `cgroup.procs` path a child hands to [`join`].
    pub(crate) fn procs(&self) -> &CStr {
        &self.procs
    }

    /// Processes still in the cgroup.
    pub(crate) fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// Kills every process left in the cgroup.
    pub(crate) fn kill_all(&self) {
        self.signal_all(Signal::KILL);
    }

    /// Sends `signal` to every process in the cgroup, each through a pidfd
    /// checked to be in this cgroup once open (a member that ended and whose
    /// pid was reused elsewhere is not signalled).
    pub(crate) fn signal_all(&self, signal: Signal) {
        for pid in self.members() {
            if let Ok(pid) = u32::try_from(pid) {
                identity::signal_if(pid, signal, |pid| self.holds(pid));
            }
        }
    }

    /// Whether `pid` is in this cgroup (by `/proc/PID/cgroup`).
    fn holds(&self, pid: u32) -> bool {
        let Some(name) = self.dir.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|groups| {
            groups
                .lines()
                .any(|line| line.rsplit_once('/').is_some_and(|(_, last)| last == name))
        })
    }
}

impl Cgroup {
    /// Waits until a process in the cgroup exits, or `deadline`: every
    /// member through a pidfd checked to be on a process of this cgroup, so
    /// the wait ends the moment one is gone; where none can be opened (all
    /// gone, not yet counted out), a pause of a millisecond at most.
    fn wait_for_a_member(&self, deadline: Instant) {
        let fds: Vec<_> = self
            .members()
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .filter_map(|pid| identity::open_if(pid, |_| self.holds(pid)))
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::event::Timespec::try_from(left).ok();
        match (fds.is_empty(), timeout) {
            (false, Some(timeout)) => {
                let mut polls: Vec<_> = fds
                    .iter()
                    .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                    .collect();
                let _ = rustix::event::poll(&mut polls, Some(&timeout));
            }
            _ => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty: the step's last processes
        // (bubblewrap's own, inside its namespace) may still be on their way
        // out when the step has ended. Each is killed and waited for.
        let deadline = Instant::now() + REMOVE_WITHIN;
        loop {
            self.kill_all();
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            self.wait_for_a_member(deadline);
        }
        tracing::warn!(cgroup = %self.dir.display(), "cannot remove a step's cgroup");
    }
}

/// How long a cgroup's last processes may take to go before it is left behind
/// (a later loader sweeps it).
const REMOVE_WITHIN: Duration = Duration::from_secs(2);

/// The cgroups of one step or agent: a pids one (capping and naming its
/// processes) and a memory one (capping them together), or one cgroup
/// for both where a cgroup v2 hierarchy holds both controllers.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pids: Option<Cgroup>,
    memory: Option<Cgroup>,
    memory_capped: bool,
}

impl Groups {
    /// The cgroups `processes` and `memory_bytes` call for, as far as the
    /// loader may make them here.
    pub(crate) fn new(processes: Option<u64>, memory_bytes: Option<u64>) -> Self {
        let pids = processes.and_then(Cgroup::pids);
        let (memory, memory_capped) = match (memory_bytes, &pids) {
            (Some(bytes), Some(pids)) if pids.also_limit_memory(bytes) => (None, true),
            (Some(bytes), _) => {
                let memory = Cgroup::memory(bytes);
                let capped = memory.is_some();
                (memory, capped)
            }
            (None, _) => (None, false),
        };
        Self {
            pids,
            memory,
            memory_capped,
        }
    }

    /// Whether a cgroup caps the memory of all the processes together.
    pub(crate) fn caps_memory(&self) -> bool {
        self.memory_capped
    }

    /// Each cgroup's `cgroup.procs`, for the child to join between fork and exec.
    pub(crate) fn procs(&self) -> Vec<std::ffi::CString> {
        self.iter().map(|group| group.procs().to_owned()).collect()
    }

    /// The cgroups: each names every process started in it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Cgroup> {
        self.pids.iter().chain(&self.memory)
    }

    /// Sends `signal` to every process in them (see [`Cgroup::signal_all`]).
    pub(crate) fn signal_all(&self, signal: Signal) {
        for group in self.iter() {
            group.signal_all(signal);
        }
    }
}

/// Removes the empty cgroups of loaders that died (SIGKILL skips `Drop`);
/// once per process is enough, since only a dead loader leaves them.
fn sweep_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix("par-step-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Fails, harmlessly, while a process is still inside.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is
/// `procs`. Runs between fork and exec: only system calls, no allocation.
pub(crate) fn join(procs: &CStr) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags, open};
    let file = open(procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&file, b"0")?;
    Ok(())
}

/// The loader's own cgroup in a hierarchy with `controller`, if it can make
/// children there: v1's hierarchy of that controller first, then v2.
fn writable_parent(controller: &str) -> Option<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            candidates.push(Path::new("/sys/fs/cgroup").join(controller).join(relative));
        } else if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = Path::new(root).join(relative);
                let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                    .is_ok_and(|enabled| enabled.split_whitespace().any(|c| c == controller));
                if delegated {
                    candidates.push(dir);
                }
            }
        }
    }
    candidates.into_iter().find(|dir| dir.is_dir())
}
