//! The agent's editable wheel built once, by `par bundle`, and moved to the
//! tree each load installs it from, so a load from a bundle runs no build
//! backend. The wheel's files name the tree it was built from; `par bundle`
//! writes them as [`EDITABLE_TREE`], and a load writes its own tree in
//! their place (see `relocate.py`). Both moves run a fresh interpreter,
//! confined as an install step: the wheel is the build's output, untrusted.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use par_rules::bundle::EDITABLE_TREE;
use uv_pep508::MarkerEnvironment;

use super::the_wheel;
use crate::fs::root::read_bounded;
use crate::install::installer::{InstallTarget, Installer, Invocation};
use crate::install::plain_path::is_plain_path;
use crate::install::pylock::Lock;
use crate::install::requirements::is_named_requirement;
use crate::install::step::{StepKind, StepRunner, StepSpec};
use crate::types::error::{InstallError, RefusedRequirement};

/// The mover the fresh interpreter runs (see the file's docstring).
const RELOCATE: &str = include_str!("relocate.py");
/// What the mover says the wheel requires, beside the moved wheel.
const REQUIRES: &str = "requires.txt";
/// Most bytes of that list read.
const MAX_REQUIRES_BYTES: u64 = 1 << 20;

/// Moving one wheel: who runs it, with which interpreter, for which tree.
#[derive(Debug)]
pub(crate) struct Relocation {
    /// Runs the confined step.
    pub runner: StepRunner,
    /// An interpreter with nothing of the package's on its path.
    pub python: PathBuf,
    /// The wheel to move.
    pub wheel: PathBuf,
    /// The package tree: the step's working directory.
    pub package: PathBuf,
    /// What the moved wheel's files name the tree as.
    pub to: PathBuf,
    /// What the wheel's files name the tree as now (a path and, say, its
    /// canonical form).
    pub from: Vec<PathBuf>,
}

impl Relocation {
    /// A bundle's wheel, moved to the published tree `package`.
    pub(crate) fn to_tree(runner: StepRunner, python: PathBuf, wheel: PathBuf, package: PathBuf) -> Self {
        Self {
            runner,
            python,
            wheel,
            to: package.clone(),
            package,
            from: vec![PathBuf::from(EDITABLE_TREE)],
        }
    }

    /// A wheel just built from `package`, moved to where a bundle says its
    /// tree is.
    pub(crate) fn for_bundle(runner: StepRunner, python: PathBuf, wheel: PathBuf, package: PathBuf) -> Self {
        let canonical = package.canonicalize().unwrap_or_else(|_| package.clone());
        Self {
            runner,
            python,
            wheel,
            to: PathBuf::from(EDITABLE_TREE),
            from: vec![package.clone(), canonical],
            package,
        }
    }

    /// Writes the moved wheel into `out_dir` (the step may write nothing
    /// else); the wheel, as the one `.whl` file there.
    pub(crate) fn run(&self, out_dir: &Path, cancel: &Arc<AtomicBool>) -> Result<PathBuf, InstallError> {
        let started = Instant::now();
        let plain = std::iter::once(&self.to)
            .chain(&self.from)
            .all(|path| is_plain_path(path));
        let (Some(wheel_dir), true) = (self.wheel.parent(), plain) else {
            return Err(InstallError::Host(format!(
                "cannot move the editable wheel {} from {} to {}",
                self.wheel.display(),
                self.from[0].display(),
                self.to.display()
            )));
        };
        // Isolated, and without `site`: the script needs the standard library alone.
        let mut args: Vec<OsString> = vec![
            "-I".into(),
            "-S".into(),
            "-c".into(),
            RELOCATE.into(),
            self.wheel.clone().into(),
            out_dir.into(),
            self.to.clone().into(),
        ];
        args.extend(self.from.iter().map(OsString::from));
        let invocation = Invocation {
            program: self.python.clone(),
            args,
        };
        tracing::debug!(wheel = %self.wheel.display(), to = %self.to.display(), "Moving the prebuilt editable wheel");
        let left = StepKind::Build.left(self.runner.install(), started.elapsed())?;
        let spec = StepSpec::new(StepKind::Build, invocation, &self.package)
            .readonly(wheel_dir)
            .writable(out_dir)
            .timeout(left)
            .cancel(cancel.clone());
        self.runner.run(spec)?;
        the_wheel(out_dir)
    }
}

/// Installing a bundle's moved wheel alone (none of its dependencies),
/// as soon as the venv is made, beside the requirements: the bundle's lock
/// holds every dependency, and the wheel's own requirements are checked
/// against it first.
#[derive(Debug)]
pub(crate) struct InstallAlone {
    /// The installer.
    pub installer: Arc<dyn Installer>,
    /// The venv it goes into.
    pub venv: PathBuf,
    /// What the load installs: each of the wheel's requirements must be in it.
    pub lock: Lock,
    /// The interpreter's markers, which decide which requirements apply.
    pub markers: MarkerEnvironment,
}

impl InstallAlone {
    /// Checks the requirements the mover found in the wheel moved by
    /// `relocation` to `wheel` (in `out_dir`), waits until `venv_made`
    /// says the venv is there (or gives up when it never will), and installs
    /// the wheel alone: placed by the host when the mover laid it out (see
    /// [`place`](super::place)), else by the installer, with what the venv
    /// shares read-only; how many distributions that installed.
    pub(crate) fn run(
        &self,
        relocation: &Relocation,
        wheel: &Path,
        out_dir: &Path,
        venv_made: &mpsc::Receiver<Vec<PathBuf>>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<u32, InstallError> {
        let started = Instant::now();
        check_requires(wheel, out_dir, &self.lock, &self.markers)?;
        let protected = venv_made
            .recv()
            .map_err(|_| InstallError::Host("the venv was not made: the agent is not installed".into()))?;
        let placed = super::place::place(out_dir, &self.venv)
            .map_err(|e| InstallError::Host(format!("the agent cannot be installed into its venv: {e}")))?;
        if placed {
            return Ok(1);
        }
        let invocation = self
            .installer
            .install(&self.venv, InstallTarget::WheelAlone(wheel), &[]);
        let left = StepKind::SelfInstall.left(relocation.runner.install(), started.elapsed())?;
        let spec = StepSpec::new(StepKind::SelfInstall, invocation, &relocation.package)
            .writable(&self.venv)
            .protected(&protected)
            .readonly(out_dir)
            .timeout(left)
            .cancel(cancel.clone());
        let output = relocation.runner.run(spec)?;
        Ok(self.installer.packages_installed(&output))
    }
}

/// Checks that every requirement of the moved `wheel` (as the mover found
/// them, in `out_dir`) that applies under `markers` is one `lock` holds;
/// else names the first that is not.
pub(crate) fn check_requires(
    wheel: &Path,
    out_dir: &Path,
    lock: &Lock,
    markers: &MarkerEnvironment,
) -> Result<(), InstallError> {
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = cap_std::fs::Dir::open_ambient_dir(out_dir, cap_std::ambient_authority())
        .and_then(|dir| read_bounded(&dir, REQUIRES, MAX_REQUIRES_BYTES))
        .map_err(|e| InstallError::Host(format!("what {name} requires cannot be read: {e}")))?;
    for (n, line) in String::from_utf8_lossy(&text).lines().enumerate() {
        let reason = match is_named_requirement(line) {
            false => Some("not a requirement with a name (PEP 508)".to_owned()),
            true => lock.shortfall(line, markers).map(|reason| {
                format!(
                    "{reason}; a bundle installs the agent without resolving, so its lock must hold what the \
                     agent requires (list it in requirements.txt)"
                )
            }),
        };
        if let Some(reason) = reason {
            return Err(InstallError::Refused(RefusedRequirement {
                file: format!("{name} (Requires-Dist)"),
                line: n as u32 + 1,
                text: line.chars().take(200).collect(),
                reason,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use base64::Engine as _;
    use sha2::Digest as _;

    use super::*;

    /// The mover, run as a step runs it, on a wheel of `files` at `dir`;
    /// the files of the wheel it wrote.
    fn relocated(dir: &Path, files: &[(&str, &str)], to: &str, from: &[&str]) -> Vec<(String, String)> {
        let wheel = dir.join("in").join("agent-1.0-0.editable-py3-none-any.whl");
        std::fs::create_dir_all(wheel.parent().expect("a parent")).expect("in/");
        std::fs::create_dir_all(dir.join("out")).expect("out/");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).expect("the wheel"));
        for (name, text) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("a file");
            zip.write_all(text.as_bytes()).expect("write");
        }
        zip.finish().expect("finish");
        let status = std::process::Command::new("python3")
            .args(["-I", "-S", "-c", RELOCATE])
            .arg(&wheel)
            .arg(dir.join("out"))
            .arg(to)
            .args(from)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "{status}");
        let moved = std::fs::File::open(dir.join("out").join(wheel.file_name().expect("a name"))).expect("moved");
        let mut moved = zip::ZipArchive::new(moved).expect("a zip");
        (0..moved.len())
            .map(|index| {
                let mut file = moved.by_index(index).expect("a file");
                let mut text = String::new();
                file.read_to_string(&mut text).expect("text");
                (file.name().expect("a UTF-8 name").into_owned(), text)
            })
            .collect()
    }

    #[test]
    fn a_moved_wheel_names_only_its_new_tree_records_what_it_holds_and_says_what_it_requires() {
        let dir = tempfile::tempdir().expect("dir");
        let finder = "MAPPING = {'core': '/stage/t/core', 'app': '/real/stage/t/app', 'x': '/stage/tx'}\n";
        let files = [
            ("__editable__.agent-1.0.pth", "/stage/t\n"),
            ("__editable___agent_1_0_finder.py", finder),
            (
                "agent-1.0.dist-info/METADATA",
                "Name: agent\nVersion: 1.0\nRequires-Dist: packaging>=20\nrequires-dist: idna;\n extra == 'x'\n\nRequires-Dist: body\n",
            ),
            ("agent-1.0.dist-info/RECORD", "stale,sha256=x,1\n"),
        ];
        let moved = relocated(dir.path(), &files, EDITABLE_TREE, &["/stage/t", "/real/stage/t"]);
        let requires = std::fs::read(dir.path().join("out").join(REQUIRES)).expect("requires");
        assert_eq!(
            String::from_utf8_lossy(&requires),
            "packaging>=20\nidna; extra == 'x'\n",
            "the headers' Requires-Dist, unfolded, and nothing of the body"
        );
        let text = |name: &str| &moved.iter().find(|(n, _)| n == name).expect(name).1;
        assert_eq!(text("__editable__.agent-1.0.pth"), &format!("{EDITABLE_TREE}\n"));
        assert_eq!(
            text("__editable___agent_1_0_finder.py"),
            &format!("MAPPING = {{'core': '{EDITABLE_TREE}/core', 'app': '{EDITABLE_TREE}/app', 'x': '/stage/tx'}}\n")
        );
        let record = text("agent-1.0.dist-info/RECORD");
        let mut rows: Vec<&str> = record.lines().collect();
        assert_eq!(rows.pop(), Some("agent-1.0.dist-info/RECORD,,"));
        assert_eq!(rows.len(), 3, "{record}");
        for row in rows {
            let [name, hash, size] = <[&str; 3]>::try_from(row.split(',').collect::<Vec<_>>()).expect("three fields");
            let data = text(name);
            let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
            assert_eq!(
                (hash, size),
                (format!("sha256={digest}").as_str(), data.len().to_string().as_str())
            );
        }
    }

    #[test]
    fn a_wheel_of_site_packages_files_only_is_laid_out_as_installed_and_one_with_scripts_is_not() {
        let base = [
            ("__editable__.agent-1.0.pth", "/stage/t\n"),
            ("agent-1.0.dist-info/METADATA", "Name: agent\nVersion: 1.0\n"),
            ("agent-1.0.dist-info/RECORD", ""),
        ];
        let dir = tempfile::tempdir().expect("dir");
        relocated(dir.path(), &base, EDITABLE_TREE, &["/stage/t"]);
        let installed = dir.path().join("out/installed");
        let read = |name: &str| std::fs::read_to_string(installed.join(name)).expect(name);
        assert_eq!(read("__editable__.agent-1.0.pth"), format!("{EDITABLE_TREE}\n"));
        assert_eq!(read("agent-1.0.dist-info/INSTALLER"), "par\n");
        assert_eq!(read("agent-1.0.dist-info/REQUESTED"), "");
        let record = read("agent-1.0.dist-info/RECORD");
        let mut rows: Vec<&str> = record.lines().collect();
        assert_eq!(rows.pop(), Some("agent-1.0.dist-info/RECORD,,"));
        let mut named: Vec<&str> = rows
            .iter()
            .map(|row| row.split(',').next().unwrap_or_default())
            .collect();
        named.sort_unstable();
        assert_eq!(
            named,
            [
                "__editable__.agent-1.0.pth",
                "agent-1.0.dist-info/INSTALLER",
                "agent-1.0.dist-info/METADATA",
                "agent-1.0.dist-info/REQUESTED"
            ]
        );
        for row in rows {
            let [name, hash, size] = <[&str; 3]>::try_from(row.split(',').collect::<Vec<_>>()).expect("three fields");
            let data = std::fs::read(installed.join(name)).expect(name);
            let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&data));
            assert_eq!(
                (hash, size),
                (format!("sha256={digest}").as_str(), data.len().to_string().as_str())
            );
        }
        for extra in [
            (
                "agent-1.0.dist-info/entry_points.txt",
                "[console_scripts]\nagent = core:main\n",
            ),
            ("agent-1.0.data/scripts/run", "#!python\n"),
            ("../escape.py", ""),
        ] {
            let dir = tempfile::tempdir().expect("dir");
            let mut files = base.to_vec();
            files.push(extra);
            relocated(dir.path(), &files, EDITABLE_TREE, &["/stage/t"]);
            assert!(
                !dir.path().join("out/installed").exists(),
                "{extra:?}: left to the installer"
            );
        }
    }
}
