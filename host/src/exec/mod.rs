//! Running subprocesses: with rlimits, a process group and a pids cgroup
//! (`process`), and under bubblewrap (`confine`).

pub mod confine;
pub mod process;
