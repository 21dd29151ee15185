//! Argument parsing, logging setup, output and exit codes for `par`.

mod lifecycle;
mod output;
mod registry;
mod trust;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgAction, Parser, Subcommand};
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use par::{
    AgentNetwork, AgentPackage, Choice, DEFAULT_ROOT, Endpoint, HealthCheck, InstallConfig, InstallerChoice,
    LifecycleError, Limits, Listen, LoadError, LoaderConfig, NetworkChoice, PackageLoader, SandboxChoice, SpawnError,
    SpawnSpec,
};

use lifecycle::{DiskArgs, GcArgs, collection_text, listing_text, parse_size};
use output::print_result;
use tracing_subscriber::EnvFilter;
use trust::TrustArgs;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  internal error (I/O on the host, engine failure, bad configuration)
  2  usage error (bad arguments)
  3  package refused (unsafe entry, limit exceeded, invalid manifest, or the
     sandbox stopped the package: memory or CPU limit, trap)

Every byte of the APKG is read inside a WASI sandbox; see wit/ for the
interface between the sandbox and this program.";

/// Sandboxed loader for APKG agent packages.
#[derive(Debug, Parser)]
#[command(name = "par", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Print the result (or the error) as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// Write logs to stderr as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,

    /// More logging: -v for debug, -vv for trace.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    /// Only log warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Root directory for packages, staging and locks.
    #[arg(long, global = true, env = "PAR_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    /// Directory caching the compiled sandbox, registry blobs, bundle files and,
    /// with uv, build environments and venv templates [default: $XDG_CACHE_HOME/par or ~/.cache/par].
    #[arg(long, global = true, env = "PAR_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    #[command(flatten)]
    limits: LimitArgs,
}

/// How `load` installs.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Installing")]
struct InstallArgs {
    /// Installer back end: uv when found on PATH or fetched (see
    /// --no-fetch-uv), else pip (auto); or force one.
    #[arg(long, default_value = "auto", value_parser = choice::<InstallerChoice>())]
    installer: InstallerChoice,
    /// Fail when the entrypoint does not import (default: warn, `verified: false`).
    #[arg(long)]
    strict: bool,
    /// The uv executable (for --installer uv or auto).
    #[arg(long, value_name = "PATH", default_value = "uv")]
    uv: PathBuf,
    /// When no uv is found, install with pip rather than fetch par's pinned
    /// uv (its hash checked) into the cache directory.
    #[arg(long)]
    no_fetch_uv: bool,
    /// Interpreter the venv is made from.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    python: PathBuf,
    /// Install only from local paths and --find-links (no package index).
    #[arg(long)]
    no_index: bool,
    /// Install with no network at all: no index, only local --find-links
    /// directories, every installer step in an empty network namespace. A
    /// bundle (`.parb`) is always loaded so.
    #[arg(long)]
    offline: bool,
    /// Extra location of wheels and sdists (repeatable).
    #[arg(long, value_name = "DIR|URL")]
    find_links: Vec<String>,
    /// Package index to use instead of the default.
    #[arg(long, value_name = "URL")]
    index_url: Option<String>,
    /// Directory holding the installers' caches (`uv/`, `pip/`) [default:
    /// where uv and pip put theirs: $UV_CACHE_DIR, $PIP_CACHE_DIR,
    /// $XDG_CACHE_HOME or ~/.cache].
    #[arg(long, value_name = "DIR")]
    installer_cache: Option<PathBuf>,
    /// Run the venv, installer and import-check steps under bubblewrap: only
    /// the venv, the package and the installer cache writable, the rest of the
    /// system read-only or hidden. auto uses it when it works here and warns
    /// when it does not; bwrap fails the load instead.
    #[arg(long, default_value = "auto", value_parser = choice::<SandboxChoice>())]
    sandbox: SandboxChoice,
    /// Seconds allowed for installing requirements.txt.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    requirements_timeout: u64,
    /// Seconds allowed for the editable self-install.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    self_install_timeout: u64,
    /// Seconds allowed for the import check.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    import_timeout: u64,
    /// Days a shared build environment is used before par makes it anew
    /// (with uv), so open build requirements pick up new releases; 0 makes
    /// one for every build.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    build_env_max_age: u64,
    /// Memory all the processes of one install step may use together
    /// (tmpfs included), where a memory cgroup can be made [default: 8G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    step_memory: Option<u64>,
    /// Size of an install step's scratch directory and `/dev/shm` [default: 4G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    step_tmp: Option<u64>,
}

/// Parses a [`Choice`] by its names, which `--help` lists.
fn choice<T: Choice + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::NAMES.iter().map(|(name, _)| *name))
        .map(|name| T::from_name(&name).unwrap_or_default())
}

/// Which lock a load installs, if any.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Installing")]
struct LockArg {
    /// Install exactly the distributions of this PEP 751 lock (`pylock.toml`:
    /// an earlier load's `lock`, or `par lock`'s), hashes checked, nothing
    /// resolved; refused unless it holds what every requirement line asks for.
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
}

impl LockArg {
    /// Loads `apkg`, from the lock when one is given.
    async fn load(&self, loader: &PackageLoader, apkg: &Path, app_id: Option<&str>) -> Result<AgentPackage, LoadError> {
        match &self.lock {
            Some(lock) => loader.load_locked(apkg, app_id, lock).await,
            None => loader.load_package(apkg, app_id).await,
        }
    }
}

impl InstallArgs {
    fn apply(&self, install: &mut InstallConfig) {
        install.installer = self.installer;
        install.strict = self.strict;
        install.python = self.python.clone();
        install.uv = self.uv.clone();
        install.fetch_uv = !self.no_fetch_uv;
        install.index.no_index = self.no_index;
        install.offline = self.offline;
        install.index.find_links = self.find_links.clone();
        install.sandbox = self.sandbox;
        install.index.index_url = self.index_url.clone();
        install.installer_cache = self.installer_cache.clone();
        install.requirements_timeout = Duration::from_secs(self.requirements_timeout);
        install.self_install_timeout = Duration::from_secs(self.self_install_timeout);
        install.import_timeout = Duration::from_secs(self.import_timeout);
        install.build_env_max_age = Duration::from_secs(self.build_env_max_age.saturating_mul(24 * 60 * 60));
        if let Some(bytes) = self.step_memory {
            install.limits.memory_bytes = Some(bytes);
        }
        if let Some(bytes) = self.step_tmp {
            install.limits.tmp_bytes = Some(bytes);
        }
    }
}

/// How `run` starts the agent.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Running")]
struct AgentArgs {
    /// A socket par binds and hands to the agent (fd 3, 4, … in order, with
    /// LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID and PAR_PORT_<NAME>); port 0
    /// takes a free port; `unix:/PATH` a unix socket (mode 0660, a stale
    /// socket file replaced, removed when the agent is gone) (repeatable).
    /// Without any: the surfaces deploy.json exposes, on 127.0.0.1 at its ports.
    #[arg(long, value_name = "NAME=ADDR:PORT|NAME=unix:PATH", value_parser = parse_listen)]
    listen: Vec<Listen>,
    /// The group unix sockets are made in, by name or number, so a proxy
    /// in it may connect [default: par's own].
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    socket_group: Option<u32>,
    /// Ready when GET PATH on socket NAME answers 2xx [default: when the
    /// agent accepts a connection on the first socket].
    #[arg(long, value_name = "NAME:PATH", value_parser = parse_health)]
    health: Option<HealthCheck>,
    /// What the agent may reach: nothing but its own sockets (none), or the
    /// host's network (outbound).
    #[arg(long, default_value = "none", value_parser = choice::<AgentNetwork>())]
    network: AgentNetwork,
    /// Network inside the installer sandbox while loading (see `par load --network`).
    #[arg(long, default_value = "index", value_parser = choice::<NetworkChoice>())]
    install_network: NetworkChoice,
    /// A variable for the agent (repeatable); values are never logged or printed.
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A file of KEY=VALUE lines for the agent, as --env.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Also apply the package's own `.env` (parsed in the sandbox; the same
    /// variables are refused as in agent.yaml's `environment`). Layered as
    /// PAR does: .env < agent.yaml `environment` < deploy.json `environment`
    /// < --env; `${VAR}` and `${VAR:-default}` in the package's values are
    /// resolved against those layers only.
    #[arg(long)]
    package_env: bool,
    /// BASE_PATH for the agent, as PAR sets it behind its proxy (`/agents/ID`).
    #[arg(long, value_name = "PATH")]
    base_path: Option<String>,
    /// Seconds the agent may take to become ready.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    ready_timeout: u64,
    /// Seconds a stop waits after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    stop_grace: u64,
    /// Memory all the agent's processes may use together (a memory cgroup
    /// where one can be made, else per process) [default: 2G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Size of the agent's `/tmp` and `/dev/shm` [default: 1G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmp_size: Option<u64>,
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    let (name, addr) = text
        .split_once('=')
        .ok_or("expected NAME=ADDR:PORT or NAME=unix:PATH")?;
    let addr = addr.parse()?;
    Ok(Listen {
        name: name.to_owned(),
        addr,
    })
}

/// A group by number, or by name from the group database.
fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("cannot read /etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?;
            (name == text).then(|| gid.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("no group `{text}` in /etc/group"))
}

fn parse_health(text: &str) -> Result<HealthCheck, String> {
    let (socket, path) = text.split_once(':').ok_or("expected NAME:PATH")?;
    Ok(HealthCheck {
        socket: socket.to_owned(),
        path: path.to_owned(),
    })
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    // The value may be a secret: the error names the key alone.
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| "expected K=V".to_owned())
}

/// `KEY=VALUE` lines; blank lines and `#` comments skipped, `export ` allowed.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            anyhow::bail!("`{}` line {}: expected KEY=VALUE", path.display(), number + 1);
        };
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        pairs.push((key.trim().to_owned(), unquoted.to_owned()));
    }
    Ok(pairs)
}

/// Overrides of the archive limits; each defaults to the library's default.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Archive limits")]
struct LimitArgs {
    /// Most entries an archive may list [default: 10000].
    #[arg(long, global = true, value_name = "N")]
    max_entries: Option<u32>,
    /// Most bytes all files may expand to [default: 536870912 (512 MiB)].
    #[arg(long, global = true, value_name = "BYTES")]
    max_total_bytes: Option<u64>,
    /// Most bytes one file may expand to [default: 268435456 (256 MiB)].
    #[arg(long, global = true, value_name = "BYTES")]
    max_file_bytes: Option<u64>,
    /// Highest compression ratio for entries over 1 MiB [default: 100].
    #[arg(long, global = true, value_name = "RATIO")]
    max_ratio: Option<u32>,
    /// Largest agent.yaml accepted [default: 1048576 (1 MiB)].
    #[arg(long, global = true, value_name = "BYTES")]
    max_manifest_bytes: Option<u64>,
}

impl LimitArgs {
    fn apply(&self, limits: &mut Limits) {
        let LimitArgs {
            max_entries,
            max_total_bytes,
            max_file_bytes,
            max_ratio,
            max_manifest_bytes,
        } = *self;
        limits.max_entries = max_entries.unwrap_or(limits.max_entries);
        limits.max_total_bytes = max_total_bytes.unwrap_or(limits.max_total_bytes);
        limits.max_file_bytes = max_file_bytes.unwrap_or(limits.max_file_bytes);
        limits.max_ratio = max_ratio.unwrap_or(limits.max_ratio);
        limits.max_manifest_bytes = max_manifest_bytes.unwrap_or(limits.max_manifest_bytes);
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate an APKG and print its manifest as JSON. Publishes nothing.
    Inspect {
        /// The APKG file.
        apkg: PathBuf,
    },
    /// Load an APKG as the runtime does: extract, create or reuse the venv,
    /// install requirements.txt and the agent itself (editable), check the
    /// entrypoint imports. A bundle (`.parb`, from `par bundle`) is loaded
    /// from its own files and lock, offline.
    Load {
        /// The APKG file, an offline bundle (`.parb`), or a bundle in a
        /// registry (`oci://REGISTRY/REPO:TAG` or `…@sha256:DIGEST`).
        apkg: PathBuf,
        /// App id to publish under [default: the manifest's name].
        #[arg(long, value_name = "ID")]
        app_id: Option<String>,
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        lock: LockArg,
        /// Network inside the installer sandbox: none at all, or only for
        /// install steps when the index settings name a remote location (index).
        #[arg(long, default_value = "index", value_parser = choice::<NetworkChoice>(), help_heading = "Installing")]
        network: NetworkChoice,
        #[command(flatten)]
        disk: DiskArgs,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        registry: registry::RegistryArgs,
    },
    /// Resolve an APKG's requirements and build requirements for this
    /// interpreter and these index settings, installing nothing, and write
    /// the lock (PEP 751) that `load --lock` installs exactly.
    Lock {
        /// The APKG file.
        apkg: PathBuf,
        /// Where to write the lock (`pylock.toml`); the build requirements'
        /// lock goes beside it (`pylock.build.toml`). Default: print both.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Write an offline bundle (AGENT.parb): the APKG, its locks (as `par
    /// lock` resolves them), every wheel and sdist they name (fetched once,
    /// hashes checked), its SBOM and, with --key, signatures (inside for
    /// the APKG, AGENT.parb.minisig beside for the bundle). `par load
    /// AGENT.parb` then installs from it alone, with no network.
    Bundle {
        /// The APKG file.
        apkg: PathBuf,
        /// The bundle to write; it must end in `.parb`.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Sign the package and the bundle with this secret key.
        #[arg(long, value_name = "KEY")]
        key: Option<PathBuf>,
        /// The environment variable holding the password of an encrypted key.
        #[arg(long, value_name = "VAR", requires = "key")]
        password_env: Option<String>,
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Push an offline bundle (AGENT.parb) to an OCI registry as an
    /// artifact: one blob per member, so bundles sharing wheels share
    /// blobs, and only blobs the registry lacks are uploaded. Its signature
    /// (AGENT.parb.minisig) goes with it. Prints the manifest's digest.
    Push {
        /// The bundle.
        bundle: PathBuf,
        /// Where: REGISTRY/REPOSITORY:TAG.
        reference: String,
        #[command(flatten)]
        registry: registry::RegistryArgs,
    },
    /// Pull a bundle pushed by `par push` from an OCI registry: every blob
    /// checked by size and digest, written in place only once whole, with
    /// its signature beside it.
    Pull {
        /// REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
        reference: String,
        /// The bundle to write; it must end in `.parb`.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        registry: registry::RegistryArgs,
    },
    /// Load an APKG (instant when it is unchanged since its last load), then
    /// start its agent in the sandbox on sockets par binds, wait until it is
    /// ready, and stay in the foreground: SIGINT and SIGTERM stop it
    /// gracefully, and par exits with the agent's status.
    Run {
        /// The APKG file, an offline bundle (`.parb`), or a bundle in a
        /// registry (`oci://REGISTRY/REPO:TAG` or `…@sha256:DIGEST`).
        apkg: PathBuf,
        /// App id to publish under [default: the manifest's name].
        #[arg(long, value_name = "ID")]
        app_id: Option<String>,
        #[command(flatten)]
        install: InstallArgs,
        #[command(flatten)]
        lock: LockArg,
        #[command(flatten)]
        agent: Box<AgentArgs>,
        #[command(flatten)]
        disk: DiskArgs,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        registry: registry::RegistryArgs,
        /// The command; `python` means the venv's interpreter. Without one,
        /// the manifest's `http_server` is served with the venv's uvicorn on
        /// the first socket (`python -m uvicorn MODULE:APP --fd 3`).
        #[arg(last = true, value_name = "ARGV")]
        argv: Vec<std::ffi::OsString>,
    },
    /// Extract an APKG to {root}/packages/{app_id}@{version}/ and print where.
    Extract {
        /// The APKG file.
        apkg: PathBuf,
        /// App id to publish under [default: the manifest's name].
        #[arg(long, value_name = "ID")]
        app_id: Option<String>,
        #[command(flatten)]
        disk: DiskArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Make a key pair for signing packages, in minisign's format:
    /// PREFIX.key (the secret key, unencrypted, mode 0600) and PREFIX.pub
    /// (for --trusted-key). Never overwrites a file.
    Keygen {
        /// Where the keys go: PREFIX.key and PREFIX.pub.
        #[arg(short = 'o', long = "output", value_name = "PREFIX")]
        prefix: PathBuf,
    },
    /// Sign an APKG for the package its manifest names: writes the detached
    /// signature APKG.minisig beside it (minisign's format, trusted comment
    /// `name=NAME version=VERSION`). Only a package that would load is signed.
    Sign {
        /// The APKG file.
        apkg: PathBuf,
        /// The secret key file (`par keygen` or `minisign -G`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The environment variable holding the password of an encrypted key.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// Check an APKG's signature (APKG.minisig) against trusted keys, and
    /// that its manifest names the package it was signed for.
    Verify {
        /// The APKG file.
        apkg: PathBuf,
        /// A public key to trust. Repeatable.
        #[arg(long = "trusted-key", value_name = "PUB", required = true)]
        trusted_keys: Vec<PathBuf>,
    },
    /// List every app under the root: its deployments (version, tree and
    /// venv sizes, when last loaded, current or not, in use by an agent or
    /// not), unused venvs, and build environments.
    List,
    /// Remove an app (or one version of it): its trees, links, venvs and
    /// records. Refuses while an agent started by `par run` uses them.
    /// Print the SBOM (CycloneDX 1.5 JSON) of an app's most recently loaded
    /// deployment: every distribution its venv holds, with hashes and
    /// licences, the agent as the root component.
    Sbom {
        /// The app id.
        app_id: String,
        /// The most recent deployment of this version instead.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    Remove {
        /// The app id.
        app_id: String,
        /// Only this version.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Stop the agents using it first (SIGTERM, then SIGKILL after 5 s).
        #[arg(long)]
        force: bool,
    },
    /// Remove what loads left and no app needs: deployments beyond the most
    /// recent ones, the least recently used while the root is over budget,
    /// unused venvs and build environments. Never what a running load or
    /// agent holds.
    Gc {
        #[command(flatten)]
        gc: GcArgs,
    },
}

/// Exit code for a package the loader refused.
const EXIT_PACKAGE_REFUSED: u8 = 3;

/// Parses arguments, runs the command, and maps the outcome to an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(error) => report(&cli, &error),
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("PAR_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if cli.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let mut config = LoaderConfig::with_root(&cli.root);
    cli.limits.apply(&mut config.limits);
    if let Some(cache_dir) = &cli.cache_dir {
        config.component_cache = Some(cache_dir.clone());
    }
    match &cli.command {
        Command::Load {
            install,
            network,
            disk,
            trust,
            registry,
            ..
        } => {
            install.apply(&mut config.install);
            config.install.network = *network;
            disk.apply(&mut config);
            trust.apply(&mut config)?;
            registry.apply(&mut config);
        }
        Command::Run {
            install,
            agent,
            disk,
            trust,
            registry,
            ..
        } => {
            install.apply(&mut config.install);
            config.install.network = agent.install_network;
            disk.apply(&mut config);
            trust.apply(&mut config)?;
            registry.apply(&mut config);
        }
        Command::Extract { disk, trust, .. } => {
            disk.apply(&mut config);
            trust.apply(&mut config)?;
        }
        Command::Lock { install, trust, .. } | Command::Bundle { install, trust, .. } => {
            install.apply(&mut config.install);
            trust.apply(&mut config)?;
        }
        Command::Verify { trusted_keys, .. } => config.trusted_keys = trust::read_keys(trusted_keys)?,
        Command::Push { registry, .. } | Command::Pull { registry, .. } => registry.apply(&mut config),
        // Making keys touches no root.
        Command::Keygen { prefix } => {
            trust::keygen(cli.json, prefix)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Inspect { .. }
        | Command::Sign { .. }
        | Command::List
        | Command::Remove { .. }
        | Command::Sbom { .. }
        | Command::Gc { .. } => {}
    }
    let loader = PackageLoader::new(config)?;
    match &cli.command {
        Command::Load { apkg, app_id, lock, .. } => {
            let package = lock.load(&loader, apkg, app_id.as_deref()).await?;
            print_result(cli.json, &package, || {
                let verified = match package.verified {
                    Some(true) => "yes",
                    Some(false) => "no (imports may not work)",
                    None => "no entrypoint",
                };
                let source = match &package.source {
                    Some(source) => format!("\n  from: {} ({})", source.reference, source.digest),
                    None => String::new(),
                };
                format!(
                    "Loaded {} at {}{source}\n  tree: {}\n  venv: {}{}\n  python: {}\n  lock: {}\n  installer: {}, installed as package: {}, entrypoint imports: {verified}",
                    package.package_id,
                    package.link.display(),
                    package.path.display(),
                    package.venv_path.display(),
                    if package.venv_reused { " (reused)" } else { "" },
                    package.python_path.display(),
                    package.lock.display(),
                    package.installer,
                    if package.installed_as_package {
                        "yes"
                    } else {
                        "no (old package)"
                    },
                )
            })?;
        }
        Command::Lock { apkg, output, .. } => {
            let resolved = loader.lock(apkg).await?;
            let Some(path) = output else {
                let build = resolved.build_lock.as_deref().map(|lock| format!("\n{lock}"));
                return print_result(cli.json, &resolved, || {
                    format!("{}{}", resolved.lock.trim_end(), build.unwrap_or_default().trim_end())
                })
                .map(|()| ExitCode::SUCCESS);
            };
            let write = |path: &Path, text: &str| {
                std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
            };
            write(path, &resolved.lock)?;
            let build_path = resolved.build_lock.as_ref().map(|lock| {
                let build_path = build_lock_path(path);
                write(&build_path, lock).map(|()| build_path)
            });
            let build_path = build_path.transpose()?;
            let written = serde_json::json!({ "lock": path, "build_lock": build_path });
            print_result(cli.json, &written, || match &build_path {
                Some(build) => format!("Wrote {} and {}", path.display(), build.display()),
                None => format!("Wrote {}", path.display()),
            })?;
        }
        Command::Bundle {
            apkg,
            output,
            key,
            password_env,
            ..
        } => {
            let key = key.as_deref().map(|key| (key, password_env.as_deref()));
            trust::bundle(cli.json, &loader, apkg, output, key).await?;
        }
        Command::Inspect { apkg } => {
            let manifest = loader.inspect(apkg).await?;
            let text = if cli.json {
                serde_json::to_string(&manifest)
            } else {
                serde_json::to_string_pretty(&manifest)
            };
            println!("{}", text.context("cannot render the manifest")?);
        }
        Command::Sign {
            apkg,
            key,
            password_env,
            ..
        } => trust::sign(cli.json, &loader, apkg, key, password_env.as_deref()).await?,
        Command::Verify { apkg, .. } => trust::verify(cli.json, &loader, apkg).await?,
        Command::Push { bundle, reference, .. } => registry::push(cli.json, &loader, bundle, reference).await?,
        Command::Pull { reference, output, .. } => registry::pull(cli.json, &loader, reference, output).await?,
        Command::Keygen { .. } => {}
        Command::List => {
            let listing = loader.list().await?;
            print_result(cli.json, &listing, || listing_text(&listing))?;
        }
        Command::Sbom { app_id, version } => {
            let bill = loader.sbom_blocking(app_id, version.as_deref())?;
            println!("{}", bill.trim_end());
        }
        Command::Remove { app_id, version, force } => {
            let removed = loader.remove(app_id, version.as_deref(), *force).await?;
            print_result(cli.json, &removed, || collection_text(&removed))?;
        }
        Command::Gc { gc } => {
            let collected = loader.gc(gc.options()).await?;
            print_result(cli.json, &collected, || collection_text(&collected))?;
        }
        Command::Extract { apkg, app_id, .. } => {
            let package = loader.extract(apkg, app_id.as_deref()).await?;
            print_result(cli.json, &package, || {
                format!(
                    "Extracted {} ({} files, {} bytes) to {}\n  tree: {}",
                    package.package_id,
                    package.files,
                    package.bytes,
                    package.link.display(),
                    package.path.display()
                )
            })?;
        }
        Command::Run {
            apkg,
            app_id,
            install,
            lock,
            agent,
            argv,
            ..
        } => {
            let package = lock.load(&loader, apkg, app_id.as_deref()).await?;
            let mut spec = SpawnSpec::new(argv.iter().cloned());
            spec.listen = agent.listen.clone();
            spec.health = agent.health.clone();
            spec.network = agent.network;
            spec.package_env = agent.package_env;
            spec.base_path = agent.base_path.clone();
            spec.socket_group = agent.socket_group;
            spec.sandbox = install.sandbox;
            spec.ready_timeout = Duration::from_secs(agent.ready_timeout);
            spec.stop_grace = Duration::from_secs(agent.stop_grace);
            if let Some(bytes) = agent.memory {
                spec.limits.memory_bytes = Some(bytes);
            }
            if let Some(bytes) = agent.tmp_size {
                spec.limits.tmp_bytes = Some(bytes);
            }
            if let Some(file) = &agent.env_file {
                spec.env = read_env_file(file)?;
            }
            spec.env.extend(agent.env.iter().cloned());
            return run_agent(cli.json, &loader, &package, spec).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the agent, reports it ready, and stays until it ends; SIGINT and
/// SIGTERM stop it gracefully. The exit code is the agent's (128 + the
/// signal when a signal ended it).
async fn run_agent(
    json: bool,
    loader: &PackageLoader,
    package: &AgentPackage,
    spec: SpawnSpec,
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let agent = loader.spawn(package, spec).await?;
    let ready = tokio::select! {
        ready = agent.wait_ready() => ready?,
        _ = interrupt.recv() => return stop_agent(json, &agent).await,
        _ = terminate.recv() => return stop_agent(json, &agent).await,
    };
    let ports: Vec<serde_json::Value> = agent
        .ports()
        .iter()
        .map(|p| match &p.addr {
            Endpoint::Tcp(addr) => serde_json::json!({ "name": p.name, "addr": addr.to_string(), "port": addr.port() }),
            Endpoint::Unix(path) => serde_json::json!({ "name": p.name, "path": path }),
        })
        .collect();
    if json {
        let event = serde_json::json!({
            "event": "ready",
            "pid": agent.pid(),
            "ports": ports,
            "ready_ms": ready.as_millis() as u64,
            "sandbox": agent.sandbox(),
            "package_id": package.package_id,
        });
        println!("{event}");
    } else {
        let listening: Vec<String> = agent.ports().iter().map(|p| format!("{}={}", p.name, p.addr)).collect();
        println!(
            "Agent {} ready in {} ms (pid {}, sandbox {}){}",
            package.package_id,
            ready.as_millis(),
            agent.pid(),
            agent.sandbox(),
            if listening.is_empty() {
                String::new()
            } else {
                format!(": {}", listening.join(" "))
            }
        );
    }
    let status = tokio::select! {
        status = agent.wait() => status?,
        _ = interrupt.recv() => return stop_agent(json, &agent).await,
        _ = terminate.recv() => return stop_agent(json, &agent).await,
    };
    Ok(exit_event(json, status))
}

/// Stops the agent gracefully and reports how it ended.
async fn stop_agent(json: bool, agent: &par::AgentProcess) -> anyhow::Result<ExitCode> {
    let status = agent.stop(None).await?;
    Ok(exit_event(json, status))
}

/// Prints how the agent ended and turns it into par's exit code.
fn exit_event(json: bool, status: Option<std::process::ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal());
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "exit", "code": code, "signal": signal })
        );
    } else {
        eprintln!(
            "Agent exited: {}",
            status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
        );
    }
    let code = code.or(signal.map(|s| 128 + s)).unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints a command's result: one JSON line with `--json`, else the human text.
/// Where the build requirements' lock goes beside `lock`: `pylock.build.toml`
/// beside `pylock.toml`, `pylock.web-build.toml` beside `pylock.web.toml`
/// (names pip and uv read as locks), `x.build.toml` beside anything else.
fn build_lock_path(lock: &Path) -> PathBuf {
    let name = lock
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let built = match name.strip_suffix(".toml") {
        Some("pylock") => "pylock.build.toml".to_owned(),
        Some(stem) if stem.starts_with("pylock.") => format!("{stem}-build.toml"),
        Some(stem) => format!("{stem}.build.toml"),
        None => format!("{name}.build.toml"),
    };
    lock.with_file_name(built)
}

/// Prints the error (stderr, and stdout as JSON with `--json`) and picks the exit code.
fn report(cli: &Cli, error: &anyhow::Error) -> ExitCode {
    // A typed error's message already carries its cause; the chain would repeat it.
    let (message, kind, subject, package_fault) = match (
        error.downcast_ref::<LoadError>(),
        error.downcast_ref::<SpawnError>(),
        error.downcast_ref::<LifecycleError>(),
    ) {
        (Some(e), _, _) => (e.to_string(), e.kind(), e.subject(), e.is_package_fault()),
        (_, Some(e), _) => (e.to_string(), e.kind(), e.subject(), e.is_package_fault()),
        (_, _, Some(e)) => (e.to_string(), e.kind(), e.subject(), false),
        _ => (format!("{error:#}"), "internal", None, false),
    };
    eprintln!("error: {message}");
    if cli.json {
        let body = serde_json::json!({
            "error": {
                "kind": kind,
                "subject": subject,
                "message": message,
            }
        });
        println!("{body}");
    }
    if package_fault {
        ExitCode::from(EXIT_PACKAGE_REFUSED)
    } else {
        ExitCode::FAILURE
    }
}
