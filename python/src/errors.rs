//! [`LoadError`] as the exception classes of `par_loader._errors`: the
//! class says who is at fault, and every exception carries the `kind` and
//! `subject` that `par --json` prints, so a caller never parses a message.

use par::{InstallError, InstallFailure, LifecycleError, LoadError, SpawnError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The exception `error` is raised as.
pub fn to_python(py: Python<'_>, error: &LoadError) -> PyErr {
    build(py, error).unwrap_or_else(|failed| {
        PyRuntimeError::new_err(format!(
            "{error} (and par_loader could not raise its own error: {failed})"
        ))
    })
}

fn build(py: Python<'_>, error: &LoadError) -> PyResult<PyErr> {
    let class = py.import("par_loader._errors")?.getattr(class_name(error))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("kind", error.kind())?;
    kwargs.set_item("subject", error.subject())?;
    kwargs.set_item("package_fault", error.is_package_fault())?;
    if let LoadError::Install(failure) | LoadError::Verification(failure) = error {
        kwargs.set_item("failures", failures(py, failure)?)?;
    }
    let exception = class.call((error.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(exception))
}

/// The exception a failed agent start is raised as: `SpawnFailed`, with
/// `kind`, `subject` (the variable or socket at fault) and `package_fault`.
pub fn spawn_to_python(py: Python<'_>, error: &SpawnError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("par_loader._errors")?.getattr("SpawnFailed")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", error.kind())?;
        kwargs.set_item("subject", error.subject())?;
        kwargs.set_item("package_fault", error.is_package_fault())?;
        Ok(PyErr::from_value(class.call((error.to_string(),), Some(&kwargs))?))
    };
    build().unwrap_or_else(|failed| {
        PyRuntimeError::new_err(format!(
            "{error} (and par_loader could not raise its own error: {failed})"
        ))
    })
}

/// The exception a `list`, `remove` or `gc` failure is raised as.
pub fn lifecycle_to_python(py: Python<'_>, error: &LifecycleError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = match error {
            LifecycleError::NotFound { .. } => "NotFound",
            LifecycleError::InUse { .. } => "InUse",
            LifecycleError::InvalidInput { .. } => "InvalidInput",
            _ => "HostError",
        };
        let class = py.import("par_loader._errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", error.kind())?;
        kwargs.set_item("subject", error.subject())?;
        if let LifecycleError::InUse { pids, .. } = error {
            kwargs.set_item("pids", pids.clone())?;
        }
        Ok(PyErr::from_value(class.call((error.to_string(),), Some(&kwargs))?))
    };
    build().unwrap_or_else(|failed| {
        PyRuntimeError::new_err(format!(
            "{error} (and par_loader could not raise its own error: {failed})"
        ))
    })
}

/// Which class: the package refused, its install failed, the sandbox
/// stopped the guest, the caller passed something unusable, or the host failed.
fn class_name(error: &LoadError) -> &'static str {
    match error {
        LoadError::Package(_) | LoadError::GuestProtocol(_) => "PackageRefused",
        LoadError::Install(_) | LoadError::Verification(_) => "InstallFailed",
        LoadError::Sandbox(_) => "SandboxError",
        LoadError::InvalidInput { .. } => "InvalidInput",
        LoadError::Io { .. } | LoadError::DiskFull { .. } | LoadError::InstallerSandbox(_) | LoadError::Internal(_) => {
            "HostError"
        }
    }
}

/// Each failed step, in the order the steps ran, as keyword arguments of
/// `par_loader.InstallStepFailure`.
fn failures<'py>(py: Python<'py>, failure: &InstallFailure) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for error in &failure.0 {
        let item = PyDict::new(py);
        item.set_item("message", error.to_string())?;
        let (kind, step) = match error {
            InstallError::Failed(step) => {
                item.set_item("exit_code", step.exit_code)?;
                item.set_item("stderr", &step.stderr)?;
                item.set_item("stdout", &step.stdout)?;
                ("failed", Some(step.step.as_str()))
            }
            InstallError::TimedOut((step, _)) => ("timed-out", Some(step.as_str())),
            InstallError::Refused(_) => ("refused", Some("requirements")),
            InstallError::Host(_) => ("host", None),
            _ => ("other", None),
        };
        item.set_item("kind", kind)?;
        item.set_item("step", step)?;
        list.append(item)?;
    }
    Ok(list)
}
