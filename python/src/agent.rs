//! `par_loader._native.Agent`: an agent par started ([`AgentProcess`]), for
//! `par_loader.AgentProcess`. Every wait releases the GIL; dropping the
//! object kills the agent, as dropping an `AgentProcess` does.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::Duration;

use par::AgentProcess;
use pyo3::prelude::*;

use crate::errors;

/// A started agent.
#[pyclass(frozen, module = "par_loader._native")]
pub struct Agent {
    pub(crate) inner: AgentProcess,
}

#[pymethods]
impl Agent {
    /// The process par started: bubblewrap when sandboxed, else the agent.
    #[getter]
    fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// `bwrap` or `none`.
    #[getter]
    fn sandbox(&self) -> &'static str {
        self.inner.sandbox()
    }

    /// The TCP sockets par bound for it: `(name, host, port)` each.
    #[getter]
    fn ports(&self) -> Vec<(String, String, u16)> {
        self.inner
            .ports()
            .iter()
            .filter_map(|bound| {
                let addr = bound.addr.tcp()?;
                Some((bound.name.clone(), addr.ip().to_string(), addr.port()))
            })
            .collect()
    }

    /// The unix sockets par bound for it: `(name, path)` each.
    #[getter]
    fn unix_sockets(&self) -> Vec<(String, std::path::PathBuf)> {
        self.inner
            .ports()
            .iter()
            .filter_map(|bound| match &bound.addr {
                par::Endpoint::Unix(path) => Some((bound.name.clone(), path.clone())),
                par::Endpoint::Tcp(_) => None,
            })
            .collect()
    }

    /// How it ended, as `subprocess` says it (a signal as its negative), or `None` while it runs.
    fn returncode(&self) -> Option<i32> {
        returncode(self.inner.status())
    }

    /// Waits until it is ready; returns the seconds since it started.
    fn wait_ready(&self, py: Python<'_>) -> PyResult<f64> {
        py.detach(|| self.inner.wait_ready_blocking())
            .map(|ready| ready.as_secs_f64())
            .map_err(|e| errors::spawn_to_python(py, &e))
    }

    /// SIGTERM to every process of it, `grace` seconds, then SIGKILL; returns its returncode.
    #[pyo3(signature = (grace=None))]
    fn stop(&self, py: Python<'_>, grace: Option<f64>) -> PyResult<Option<i32>> {
        let grace = grace.map(crate::options::duration).transpose()?;
        Ok(returncode(py.detach(|| self.inner.stop_blocking(grace))))
    }

    /// Waits until it ends; returns its returncode.
    fn wait(&self, py: Python<'_>) -> Option<i32> {
        returncode(py.detach(|| self.inner.wait_blocking()))
    }
}

/// `subprocess`'s convention: the exit code, or minus the signal that ended it.
fn returncode(status: Option<ExitStatus>) -> Option<i32> {
    status.map(|status| status.code().unwrap_or_else(|| -status.signal().unwrap_or(0)))
}

/// A duration in seconds given to `spawn`.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    crate::options::duration(value)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("`{name}`: {value} is not a number of seconds")))
}
