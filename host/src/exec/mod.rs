//! Running subprocesses: installer steps with rlimits, a process group and
//! a pids cgroup (`process`), agents that run until stopped (`agent`), both
//! under bubblewrap (`confine`), their output made safe to log (`output`),
//! the sockets bound for agents (`listener`) and whether an agent is ready
//! on them (`ready`).

pub(crate) mod agent;
pub(crate) mod confine;
pub(crate) mod identity;
pub(crate) mod listener;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod ready;
pub(crate) mod seccomp;
