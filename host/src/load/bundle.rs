//! Offline bundles. `par bundle` resolves a package as `par lock` does,
//! fetches every file the locks name once (pip, hashes required, confined
//! as a load's steps), checks each file's SHA-256 itself, and writes one
//! file: the package, its locks, the files, the SBOM and, with a key, the
//! signatures. A load from a bundle unpacks it in the sandbox, checks every
//! member and every file's hash against the lock, then loads the package
//! inside with that lock, from those files alone, in a network namespace of
//! its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use par_rules::bundle::{BUILD_LOCK, EDITABLE_DIR, FILES_DIR, LOCK, PACKAGE, PACKAGE_SIGNATURE, SBOM};

use super::Orchestrator;
use super::deploy::{FromBundle, Lookup, Staged, StagedArchive};
use super::lock::Resolved;
use crate::fs::archive::Archive;
use crate::fs::bundle::{BundleWriter, Unpacked, sha256_of};
use crate::fs::cache_dir::CacheDir;
use crate::fs::dist_store::DistStore;
use crate::fs::root::{open_dir_nofollow, open_file_nofollow};
use crate::fs::staging::{Scratch, Staging};
use crate::install::editable::{self, BuildJob, EditableBuild, Prepared, Relocation};
use crate::install::installer::{Installer, Invocation, Pip, venv_python};
use crate::install::plain_path::is_plain_path;
use crate::install::pylock::{BundleFile, Bundled, GivenLock, HeldFile, Lock, LockError};
use crate::install::sbom;
use crate::install::step::{StepKind, StepSpec};
use crate::sandbox::{ArchiveRules, StagedPreopens};
use crate::trust::signature;
use crate::types::error::{BundleRefused, InstallError, LoadError};
use crate::types::package::{AgentPackage, RegistrySource, WrittenBundle};
use crate::types::trust::{Signed, SigningKey};

impl Orchestrator {
    /// Writes the offline bundle of `apkg` to `output` (see
    /// [`crate::PackageLoader::bundle_blocking`]).
    pub(crate) fn bundle(
        &self,
        apkg: &Path,
        output: &Path,
        key: Option<&SigningKey>,
    ) -> Result<WrittenBundle, LoadError> {
        if !par_rules::bundle::is_bundle_path(output) {
            return Err(LoadError::InvalidInput {
                what: "bundle path",
                detail: format!(
                    "`{}` must end in `.{}`, which is how a load knows a bundle",
                    output.display(),
                    par_rules::bundle::EXTENSION
                ),
            });
        }
        let resolved = self.resolve(apkg, true)?;
        let Resolved {
            staging,
            lock,
            build,
            environment,
            ..
        } = &resolved;
        let manifest = self.inspect_staged(staging)?;
        let wanted = |lock: &Lock| lock.bundle_files().map_err(|e| refused_lock(apkg, LOCK, e));
        let mut files = wanted(lock)?;
        if let Some(build) = build {
            files.extend(build.bundle_files().map_err(|e| refused_lock(apkg, BUILD_LOCK, e))?);
        }
        let scratch = Scratch::create(&self.root, "bundle-")?;
        let fetched = match files.is_empty() {
            true => BTreeMap::new(),
            false => self.fetch(&resolved, &scratch)?,
        };
        let chosen = choose_files(&files, &fetched)
            .map_err(|(member, problem)| LoadError::install(InstallError::Host(format!("{member}: {problem}"))))?;
        let editable = self.prebuild_editable(&resolved, &scratch)?;
        let write_lock = |lock: &Lock| {
            lock.to_pylock(None, environment)
                .map_err(|e| LoadError::Internal(format!("cannot write the lock: {e}")))
        };
        let bill = sbom::sbom(lock, (&manifest.name, &manifest.version), &BTreeMap::new())
            .map_err(|e| LoadError::Internal(format!("cannot write the SBOM: {e}")))?;
        let package_signature = key
            .map(|key| {
                signature::sign(&staging.archive_copy()?, key, &manifest.name, &manifest.version).map_err(bad_key)
            })
            .transpose()?;
        let failed = LoadError::io("cannot write the bundle", output);
        let mut writer = BundleWriter::create(output).map_err(LoadError::io("cannot write the bundle", output))?;
        writer.add_file(PACKAGE, staging.archive_copy()?).map_err(failed)?;
        let failed = || LoadError::io("cannot write the bundle", output);
        if let Some(text) = &package_signature {
            writer.add_bytes(PACKAGE_SIGNATURE, text.as_bytes()).map_err(failed())?;
        }
        writer.add_bytes(LOCK, write_lock(lock)?.as_bytes()).map_err(failed())?;
        if let Some(build) = build {
            writer
                .add_bytes(BUILD_LOCK, write_lock(build)?.as_bytes())
                .map_err(failed())?;
        }
        writer.add_bytes(SBOM, bill.as_bytes()).map_err(failed())?;
        if !chosen.is_empty() {
            let dir = scratch.path().join("files");
            let files = open_dir_nofollow(scratch.dir(), "files").map_err(LoadError::io("cannot open", &dir))?;
            for name in &chosen {
                let file = open_file_nofollow(&files, name).map_err(LoadError::io("cannot open", dir.join(name)))?;
                writer
                    .add_file(&format!("{FILES_DIR}/{name}"), file)
                    .map_err(failed())?;
            }
        }
        if let Some(wheel) = &editable {
            let name = wheel.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
            let file = std::fs::File::open(wheel).map_err(LoadError::io("cannot read", wheel))?;
            writer
                .add_file(&format!("{EDITABLE_DIR}/{name}"), file)
                .map_err(failed())?;
        }
        let bytes = writer.finish().map_err(failed())?;
        let signed = match key {
            Some(key) => Some(self.sign_bundle(output, key, &manifest.name, &manifest.version)?),
            None => None,
        };
        tracing::info!(
            bundle = %output.display(),
            files = chosen.len(),
            editable = editable.is_some(),
            bytes,
            signed = signed.is_some(),
            "Bundle written"
        );
        Ok(WrittenBundle {
            path: output.to_owned(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            files: chosen,
            bytes,
            signed,
        })
    }

    /// Fetches every file the locks name into `files/` of `scratch`: pip
    /// (in a venv of its own, as pip may not be in the base interpreter)
    /// downloads each distribution exactly, hashes required, with the
    /// load's index settings, confined as a load's steps; the files by
    /// name, each hashed here.
    fn fetch(&self, resolved: &Resolved, scratch: &Scratch) -> Result<BTreeMap<String, String>, LoadError> {
        let host = |action: &'static str, path: PathBuf| {
            move |e: std::io::Error| {
                LoadError::install(InstallError::Host(format!("cannot {action} {}: {e}", path.display())))
            }
        };
        let (venv, files) = (scratch.path().join("venv"), scratch.path().join("files"));
        scratch
            .dir()
            .create_dir("files")
            .map_err(host("create", files.clone()))?;
        let locks = std::iter::once(&resolved.lock).chain(&resolved.build);
        let mut steps = vec![Pip.create_venv(&resolved.python.executable, &venv)];
        for (n, lock) in locks.enumerate() {
            let name = format!("download-{n}.txt");
            scratch
                .dir()
                .write(&name, lock.to_download())
                .map_err(host("write", scratch.path().join(&name)))?;
            let mut args: Vec<OsString> = [
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-input",
                "--no-deps",
                "--require-hashes",
                "--dest",
            ]
            .map(OsString::from)
            .into();
            args.push(files.clone().into());
            args.extend(self.config.install.index.args());
            args.extend(["-r".into(), scratch.path().join(&name).into()]);
            steps.push(Invocation {
                program: venv_python(&venv),
                args,
            });
        }
        let package = resolved.staging.tree_path();
        let started = std::time::Instant::now();
        for invocation in steps {
            let left = StepKind::Fetch
                .left(&self.config.install, started.elapsed())
                .map_err(LoadError::install)?;
            let spec = StepSpec::new(StepKind::Fetch, invocation, &package)
                .writable(scratch.path())
                .timeout(left);
            resolved.runner.run(spec).map_err(LoadError::install)?;
        }
        let dir = open_dir_nofollow(scratch.dir(), "files").map_err(host("open", files.clone()))?;
        let mut fetched = BTreeMap::new();
        for entry in dir.entries().map_err(host("list", files.clone()))? {
            let name = entry.map_err(host("list", files.clone()))?.file_name();
            let name = name.to_string_lossy().into_owned();
            let path = files.join(&name);
            let file = open_file_nofollow(&dir, &name).map_err(host("open", path.clone()))?;
            if file.metadata().is_ok_and(|meta| meta.is_file()) {
                fetched.insert(name, sha256_of(file).map_err(host("hash", path))?);
            }
        }
        Ok(fetched)
    }

    /// The agent's editable wheel, built once from the staged tree with the
    /// fetched files (the build lock's) alone, and moved to where a bundle
    /// says its tree is; `None` where a load's own build would not use it
    /// (no build, a backend par's frontend leaves to the installer, no
    /// private cache, an installer that builds itself).
    fn prebuild_editable(&self, resolved: &Resolved, scratch: &Scratch) -> Result<Option<PathBuf>, LoadError> {
        let (Some(system), Some(build)) = (&resolved.build_system, &resolved.build) else {
            return Ok(None);
        };
        let python = &resolved.python;
        let installer = self.installer(python, false)?;
        let package = resolved.staging.tree_path();
        let cache_dir = self
            .config
            .component_cache
            .as_deref()
            .and_then(|dir| CacheDir::open(dir).ok());
        let usable = installer.installs_prebuilt_editable() && editable::is_buildable(system);
        let (Some(cache_dir), true, true) = (cache_dir, usable, is_plain_path(&package)) else {
            tracing::info!("The bundle carries no editable wheel: each load builds the agent");
            return Ok(None);
        };
        let install = self.config.install.only_files_in(&scratch.path().join("files"));
        let runner = self.step_runner(&install, python, installer.as_ref())?;
        let job = BuildJob {
            runner: runner.clone(),
            installer,
            python: python.executable.clone(),
            python_identity: python.identity.clone(),
            cache_dir,
            max_age: install.build_env_max_age,
            package: package.clone(),
            system: system.clone(),
            source: vec!["bundle".into(), build.digest().into()],
        };
        let mut building = EditableBuild::start(&self.root, job).map_err(LoadError::install)?;
        let wheel = match building.wait().map_err(LoadError::install)? {
            Prepared::Wheel { path, .. } | Prepared::Installed { path, .. } => path,
            Prepared::Installer(reason) => {
                tracing::info!(%reason, "The bundle carries no editable wheel: each load builds the agent");
                return Ok(None);
            }
        };
        let out = scratch.path().join(EDITABLE_DIR);
        scratch
            .dir()
            .create_dir(EDITABLE_DIR)
            .map_err(LoadError::io("cannot create", &out))?;
        let relocation = Relocation::for_bundle(runner, python.executable.clone(), wheel, package);
        let moved = relocation.run(&out, &Arc::default()).map_err(LoadError::install)?;
        // A load installs it alone: the lock must hold what it requires.
        editable::check_requires(&moved, &out, &resolved.lock, &python.markers).map_err(LoadError::install)?;
        Ok(Some(moved))
    }

    /// Signs the bundle at `path` for the package it holds; the signature
    /// is written beside it.
    fn sign_bundle(&self, path: &Path, key: &SigningKey, name: &str, version: &str) -> Result<Signed, LoadError> {
        let file = std::fs::File::open(path).map_err(LoadError::io("cannot read the bundle", path))?;
        let text = signature::sign(&file, key, name, version).map_err(bad_key)?;
        let signature = signature::write_signature(path, &text).map_err(LoadError::io(
            "cannot write the signature",
            signature::signature_path(path),
        ))?;
        Ok(Signed {
            name: name.to_owned(),
            version: version.to_owned(),
            key_id: key.id(),
            signature,
        })
    }

    /// Loads the package in the bundle `parb` from the bundle alone.
    pub(super) fn load_bundle(
        &self,
        parb: &Path,
        app_id: Option<&str>,
        source: Option<RegistrySource>,
    ) -> Result<AgentPackage, LoadError> {
        let archive = Archive::open(parb)?;
        self.check_free_space()?;
        let started = std::time::Instant::now();
        tracing::info!(bundle = %archive.path().display(), "Loading offline bundle");
        let sandboxed = self.installer_sandbox()?.is_some();
        let python = self.python.resolve()?;
        let installer = self.installer(&python, true)?;
        let settings = self.settings_fingerprint(&python, installer.as_ref(), sandboxed, "bundle");
        let lookup = Lookup {
            app_id,
            settings: &settings,
            started,
        };
        let StagedArchive {
            staging,
            digest,
            signed,
        } = match self.stage(&archive, Some(&lookup))? {
            Staged::Unchanged(package) => return Ok(*package),
            Staged::Fresh(staged) => staged,
        };
        let mut unpacked = self.unbundle(parb, &staging)?;
        let in_place = held_in_place(&unpacked);
        let text = std::mem::take(&mut unpacked.lock);
        let mut lock = self.bundled_lock(parb, LOCK, text, &in_place)?;
        let mut build = unpacked
            .build_lock
            .take()
            .map(|text| self.bundled_lock(parb, BUILD_LOCK, text, &in_place))
            .transpose()?;
        // Every file is one a lock names: a bundle carries nothing else.
        let mut named = Vec::new();
        for (member, given) in std::iter::once((LOCK, &lock)).chain(build.iter().map(|b| (BUILD_LOCK, b))) {
            let files = given.lock.bundle_files().map_err(|e| refused_lock(parb, member, e))?;
            named.extend(files.into_iter().map(|file| file.name));
        }
        if let Some(extra) = unpacked.files.keys().find(|name| !named.contains(name)) {
            let problem = "a file neither lock names".into();
            return Err(refused(parb, format!("{FILES_DIR}/{extra}"), problem));
        }
        // Checked: each file is kept in par's store, and installed from there.
        let (kept, store) = self.keep_files(&unpacked, staging.tree(), in_place);
        for (member, given) in std::iter::once((LOCK, &mut lock)).chain(build.as_mut().map(|b| (BUILD_LOCK, b))) {
            if let Some(bundled) = given.bundled.as_mut() {
                bundled.lock = given.lock.in_bundle(&kept).map_err(|e| refused_lock(parb, member, e))?;
            }
        }
        if let (Some(bundled), Some(build)) = (lock.bundled.as_mut(), &build) {
            bundled.build = build.digest();
        }
        tracing::info!(
            packages = lock.lock.len(),
            files = unpacked.files.len(),
            "Bundle checked: loading its package offline"
        );
        let bundle = FromBundle {
            digest,
            settings,
            signed,
            install: self.config.install.only_files_in(&unpacked.files_dir),
            source,
            store,
            editable: unpacked.editable.map(|(_, path)| path),
        };
        self.deploy(&unpacked.package, app_id, Some(lock), Some(bundle))
    }

    /// Unpacks the bundle `parb` staged in `staging` in the sandbox, under
    /// the bundle limits, and reads what it left as the host finds it.
    pub(super) fn unbundle(&self, parb: &Path, staging: &Staging) -> Result<Unpacked, LoadError> {
        let rules = ArchiveRules {
            limits: self.config.bundle_limits,
            path_rules: self.config.guest_path_rules,
        };
        let copies = staging.tree_writes(&rules.limits)?;
        self.sandbox
            .unbundle(StagedPreopens::of(staging).writable(), &rules, copies)?;
        Unpacked::read(staging.tree(), &staging.tree_path()).map_err(|(member, problem)| refused(parb, member, problem))
    }

    /// The checked files of a bundle (`in_place`, as [`held_in_place`] gives
    /// them) kept in par's store of bundle files ([`DistStore`]) when the
    /// cache has one, so the installer's cache serves them again on the
    /// next load, and the store's directory; else as they are. A file the
    /// store cannot take stays where it is.
    fn keep_files(
        &self,
        unpacked: &Unpacked,
        tree: &cap_std::fs::Dir,
        mut in_place: BTreeMap<String, HeldFile>,
    ) -> (BTreeMap<String, HeldFile>, Option<PathBuf>) {
        let store = match (&self.config.component_cache, in_place.is_empty()) {
            (Some(cache), false) => DistStore::open(cache)
                .inspect_err(|error| tracing::warn!(%error, "No store for bundle files: installing from the bundle"))
                .ok(),
            _ => None,
        };
        let Some(store) = store else {
            return (in_place, None);
        };
        let files = match open_dir_nofollow(tree, FILES_DIR) {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(dir = %unpacked.files_dir.display(), %error, "Cannot keep the bundle's files in the store: installing them from the bundle");
                return (in_place, None);
            }
        };
        for (name, held) in &mut in_place {
            let kept = open_file_nofollow(&files, name).and_then(|file| store.keep(&held.sha256, name, file));
            match kept {
                Ok(path) => held.path = path,
                Err(error) => tracing::warn!(
                    file = %unpacked.files_dir.join(name).display(),
                    %error,
                    "Cannot keep a bundle file in the store: installing it from the bundle"
                ),
            }
        }
        (in_place, Some(store.path().to_owned()))
    }

    /// The bundle's lock `member` (`text`), read in the sandbox and checked
    /// as a given lock is, with every file it names one the bundle holds,
    /// checked against the SHA-256 the host made.
    fn bundled_lock(
        &self,
        parb: &Path,
        member: &str,
        text: Vec<u8>,
        held: &BTreeMap<String, HeldFile>,
    ) -> Result<GivenLock, LoadError> {
        let refused = |error| refused_lock(parb, member, error);
        let claims = self
            .sandbox
            .read_lock(text)?
            .map_err(|(entry, problem)| refused(LockError { entry, problem }))?;
        let lock = Lock::from_bundle_claims(claims, self.config.install.policy).map_err(refused)?;
        let bundled = lock.in_bundle(held).map_err(refused)?;
        Ok(GivenLock {
            path: parb.join(member),
            lock,
            bundled: Some(Bundled {
                lock: bundled,
                build: String::new(),
            }),
        })
    }
}

/// The unpacked bundle's files where the guest left them, each with the
/// SHA-256 the host made.
fn held_in_place(unpacked: &Unpacked) -> BTreeMap<String, HeldFile> {
    let held = |(name, sha256): (&String, &String)| {
        let path = unpacked.files_dir.join(name);
        (
            name.clone(),
            HeldFile {
                sha256: sha256.clone(),
                path,
            },
        )
    };
    unpacked.files.iter().map(held).collect()
}

/// Of the files fetched (by name, with the SHA-256 the host made), those
/// the bundle holds: every file the locks name with the lock's hash; of a
/// distribution's wheels, those fetched (at least one).
fn choose_files(files: &[BundleFile], fetched: &BTreeMap<String, String>) -> Result<Vec<String>, (String, String)> {
    let mut chosen = Vec::new();
    let mut entries: BTreeMap<&str, bool> = BTreeMap::new();
    for file in files {
        let found = entries.entry(&file.entry).or_default();
        match fetched.get(&file.name) {
            Some(sha256) if *sha256 == file.sha256 => {
                *found = true;
                if !chosen.contains(&file.name) {
                    chosen.push(file.name.clone());
                }
            }
            Some(sha256) => {
                return Err((
                    file.entry.clone(),
                    format!(
                        "`{}` was fetched with SHA-256 {sha256}, the lock says {}",
                        file.name, file.sha256
                    ),
                ));
            }
            None if file.alternative => {}
            None => return Err((file.entry.clone(), format!("`{}` was not fetched", file.name))),
        }
    }
    if let Some((entry, _)) = entries.into_iter().find(|(_, found)| !found) {
        return Err((entry.to_owned(), "none of its files was fetched".into()));
    }
    chosen.sort();
    Ok(chosen)
}

/// The bundle refused, naming the member at fault.
pub(super) fn refused(bundle: &Path, member: String, problem: String) -> LoadError {
    LoadError::Bundle(BundleRefused {
        bundle: bundle.to_owned(),
        member,
        problem,
    })
}

/// The bundle refused at an entry of its lock `member`.
fn refused_lock(bundle: &Path, member: &str, error: LockError) -> LoadError {
    refused(bundle, format!("{member} {}", error.entry), error.problem)
}

fn bad_key(error: crate::types::trust::KeyError) -> LoadError {
    LoadError::InvalidInput {
        what: "signing key",
        detail: error.to_string(),
    }
}
