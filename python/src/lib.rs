//! `par_loader._native`: par's [`PackageLoader`] as a CPython extension
//! module. The Python half of the package (`par_loader/`) holds the public
//! API; this module only crosses the boundary: options in, JSON results
//! out, [`LoadError`]s raised as the package's exception classes, and par's
//! logs handed to Python's `logging`. Every call releases the GIL while the
//! load runs, so other Python threads (and an asyncio loop) go on.

mod agent;
mod errors;
mod logging;
mod options;

use std::path::PathBuf;

use par::{
    AgentNetwork, AgentPackage, GcOptions, HealthCheck, Listen, LoadError, PackageLoader, SandboxChoice, SigningKey,
    SpawnSpec,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A loader bound to one root: the native object behind `par_loader.PackageLoader`.
#[pyclass(frozen, module = "par_loader._native")]
struct Loader {
    inner: PackageLoader,
}

#[pymethods]
impl Loader {
    /// Builds a loader rooted at `root` with `options` (the keyword
    /// arguments of `par_loader.PackageLoader`), compiling the guest or
    /// loading it from the cache.
    #[new]
    #[pyo3(signature = (root, options=None))]
    fn new(py: Python<'_>, root: PathBuf, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let config = options::config(root, options)?;
        let inner = py
            .detach(|| PackageLoader::new(config))
            .map_err(|e| errors::to_python(py, &e))?;
        Ok(Self { inner })
    }

    /// The root every package, venv and record lives under.
    #[getter]
    fn root(&self) -> PathBuf {
        self.inner.config().root.clone()
    }

    /// The spec's whole load (installing exactly `lock`'s distributions
    /// when given one); returns the `AgentPackage` as JSON.
    #[pyo3(signature = (apkg, app_id=None, lock=None))]
    fn load(&self, py: Python<'_>, apkg: PathBuf, app_id: Option<String>, lock: Option<PathBuf>) -> PyResult<String> {
        let loaded = py.detach(|| match &lock {
            Some(lock) => self.inner.load_locked_blocking(&apkg, app_id.as_deref(), lock),
            None => self.inner.load_blocking(&apkg, app_id.as_deref()),
        });
        to_json(py, loaded, errors::to_python)
    }

    /// Validates the archive; returns its `Manifest` as JSON and publishes nothing.
    fn inspect(&self, py: Python<'_>, apkg: PathBuf) -> PyResult<String> {
        let inspected = py.detach(|| self.inner.inspect_blocking(&apkg));
        to_json(py, inspected, errors::to_python)
    }

    /// Checks the archive's signature against the trusted keys and its
    /// manifest; returns what it vouches for (`Signed`) as JSON.
    fn verify(&self, py: Python<'_>, apkg: PathBuf) -> PyResult<String> {
        let verified = py.detach(|| self.inner.verify_blocking(&apkg));
        to_json(py, verified, errors::to_python)
    }

    /// Signs the archive with the secret key file `key` (`password` for an
    /// encrypted one), writing `{apkg}.minisig`; returns `Signed` as JSON.
    #[pyo3(signature = (apkg, key, password=None))]
    fn sign(&self, py: Python<'_>, apkg: PathBuf, key: PathBuf, password: Option<String>) -> PyResult<String> {
        let key = SigningKey::from_file(&key, password).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let signed = py.detach(|| self.inner.sign_blocking(&apkg, &key));
        to_json(py, signed, errors::to_python)
    }

    /// Writes the offline bundle of `apkg` to `output` (signed with the
    /// secret key file `key`, when given); returns the `WrittenBundle` as JSON.
    #[pyo3(signature = (apkg, output, key=None, password=None))]
    fn bundle(
        &self,
        py: Python<'_>,
        apkg: PathBuf,
        output: PathBuf,
        key: Option<PathBuf>,
        password: Option<String>,
    ) -> PyResult<String> {
        let key = key
            .map(|key| SigningKey::from_file(&key, password).map_err(|e| PyValueError::new_err(e.to_string())))
            .transpose()?;
        let written = py.detach(|| self.inner.bundle_blocking(&apkg, &output, key.as_ref()));
        to_json(py, written, errors::to_python)
    }

    /// Pushes the bundle `bundle` to the registry `reference`; returns
    /// `Pushed` as JSON.
    fn push(&self, py: Python<'_>, bundle: PathBuf, reference: String) -> PyResult<String> {
        let pushed = py.detach(|| self.inner.push_blocking(&bundle, &reference));
        to_json(py, pushed, errors::to_python)
    }

    /// Pulls the bundle at the registry `reference` into `output`; returns
    /// `Pulled` as JSON.
    fn pull(&self, py: Python<'_>, reference: String, output: PathBuf) -> PyResult<String> {
        let pulled = py.detach(|| self.inner.pull_blocking(&reference, &output));
        to_json(py, pulled, errors::to_python)
    }

    /// Resolves the package's requirements and build requirements,
    /// installing nothing; returns the `ResolvedLock` as JSON.
    fn lock(&self, py: Python<'_>, apkg: PathBuf) -> PyResult<String> {
        let resolved = py.detach(|| self.inner.lock_blocking(&apkg));
        to_json(py, resolved, errors::to_python)
    }

    /// Extracts and publishes the tree without a venv; returns the `ExtractedPackage` as JSON.
    #[pyo3(signature = (apkg, app_id=None))]
    fn extract(&self, py: Python<'_>, apkg: PathBuf, app_id: Option<String>) -> PyResult<String> {
        let extracted = py.detach(|| self.inner.extract_blocking(&apkg, app_id.as_deref()));
        to_json(py, extracted, errors::to_python)
    }

    /// Starts the agent of `package` (the JSON of an `AgentPackage` this
    /// loader loaded) in the sandbox, on the sockets `listen` names (`(name,
    /// "host:port")` each), and returns once it runs.
    #[pyo3(signature = (
        package, argv, listen=Vec::new(), health=None, network="none", sandbox="auto", env=Vec::new(),
        package_env=false, ready_timeout=60.0, stop_grace=10.0, memory_bytes=None, tmp_bytes=None, base_path=None,
        socket_group=None
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "Python's keyword arguments: each option of `spawn` is one parameter"
    )]
    fn spawn(
        &self,
        py: Python<'_>,
        package: &str,
        argv: Vec<std::ffi::OsString>,
        listen: Vec<(String, String)>,
        health: Option<(String, String)>,
        network: &str,
        sandbox: &str,
        env: Vec<(String, String)>,
        package_env: bool,
        ready_timeout: f64,
        stop_grace: f64,
        memory_bytes: Option<u64>,
        tmp_bytes: Option<u64>,
        base_path: Option<String>,
        socket_group: Option<u32>,
    ) -> PyResult<agent::Agent> {
        let package: AgentPackage = serde_json::from_str(package)
            .map_err(|e| PyValueError::new_err(format!("not an AgentPackage this loader loaded: {e}")))?;
        let mut spec = SpawnSpec::new(argv);
        spec.listen = listen
            .into_iter()
            .map(|(name, addr)| {
                let addr = addr
                    .parse()
                    .map_err(|e| PyValueError::new_err(format!("listen `{name}`: {e}")))?;
                Ok(Listen { name, addr })
            })
            .collect::<PyResult<_>>()?;
        spec.health = health.map(|(socket, path)| HealthCheck { socket, path });
        spec.network = options::named::<AgentNetwork>(network)?;
        spec.sandbox = options::named::<SandboxChoice>(sandbox)?;
        spec.env = env;
        spec.package_env = package_env;
        spec.base_path = base_path;
        spec.socket_group = socket_group;
        spec.ready_timeout = agent::seconds("ready_timeout", ready_timeout)?;
        spec.stop_grace = agent::seconds("stop_grace", stop_grace)?;
        if memory_bytes.is_some() {
            spec.limits.memory_bytes = memory_bytes;
        }
        if tmp_bytes.is_some() {
            spec.limits.tmp_bytes = tmp_bytes;
        }
        let inner = py
            .detach(|| self.inner.spawn_blocking(&package, spec))
            .map_err(|e| errors::spawn_to_python(py, &e))?;
        Ok(agent::Agent { inner })
    }

    /// Every app under the root; returns the `Listing` as JSON.
    fn list(&self, py: Python<'_>) -> PyResult<String> {
        let listing = py.detach(|| self.inner.list_blocking());
        to_json(py, listing, errors::lifecycle_to_python)
    }

    /// The SBOM of the app's most recent deployment (of `version`), as JSON.
    #[pyo3(signature = (app_id, version=None))]
    fn sbom(&self, py: Python<'_>, app_id: String, version: Option<String>) -> PyResult<String> {
        let bill = py.detach(|| self.inner.sbom_blocking(&app_id, version.as_deref()));
        bill.map_err(|e| errors::lifecycle_to_python(py, &e))
    }

    /// Removes an app (or one version); returns the `Collection` as JSON.
    #[pyo3(signature = (app_id, version=None, force=false))]
    fn remove(&self, py: Python<'_>, app_id: String, version: Option<String>, force: bool) -> PyResult<String> {
        let removed = py.detach(|| self.inner.remove_blocking(&app_id, version.as_deref(), force));
        to_json(py, removed, errors::lifecycle_to_python)
    }

    /// Collects what no app needs; returns the `Collection` as JSON.
    #[pyo3(signature = (keep, max_bytes=None, older_than=None, dry_run=false))]
    fn gc(
        &self,
        py: Python<'_>,
        keep: usize,
        max_bytes: Option<u64>,
        older_than: Option<f64>,
        dry_run: bool,
    ) -> PyResult<String> {
        let older_than = older_than.map(options::duration).transpose()?;
        let options = GcOptions {
            keep,
            max_bytes,
            older_than,
            dry_run,
        };
        let collected = py.detach(|| self.inner.gc_blocking(&options));
        to_json(py, collected, errors::lifecycle_to_python)
    }
}

/// The result as the JSON `par --json` prints, or the error as its Python
/// exception (`raise` picks it).
fn to_json<T: serde::Serialize, E>(
    py: Python<'_>,
    result: Result<T, E>,
    raise: fn(Python<'_>, &E) -> PyErr,
) -> PyResult<String> {
    let value = result.map_err(|e| raise(py, &e))?;
    serde_json::to_string(&value)
        .map_err(|e| errors::to_python(py, &LoadError::Internal(format!("cannot render the result: {e}"))))
}

/// The module: its class, and par's logs routed to the `par_loader` logger.
/// Makes a signing key pair at `prefix` (`{prefix}.key`, `{prefix}.pub`);
/// returns the key's id.
#[pyfunction]
fn generate_keys(prefix: PathBuf) -> PyResult<String> {
    par::generate_keys(&prefix)
        .map(|key| key.id())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::route_to_python(m.py())?;
    m.add_class::<Loader>()?;
    m.add_class::<agent::Agent>()?;
    m.add_function(wrap_pyfunction!(generate_keys, m)?)?;
    Ok(())
}
