//! Lifecycle: `par list`, `par remove` and `par gc` on real roots filled by
//! real loads (uv, offline), racing real loads and a real running agent,
//! killed halfway, and facing symlinks planted in the root. Sizes are held
//! against the tests' own `du`, never against what par reports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use par::{AgentPackage, GcOptions, LifecycleError, PackageLoader, SandboxChoice};
use par_tests::agent::{agent_apkg, get, serving};
use par_tests::binary::{Par, assert_succeeded, json};
use par_tests::workspace::{AREAS, du, names_in, offline_config, settle};
use par_tests::{Apkg, Workspace};

fn binary() -> Par {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR"))
}

fn loader(ws: &Workspace) -> PackageLoader {
    let mut config = offline_config(ws, env!("CARGO_TARGET_TMPDIR"));
    config.install.sandbox = SandboxChoice::Bwrap;
    PackageLoader::new(config).expect("loader")
}

/// A small agent (no build file, no requirements: a venv and an import
/// check) named `app`, at version `1.0.{version}`.
fn versioned(app: &str, version: u32) -> Apkg {
    Apkg::old_agent().replace(
        "agent.yaml",
        format!("name: {app}\nversion: 1.0.{version}\nentrypoint: app.main:agent\n"),
    )
}

fn load(ws: &Workspace, loader: &PackageLoader, apkg: &Apkg, file: &str) -> AgentPackage {
    let path = ws.apkg(file, apkg);
    loader.load_blocking(&path, None).expect("load")
}

/// Everything in the root's areas, as `du` counts it.
fn root_du(ws: &Workspace) -> u64 {
    let paths: Vec<PathBuf> = AREAS.iter().map(|area| ws.root().join(area)).collect();
    du(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())
}

/// The records of `package`'s load (`{digest}.{app or _}.json`).
fn records_of(ws: &Workspace, package: &AgentPackage) -> Vec<PathBuf> {
    let digest = package
        .path
        .extension()
        .expect("tree digest")
        .to_string_lossy()
        .into_owned();
    let dir = ws.root().join("deployments");
    names_in(&dir)
        .into_iter()
        .filter(|name| name.starts_with(&digest))
        .map(|name| dir.join(name))
        .collect()
}

/// Everything on disk that belongs to `package`.
fn parts_of(ws: &Workspace, package: &AgentPackage) -> Vec<PathBuf> {
    let mut parts = vec![package.path.clone(), package.venv_path.clone(), package.link.clone()];
    parts.extend(records_of(ws, package));
    parts
}

fn tree_names(ws: &Workspace) -> BTreeSet<String> {
    names_in(&ws.root().join("trees")).into_iter().collect()
}

fn name(path: &Path) -> String {
    path.file_name().expect("a name").to_string_lossy().into_owned()
}

fn trees(packages: &[&AgentPackage]) -> BTreeSet<String> {
    packages.iter().map(|p| name(&p.path)).collect()
}

fn removed_trees(collection: &par::Collection) -> BTreeSet<String> {
    collection
        .removed
        .iter()
        .filter(|r| r.kind == par::RemovedKind::Tree)
        .map(|r| name(&r.path))
        .collect()
}

/// What each area holds, by name.
fn snapshot(ws: &Workspace) -> Vec<Vec<String>> {
    AREAS
        .iter()
        .filter(|area| **area != "locks")
        .map(|area| names_in(&ws.root().join(area)))
        .collect()
}

#[test]
fn fifty_deployments_across_ten_apps_list_as_on_disk_and_gc_keeps_exactly_what_it_is_told() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let apps: Vec<String> = (0..10).map(|n| format!("app{n}")).collect();
    // Version by version, so the oldest deployments are every app's first.
    let mut loaded: Vec<AgentPackage> = Vec::new();
    for version in 1..=5 {
        for app in &apps {
            loaded.push(load(
                &ws,
                &loader,
                &versioned(app, version),
                &format!("{app}-{version}"),
            ));
        }
    }
    let of = |app: usize, version: u32| &loaded[(version as usize - 1) * 10 + app];

    // `par list --json`, against the disk.
    let output = binary().run(&ws, &["list", "--json"]);
    assert_succeeded(&output);
    let listing = json(&output);
    assert_eq!(
        listing["root_bytes"].as_u64(),
        Some(root_du(&ws)),
        "the root as du counts it"
    );
    let listed = listing["apps"].as_array().expect("apps");
    assert_eq!(listed.len(), 10);
    for (n, app) in listed.iter().enumerate() {
        assert_eq!(app["app_id"], apps[n].as_str());
        let deployments = app["deployments"].as_array().expect("deployments");
        assert_eq!(deployments.len(), 5, "{app}");
        for (rank, deployment) in deployments.iter().enumerate() {
            let version = 5 - rank as u32;
            let package = of(n, version);
            let path = Path::new(deployment["path"].as_str().expect("path"));
            assert_eq!(path, package.path, "most recently loaded first");
            assert_eq!(deployment["version"], format!("1.0.{version}").as_str());
            assert_eq!(deployment["current"], rank == 0);
            assert_eq!(deployment["lock"].as_str().map(Path::new), Some(package.lock.as_path()));
            assert_eq!(deployment["tree_bytes"].as_u64(), Some(du(&[path])));
            let venv = Path::new(deployment["venv"].as_str().expect("venv"));
            assert_eq!(venv, package.venv_path);
            assert_eq!(deployment["venv_bytes"].as_u64(), Some(du(&[venv])));
            let link = Path::new(deployment["link"].as_str().expect("link"));
            assert_eq!(std::fs::read_link(link).expect("a link"), package.path);
            assert_eq!(deployment["agents"], serde_json::json!([]));
        }
        let times: Vec<u64> = deployments
            .iter()
            .map(|d| d["last_loaded"].as_u64().expect("time"))
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    }

    // A dry run reports and changes nothing.
    let before = snapshot(&ws);
    let dry = loader
        .gc_blocking(&GcOptions {
            keep: 3,
            dry_run: true,
            ..GcOptions::default()
        })
        .expect("dry run");
    let beyond_three: Vec<&AgentPackage> = (0..10).flat_map(|app| [of(app, 1), of(app, 2)]).collect();
    assert_eq!(removed_trees(&dry), trees(&beyond_three));
    assert_eq!(snapshot(&ws), before, "a dry run changed the root");

    // A budget, keeping every deployment by count: exactly the three least
    // recently used go, and the root fits.
    let oldest = [of(0, 1), of(1, 1), of(2, 1)];
    let parts: Vec<PathBuf> = oldest.iter().flat_map(|p| parts_of(&ws, p)).collect();
    let root_du_before = root_du(&ws);
    let budget = root_du_before - du(&parts.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let collected = loader
        .gc_blocking(&GcOptions {
            keep: 5,
            max_bytes: Some(budget),
            ..GcOptions::default()
        })
        .expect("gc to a budget");
    assert_eq!(removed_trees(&collected), trees(&oldest));
    for part in &parts {
        assert!(std::fs::symlink_metadata(part).is_err(), "{} is left", part.display());
    }
    let after = root_du(&ws);
    assert!(after <= budget, "{after} over the budget {budget}");
    assert_eq!(collected.root_bytes_after, after);
    // Nothing of these venvs is linked from elsewhere: all that goes is freed.
    assert_eq!(collected.bytes_freed, collected.bytes_removed);
    assert_eq!(collected.bytes_removed, root_du_before - after);

    // An unchanged redeploy counts as a use: app9's second version becomes
    // its current one again.
    let again = loader
        .load_blocking(&ws.path().join("in/app9-2.apkg"), None)
        .expect("redeploy");
    assert!(again.unchanged_redeploy);

    // Keep 1: each app's current deployment, and nothing else of it.
    let collected = loader
        .gc_blocking(&GcOptions {
            keep: 1,
            ..GcOptions::default()
        })
        .expect("gc --keep 1");
    let current: Vec<&AgentPackage> = (0..9).map(|app| of(app, 5)).chain([of(9, 2)]).collect();
    assert_eq!(tree_names(&ws), trees(&current));
    let venvs: BTreeSet<String> = current.iter().map(|p| name(&p.venv_path)).collect();
    assert_eq!(
        names_in(&ws.root().join("venvs")).into_iter().collect::<BTreeSet<_>>(),
        venvs
    );
    let links: BTreeSet<String> = current.iter().map(|p| name(&p.link)).collect();
    assert_eq!(
        names_in(&ws.root().join("packages"))
            .into_iter()
            .collect::<BTreeSet<_>>(),
        links
    );
    let records: Vec<PathBuf> = current.iter().flat_map(|p| records_of(&ws, p)).collect();
    assert_eq!(names_in(&ws.root().join("deployments")).len(), records.len());
    assert_eq!(names_in(&ws.root().join("trash")), Vec::<String>::new());
    assert_eq!(collected.root_bytes_after, root_du(&ws));
    for package in current {
        assert!(package.python_path.exists(), "{} lost its venv", package.package_id);
    }
}

/// `gc` forgets the identity of an archive once nothing under the root is
/// named after its digest any more, and keeps the others.
#[test]
fn gc_forgets_the_identity_of_an_archive_whose_deployment_it_removed() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let (old, new) = (
        ws.apkg("old", &versioned("app", 1)),
        ws.apkg("new", &versioned("app", 2)),
    );
    settle(&old);
    settle(&new);
    loader.load_blocking(&old, None).expect("old");
    let kept = loader.load_blocking(&new, None).expect("new");
    let archives = ws.root().join("archives");
    assert_eq!(names_in(&archives).len(), 2, "both identities recorded");
    wait_until_released(&ws.root().join("locks/app.lock"));
    let collected = loader
        .gc_blocking(&GcOptions {
            keep: 1,
            ..GcOptions::default()
        })
        .expect("gc --keep 1");
    assert_eq!(
        removed_trees(&collected).len(),
        1,
        "the older deployment goes: {collected:?}"
    );
    let left = names_in(&archives);
    assert_eq!(left.len(), 1, "{left:?}");
    let digest = kept.path.extension().expect("digest").to_string_lossy().into_owned();
    let record = std::fs::read_to_string(archives.join(&left[0])).expect("record");
    assert!(record.contains(&digest), "the kept deployment's identity: {record}");
}

#[test]
fn a_symlink_planted_in_the_root_is_removed_as_a_link_and_never_followed() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    let old = load(&ws, &loader, &versioned("a", 1), "a-1");
    load(&ws, &loader, &versioned("a", 2), "a-2");
    load(&ws, &loader, &versioned("b", 1), "b-1");
    let outside = ws.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).expect("outside");
    std::fs::write(outside.join("precious"), "keep me").expect("precious");
    std::fs::write(outside.join("dir/also"), "keep me too").expect("also");
    let root = ws.root();
    let planted = [
        root.join("trees/a@9.9.0123456789abcdef"),
        root.join("trees/not-a-tree"),
        root.join("venvs/a_feedfacefeedface"),
        root.join("packages/a@9.9"),
        root.join(format!("deployments/{}.a.json", "0".repeat(64))),
        old.path.join("core/escape"),
        old.venv_path.join("escape"),
    ];
    for link in &planted {
        std::os::unix::fs::symlink(&outside, link).expect("plant");
    }
    let collected = loader
        .gc_blocking(&GcOptions {
            keep: 1,
            ..GcOptions::default()
        })
        .expect("gc");
    assert!(removed_trees(&collected).contains(&name(&old.path)));
    loader.remove_blocking("b", None, false).expect("remove b");
    for link in &planted {
        assert!(std::fs::symlink_metadata(link).is_err(), "{} is left", link.display());
    }
    assert_eq!(names_in(&outside), ["dir", "precious"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).expect("read"),
        "keep me"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("dir/also")).expect("read"),
        "keep me too"
    );
    assert_eq!(tree_names(&ws).len(), 1, "a's current tree alone");
}

#[test]
fn gc_racing_twenty_loads_and_a_running_agent_takes_nothing_in_use() {
    let ws = Workspace::new();
    let loader = loader(&ws);
    // The agent runs from a deployment that is no longer its app's current one.
    let served = load(&ws, &loader, &agent_apkg("served", ""), "served-1");
    let agent = loader.spawn_blocking(&served, serving("par-gc-race")).expect("spawn");
    agent.wait_ready_blocking().expect("ready");
    let addr = agent.ports()[0].addr.tcp().expect("a TCP socket");
    load(&ws, &loader, &agent_apkg("served", "").file("v2.txt", "2"), "served-2");
    for app in 0..4 {
        for version in 1..=5 {
            ws.apkg(
                &format!("race{app}-{version}"),
                &versioned(&format!("race{app}"), version),
            );
        }
    }
    let finished = AtomicBool::new(false);
    let collections = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let collector = scope.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                loader
                    .gc_blocking(&GcOptions {
                        keep: 0,
                        ..GcOptions::default()
                    })
                    .expect("gc");
                collections.fetch_add(1, Ordering::SeqCst);
                assert_eq!(get(addr, "/hello"), "ok /hello", "the agent stopped answering");
            }
        });
        let loaders: Vec<_> = (0..4)
            .map(|app| {
                let (ws, loader) = (&ws, loader.clone());
                scope.spawn(move || {
                    for version in 1..=5 {
                        let apkg = ws.path().join(format!("in/race{app}-{version}.apkg"));
                        let package = loader.load_blocking(&apkg, None).expect("a load racing gc");
                        assert!(
                            package.python_path.exists(),
                            "{} came back without its venv",
                            package.package_id
                        );
                    }
                })
            })
            .collect();
        for thread in loaders {
            thread.join().expect("loads");
        }
        finished.store(true, Ordering::SeqCst);
        collector.join().expect("collector");
    });
    assert!(collections.load(Ordering::SeqCst) > 0);
    assert_eq!(get(addr, "/hello"), "ok /hello");
    assert!(
        served.path.is_dir() && served.python_path.exists(),
        "gc took what the agent runs from"
    );
    let listing = loader.list_blocking().expect("list");
    let in_use: Vec<&par::DeploymentListing> = listing
        .apps
        .iter()
        .flat_map(|app| &app.deployments)
        .filter(|d| !d.agents.is_empty())
        .collect();
    assert_eq!(in_use.len(), 1);
    assert_eq!(
        (in_use[0].path.as_path(), in_use[0].current),
        (served.path.as_path(), false)
    );
    assert_eq!(in_use[0].agents, [agent.pid()]);

    // `remove` refuses while the agent runs; `--force` stops it first.
    let refused = loader.remove_blocking("served", None, false).expect_err("in use");
    assert!(
        matches!(&refused, LifecycleError::InUse { pids, .. } if pids == &[agent.pid()]),
        "{refused:?}"
    );
    assert!(served.path.is_dir());
    let removed = loader.remove_blocking("served", None, true).expect("remove --force");
    assert_eq!(removed.stopped_agents, [agent.pid()]);
    assert!(agent.status().is_some(), "the agent still runs");
    assert!(!served.path.exists());
    assert!(!tree_names(&ws).iter().any(|tree| tree.starts_with("served@")));
}

#[test]
fn a_gc_killed_halfway_leaves_nothing_a_load_takes_for_finished() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    let loader = loader(&ws);
    for version in 1..=2 {
        for app in 0..5 {
            load(
                &ws,
                &loader,
                &versioned(&format!("kill{app}"), version),
                &format!("kill{app}-{version}"),
            );
        }
    }
    drop(loader);
    let mut gc = binary()
        .command(&ws, &["gc", "--keep", "0", "-v", "--log-json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start par gc");
    let mut lines = BufReader::new(gc.stderr.take().expect("stderr")).lines();
    let moved = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("Moved to the trash"));
    assert!(moved, "gc moved nothing");
    gc.kill().expect("SIGKILL");
    gc.wait().expect("gc ended");

    let loader = self::loader(&ws);
    assert_eq!(
        names_in(&ws.root().join("trash")),
        Vec::<String>::new(),
        "the trash was not swept"
    );
    for app in 0..5 {
        for version in 1..=2 {
            let apkg = ws.path().join(format!("in/kill{app}-{version}.apkg"));
            let package = loader.load_blocking(&apkg, None).expect("a load after the kill");
            assert_eq!(package.verified, Some(true), "{}", package.package_id);
            assert!(package.python_path.exists());
        }
    }
    let output = binary().run(&ws, &["list", "--json"]);
    assert_succeeded(&output);
    assert_eq!(json(&output)["apps"].as_array().map(Vec::len), Some(5));
}

#[test]
fn loads_keep_the_root_within_its_budget_and_refuse_to_start_under_the_free_space_floor() {
    let ws = Workspace::new();
    let par = binary();
    let load = |apkg: &Path, extra: &[&str]| {
        let mut args = par.load_args(apkg, "uv");
        args.extend(extra.iter().map(|arg| arg.to_string()));
        par.run(&ws, &args)
    };
    let floor = load(&ws.apkg("a-1", &versioned("a", 1)), &["--min-free-bytes", "1000000T"]);
    assert_eq!(floor.status.code(), Some(1));
    assert_eq!(json(&floor)["error"]["kind"], "disk-full");
    for area in ["trees", "venvs", "packages", "deployments", "staging"] {
        assert_eq!(names_in(&ws.root().join(area)), Vec::<String>::new(), "{area}/ written");
    }

    for (file, apkg) in [
        ("a-1", versioned("a", 1)),
        ("b-1", versioned("b", 1)),
        ("a-2", versioned("a", 2)),
    ] {
        let output = load(&ws.apkg(file, &apkg), &["--max-root-bytes", "1"]);
        assert_succeeded(&output);
    }
    // Each app's current deployment stays, however small the budget.
    let names = tree_names(&ws);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("a@1.0.2.")) && names.iter().any(|n| n.starts_with("b@1.0.1.")));
    assert_eq!(names_in(&ws.root().join("venvs")).len(), 2);
}

#[test]
fn remove_of_an_app_with_nothing_under_the_root_is_a_typed_error() {
    let ws = Workspace::new();
    let output = binary().run(&ws, &["remove", "nothing-here", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let error = &json(&output)["error"];
    assert_eq!(
        (error["kind"].as_str(), error["subject"].as_str()),
        (Some("not-found"), Some("nothing-here"))
    );
    let output = binary().run(&ws, &["remove", "../escape", "--json"]);
    assert_eq!(json(&output)["error"]["kind"], "invalid-input");
}

#[test]
fn build_environments_are_listed_with_the_venvs_they_built_and_collected_once_no_root_uses_them() {
    let (ws, other) = (Workspace::new(), Workspace::new());
    let cache = binary().private_cache(&ws.path().join("cache"));
    let loader_for = |ws: &Workspace| {
        let mut config = offline_config(ws, env!("CARGO_TARGET_TMPDIR"));
        config.install.sandbox = SandboxChoice::Bwrap;
        config.component_cache = Some(cache.clone());
        PackageLoader::new(config).expect("loader")
    };
    let (loader, other_loader) = (loader_for(&ws), loader_for(&other));
    let built = load(&ws, &loader, &Apkg::valid_agent(), "built");
    let made = par_tests::workspace::build_environments(&cache);
    assert_eq!(made.len(), 1, "the setup.py agent was built by par's frontend");
    let also = load(&other, &other_loader, &Apkg::valid_agent(), "built");
    assert_eq!(
        par_tests::workspace::build_environments(&cache),
        made,
        "the other root shares it"
    );

    let listing = loader.list_blocking().expect("list");
    let [env] = listing.build_environments.as_slice() else {
        panic!("{:?}", listing.build_environments);
    };
    assert_eq!(env.path, made[0]);
    let mut users = vec![built.venv_path.clone(), also.venv_path.clone()];
    users.sort();
    assert_eq!(env.users, users, "the venvs it built, in both roots");
    assert_eq!(env.bytes, du(&[&made[0]]));

    let kept = loader.gc_blocking(&GcOptions::default()).expect("gc");
    assert!(kept.removed.is_empty(), "{:?}", kept.removed);
    loader.remove_blocking("test-agent", None, false).expect("remove");
    loader.gc_blocking(&GcOptions::default()).expect("gc");
    assert!(
        made[0].is_dir(),
        "a build environment another root's venv uses was removed"
    );

    other_loader.remove_blocking("test-agent", None, false).expect("remove");
    let dry = other_loader
        .gc_blocking(&GcOptions {
            dry_run: true,
            ..GcOptions::default()
        })
        .expect("dry run");
    assert!(made[0].is_dir(), "a dry run removed a build environment");
    let collected = other_loader.gc_blocking(&GcOptions::default()).expect("gc");
    assert_eq!(dry.removed, collected.removed);
    let removed: Vec<&Path> = collected
        .removed
        .iter()
        .filter(|r| r.kind == par::RemovedKind::BuildEnvironment)
        .map(|r| r.path.as_path())
        .collect();
    assert_eq!(removed, [made[0].as_path()]);
    assert!(!made[0].exists());
    assert!(loader.list_blocking().expect("list").build_environments.is_empty());
    // The next build makes a new one.
    load(&ws, &loader, &Apkg::valid_agent(), "built-again");
    assert_eq!(par_tests::workspace::build_environments(&cache).len(), 1);
}

#[test]
fn par_remove_force_stops_an_agent_another_par_process_runs() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    let par = binary();
    let token = "par-remove-force-agent";
    let mut run = par
        .run_agent(&ws, "held", token, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start par run");
    let mut stdout = BufReader::new(run.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the ready event");
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let pid = ready["pid"].as_u64().expect("the agent's pid");

    let listing = json(&par.run(&ws, &["list", "--json"]));
    assert_eq!(listing["apps"][0]["deployments"][0]["agents"], serde_json::json!([pid]));
    assert_eq!(listing["agents"][0]["owner"].as_u64(), Some(u64::from(run.id())));

    let refused = par.run(&ws, &["remove", "held", "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(json(&refused)["error"]["kind"], "in-use");
    assert!(ws.root().join("packages/held@1.0.0").exists());

    let forced = par.run(&ws, &["remove", "held", "--force", "--json"]);
    assert_succeeded(&forced);
    assert_eq!(json(&forced)["stopped_agents"], serde_json::json!([pid]));
    let status = run.wait().expect("par run ended");
    assert!(
        !status.success(),
        "par run exits with the stopped agent's status: {status}"
    );
    assert_eq!(par_tests::binary::survivors(token), Vec::<i32>::new());
    assert_eq!(tree_names(&ws), BTreeSet::new());
    assert_eq!(
        names_in(&ws.root().join("agents")),
        Vec::<String>::new(),
        "the agent's record is left"
    );
}

/// The flocks `/proc/locks` shows on the file `path`: for each, whether it
/// is a process waiting (`->`) rather than holding.
fn flocks_on(path: &Path) -> Vec<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(inode) = std::fs::metadata(path).map(|meta| meta.ino()) else {
        return Vec::new();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let waiting = fields.get(1) == Some(&"->");
            let rest = if waiting { &fields[2..] } else { &fields[1..] };
            let on_path = rest.first() == Some(&"FLOCK")
                && rest
                    .get(4)
                    .and_then(|id| id.rsplit(':').next())
                    .and_then(|ino| ino.parse::<u64>().ok())
                    == Some(inode);
            on_path.then_some(waiting)
        })
        .collect()
}

/// Whether `/proc/locks` shows a process waiting for an flock on the file `path`.
fn someone_waits_for(path: &Path) -> bool {
    flocks_on(path).contains(&true)
}

/// Waits until no flock is held on `path`. A lock this process let go can
/// still be held for a moment by another test thread's child, between its
/// fork and its exec, through a copy of the descriptor; it goes at the exec.
fn wait_until_released(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !flocks_on(path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} is still locked",
            path.display()
        );
        std::thread::yield_now();
    }
}

#[test]
fn remove_waits_for_a_load_in_progress_and_lock_files_outlive_what_they_guard() {
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};
    let ws = Workspace::new();
    let (started, go) = (ws.path().join("started"), ws.path().join("go"));
    for fifo in [&started, &go] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
    }
    // setup.py says it runs, then waits to be let go: the load holds the
    // app's lock meanwhile. (No sandbox, so it can reach the two FIFOs.)
    // The build backend runs setup.py more than once: only the first waits.
    let setup = format!(
        "import os\nif not os.path.exists({once:?}):\n    open({once:?}, 'w').close()\n    open({started:?}, 'w').close()\n    open({go:?}).read()\nfrom setuptools import setup\nsetup(name='waited', version='1.0.0', packages=['core', 'app'])\n",
        once = ws.path().join("once").display().to_string(),
        started = started.display().to_string(),
        go = go.display().to_string()
    );
    let apkg = Apkg::valid_agent()
        .replace(
            "agent.yaml",
            "name: waited\nversion: 1.0.0\nentrypoint: app.main:agent\n",
        )
        .replace("setup.py", setup);
    let mut config = offline_config(&ws, env!("CARGO_TARGET_TMPDIR"));
    config.install.sandbox = SandboxChoice::None;
    // A cache of its own: the build environment this load makes is left
    // unused by the remove, and a gc in another test's root would take it.
    config.component_cache = Some(binary().private_cache(&ws.path().join("cache")));
    let loader = Arc::new(PackageLoader::new(config).expect("loader"));
    let (events, order) = mpsc::channel();
    let path = ws.apkg("waited", &apkg);
    let (loading, sent) = (Arc::clone(&loader), events.clone());
    std::thread::spawn(move || {
        let _ = sent.send((
            "loaded",
            loading
                .load_blocking(&path, None)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        ));
    });
    let (opened, is_open) = mpsc::channel();
    let watched = started.clone();
    std::thread::spawn(move || {
        let _ = opened.send(std::fs::File::open(&watched).map(|_| ()));
    });
    is_open
        .recv_timeout(Duration::from_secs(300))
        .expect("setup.py never started")
        .expect("open the FIFO");
    let (removing, sent) = (Arc::clone(&loader), events);
    std::thread::spawn(move || {
        let removed = removing
            .remove_blocking("waited", None, false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = sent.send(("removed", removed));
    });
    // `remove` blocks on the app's lock, which the kernel shows as a waiter.
    let lock = ws.root().join("locks/waited.lock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !someone_waits_for(&lock) {
        assert!(Instant::now() < deadline, "remove never waited for the app's lock");
        assert!(
            order.try_recv().is_err(),
            "something finished while the load held its lock"
        );
        std::thread::yield_now();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&go)
        .expect("let setup.py go");
    let first = order.recv_timeout(Duration::from_secs(300)).expect("an end");
    let second = order.recv_timeout(Duration::from_secs(300)).expect("the other end");
    assert_eq!(first, ("loaded", Ok(())), "the load ends first");
    assert_eq!(second, ("removed", Ok(())), "then remove takes what it made");
    assert_eq!(tree_names(&ws), BTreeSet::new());
    assert!(
        lock.is_file(),
        "a lock file is never deleted: a waiter on it would hold a lock no one else sees"
    );
}
