//! Starting loaded agents (`PackageLoader::spawn`): real agents built by
//! the tests (a standard-library HTTP server on its inherited socket), real
//! venvs, real bubblewrap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use par::{AgentPackage, AgentProcess, EnvSource, HealthCheck, PackageLoader, SandboxChoice, SpawnError, SpawnSpec};
use par_tests::agent::{agent_apkg, get, get_unix, listening_socket_holders, serving};
use par_tests::binary::survivors;
use par_tests::machine::pids_cgroups;
use par_tests::workspace::offline_config;
use par_tests::{Apkg, Workspace};

fn loader(ws: &Workspace) -> PackageLoader {
    let mut config = offline_config(ws, env!("CARGO_TARGET_TMPDIR"));
    config.install.sandbox = SandboxChoice::Bwrap;
    PackageLoader::new(config).expect("loader")
}

fn load(ws: &Workspace, loader: &PackageLoader, apkg: &Apkg, name: &str) -> AgentPackage {
    let path = ws.apkg(name, apkg);
    loader.load_blocking(&path, Some(name)).expect("load")
}

fn port(agent: &AgentProcess) -> SocketAddr {
    agent.ports()[0].addr.tcp().expect("a TCP socket")
}

#[test]
fn an_agent_serving_http_becomes_ready_answers_and_stops_cleanly() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("http-agent", ""), "http-agent");
    for health in [None, Some("/health")] {
        let token = format!("par-agent-http-{}", health.is_some());
        let mut spec = serving(&token);
        spec.health = health.map(|path| HealthCheck {
            socket: "http".into(),
            path: path.into(),
        });
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        assert_eq!(agent.sandbox(), "bwrap");
        let ready = agent.wait_ready_blocking().expect("ready");
        assert!(ready < Duration::from_secs(30));
        assert_eq!(get(port(&agent), "/hello"), "ok /hello");
        let status = agent.stop_blocking(None).expect("an exit status");
        // Python's default for SIGTERM: it dies of the signal (bwrap reports 128 + 15).
        assert_eq!(status.code(), Some(143), "{status}");
        assert_eq!(survivors(&token), Vec::<i32>::new(), "processes outlived the stop");
        // Nothing holds the socket any more: not par, not the agent. A
        // connect cannot tell, as another test thread's child between fork
        // and exec holds a copy of every descriptor of this process (par's
        // listener among them) until it execs; such transient copies are
        // the only holders allowed.
        let holders = listening_socket_holders(port(&agent).port());
        assert!(
            holders.iter().all(|&(_, transient)| transient),
            "the socket outlived the agent: held by {holders:?}"
        );
    }
}

#[test]
fn the_agent_gets_the_allow_list_the_packages_and_the_callers_variables_and_nothing_else() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let apkg = agent_apkg("env-agent", "environment:\n  GREETING: hello\n  RETRIES: 3\n");
    let package = load(&ws, &loader, &apkg, "env-agent");
    let mut spec = serving("par-agent-env");
    spec.env = vec![
        ("API_TOKEN".into(), "caller-secret-5b1d".into()),
        ("GREETING".into(), "from the caller".into()),
    ];
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let env: serde_json::Value = serde_json::from_str(&get(port(&agent), "/env")).expect("json");

    assert_eq!(
        env["GREETING"], "from the caller",
        "the caller's value wins over the package's"
    );
    assert_eq!(env["RETRIES"], "3");
    assert_eq!(env["API_TOKEN"], "caller-secret-5b1d");
    assert_eq!(env["AGENT_PACKAGE_PATH"], package.path.display().to_string());
    assert_eq!(env["LISTEN_FDS"], "1");
    assert_eq!(env["LISTEN_FDNAMES"], "http");
    assert_eq!(env["PAR_PORT_HTTP"], port(&agent).port().to_string());
    assert_eq!(env["HOME"], ws.root().join("state/env-agent").display().to_string());
    // LISTEN_PID is the agent's own pid, as the agent sees it in its namespace.
    assert!(env["LISTEN_PID"].as_str().is_some_and(|pid| pid.parse::<u32>().is_ok()));
    // Nothing else of the loader's environment (cargo sets these for the test).
    for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "RUST_TEST_THREADS"] {
        assert!(env.get(name).is_none(), "{name} leaked into the agent");
    }
}

#[test]
fn no_shell_starts_the_agent_and_listen_pid_is_its_own_with_and_without_the_sandbox() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("pid-agent", ""), "pid-agent");
    for sandbox in [SandboxChoice::Bwrap, SandboxChoice::None] {
        let mut spec = serving("par-agent-pid");
        spec.sandbox = sandbox;
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        agent.wait_ready_blocking().expect("ready");
        let env: serde_json::Value = serde_json::from_str(&get(port(&agent), "/env")).expect("json");
        let pid = get(port(&agent), "/pid");
        assert_eq!(
            Some(format!("ok {}", env["LISTEN_PID"].as_str().unwrap_or("none"))),
            Some(pid),
            "{sandbox:?}: LISTEN_PID is the agent's own pid"
        );
        // A shell between par and the agent reads the package's variables
        // (SHELLOPTS, PS4, ENV …) and adds its own: PWD, which par never
        // sets (bubblewrap sets it to the directory it starts the agent in).
        if sandbox == SandboxChoice::None {
            assert!(env.get("PWD").is_none(), "a shell ran before the agent: {env}");
        }
        agent.stop_blocking(None);
    }
}

#[test]
fn the_agents_record_goes_the_moment_it_is_reaped_not_when_its_handle_does() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("brief-agent", ""), "brief-agent");
    for sandbox in [SandboxChoice::Bwrap, SandboxChoice::None] {
        let mut spec = SpawnSpec::new(["python", "-c", "pass"]);
        spec.sandbox = sandbox;
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        assert!(agent.wait_blocking().is_some_and(|status| status.success()));
        // The handle is alive; the pid it had may be anyone's now.
        let records = par_tests::workspace::names_in(&ws.root().join("agents"));
        assert_eq!(
            records,
            Vec::<String>::new(),
            "{sandbox:?}: a record outlived its agent"
        );
        assert!(loader.list_blocking().expect("list").agents.is_empty());
        drop(agent);
    }
}

#[test]
fn every_variable_the_rules_refuse_is_refused_from_the_manifest_and_none_reaches_the_agent() {
    use par_rules::env::{Pattern, RULES};
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("rules-agent", ""), "rules-agent");
    // The fourteen a review tried, of which eight got through, then one name for every rule.
    let reviewed = [
        "SHELLOPTS",
        "PS4",
        "BASHOPTS",
        "OPENSSL_CONF",
        "OPENSSL_MODULES",
        "OPENSSL_ENGINES",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "JAVA_TOOL_OPTIONS",
        "RUBYOPT",
        "PERLLIB",
        "HTTP_PROXY",
        "https_proxy",
        "NO_PROXY",
    ];
    let from_rules = RULES.iter().map(|(pattern, _)| match pattern {
        Pattern::Name(name) => (*name).to_owned(),
        Pattern::Prefix(prefix) => format!("{prefix}X"),
        Pattern::Suffix(suffix) => format!("A{suffix}"),
    });
    for key in reviewed.iter().map(|key| (*key).to_owned()).chain(from_rules) {
        let mut tampered = package.clone();
        tampered.manifest.document["environment"] = serde_json::json!({ "GREETING": "hi", &key: "$(touch /tmp/x)" });
        match loader.spawn_blocking(&tampered, serving("par-agent-rules")) {
            Err(SpawnError::EnvRefused { key: refused, from, .. }) => {
                assert_eq!((refused.as_str(), from), (key.as_str(), EnvSource::Manifest));
            }
            other => panic!("{key}: expected a refusal, got {other:?}"),
        }
    }
    assert!(
        loader.list_blocking().expect("list").agents.is_empty(),
        "no agent started"
    );
}

#[test]
fn a_package_may_not_set_variables_that_load_code() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    for key in [
        "LD_PRELOAD",
        "PYTHONPATH",
        "SHELLOPTS",
        "OPENSSL_CONF",
        "https_proxy",
        "LISTEN_FDS",
    ] {
        let name = format!("env-{}", key.to_ascii_lowercase().replace('_', "-"));
        let apkg = agent_apkg(&name, &format!("environment:\n  {key}: /tmp/evil\n"));
        let package = load(&ws, &loader, &apkg, &name);
        match loader.spawn_blocking(&package, serving("par-agent-refused")) {
            Err(SpawnError::EnvRefused { key: refused, from, .. }) => {
                assert_eq!((refused.as_str(), from), (key, EnvSource::Manifest));
            }
            other => panic!("{key}: expected a refusal, got {other:?}"),
        }
    }
    let mut spec = serving("par-agent-refused");
    spec.env = vec![("LISTEN_PID".into(), "caller-secret-77c2".into())];
    let package = load(&ws, &loader, &agent_apkg("env-caller", ""), "env-caller");
    let error = loader.spawn_blocking(&package, spec).expect_err("refused");
    assert_eq!((error.kind(), error.subject()), ("env-refused", Some("LISTEN_PID")));
    assert!(
        !format!("{error} {error:?}").contains("caller-secret-77c2"),
        "a caller's value reached the error"
    );
}

#[test]
fn an_agent_that_never_becomes_ready_gets_the_typed_error_and_leaves_nothing() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let apkg = agent_apkg("idle-agent", "").file("idle.py", "import time, sys\nwhile True:\n    time.sleep(60)\n");
    let package = load(&ws, &loader, &apkg, "idle-agent");
    let mut spec = serving("par-agent-idle");
    spec.argv = ["python", "idle.py", "par-agent-idle"].map(Into::into).into();
    spec.ready_timeout = Duration::from_secs(2);
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    match agent.wait_ready_blocking() {
        Err(SpawnError::NotReady { timeout }) => assert_eq!(timeout, Duration::from_secs(2)),
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(agent.status().is_some(), "the agent was stopped");
    assert_eq!(survivors("par-agent-idle"), Vec::<i32>::new());
}

#[test]
fn a_health_answer_dripping_in_cannot_outlast_the_ready_timeout() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("drip-agent", ""), "drip-agent");
    let mut spec = serving("par-agent-drip");
    spec.health = Some(HealthCheck {
        socket: "http".into(),
        path: "/drip".into(),
    });
    spec.ready_timeout = Duration::from_secs(3);
    let agent = std::sync::Arc::new(loader.spawn_blocking(&package, spec).expect("spawn"));
    let (sender, receiver) = std::sync::mpsc::channel();
    let waiting = std::sync::Arc::clone(&agent);
    std::thread::spawn(move || {
        let _ = sender.send(waiting.wait_ready_blocking());
    });
    // A byte every half second keeps each read alive: only one deadline over
    // the whole wait ends it. Far more than the timeout is allowed, no more.
    let outcome = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("wait_ready outlasted its timeout by a minute");
    assert!(matches!(outcome, Err(SpawnError::NotReady { .. })), "{outcome:?}");
    assert!(agent.status().is_some(), "an agent that never got ready is stopped");
}

#[test]
fn a_stop_reaches_a_child_that_ignores_sigterm_and_a_setsid_daemon() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let stubborn = "import os, signal, subprocess, runpy, sys\n\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
        subprocess.Popen(['setsid', sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)', 'par-agent-stubborn-daemon'])\n\
        sys.argv = ['server.py']\n\
        runpy.run_path('server.py', run_name='__main__')\n";
    let apkg = agent_apkg("stubborn-agent", "").file("stubborn.py", stubborn);
    let package = load(&ws, &loader, &apkg, "stubborn-agent");
    let mut spec = serving("par-agent-stubborn");
    spec.argv = ["python", "stubborn.py", "par-agent-stubborn"].map(Into::into).into();
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    assert!(
        !survivors_now("par-agent-stubborn-daemon").is_empty(),
        "the daemon runs, as this test needs"
    );
    let status = agent
        .stop_blocking(Some(Duration::from_millis(500)))
        .expect("an exit status");
    assert!(!status.success());
    assert_eq!(
        survivors("par-agent-stubborn"),
        Vec::<i32>::new(),
        "the agent or its daemon survived"
    );
}

/// Processes mentioning `needle` right now.
fn survivors_now(needle: &str) -> Vec<i32> {
    par_tests::binary::processes_mentioning(needle)
}

#[test]
fn the_sandbox_hides_the_host_and_the_network_and_keeps_writes_in_the_state_directory() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let secret = ws.path().join("host-secret.txt");
    std::fs::write(&secret, "host secret").expect("secret");
    let outside = TcpListener::bind("127.0.0.1:0").expect("a listener outside");
    let package = load(&ws, &loader, &agent_apkg("probe-agent", ""), "probe-agent");
    let agent = loader
        .spawn_blocking(&package, serving("par-agent-probe"))
        .expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let addr = port(&agent);
    let state = ws.root().join("state/probe-agent");

    assert_eq!(
        get(addr, &format!("/read?{}", secret.display())),
        "refused FileNotFoundError"
    );
    assert!(get(addr, "/read?/etc/shadow").starts_with("refused"));
    // The path exists inside the sandbox only on its private /tmp, if at all.
    get(addr, &format!("/write?{}", ws.path().join("escaped.txt").display()));
    assert!(get(addr, "/write?/escaped.txt").starts_with("refused"));
    assert!(get(addr, &format!("/write?{}", package.path.join("server.py").display())).starts_with("refused"));
    assert_eq!(get(addr, &format!("/write?{}", state.join("kept.txt").display())), "ok");
    assert_eq!(get(addr, "/write?/tmp/scratch.txt"), "ok");
    let there = outside.local_addr().expect("addr");
    assert!(get(addr, &format!("/connect?127.0.0.1:{}", there.port())).starts_with("refused"));
    agent.stop_blocking(None);

    assert_eq!(
        std::fs::read_to_string(state.join("kept.txt")).expect("kept"),
        "written"
    );
    assert!(!ws.path().join("escaped.txt").exists());
    assert!(!Path::new("/tmp/scratch.txt").exists(), "the agent's /tmp is its own");
}

#[test]
fn two_agents_of_two_apps_run_at_once_and_cannot_see_each_others_state() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let first = load(&ws, &loader, &agent_apkg("first-agent", ""), "first-agent");
    let second = load(&ws, &loader, &agent_apkg("second-agent", ""), "second-agent");
    let a = loader
        .spawn_blocking(&first, serving("par-agent-first"))
        .expect("spawn");
    let b = loader
        .spawn_blocking(&second, serving("par-agent-second"))
        .expect("spawn");
    a.wait_ready_blocking().expect("ready");
    b.wait_ready_blocking().expect("ready");
    assert_ne!(port(&a), port(&b));

    let a_state = ws.root().join("state/first-agent");
    assert_eq!(
        get(port(&a), &format!("/write?{}", a_state.join("mine").display())),
        "ok"
    );
    assert_eq!(
        get(port(&b), &format!("/read?{}", a_state.join("mine").display())),
        "refused FileNotFoundError"
    );
    assert!(get(port(&b), &format!("/write?{}", a_state.join("theirs").display())).starts_with("refused"));
    assert_eq!(get(port(&a), "/"), "ok /");
    drop(a);
    drop(b);
    assert_eq!(
        survivors("par-agent-first"),
        Vec::<i32>::new(),
        "dropping stops the agent"
    );
    assert_eq!(
        survivors("par-agent-second"),
        Vec::<i32>::new(),
        "dropping stops the agent"
    );
}

/// What each attempt of a hostile agent came to.
#[derive(Debug, PartialEq, Eq)]
struct Attempts {
    read_host_file: bool,
    read_loader_secret: bool,
    write_outside: bool,
    connect_out: bool,
    processes_started: usize,
    allocate_beyond_limit: bool,
}

/// A hostile agent's attempts, with `sandbox`: each `true` means it got through.
fn hostile_attempts(sandbox: SandboxChoice) -> Attempts {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let secret = ws.path().join("host-secret.txt");
    std::fs::write(&secret, "host secret").expect("secret");
    let outside = TcpListener::bind("127.0.0.1:0").expect("a listener outside");
    let escaped = ws.path().join("escaped.txt");
    let package = load(&ws, &loader, &agent_apkg("hostile-agent", ""), "hostile-agent");
    let mut spec = serving("par-agent-hostile");
    spec.sandbox = sandbox;
    spec.limits.processes = Some(64);
    spec.limits.address_space_bytes = Some(1024 * 1024 * 1024);
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let addr = port(&agent);
    let env: serde_json::Value = serde_json::from_str(&get(addr, "/env")).expect("json");
    let started = get(addr, "/fork?600");
    let attempts = Attempts {
        read_host_file: get(addr, &format!("/read?{}", secret.display())).starts_with("ok"),
        // cargo sets these for the test process, the agent's "runtime".
        read_loader_secret: env.get("CARGO_MANIFEST_DIR").is_some(),
        write_outside: {
            get(addr, &format!("/write?{}", escaped.display()));
            escaped.exists()
        },
        connect_out: get(addr, &format!("/connect?{}", outside.local_addr().expect("addr"))).starts_with("ok"),
        processes_started: started
            .trim_start_matches("started ")
            .parse()
            .unwrap_or_else(|_| panic!("{started}")),
        allocate_beyond_limit: get(addr, "/alloc?2048").starts_with("ok"),
    };
    agent.stop_blocking(None);
    assert_eq!(survivors("par-agent-hostile"), Vec::<i32>::new());
    attempts
}

#[test]
fn a_hostile_agent_is_held_by_the_sandbox_and_without_it_gets_through() {
    // With bubblewrap: nothing of the host, no network.
    let confined = hostile_attempts(SandboxChoice::Bwrap);
    // Without it (pinned, so the table in SECURITY.md stays true): the host's
    // files and network are the agent's; the environment allow-list, the
    // pids cgroup and the rlimits still hold.
    let unconfined = hostile_attempts(SandboxChoice::None);
    let held = |processes_started| Attempts {
        read_host_file: false,
        read_loader_secret: false,
        write_outside: false,
        connect_out: false,
        processes_started,
        allocate_beyond_limit: false,
    };
    // A pids cgroup capped at 64 stops the fork bomb, sandbox or not.
    let capped = |started: usize| match pids_cgroups() {
        true => started < 64,
        false => started == 600,
    };
    assert!(capped(confined.processes_started), "{confined:?}");
    assert_eq!(confined, held(confined.processes_started));
    assert!(capped(unconfined.processes_started), "{unconfined:?}");
    assert_eq!(
        unconfined,
        Attempts {
            read_host_file: true,
            write_outside: true,
            connect_out: true,
            ..held(unconfined.processes_started)
        }
    );
}

#[test]
fn the_packages_env_file_applies_only_when_asked_and_is_checked() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let dotenv = "# written by PAK\nGREETING=from-dotenv\nexport MODEL=\"gpt 4o\"  # default\n";
    let apkg = agent_apkg("dotenv-agent", "environment:\n  GREETING: from-manifest\n").file(".env", dotenv);
    let package = load(&ws, &loader, &apkg, "dotenv-agent");
    for package_env in [false, true] {
        let mut spec = serving("par-agent-dotenv");
        spec.package_env = package_env;
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        agent.wait_ready_blocking().expect("ready");
        let env: serde_json::Value = serde_json::from_str(&get(port(&agent), "/env")).expect("json");
        match package_env {
            // As PAR layers them: agent.yaml's `environment` over `.env`.
            true => assert_eq!(
                (&env["GREETING"], &env["MODEL"]),
                (&"from-manifest".into(), &"gpt 4o".into())
            ),
            false => assert_eq!((&env["GREETING"], env.get("MODEL")), (&"from-manifest".into(), None)),
        }
    }

    let apkg = agent_apkg("dotenv-preload", "").file(".env", "OK=1\nLD_PRELOAD=/tmp/evil.so\n");
    let package = load(&ws, &loader, &apkg, "dotenv-preload");
    let mut spec = serving("par-agent-dotenv-refused");
    spec.package_env = true;
    let error = loader.spawn_blocking(&package, spec).expect_err("refused");
    assert_eq!(
        (error.kind(), error.subject(), error.is_package_fault()),
        ("env-invalid", Some("LD_PRELOAD"), true)
    );
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn the_environment_is_layered_and_resolved_as_par_does_with_pars_variables() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let apkg = agent_apkg(
        "layered",
        "environment:\n  GREETING: from-manifest\n  TARGET: ${A2A_PORT:-50051}\n  SERVICE: http://${HOST:-localhost}:${REST_PORT}${BASE_PATH}/\n",
    )
    .file(".env", "GREETING=from-dotenv\nHOST=dotenv-host\nONLY_DOTENV=1\nPRICE=$5 ${not a name}\n")
    .file(
        "deploy.json",
        r#"{"expose": ["rest"], "ports": {"rest": 8080}, "multiplex": false,
            "environment": {"REST_PORT": "8080", "TOKEN_COPY": "${API_TOKEN}", "MISSING": "[${NOWHERE}]", "HOST": "deploy-host"}}"#,
    );
    let package = load(&ws, &loader, &apkg, "layered");
    let mut spec = serving("par-agent-layered");
    spec.listen[0].name = "rest".into();
    spec.package_env = true;
    spec.base_path = Some("/agents/layered-1".into());
    spec.env = vec![("API_TOKEN".into(), "caller-secret-${HOST}".into())];
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let env: serde_json::Value = serde_json::from_str(&get(port(&agent), "/env")).expect("json");
    let rest = port(&agent).port().to_string();

    assert_eq!(env["GREETING"], "from-manifest", ".env < agent.yaml");
    assert_eq!(env["HOST"], "deploy-host", "agent.yaml < deploy.json");
    assert_eq!(env["ONLY_DOTENV"], "1");
    assert_eq!(env["PRICE"], "$5 ${not a name}", "what is no placeholder stays");
    assert_eq!(env["REST_PORT"], rest, "the bound port, over the package's 8080");
    assert_eq!(env["PAR_PORT_REST"], rest);
    assert!(env.get("A2A_PORT").is_none(), "no a2a socket, no A2A_PORT");
    assert_eq!(env["TARGET"], "50051", "a default for a name no layer sets");
    assert_eq!(env["SERVICE"], format!("http://deploy-host:{rest}/agents/layered-1/"));
    assert_eq!(
        env["TOKEN_COPY"], "caller-secret-${HOST}",
        "the caller's value, never expanded"
    );
    assert_eq!(env["MISSING"], "[]", "a name no layer sets is empty");
    assert_eq!(env["BASE_PATH"], "/agents/layered-1");
    assert_eq!(env["AGENT_APP_ID"], "layered");
    assert_eq!(env["AGENT_PACKAGE_PATH"], package.path.display().to_string());
    assert_eq!(env["MULTIPLEXED"], "false", "deploy.json's multiplex");
    // The loader's own environment never fills a placeholder.
    assert!(std::env::var_os("HOME").is_some());
    drop(agent);

    let cyclic = agent_apkg("cyclic", "environment:\n  A: ${B}\n  B: x${A}\n");
    let package = load(&ws, &loader, &cyclic, "cyclic");
    let error = loader
        .spawn_blocking(&package, serving("par-agent-cyclic"))
        .expect_err("a cycle");
    assert_eq!(
        (error.kind(), error.subject(), error.is_package_fault()),
        ("env-invalid", Some("A"), true)
    );
    assert!(error.to_string().contains("A -> B -> A"), "{error}");

    let mut spec = serving("par-agent-base");
    spec.base_path = Some("agents/x y".into());
    let error = loader.spawn_blocking(&package, spec).expect_err("a bad base path");
    assert_eq!(error.kind(), "invalid-input");
}

#[test]
fn a_package_as_pak_builds_it_is_served_with_no_command_from_its_http_server() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    // deploy.json exposes `rest` and gives it no port: any free one.
    let with_uvicorn = Apkg::pak_agent()
        .replace(
            "pyproject.toml",
            "[project]\nname = \"pak-agent\"\nversion = \"0.1.0\"\ndescription = \"An agent packaged by PAK\"\nrequires-python = \">=3.9\"\ndependencies = [\"uvicorn==0.32.1\"]\n",
        )
        .replace(
            "deploy.json",
            "{\"expose\": [\"rest\"], \"multiplex\": true, \"environment\": {\"GREETING\": \"${GREETING:-hello}\"}}",
        );
    let package = load(&ws, &loader, &with_uvicorn, "pak-served");
    let mut spec = SpawnSpec::new(Vec::<std::ffi::OsString>::new());
    spec.sandbox = SandboxChoice::Bwrap;
    spec.ready_timeout = Duration::from_secs(30);
    let agent = loader
        .spawn_blocking(&package, spec)
        .expect("spawn with no command and no socket");
    agent.wait_ready_blocking().expect("ready");
    let names: Vec<&str> = agent.ports().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["rest"], "deploy.json's `expose`");
    // deploy.json's `GREETING: ${GREETING:-hello}` reads agent.yaml's, below it.
    assert_eq!(get(port(&agent), "/"), "hello from agent.yaml");
    agent.stop_blocking(None).expect("stopped");

    let without = load(&ws, &loader, &Apkg::pak_agent().without("deploy.json"), "pak-bare");
    let no_socket = SpawnSpec::new(Vec::<std::ffi::OsString>::new());
    let error = loader.spawn_blocking(&without, no_socket).expect_err("no socket");
    assert_eq!(error.kind(), "no-command");
    assert!(error.to_string().contains("--listen"), "{error}");
    let mut spec = SpawnSpec::new(Vec::<std::ffi::OsString>::new());
    spec.listen = serving("unused").listen;
    let error = loader.spawn_blocking(&without, spec).expect_err("no uvicorn");
    assert!(error.to_string().contains("uvicorn"), "{error}");

    let plain = load(&ws, &loader, &agent_apkg("no-server", ""), "no-server");
    let mut spec = SpawnSpec::new(Vec::<std::ffi::OsString>::new());
    spec.listen = serving("unused").listen;
    let error = loader.spawn_blocking(&plain, spec).expect_err("no http_server");
    assert_eq!(error.kind(), "no-command");
    assert!(error.to_string().contains("http_server"), "{error}");
}

#[test]
fn an_agent_serves_on_unix_sockets_par_makes_replaces_when_stale_and_removes() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("unix-agent", ""), "unix-agent");
    let dir = ws.path().join("run");
    std::fs::create_dir_all(&dir).expect("the sockets' directory");
    let socket = dir.join("rest.sock");
    // A socket left by an agent that died: stale, so replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("a stale socket"));
    let root = rustix::process::geteuid().is_root();
    let group = if root {
        65534
    } else {
        rustix::process::getegid().as_raw()
    };
    for health in [None, Some("/health")] {
        let mut spec = serving("par-agent-unix");
        spec.listen = vec![par::Listen {
            name: "rest".into(),
            addr: format!("unix:{}", socket.display()).parse().expect("a unix endpoint"),
        }];
        spec.health = health.map(|path| HealthCheck {
            socket: "rest".into(),
            path: path.into(),
        });
        spec.socket_group = Some(group);
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        agent.wait_ready_blocking().expect("ready over the unix socket");
        let meta = std::fs::symlink_metadata(&socket).expect("the socket");
        assert!(meta.file_type().is_socket());
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o660, group));
        let env: serde_json::Value = serde_json::from_str(&get_unix(&socket, "/env")).expect("json");
        assert_eq!(
            (&env["LISTEN_FDS"], &env["LISTEN_FDNAMES"]),
            (&"1".into(), &"rest".into())
        );
        assert!(
            env.get("REST_PORT").is_none() && env.get("PAR_PORT_REST").is_none(),
            "a unix socket has no port"
        );
        agent.stop_blocking(None).expect("stopped");
        assert!(
            !socket.exists(),
            "par removes the socket it made once the agent is gone"
        );
    }

    std::fs::write(&socket, "not a socket").expect("a file");
    let mut spec = serving("par-agent-unix-file");
    spec.listen[0].addr = format!("unix:{}", socket.display()).parse().expect("a unix endpoint");
    let error = loader.spawn_blocking(&package, spec).expect_err("a file in the way");
    assert_eq!((error.kind(), error.subject()), ("bind", Some("http")));
    assert_eq!(
        std::fs::read_to_string(&socket).expect("left as it was"),
        "not a socket"
    );

    let mut spec = serving("par-agent-unix-long");
    spec.listen[0].addr = format!("unix:/{}", "x".repeat(par::MAX_UNIX_PATH_BYTES))
        .parse()
        .expect("endpoint");
    let error = loader.spawn_blocking(&package, spec).expect_err("too long");
    assert!(error.to_string().contains("at most 107"), "{error}");
}

#[test]
fn an_agent_starts_only_from_a_package_this_loader_published() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let mut package = load(&ws, &loader, &agent_apkg("moved-agent", ""), "moved-agent");
    package.path = std::path::PathBuf::from("/etc");
    let error = loader
        .spawn_blocking(&package, serving("par-agent-moved"))
        .expect_err("refused");
    assert_eq!(error.kind(), "invalid-input", "{error}");
}

#[test]
fn the_callers_values_stay_out_of_debug_output() {
    let mut spec = SpawnSpec::new(["python", "server.py"]);
    spec.env = vec![("API_TOKEN".into(), "debug-secret-91c3".into())];
    let shown = format!("{spec:?}");
    assert!(
        shown.contains("API_TOKEN") && !shown.contains("debug-secret-91c3"),
        "{shown}"
    );
}

#[test]
fn an_agent_allocating_past_its_memory_cap_is_killed() {
    if !par_tests::machine::memory_cgroups() {
        eprintln!("note: no memory cgroup expected here (not root); PAR_TEST_MEMORY_CGROUP=1 says otherwise");
        return;
    }
    let ws = Workspace::new();
    let loader = loader(&ws);
    let package = load(&ws, &loader, &agent_apkg("greedy-agent", ""), "greedy-agent");
    let mut spec = serving("par-agent-greedy");
    spec.limits.memory_bytes = Some(128 * 1024 * 1024);
    spec.limits.address_space_bytes = None;
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let mut stream = TcpStream::connect(port(&agent)).expect("connect");
    stream.write_all(b"GET /alloc?1024 HTTP/1.0\r\n\r\n").expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(!answer.contains("ok "), "1 GiB fit under a 128 MiB cap: {answer}");
    let status = agent.wait_blocking().expect("the agent ended");
    assert!(!status.success(), "{status}");
    assert_eq!(survivors("par-agent-greedy"), Vec::<i32>::new());
}

#[test]
fn every_call_the_seccomp_filter_refuses_is_refused_inside_an_agent() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let probe = par_tests::agent::seccomp_probe("os.path.join(os.environ['HOME'], 'seccomp.json')");
    let package = load(
        &ws,
        &loader,
        &agent_apkg("seccomp-agent", "").file("probe.py", probe),
        "seccomp-agent",
    );
    let mut spec = SpawnSpec::new(["python", "probe.py"]);
    spec.sandbox = SandboxChoice::Bwrap;
    let agent = loader.spawn_blocking(&package, spec).expect("spawn");
    assert!(agent.wait_blocking().is_some_and(|status| status.success()));
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.root().join("state/seccomp-agent/seccomp.json")).expect("the probe's report"),
    )
    .expect("JSON");
    for refusal in par::seccomp::REFUSED {
        assert_eq!(
            report[refusal.name],
            refusal.answer.errno(),
            "{}: {report}",
            refusal.name
        );
    }
    assert_eq!(report["seccomp_mode"], "2", "a filter is loaded");
    assert_eq!(
        (&report["threads"], &report["fork"]),
        (&serde_json::json!(true), &serde_json::json!(true))
    );
}

#[test]
fn an_agent_gets_its_sockets_and_nothing_else_of_the_loader() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let lister = "import json, os\nfds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))\nopen(os.path.join(os.environ['HOME'], 'fds.json'), 'w').write(json.dumps(fds))\n";
    let package = load(
        &ws,
        &loader,
        &agent_apkg("fd-agent", "").file("fds.py", lister),
        "fd-agent",
    );
    for sandbox in [SandboxChoice::Bwrap, SandboxChoice::None] {
        let mut spec = serving("par-agent-fds");
        spec.argv = vec!["python".into(), "fds.py".into()];
        spec.sandbox = sandbox;
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        assert!(agent.wait_blocking().is_some_and(|status| status.success()));
        let fds: Vec<i32> =
            serde_json::from_slice(&std::fs::read(ws.root().join("state/fd-agent/fds.json")).expect("fds"))
                .expect("JSON");
        // stdin, stdout, stderr, the one socket, and the descriptor listing /proc/self/fd.
        assert_eq!(
            fds,
            [0, 1, 2, 3, 4],
            "{sandbox:?}: bubblewrap's seccomp or info descriptor, or another, leaked"
        );
    }
}

#[test]
fn an_agent_is_capped_in_temporary_space_and_without_a_cgroup_in_memory_per_process() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let probe = par_tests::agent::limits_probe("os.path.join(os.environ['HOME'], 'limits.json')", 1, 512);
    let package = load(
        &ws,
        &loader,
        &agent_apkg("limits-agent", "").file("probe.py", probe),
        "limits-agent",
    );
    let report = |spec: SpawnSpec| -> serde_json::Value {
        let agent = loader.spawn_blocking(&package, spec).expect("spawn");
        assert!(agent.wait_blocking().is_some_and(|status| status.success()));
        let path = ws.root().join("state/limits-agent/limits.json");
        let report = serde_json::from_slice(&std::fs::read(&path).expect("the probe's report")).expect("JSON");
        std::fs::remove_file(path).expect("remove the report");
        report
    };
    let mut spec = SpawnSpec::new(["python", "probe.py"]);
    spec.sandbox = SandboxChoice::Bwrap;
    spec.limits.tmp_bytes = Some(32 * 1024 * 1024);
    spec.limits.memory_bytes = Some(256 * 1024 * 1024);
    let capped = report(spec.clone());
    assert!(capped["tmp_mib"].as_u64().is_some_and(|mib| mib <= 32), "{capped}");
    assert!(capped["shm_mib"].as_u64().is_some_and(|mib| mib <= 32), "{capped}");
    assert_eq!(capped["dev"], 30, "/dev is read-only (EROFS): {capped}");
    // No cgroup at all, as where the loader may make none: the cap holds
    // for each process (RLIMIT_AS), so 512 MiB under 256 MiB cannot be had.
    let without_cgroups = report(spec.without_cgroups());
    assert_eq!(without_cgroups["hogs"], serde_json::json!([1]), "{without_cgroups}");
    if par_tests::machine::memory_cgroups() {
        assert!(capped["hogs"][0].as_i64().is_some_and(|code| code != 0), "{capped}");
    }
}
