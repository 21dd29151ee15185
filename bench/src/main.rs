//! `par-bench`: whole-process benchmarks of the `par` binary against the
//! spec's pip flow (`bench/baseline_pip.py`), run side by side.
//!
//! It builds three APKGs (tiny, web, bulk), warms the installers' caches
//! once, then for each package alternates A and B for every pair of
//! commands, `--runs` times, and prints medians, ratios and peak RSS as a
//! Markdown table (the one in docs/PERFORMANCE.md).
//!
//! Where `docker-registry` is installed, each package's bundle is also
//! pushed to it on loopback and loaded with `par load oci://…`, by a node
//! whose blob cache is empty and by one whose cache holds every blob.
//!
//! It also times `par run` to a ready agent, and `par gc` on a root of 50
//! deployments.
//!
//! Then the scaling series (`series`): extraction against files and bytes,
//! with a plot.
//!
//! Usage: par-bench [--runs N] [--only tiny,web,bulk,startup,agent,gc,series] [--workdir DIR] [--offline]
//!        par-bench native-extract APKG DEST   (the extractor, natively)
//!        par-bench write-apkg tiny|web|bulk|files-N|stored-M PATH

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use par_tests::Apkg;
use par_tests::registry::Registry;
use std::os::unix::fs::DirBuilderExt as _;

mod series;

/// Pinned so every run resolves the same versions.
const WEB_REQUIREMENTS: &str = "fastapi==0.115.6\nuvicorn==0.32.1\npydantic==2.10.3\nhttpx==0.28.1\n";
/// Files added to the tiny agent for the bulk package.
const BULK_FILES: usize = 2_000;
/// Bytes per bulk file: 2,000 of them make about 30 MB.
const BULK_FILE_BYTES: usize = 15_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("native-extract") => {
            let [_, apkg, dest] = &args[..] else {
                bail!("usage: par-bench native-extract APKG DEST");
            };
            return native_extract(Path::new(apkg), Path::new(dest));
        }
        Some("write-apkg") => {
            let [_, name, path] = &args[..] else {
                bail!("usage: par-bench write-apkg tiny|web|bulk|files-N|stored-M PATH");
            };
            build_apkg(name)?.write_to(Path::new(path));
            return Ok(());
        }
        _ => {}
    }
    let options = Options::parse(&args)?;
    let bench = Bench::new(&options)?;
    bench.run(&options)
}

struct Options {
    runs: usize,
    only: Vec<String>,
    workdir: PathBuf,
    /// Both sides install from a local wheelhouse (fetched once) instead of
    /// the index: what is left is the loaders' own work, not the network's.
    offline: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            runs: 5,
            only: ["tiny", "web", "bulk", "startup", "agent", "gc", "series"]
                .map(String::from)
                .into(),
            workdir: std::env::temp_dir().join("par-bench"),
            offline: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--runs" => options.runs = value()?.parse().context("--runs")?,
                "--only" => options.only = value()?.split(',').map(String::from).collect(),
                "--workdir" => options.workdir = PathBuf::from(value()?),
                "--offline" => options.offline = true,
                other => bail!("unknown argument {other:?} (see the comment at the top of bench/src/main.rs)"),
            }
        }
        if options.runs < 1 {
            bail!("--runs must be at least 1");
        }
        Ok(options)
    }
}

/// One finished process: wall-clock time and peak resident set.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    max_rss_kib: u64,
}

/// Runs `command` to completion and reads its peak RSS from `wait4`; a
/// failed run stops the benchmark with its log, since its time means nothing.
fn measure(command: &mut Command, log: &Path) -> Result<Sample> {
    let log_file = std::fs::File::create(log)?;
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let (status, max_rss_kib) = reap(child.id())?;
    let wall = started.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        bail!("{command:?} failed (status {status}):\n{output}");
    }
    Ok(Sample { wall, max_rss_kib })
}

struct Bench {
    par: PathBuf,
    /// The real interpreter behind `python3` (not a version manager's shim),
    /// used by both sides so they compare the same Python.
    python: PathBuf,
    /// The pinned uv the tests use (fetched once beside the binary): par is
    /// measured with the back end it picks when uv is on `PATH`.
    uv: PathBuf,
    this: PathBuf,
    baseline: PathBuf,
    workdir: PathBuf,
    /// With `--offline`: the local wheelhouse both sides install from.
    wheelhouse: Option<PathBuf>,
}

/// The samples of one side of a comparison.
#[derive(Default)]
struct Series(Vec<Sample>);

impl Series {
    fn median(&self) -> Duration {
        let mut walls: Vec<Duration> = self.0.iter().map(|s| s.wall).collect();
        walls.sort();
        walls.get(walls.len() / 2).copied().unwrap_or_default()
    }

    fn peak_rss_mib(&self) -> f64 {
        self.0.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
}

impl Bench {
    fn new(options: &Options) -> Result<Self> {
        let this = std::env::current_exe()?;
        let dir = this.parent().context("executable directory")?;
        let par = dir.join("par");
        if !par.is_file() {
            bail!(
                "{} not found: build it with the same profile first (`cargo build --release -p par`)",
                par.display()
            );
        }
        let uv = par_tests::tools::uv(&dir.join("bench-tools"));
        let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline_pip.py");
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .context("python3 is needed for the baseline")?;
        let python = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if options.workdir.exists() {
            std::fs::remove_dir_all(&options.workdir)?;
        }
        std::fs::create_dir_all(&options.workdir)?;
        let workdir = options.workdir.canonicalize()?;
        let wheelhouse = match options.offline {
            true => Some(fetch_wheelhouse(&python, &workdir.join("wheelhouse"))?),
            false => None,
        };
        Ok(Self {
            par,
            python,
            uv,
            this,
            baseline,
            workdir,
            wheelhouse,
        })
    }

    fn fresh(&self, name: &str) -> Result<PathBuf> {
        let path = self.workdir.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        Ok(path)
    }

    fn par(&self, root: &Path, args: &[&OsString]) -> Command {
        let mut command = self.par_default_python(root, args);
        if args.first().is_some_and(|a| *a == "load" || *a == "bundle") {
            command.arg("--python").arg(&self.python);
        }
        command
    }

    /// `par` as a user runs it: `--python` left at its default, `python3` on
    /// `PATH`, which may be a version manager's shim.
    fn par_default_python(&self, root: &Path, args: &[&OsString]) -> Command {
        let mut command = Command::new(&self.par);
        command.arg("--root").arg(root).arg("-q").args(args);
        if args.first().is_some_and(|a| *a == "load" || *a == "bundle") {
            command.arg("--uv").arg(&self.uv);
            if let Some(wheelhouse) = &self.wheelhouse {
                command.arg("--no-index").arg("--find-links").arg(wheelhouse);
            }
        }
        command
    }

    fn baseline(&self, apkg: &Path, dest: &Path) -> Command {
        let mut command = Command::new(&self.python);
        command.arg(&self.baseline).arg(apkg).arg(dest);
        if let Some(wheelhouse) = &self.wheelhouse {
            command.env("PIP_NO_INDEX", "1").env("PIP_FIND_LINKS", wheelhouse);
        }
        command
    }

    fn run(&self, options: &Options) -> Result<()> {
        println!("| package | measure | par (median) | other (median) | other ÷ par | par peak RSS |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        for name in &options.only {
            match name.as_str() {
                "startup" => self.startup(options.runs)?,
                "agent" => self.agent_start(options.runs)?,
                "gc" => self.gc(options.runs)?,
                "series" => self.series(options.runs)?,
                package => {
                    let apkg = self.workdir.join(format!("{package}.apkg"));
                    self.write_apkg(package, &apkg)?;
                    self.package(package, &apkg, options.runs)?;
                }
            }
        }
        Ok(())
    }

    /// Builds an APKG in a child process: Linux carries a process's peak RSS
    /// across fork and exec, so every measured child would otherwise report
    /// at least what this process once held (the 30 MB bulk archive).
    fn write_apkg(&self, name: &str, path: &Path) -> Result<()> {
        let status = Command::new(&self.this)
            .arg("write-apkg")
            .arg(name)
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("building the {name} APKG failed: {status}");
        }
        Ok(())
    }

    /// Cold loads (resolving, from the lock a first load recorded, and from
    /// the package's offline bundle) and warm loads against the pip flow,
    /// then extraction three ways.
    fn package(&self, name: &str, apkg: &Path, runs: usize) -> Result<()> {
        let apkg_arg = OsString::from(apkg);
        let load: [&OsString; 2] = [&"load".into(), &apkg_arg];
        let log = self.workdir.join("last.log");
        // Warm the installers' caches (uv's for par, pip's for the baseline); untimed.
        measure(&mut self.par(&self.fresh("warmup-root")?, &load), &log)?;
        measure(&mut self.baseline(apkg, &self.fresh("warmup-baseline")?), &log)?;

        let (mut cold, mut warm, mut pip) = (Series::default(), Series::default(), Series::default());
        let warm_root = self.fresh("warm-root")?;
        measure(&mut self.par(&warm_root, &load), &log)?;
        // The lock that load recorded, given to every locked cold load.
        let lock = OsString::from(self.workdir.join(format!("{name}.pylock.toml")));
        std::fs::copy(venv_lock(&warm_root)?, &lock)?;
        let locked_load: [&OsString; 4] = [&"load".into(), &apkg_arg, &"--lock".into(), &lock];
        let mut locked = Series::default();
        // The package's offline bundle, made once, loaded cold with no index.
        let parb = OsString::from(self.workdir.join(format!("{name}.parb")));
        let bundle: [&OsString; 4] = [&"bundle".into(), &apkg_arg, &"-o".into(), &parb];
        measure(&mut self.par(&self.fresh("bundle-root")?, &bundle), &log)?;
        let bundled_load: [&OsString; 2] = [&"load".into(), &parb];
        let mut bundled = Series::default();
        // The bundle pushed to the reference registry on loopback, loaded by
        // a node whose blob cache is empty, and by one whose cache holds it.
        let registry = self.registry(name, &parb, &log)?;
        let (mut fetched, mut cached) = (Series::default(), Series::default());
        // The same redeploy with `--python` at its default, as users run par.
        let mut warm_default = Series::default();
        let default_root = self.fresh("warm-default-root")?;
        measure(&mut self.par_default_python(&default_root, &load), &log)?;
        for _ in 0..runs {
            cold.0
                .push(measure(&mut self.par(&self.fresh("cold-root")?, &load), &log)?);
            locked
                .0
                .push(measure(&mut self.par(&self.fresh("locked-root")?, &locked_load), &log)?);
            bundled.0.push(measure(
                &mut self.par(&self.fresh("bundled-root")?, &bundled_load),
                &log,
            )?);
            if let Some(registry) = &registry {
                let cold_cache = registry.cold_cache(&self.fresh("node-cache-cold")?)?;
                let args = registry.args();
                let load: Vec<&OsString> = args.iter().collect();
                let from_registry = |cache: &Path| -> Result<Command> {
                    Ok(registry.with_registry(self.par(&self.fresh("registry-root")?, &load), cache))
                };
                fetched.0.push(measure(&mut from_registry(&cold_cache)?, &log)?);
                cached.0.push(measure(&mut from_registry(&registry.cache)?, &log)?);
            }
            pip.0
                .push(measure(&mut self.baseline(apkg, &self.fresh("baseline")?), &log)?);
            warm.0.push(measure(&mut self.par(&warm_root, &load), &log)?);
            warm_default
                .0
                .push(measure(&mut self.par_default_python(&default_root, &load), &log)?);
        }
        row(name, "`par load` cold vs pip flow", &cold, &pip);
        row(name, "`par load --lock` cold vs pip flow", &locked, &pip);
        row(name, "`par load --lock` cold vs `par load` cold", &locked, &cold);
        row(
            name,
            "`par load` cold from a bundle, offline, vs pip flow",
            &bundled,
            &pip,
        );
        row(
            name,
            "`par load` cold from a bundle vs `par load` cold",
            &bundled,
            &cold,
        );
        if registry.is_some() {
            row(
                name,
                "`par load oci://` cold, every blob fetched (registry on loopback), vs pip flow",
                &fetched,
                &pip,
            );
            row(
                name,
                "`par load oci://` cold, blob cache warm, vs pip flow",
                &cached,
                &pip,
            );
        }
        row(name, "`par load` warm (redeploy) vs pip flow", &warm, &pip);
        row(
            name,
            "`par load` warm, default `--python` vs explicit interpreter",
            &warm_default,
            &warm,
        );

        let (mut sandboxed, mut native, mut zipfile) = (Series::default(), Series::default(), Series::default());
        let extract: [&OsString; 2] = [&"extract".into(), &apkg_arg];
        let unzip = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])";
        for _ in 0..runs {
            sandboxed
                .0
                .push(measure(&mut self.par(&self.fresh("extract-root")?, &extract), &log)?);
            let dest = self.fresh("native")?;
            std::fs::create_dir_all(&dest)?;
            let mut command = Command::new(&self.this);
            native
                .0
                .push(measure(command.arg("native-extract").arg(apkg).arg(&dest), &log)?);
            let dest = self.fresh("zipfile")?;
            let mut command = Command::new("python3");
            zipfile
                .0
                .push(measure(command.args(["-c", unzip]).arg(apkg).arg(&dest), &log)?);
        }
        row(
            name,
            "`par extract` (sandboxed) vs native extraction",
            &sandboxed,
            &native,
        );
        row(
            name,
            "`par extract` (sandboxed) vs Python `zipfile`",
            &sandboxed,
            &zipfile,
        );
        Ok(())
    }

    /// The reference registry on loopback holding `parb` (pushed untimed),
    /// and a node cache that has loaded it once; `None` (with a note) where
    /// `docker-registry` is not installed.
    fn registry(&self, name: &str, parb: &OsString, log: &Path) -> Result<Option<RegistryNode>> {
        if !Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("par-bench: docker-registry not found (apt-get install docker-registry): no registry rows");
            return Ok(None);
        }
        let registry = Registry::start();
        let host = OsString::from(registry.host());
        let reference = OsString::from(format!("oci://{}/bench/{name}:1", registry.host()));
        let cache = self.fresh("node-cache")?;
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&cache)?;
        let node = RegistryNode {
            _registry: registry,
            host,
            reference,
            cache,
        };
        let target = OsString::from(node.reference.to_string_lossy().trim_start_matches("oci://"));
        let push: [&OsString; 3] = [&"push".into(), parb, &target];
        measure(
            &mut node.with_registry(self.par(&self.fresh("push-root")?, &push), &node.cache),
            log,
        )?;
        // A first load fills the node's cache (compiled guest, blobs): untimed.
        let args = node.args();
        let load: Vec<&OsString> = args.iter().collect();
        measure(
            &mut node.with_registry(self.par(&self.fresh("registry-root")?, &load), &node.cache),
            log,
        )?;
        Ok(Some(node))
    }

    /// Process start to a validated manifest: the compiled guest comes from the cache.
    fn startup(&self, runs: usize) -> Result<()> {
        let apkg = OsString::from(self.workdir.join("startup.apkg"));
        self.write_apkg("tiny", Path::new(&apkg))?;
        let root = self.fresh("startup-root")?;
        let inspect: [&OsString; 2] = [&"inspect".into(), &apkg];
        let log = self.workdir.join("last.log");
        measure(&mut self.par(&root, &inspect), &log)?;
        let mut series = Series::default();
        for _ in 0..runs {
            series.0.push(measure(&mut self.par(&root, &inspect), &log)?);
        }
        println!(
            "| tiny | `par inspect` (start, instantiate, validate) | {} | | | {:.1} MiB |",
            millis(series.median()),
            series.peak_rss_mib()
        );
        Ok(())
    }
}

impl Bench {
    /// `par run` from process start to a ready agent (the tests' standard-
    /// library HTTP agent, sandboxed, on a socket par binds, health-checked)
    /// against the same agent started by hand: the venv's python, no
    /// sandbox, its own socket, polled with the same health check.
    fn agent_start(&self, runs: usize) -> Result<()> {
        let apkg = self.workdir.join("agent.apkg");
        par_tests::agent::agent_apkg("bench-agent", "").write_to(&apkg);
        let apkg = OsString::from(apkg);
        let root = self.fresh("agent-root")?;
        // Loaded once, untimed: every `par run` then takes the unchanged-redeploy path.
        let output = self
            .par(&root, &[&"load".into(), &apkg, &"--json".into()])
            .stderr(Stdio::null())
            .output()?;
        let loaded: serde_json::Value = serde_json::from_slice(&output.stdout).context("the load's result")?;
        let field = |name: &str| {
            loaded[name]
                .as_str()
                .map(PathBuf::from)
                .context("a path in the load's result")
        };
        let (python, tree) = (field("python_path")?, field("path")?);
        let (mut par, mut by_hand) = (Series::default(), Series::default());
        for _ in 0..runs {
            par.0.push(self.par_run_to_ready(&root, &apkg)?);
            by_hand.0.push(by_hand_to_ready(&python, &tree)?);
        }
        row(
            "tiny HTTP agent",
            "`par run` start to ready (sandboxed) vs by hand (venv python, no sandbox)",
            &par,
            &by_hand,
        );
        Ok(())
    }

    /// Starts `par run`, waits for its ready event, then stops it.
    #[allow(
        unsafe_code,
        reason = "`libc::kill`: std can only SIGKILL a child, and `par run` is to stop gracefully on SIGTERM"
    )]
    fn par_run_to_ready(&self, root: &Path, apkg: &OsString) -> Result<Sample> {
        let args: Vec<OsString> = ["run".into(), apkg.clone()]
            .into_iter()
            .chain(["--listen", "http=127.0.0.1:0", "--health", "http:/health", "--json"].map(OsString::from))
            .chain(["--", "python", "server.py"].map(OsString::from))
            .collect();
        let args: Vec<&OsString> = args.iter().collect();
        let mut command = self.par_default_python(root, &args);
        command.arg("--uv").arg(&self.uv);
        let started = Instant::now();
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        // Kept open until par has ended, so its exit event finds a reader.
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line)?;
        let wall = started.elapsed();
        if !line.contains("\"ready\"") {
            bail!("`par run` did not report ready: {line:?}");
        }
        // SAFETY: kill is async-signal-safe and the pid is our own running child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let (_, max_rss_kib) = reap(child.id())?;
        drop(stdout);
        Ok(Sample { wall, max_rss_kib })
    }
}

/// Apps and versions of the root `par gc` is measured on: 50 deployments.
const GC_APPS: usize = 10;
const GC_VERSIONS: usize = 5;

impl Bench {
    /// `par gc --keep 1` on a root of 50 deployments (the tiny agent, ten
    /// apps, five versions each), restored from a copy before every run,
    /// against `rm -rf` of exactly what par removed.
    fn gc(&self, runs: usize) -> Result<()> {
        let root = self.fresh("gc-root")?;
        let pristine = self.fresh("gc-pristine")?;
        let log = self.workdir.join("last.log");
        for version in 1..=GC_VERSIONS {
            for app in 0..GC_APPS {
                let apkg = self.workdir.join(format!("gc-{app}-{version}.apkg"));
                let manifest = format!("name: app{app}\nversion: 1.0.{version}\nentrypoint: app.main:agent\n");
                Apkg::valid_agent().replace("agent.yaml", manifest).write_to(&apkg);
                measure(&mut self.par(&root, &[&"load".into(), &apkg.into_os_string()]), &log)?;
            }
        }
        copy_tree(&root, &pristine)?;
        let restore = || -> Result<()> {
            std::fs::remove_dir_all(&root)?;
            copy_tree(&pristine, &root)
        };
        let gc: [&OsString; 4] = [&"gc".into(), &"--keep".into(), &"1".into(), &"--json".into()];
        let (mut par, mut rm) = (Series::default(), Series::default());
        let mut report = serde_json::Value::Null;
        for _ in 0..runs {
            restore()?;
            par.0.push(measure(&mut self.par(&root, &gc), &log)?);
            let output = std::fs::read_to_string(&log)?;
            report = serde_json::from_str(output.lines().last().unwrap_or_default()).context("gc's report")?;
            let removed: Vec<&str> = report["removed"]
                .as_array()
                .context("removed")?
                .iter()
                .filter_map(|item| item["path"].as_str())
                .filter(|path| path.starts_with(&*root.to_string_lossy()))
                .collect();
            restore()?;
            rm.0.push(measure(Command::new("rm").arg("-rf").args(&removed), &log)?);
        }
        let mib = |field: &str| report[field].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
        let trees = report["removed"]
            .as_array()
            .map_or(0, |items| items.iter().filter(|item| item["kind"] == "tree").count());
        row(
            "50 deployments (tiny)",
            &format!(
                "`par gc --keep 1` ({trees} removed: {:.1} MiB removed, {:.1} MiB freed) vs `rm -rf` of the same",
                mib("bytes_removed"),
                mib("bytes_freed")
            ),
            &par,
            &rm,
        );
        std::fs::remove_dir_all(&root)?;
        std::fs::remove_dir_all(&pristine)?;
        Ok(())
    }
}

/// `cp -a from to`: hard links, symlinks and modes as they are.
/// The lock of the one venv under `root`.
/// The reference registry holding a package's bundle, and a node's cache
/// that has loaded it from there once.
struct RegistryNode {
    _registry: Registry,
    host: OsString,
    reference: OsString,
    cache: PathBuf,
}

impl RegistryNode {
    /// `load oci://…`.
    fn args(&self) -> [OsString; 2] {
        ["load".into(), self.reference.clone()]
    }

    /// `command` speaking plain HTTP to the registry, with `cache`.
    fn with_registry(&self, mut command: Command, cache: &Path) -> Command {
        command
            .arg("--insecure-registry")
            .arg(&self.host)
            .arg("--cache-dir")
            .arg(cache);
        command
    }

    /// A node cache at `dir` like the warm one but with no blobs: the
    /// compiled guest and build environments copied, so only fetching differs.
    fn cold_cache(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir)?;
        for entry in std::fs::read_dir(&self.cache)? {
            let entry = entry?;
            if entry.file_name() == "blobs" {
                continue;
            }
            let status = Command::new("cp").arg("-a").arg(entry.path()).arg(dir).status()?;
            if !status.success() {
                bail!("copying {} failed", entry.path().display());
            }
        }
        Ok(dir.to_owned())
    }
}

fn venv_lock(root: &Path) -> Result<PathBuf> {
    let mut venvs = std::fs::read_dir(root.join("venvs"))?;
    let venv = venvs.next().context("no venv under the root")??;
    Ok(venv.path().join("pylock.toml"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("cp -a {} {} failed: {status}", from.display(), to.display());
    }
    Ok(())
}

/// The agent started by hand on a port it binds itself, polled until its health check answers.
fn by_hand_to_ready(python: &Path, tree: &Path) -> Result<Sample> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg("server.py")
        .current_dir(tree)
        .env("AGENT_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while !healthy(port) {
        if let Some(status) = child.try_wait()? {
            bail!("the agent started by hand exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    child.kill()?;
    child.wait()?;
    Ok(Sample { wall, max_rss_kib: 0 })
}

/// Whether `GET /health` on the port answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.0 200")
}

/// Waits for our child `pid`; returns its wait status and its peak RSS in
/// KiB, which only `wait4` reports.
#[allow(
    unsafe_code,
    reason = "`libc::wait4` through raw pointers: std's wait does not report the peak RSS"
)]
fn reap(pid: u32) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unwaited child; status and usage are valid for writes.
    if unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) } < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage.ru_maxrss as u64))
}

/// Downloads the web package's requirements and the build backend as
/// wheels into `dir`, once.
fn fetch_wheelhouse(python: &Path, dir: &Path) -> Result<PathBuf> {
    let requirements: Vec<&str> = WEB_REQUIREMENTS.lines().collect();
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
        ])
        .arg("--dest")
        .arg(dir)
        .args(requirements)
        .args(["setuptools>=40.8.0", "wheel"])
        .status()
        .context("cannot run pip download")?;
    if !status.success() {
        bail!("downloading the wheelhouse failed: {status}");
    }
    Ok(dir.to_owned())
}

fn row(package: &str, measure: &str, par: &Series, baseline: &Series) {
    let ratio = baseline.median().as_secs_f64() / par.median().as_secs_f64().max(1e-9);
    println!(
        "| {package} | {measure} | {} | {} | {ratio:.1}x | {:.1} MiB |",
        millis(par.median()),
        millis(baseline.median()),
        par.peak_rss_mib()
    );
}

fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// tiny: setup.py, `core/`, `app/`, no requirements; web: tiny plus pinned
/// FastAPI, uvicorn, pydantic and httpx; bulk: tiny plus 2,000 source files.
fn build_apkg(name: &str) -> Result<Apkg> {
    let tiny = Apkg::valid_agent();
    Ok(match name {
        "tiny" => tiny,
        "web" => tiny.replace("requirements.txt", WEB_REQUIREMENTS),
        "bulk" => (0..BULK_FILES).fold(tiny, |apkg, i| apkg.file(&format!("data/m{i:04}.py"), source_text(i))),
        other => series::build(other)
            .with_context(|| format!("unknown package {other:?}: tiny, web, bulk, files-N or stored-M"))?,
    })
}

/// Python-looking text that compresses like source code does (about 4:1).
fn source_text(seed: usize) -> String {
    const WORDS: [&str; 16] = [
        "agent", "model", "value", "return", "self", "config", "result", "tool", "prompt", "token", "stream", "cache",
        "index", "route", "handler", "payload",
    ];
    let mut state = seed as u64 * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407;
    let mut text = String::with_capacity(BULK_FILE_BYTES + 64);
    let mut line = 0;
    while text.len() < BULK_FILE_BYTES {
        let mut word = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            WORDS[(state >> 60) as usize]
        };
        let (a, b, c) = (word(), word(), word());
        text.push_str(&format!(
            "def {a}_{b}_{line}({c}):\n    return {c} + {line}  # {a} {b}\n"
        ));
        line += 1;
    }
    text
}

/// The guest's extraction code compiled natively, with the same limits and
/// rules: what the sandbox costs is `par extract` minus this.
fn native_extract(apkg: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(apkg).with_context(|| format!("cannot open {}", apkg.display()))?;
    let options = par_guest::ExtractOptions {
        limits: par_guest::Limits::default(),
        enforce_path_rules: true,
    };
    let reader = par_guest::seek_buffered::SeekBuffered::new(file);
    par_guest::extract(reader, dest, &options).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
