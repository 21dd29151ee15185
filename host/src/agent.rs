//! [`AgentProcess`]: an agent par started ([`crate::PackageLoader::spawn`]),
//! inside the sandbox, on sockets par bound for it.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::load::spawn::Running;
use crate::types::error::SpawnError;
use crate::types::spawn::BoundSocket;

/// A running agent. Dropping it stops the agent at once (SIGKILL to all of
/// it); [`AgentProcess::stop`] stops it gracefully.
#[derive(Debug)]
pub struct AgentProcess {
    running: Arc<Running>,
}

impl AgentProcess {
    pub(crate) fn new(running: Running) -> Self {
        Self {
            running: Arc::new(running),
        }
    }

    /// The process par started: bubblewrap when sandboxed, else the agent itself.
    pub fn pid(&self) -> u32 {
        self.running.pid()
    }

    /// The sockets par bound for it, with the ports chosen for port 0.
    pub fn ports(&self) -> &[BoundSocket] {
        self.running.ports()
    }

    /// `bwrap` when the agent runs in the sandbox, `none` when it does not.
    pub fn sandbox(&self) -> &'static str {
        self.running.sandbox()
    }

    /// How the agent ended, if it has.
    pub fn status(&self) -> Option<ExitStatus> {
        self.running.status()
    }

    /// Waits until the agent is ready (see [`crate::SpawnSpec::health`]) and
    /// returns the time from its start; on a timeout or an early exit the
    /// agent is stopped and the error says which.
    ///
    /// # Errors
    ///
    /// - [`SpawnError::ExitedEarly`]: the agent exited before it was ready.
    /// - [`SpawnError::NotReady`]: it was not ready within the spec's
    ///   `ready_timeout`; it has been stopped.
    /// - [`SpawnError::Io`]: the blocking task the wait runs on failed.
    pub async fn wait_ready(&self) -> Result<Duration, SpawnError> {
        let running = Arc::clone(&self.running);
        blocking(move || running.wait_ready()).await?
    }

    /// Blocking form of [`AgentProcess::wait_ready`].
    ///
    /// # Errors
    ///
    /// - [`SpawnError::ExitedEarly`]: the agent exited before it was ready.
    /// - [`SpawnError::NotReady`]: it was not ready within the spec's
    ///   `ready_timeout`; it has been stopped.
    pub fn wait_ready_blocking(&self) -> Result<Duration, SpawnError> {
        self.running.wait_ready()
    }

    /// SIGTERM to every process of the agent, `grace` (the spec's
    /// `stop_grace` when `None`), then SIGKILL to what is left; returns how it ended.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Io`] only when the blocking task the work runs on
    /// failed; [`AgentProcess::stop_blocking`] cannot fail.
    pub async fn stop(&self, grace: Option<Duration>) -> Result<Option<ExitStatus>, SpawnError> {
        let running = Arc::clone(&self.running);
        blocking(move || running.stop(grace)).await
    }

    /// Blocking form of [`AgentProcess::stop`].
    pub fn stop_blocking(&self, grace: Option<Duration>) -> Option<ExitStatus> {
        self.running.stop(grace)
    }

    /// Waits until the agent ends.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Io`] only when the blocking task the work runs on
    /// failed; [`AgentProcess::wait_blocking`] cannot fail.
    pub async fn wait(&self) -> Result<Option<ExitStatus>, SpawnError> {
        let running = Arc::clone(&self.running);
        blocking(move || running.wait()).await
    }

    /// Blocking form of [`AgentProcess::wait`].
    pub fn wait_blocking(&self) -> Option<ExitStatus> {
        self.running.wait()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.running.kill();
    }
}

/// Runs blocking work off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, SpawnError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SpawnError::Io {
        action: "the agent's task failed",
        source: std::io::Error::other(e.to_string()),
    })
}
