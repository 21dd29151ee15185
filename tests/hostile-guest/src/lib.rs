//! A hostile guest: it exports the same `loader` world as par's own guest,
//! but misbehaves the way a guest taken over by a malicious archive could.
//! Which misbehaviour is chosen by the archive itself: `/archive/package.apkg`
//! holds a scenario name (see [`Scenario`]), so one component serves every
//! test. Only compiled for wasm32.

#![cfg(target_arch = "wasm32")]

#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "loader",
    });
}

use bindings::Guest;
use bindings::pixell::apkg::host_installer as host;
use bindings::pixell::apkg::types::*;

/// Ten MiB: far past any string a well-behaved guest sends.
const HUGE: usize = 10 * 1024 * 1024;

/// What the guest does, read from the archive.
enum Scenario {
    /// `ensure-venv` before `publish`, then claims a perfect load.
    OutOfOrder,
    /// `publish` twice.
    PublishTwice,
    /// `verify-import` of an entrypoint the manifest never named.
    WrongEntrypoint,
    /// `publish` with 100,000 executables.
    HugeList,
    /// `ensure-venv` with 100,000 requirement lines.
    HugePlan,
    /// `ensure-venv` with one requirement line of 10 MiB.
    HugeString,
    /// `install-self` fails (a broken `setup.py`), then success is reported.
    SuccessAfterFailure,
    /// Success reported without the `install-self` the plan calls for.
    SkipsPlannedStep,
    /// `install-self` although the plan has nothing to install.
    UnplannedStep,
    /// A plan that says `setup.py` when the tree has none.
    PlanContradictsTree,
    /// Every step as the protocol says, but the report claims what did not happen.
    LiesInReport,
    /// A failure reported after every step succeeded.
    FalseFailure,
    /// `publish` with an executable path that leaves the package.
    PublishRefused,
    /// `publish` from inside `extract`.
    InstallerDuringExtract,
    /// Spins forever.
    BusyLoop,
    /// Panics with a message holding terminal escapes.
    Panics,
    /// Looks for what the world promises it does not have (environment
    /// variables, a network, directories beyond its two preopens) and
    /// reports what it found in its error.
    ReachesOut,
    /// Logs 1,500 lines of 64 KiB with 100 fields each, full of control
    /// characters that would forge lines or clear a terminal.
    LogFlood,
}

impl Scenario {
    fn read() -> Scenario {
        let name = std::fs::read_to_string("/archive/package.apkg").unwrap_or_default();
        match name.trim() {
            "out-of-order" => Scenario::OutOfOrder,
            "publish-twice" => Scenario::PublishTwice,
            "wrong-entrypoint" => Scenario::WrongEntrypoint,
            "huge-list" => Scenario::HugeList,
            "huge-plan" => Scenario::HugePlan,
            "huge-string" => Scenario::HugeString,
            "success-after-failure" => Scenario::SuccessAfterFailure,
            "skips-planned-step" => Scenario::SkipsPlannedStep,
            "unplanned-step" => Scenario::UnplannedStep,
            "plan-contradicts-tree" => Scenario::PlanContradictsTree,
            "lies-in-report" => Scenario::LiesInReport,
            "false-failure" => Scenario::FalseFailure,
            "publish-refused" => Scenario::PublishRefused,
            "installer-during-extract" => Scenario::InstallerDuringExtract,
            "busy-loop" => Scenario::BusyLoop,
            "panics" => Scenario::Panics,
            "log-flood" => Scenario::LogFlood,
            "reaches-out" => Scenario::ReachesOut,
            other => panic!("unknown scenario {other:?}"),
        }
    }
}

fn manifest() -> Manifest {
    Manifest {
        name: "hostile".into(),
        version: "1.0".into(),
        entrypoint: Some(Entrypoint {
            module: "main".into(),
            attr: Some("handler".into()),
        }),
        document: r#"{"name":"hostile","version":"1.0","entrypoint":"main:handler"}"#.into(),
    }
}

fn plan(self_install: SelfInstall, requirements: Vec<Requirement>) -> InstallPlan {
    InstallPlan {
        requirements,
        constraints: Vec::new(),
        self_install,
        build_system: BuildSystem::Legacy,
    }
}

fn line(text: String) -> Requirement {
    Requirement {
        file: "requirements.txt".into(),
        line: 1,
        text,
    }
}

fn write(path: &str, text: &str) {
    std::fs::write(format!("/package/{path}"), text).expect("write into /package");
}

fn report() -> ExtractReport {
    ExtractReport {
        manifest: manifest(),
        files: 1,
        dirs: 0,
        bytes: 1,
        executables: Vec::new(),
    }
}

/// The claims of a perfect load, none of them true.
fn claims() -> LoadReport {
    LoadReport {
        extract: report(),
        venv: VenvInfo {
            name: "claimed".into(),
            reused: true,
        },
        installed_as_package: true,
        verified: Some(true),
        requirements_count: 99,
    }
}

fn publish() -> Result<String, LoadError> {
    host::publish(&manifest(), &[]).map_err(LoadError::Install)
}

fn ensure(plan: &InstallPlan) -> Result<VenvInfo, LoadError> {
    host::ensure_venv(plan).map_err(LoadError::Install)
}

struct Hostile;

impl Guest for Hostile {
    fn inspect(_options: ExtractOptions) -> Result<Manifest, LoadError> {
        Ok(manifest())
    }

    /// Hands back what a package may not set, whatever the package's `.env`
    /// says; when that `.env` mentions `publish`, calls the installer first.
    fn read_env_file() -> Result<Vec<EnvVar>, EnvFileError> {
        let text = std::fs::read_to_string("/package/.env").unwrap_or_default();
        if text.contains("publish") {
            let _ = publish();
        }
        Ok(vec![
            EnvVar {
                key: "GREETING".into(),
                value: "hello".into(),
            },
            EnvVar {
                key: "LD_PRELOAD".into(),
                value: "/tmp/evil.so".into(),
            },
        ])
    }

    fn extract(_options: ExtractOptions) -> Result<ExtractReport, LoadError> {
        write("main.py", "handler = 1\n");
        if let Scenario::InstallerDuringExtract = Scenario::read() {
            let _ = host::publish(&manifest(), &[]);
        }
        Ok(report())
    }

    fn load(_options: LoadOptions) -> Result<LoadReport, LoadError> {
        let none = plan(SelfInstall::None, Vec::new());
        match Scenario::read() {
            Scenario::OutOfOrder => {
                let _ = host::ensure_venv(&none);
                let _ = publish();
            }
            Scenario::PublishTwice => {
                publish()?;
                let _ = publish();
            }
            Scenario::WrongEntrypoint => {
                write("main.py", "handler = 1\n");
                publish()?;
                ensure(&none)?;
                let _ = host::verify_import(&Entrypoint {
                    module: "os".into(),
                    attr: Some("system".into()),
                });
            }
            Scenario::HugeList => {
                let executables: Vec<String> = (0..100_000).map(|i| format!("bin/tool-{i}")).collect();
                let _ = host::publish(&manifest(), &executables);
            }
            Scenario::HugePlan => {
                publish()?;
                let lines = (0..100_000).map(|i| line(format!("package-{i}"))).collect();
                let _ = host::ensure_venv(&plan(SelfInstall::None, lines));
            }
            Scenario::HugeString => {
                publish()?;
                let _ = host::ensure_venv(&plan(SelfInstall::None, vec![line("a".repeat(HUGE))]));
            }
            Scenario::SuccessAfterFailure => {
                write("setup.py", "raise SystemExit('broken on purpose')\n");
                publish()?;
                ensure(&plan(SelfInstall::SetupPy, Vec::new()))?;
                let _ = host::install_self();
            }
            Scenario::SkipsPlannedStep => {
                write("setup.py", "raise SystemExit('never run')\n");
                publish()?;
                ensure(&plan(SelfInstall::SetupPy, Vec::new()))?;
            }
            Scenario::UnplannedStep => {
                publish()?;
                ensure(&none)?;
                let _ = host::install_self();
            }
            Scenario::PlanContradictsTree => {
                publish()?;
                let _ = host::ensure_venv(&plan(SelfInstall::SetupPy, Vec::new()));
            }
            Scenario::LiesInReport => {
                // No main.py: the import check fails, whatever is claimed.
                publish()?;
                ensure(&none)?;
                let _ = host::verify_import(&manifest().entrypoint.expect("named"));
            }
            Scenario::FalseFailure => {
                write("main.py", "handler = 1\n");
                publish()?;
                ensure(&none)?;
                host::verify_import(&manifest().entrypoint.expect("named")).map_err(LoadError::Install)?;
                return Err(LoadError::InstallFailed(vec![InstallError::Host("made up".into())]));
            }
            Scenario::PublishRefused => {
                let _ = host::publish(&manifest(), &["../../escape".into()]);
            }
            Scenario::InstallerDuringExtract => {}
            Scenario::Panics => panic!("hostile guest gave up \x1b[2J on purpose"),
            Scenario::LogFlood => {
                use bindings::pixell::apkg::host_log::{self, Field, Level};
                let text = "\x1b[2J\nforged line\r".repeat(64 * 1024 / 18);
                let fields: Vec<Field> = (0..100)
                    .map(|i| Field {
                        key: format!("key{i}\n"),
                        value: text[..2048].to_owned(),
                    })
                    .collect();
                for _ in 0..1_500 {
                    host_log::log(Level::Error, &text, &fields);
                }
                return Err(LoadError::ManifestMissing);
            }
            Scenario::ReachesOut => {
                let env = std::env::vars_os().count();
                let tcp = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
                let dns = std::net::ToSocketAddrs::to_socket_addrs("localhost:80").is_ok();
                let mut seen: Vec<String> = ["/", "/archive", "/package", "/etc", "/tmp", "/proc"]
                    .into_iter()
                    .filter(|path| std::fs::read_dir(path).is_ok())
                    .map(str::to_owned)
                    .collect();
                seen.sort();
                let stdin = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]).unwrap_or(0);
                return Err(LoadError::ManifestInvalid(ManifestInvalid {
                    field: None,
                    message: format!("env={env} tcp={tcp} dns={dns} stdin={stdin} dirs={}", seen.join(",")),
                }));
            }
            Scenario::BusyLoop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
        }
        Ok(claims())
    }
}

bindings::export!(Hostile with_types_in bindings);
