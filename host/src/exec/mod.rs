//! Running subprocesses: installer steps with rlimits, a process group and
//! a pids cgroup (`process`), agents that run until stopped (`agent`), both
//! under bubblewrap (`confine`), and their output made safe to log (`output`).

pub mod agent;
pub mod confine;
pub mod identity;
pub mod output;
pub mod process;
pub mod ready;
pub mod seccomp;
