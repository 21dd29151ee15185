//! How par knows a process it started, across loaders and after they end:
//! by more than a pid, which the kernel reuses (`crate::exec::identity`
//! opens and signals them).

use serde::{Deserialize, Serialize};

/// A process as par recorded it: its pid and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    /// Its pid in the host's PID namespace.
    pub pid: u32,
    /// When it started, in clock ticks after boot (`/proc/PID/stat`, field 22).
    pub start_time: u64,
}

/// A sandbox's PID namespace as bubblewrap reported it: its init (in host
/// terms) and the namespace's inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxId {
    /// bubblewrap's init inside the sandbox, as a host process.
    pub init: ProcessId,
    /// The inode of the PID namespace it is the init of.
    pub namespace: u64,
}
