//! [`LoadError`] as the exception classes of `par_loader._errors`: the
//! class says who is at fault, and every exception carries the `kind` and
//! `subject` that `par --json` prints, so a caller never parses a message.

use par::{InstallError, InstallFailure, LifecycleError, LoadError, SpawnError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The exception `error` is raised as.
pub(crate) fn to_python(py: Python<'_>, error: &LoadError) -> PyErr {
    raise(py, error, class_name(error), |kwargs| {
        kwargs.set_item("kind", error.kind())?;
        kwargs.set_item("subject", error.subject())?;
        kwargs.set_item("package_fault", error.is_package_fault())?;
        if let LoadError::Install(failure) | LoadError::Verification(failure) = error {
            kwargs.set_item("failures", failures(py, failure)?)?;
        }
        Ok(())
    })
}

/// The exception a failed agent start is raised as: `SpawnFailed`, with
/// `kind`, `subject` (the variable or socket at fault) and `package_fault`.
pub(crate) fn spawn_to_python(py: Python<'_>, error: &SpawnError) -> PyErr {
    raise(py, error, "SpawnFailed", |kwargs| {
        kwargs.set_item("kind", error.kind())?;
        kwargs.set_item("subject", error.subject())?;
        kwargs.set_item("package_fault", error.is_package_fault())
    })
}

/// The exception a `list`, `remove` or `gc` failure is raised as.
pub(crate) fn lifecycle_to_python(py: Python<'_>, error: &LifecycleError) -> PyErr {
    let class = match error {
        LifecycleError::NotFound { .. } => "NotFound",
        LifecycleError::InUse { .. } => "InUse",
        LifecycleError::InvalidInput { .. } => "InvalidInput",
        _ => "HostError",
    };
    raise(py, error, class, |kwargs| {
        kwargs.set_item("kind", error.kind())?;
        kwargs.set_item("subject", error.subject())?;
        if let LifecycleError::InUse { pids, .. } = error {
            kwargs.set_item("pids", pids.clone())?;
        }
        Ok(())
    })
}

/// `par_loader._errors.{class}(message, **fields)`, the fields set by
/// `fields`; a `RuntimeError` saying both when that cannot be built.
fn raise(
    py: Python<'_>,
    error: &dyn std::fmt::Display,
    class: &str,
    fields: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("par_loader._errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        fields(&kwargs)?;
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
        LoadError::Package(_)
        | LoadError::GuestProtocol(_)
        | LoadError::Signature(_)
        | LoadError::Lock(_)
        | LoadError::Bundle(_) => "PackageRefused",
        LoadError::Registry(registry) if registry.is_content_fault() => "PackageRefused",
        LoadError::Install(_) | LoadError::Verification(_) => "InstallFailed",
        LoadError::Sandbox(_) => "SandboxError",
        LoadError::InvalidInput { .. } => "InvalidInput",
        _ => "HostError",
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
