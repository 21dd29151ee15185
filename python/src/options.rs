//! The keyword arguments of `par_loader.PackageLoader`, read into a
//! [`LoaderConfig`]: one option per setting, named as the setting is in
//! Rust, so the Rust docs of [`LoaderConfig`] and [`InstallConfig`] are theirs.
//! An unknown name is a `TypeError`, a value of the wrong kind or out of
//! range a `ValueError` or `TypeError` that names the option.
//!
//! [`InstallConfig`]: par::InstallConfig

use std::path::PathBuf;
use std::time::Duration;

use par::{Choice, Limits, LoaderConfig, TrustedKey};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The configuration for a loader rooted at `root`; options not given keep
/// the library's defaults.
pub(crate) fn config(root: PathBuf, options: Option<&Bound<'_, PyDict>>) -> PyResult<LoaderConfig> {
    let mut config = LoaderConfig::with_root(root);
    for (key, value) in options.into_iter().flat_map(|options| options.iter()) {
        let name: String = key.extract()?;
        set(&mut config, &name, &value).map_err(|error| name_option(value.py(), &name, error))?;
    }
    Ok(config)
}

/// Applies one option.
fn set(config: &mut LoaderConfig, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let install = &mut config.install;
    match name {
        "installer" => install.installer = choice(value)?,
        "sandbox" => install.sandbox = choice(value)?,
        "network" => install.network = choice(value)?,
        "python" => install.python = value.extract()?,
        "uv" => install.uv = value.extract()?,
        "fetch_uv" => install.fetch_uv = value.extract()?,
        "bwrap" => install.bwrap = value.extract()?,
        "strict" => install.strict = value.extract()?,
        "venv_timeout" => install.venv_timeout = seconds(value)?,
        "requirements_timeout" => install.requirements_timeout = seconds(value)?,
        "self_install_timeout" => install.self_install_timeout = seconds(value)?,
        "import_timeout" => install.import_timeout = seconds(value)?,
        "build_env_max_age" => install.build_env_max_age = seconds(value)?,
        "no_index" => install.index.no_index = value.extract()?,
        "offline" => install.offline = value.extract()?,
        "index_url" => install.index.index_url = value.extract()?,
        "extra_index_urls" => install.index.extra_index_urls = value.extract()?,
        "find_links" => install.index.find_links = value.extract()?,
        "installer_cache" => install.installer_cache = value.extract()?,
        "allow_index_options" => install.policy.allow_index_options = value.extract()?,
        "allow_direct_urls" => install.policy.allow_direct_urls = value.extract()?,
        "pass_env" => install.pass_env = value.extract()?,
        "component_cache" => config.component_cache = value.extract()?,
        "max_root_bytes" => config.max_root_bytes = value.extract()?,
        "min_free_bytes" => config.min_free_bytes = value.extract()?,
        "trusted_keys" => config.trusted_keys = trusted_keys(value)?,
        "insecure_registries" => config.registry.insecure = value.extract()?,
        "registry_auth" => config.registry.auth_file = value.extract()?,
        "registry_timeout" => config.registry.deadline = seconds(value)?,
        "guest_memory_bytes" => config.guest_memory_bytes = value.extract()?,
        "guest_cpu_time" => config.guest_cpu_time = seconds(value)?,
        "step_memory_bytes" => install.limits.memory_bytes = value.extract()?,
        "step_tmp_bytes" => install.limits.tmp_bytes = value.extract()?,
        "limits" => limits(&mut config.limits, value.cast()?)?,
        _ => return Err(PyTypeError::new_err("no such option")),
    }
    Ok(())
}

/// The public key files named, read.
fn trusted_keys(value: &Bound<'_, PyAny>) -> PyResult<Vec<TrustedKey>> {
    let paths: Vec<PathBuf> = value.extract()?;
    paths
        .iter()
        .map(|path| TrustedKey::from_file(path).map_err(|error| PyValueError::new_err(error.to_string())))
        .collect()
}

/// The archive limits named in `given`; the others keep their defaults.
fn limits(limits: &mut Limits, given: &Bound<'_, PyDict>) -> PyResult<()> {
    for (key, value) in given.iter() {
        let name: String = key.extract()?;
        match name.as_str() {
            "max_entries" => limits.max_entries = value.extract()?,
            "max_total_bytes" => limits.max_total_bytes = value.extract()?,
            "max_file_bytes" => limits.max_file_bytes = value.extract()?,
            "max_ratio" => limits.max_ratio = value.extract()?,
            "ratio_min_bytes" => limits.ratio_min_bytes = value.extract()?,
            "max_manifest_bytes" => limits.max_manifest_bytes = value.extract()?,
            _ => return Err(PyTypeError::new_err(format!("no such limit `{name}`"))),
        }
    }
    Ok(())
}

/// A [`Choice`] by one of its names.
fn choice<T: Choice>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    named(&value.extract::<String>()?)
}

/// The value of a [`Choice`] called `name`, or a `ValueError` listing the names.
pub(crate) fn named<T: Choice>(name: &str) -> PyResult<T> {
    T::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = T::NAMES.iter().map(|(name, _)| *name).collect();
        PyValueError::new_err(format!("`{name}` is not one of {}", names.join(", ")))
    })
}

/// A duration given in seconds (an int or a float).
fn seconds(value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    duration(value.extract()?)
}

/// `seconds` as a duration, if it is one (not negative, not NaN).
pub(crate) fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err(format!("{seconds} is not a number of seconds")))
}

/// The same error, saying which option it is about.
fn name_option(py: Python<'_>, name: &str, error: PyErr) -> PyErr {
    let message = format!("PackageLoader option `{name}`: {}", error.value(py));
    if error.is_instance_of::<PyValueError>(py) {
        PyValueError::new_err(message)
    } else {
        PyTypeError::new_err(message)
    }
}
