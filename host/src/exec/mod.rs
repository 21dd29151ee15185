//! Running subprocesses: installer steps with rlimits, a process group and
//! a pids cgroup (`process`), agents that run until stopped (`agent`), both
//! under bubblewrap (`confine`), and their output made safe to log (`output`).

pub(crate) mod agent;
pub(crate) mod confine;
pub(crate) mod identity;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod ready;
pub(crate) mod seccomp;
