//! Bundles through a real OCI registry (the reference `distribution`
//! registry, started per test on 127.0.0.1): push, pull by tag and by
//! digest back to the same bytes, a load from what was pulled, blobs shared
//! between bundles uploaded once, tampered blobs and manifests refused with
//! nothing written, and credentials from a config.json.

use std::path::{Path, PathBuf};
use std::time::Duration;

use par::{InstallerChoice, LoadError, LoaderConfig, PackageLoader, RegistryError};
use par_tests::binary::{Par, assert_succeeded, json};
use par_tests::hostile_registry::{HostileRegistry, Misbehaviour};
use par_tests::index_trap::IndexTrap;
use par_tests::registry::Registry;
use par_tests::workspace::offline_config;
use par_tests::{Apkg, Workspace};

const EXIT_PACKAGE_REFUSED: i32 = 3;

fn binary() -> Par {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR"))
}

/// A loader in `ws` (offline, from the wheelhouse) that speaks plain HTTP
/// to `registry`, takes logins from `auth` (never the user's own) and has
/// a cache of its own, so every blob a pull takes comes from `registry`.
fn config(ws: &Workspace, registry: &str, auth: &Path) -> LoaderConfig {
    let mut config = offline_config(ws, env!("CARGO_TARGET_TMPDIR"));
    let cache = ws.path().join("in").join("cache");
    if !cache.exists() {
        binary().private_cache(&cache);
    }
    config.component_cache = Some(cache);
    config.install.installer = InstallerChoice::Uv;
    config.registry = config.registry.clone().insecure_registry(registry).auth_file(auth);
    config
}

/// A credentials file in `ws` holding `logins` (`(host, user, password)`).
fn auth_file(ws: &Workspace, logins: &[(&str, &str, &str)]) -> PathBuf {
    use base64::Engine as _;
    let auths: serde_json::Map<String, serde_json::Value> = logins
        .iter()
        .map(|(host, user, password)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            ((*host).to_owned(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let path = ws.path().join("in").join("auth.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).expect("auth file");
    path
}

/// The bundle of an agent named `name` needing `packaging`, written by a
/// loader of its own into `ws`'s `in/`.
fn bundle(ws: &Workspace, name: &str, key: Option<&par::SigningKey>) -> PathBuf {
    let maker = Workspace::new();
    let apkg = Apkg::valid_agent()
        .replace("requirements.txt", "packaging>=20\n")
        .replace("agent.yaml", par_tests::apkg::AGENT_YAML.replace("test-agent", name));
    let parb = ws.path().join("in").join(format!("{name}.parb"));
    PackageLoader::new(offline_config(&maker, env!("CARGO_TARGET_TMPDIR")))
        .expect("loader")
        .bundle_blocking(&maker.apkg(name, &apkg), &parb, key)
        .expect("the bundle");
    parb
}

/// The path of the blob `digest` in `registry`'s storage.
fn blob_path(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// The digest of the layer titled `member` in the manifest `digest` of
/// `repository`, as the registry stores it.
fn layer_digest(registry: &Registry, manifest: &str, member: &str) -> String {
    let text = std::fs::read(blob_path(registry, manifest)).expect("the manifest in storage");
    let manifest: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|layer| layer["annotations"]["org.opencontainers.image.title"] == member)
        .and_then(|layer| layer["digest"].as_str())
        .unwrap_or_else(|| panic!("no layer {member} in {manifest}"))
        .to_owned()
}

/// With the CLI: a signed bundle pushed, pulled by tag and by digest to the
/// same bytes and signature, and loaded offline from what was pulled with
/// its key trusted; without `--insecure-registry` nothing is sent over
/// plain HTTP.
#[test]
fn a_pushed_bundle_pulls_back_byte_for_byte_and_loads_offline() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let prefix = ws.path().join("in").join("signer");
    assert_succeeded(&binary().run(&ws, &["keygen", "-o", &prefix.display().to_string()]));
    let key = par::SigningKey::from_file(&prefix.with_extension("key"), None).expect("key");
    let parb = bundle(&ws, "web-agent", Some(&key));
    let auth = auth_file(&ws, &[]).display().to_string();
    let host = registry.host();
    let target = format!("{host}/agents/web:1.0");
    let registry_args = ["--insecure-registry", &host, "--registry-auth", &auth];

    let plain = binary().run(
        &ws,
        &[
            "push",
            &parb.display().to_string(),
            &target,
            "--registry-auth",
            &auth,
            "--json",
        ],
    );
    assert_eq!(
        plain.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert_eq!(json(&plain)["error"]["kind"], "registry-unreachable");
    assert_eq!(registry.blob_uploads(), 0, "nothing reached the registry over HTTP");

    let mut args = vec![
        "push".to_owned(),
        parb.display().to_string(),
        target.clone(),
        "--json".into(),
    ];
    args.extend(registry_args.map(String::from));
    let output = binary().run(&ws, &args);
    assert_succeeded(&output);
    let pushed = json(&output);
    let digest = pushed["digest"].as_str().expect("a digest").to_owned();
    assert_eq!(pushed["reference"], format!("{target}@{digest}"));
    assert_eq!(pushed["uploaded"], pushed["blobs"], "{pushed}");
    assert_eq!(
        registry.blob_uploads() as u64,
        pushed["uploaded"].as_u64().expect("a count")
    );

    for (source, name) in [
        (target.clone(), "by-tag.parb"),
        (format!("{host}/agents/web@{digest}"), "by-digest.parb"),
    ] {
        let pulled_path = ws.path().join("in").join(name);
        let mut args = vec![
            "pull".to_owned(),
            source,
            "-o".into(),
            pulled_path.display().to_string(),
            "--json".into(),
        ];
        args.extend(registry_args.map(String::from));
        let output = binary().run(&ws, &args);
        assert_succeeded(&output);
        assert_eq!(json(&output)["digest"], digest.as_str());
        assert!(
            std::fs::read(&pulled_path).expect("pulled") == std::fs::read(&parb).expect("pushed"),
            "{name} differs"
        );
        assert_eq!(
            std::fs::read(pulled_path.with_extension("parb.minisig")).expect("the pulled signature"),
            std::fs::read(parb.with_extension("parb.minisig")).expect("the signature")
        );
    }

    let package = binary().load_bundle_trusting(
        &ws,
        &ws.path().join("in").join("by-tag.parb"),
        &prefix.with_extension("pub"),
    );
    assert_eq!(package["verified"], true, "{package}");
    assert!(package["signed"]["key_id"].is_string(), "{package}");
}

/// A second bundle sharing wheels with the first (another agent, one
/// repository) uploads only the blobs the registry lacks: the registry's own
/// log counts the uploads.
#[test]
fn bundles_that_share_wheels_share_blobs() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let loader = PackageLoader::new(config(&ws, &registry.host(), &auth)).expect("loader");
    let (first, second) = (bundle(&ws, "first-agent", None), bundle(&ws, "second-agent", None));
    let repository = format!("{}/agents/fleet", registry.host());
    let pushed = loader
        .push_blocking(&first, &format!("{repository}:first"))
        .expect("first push");
    assert_eq!((pushed.uploaded, registry.blob_uploads()), (pushed.blobs, pushed.blobs));

    let again = loader
        .push_blocking(&second, &format!("{repository}:second"))
        .expect("second push");
    let wheel = "wheels/packaging-26.4-py3-none-any.whl";
    assert_eq!(
        layer_digest(&registry, &pushed.digest, wheel),
        layer_digest(&registry, &again.digest, wheel),
        "the same wheel, the same blob"
    );
    assert!(again.uploaded < again.blobs, "{again:?}");
    assert_eq!(
        registry.blob_uploads(),
        pushed.blobs + again.uploaded,
        "{}",
        registry.log()
    );

    let same = loader
        .push_blocking(&second, &format!("{repository}:again"))
        .expect("a third push");
    assert_eq!((same.uploaded, same.digest.as_str()), (0, again.digest.as_str()));
}

/// A blob rewritten in the registry's storage, or a manifest naming a
/// member that no bundle holds, is refused naming it, and nothing is
/// written where the bundle would go.
#[test]
fn tampered_blobs_and_manifests_are_refused_and_nothing_is_written() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let loader = PackageLoader::new(config(&ws, &registry.host(), &auth)).expect("loader");
    let parb = bundle(&ws, "web-agent", None);
    let target = format!("{}/agents/web:1", registry.host());
    let pushed = loader.push_blocking(&parb, &target).expect("push");
    let wheel = "wheels/packaging-26.4-py3-none-any.whl";
    let blob = blob_path(&registry, &layer_digest(&registry, &pushed.digest, wheel));
    let mut bytes = std::fs::read(&blob).expect("the blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&blob, &bytes).expect("tamper");

    let output = ws.path().join("in").join("pulled.parb");
    let error = loader.pull_blocking(&target, &output).expect_err("a tampered blob");
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Blob { blob, problem, .. }) if blob == wheel && problem.contains("digest")),
        "{error}"
    );
    assert_eq!(error.subject(), Some(wheel));
    assert!(error.is_package_fault(), "{error}");
    assert!(!output.exists() && !output.with_extension("parb.minisig").exists());
    let leftovers: Vec<_> = std::fs::read_dir(ws.path().join("in"))
        .expect("in")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".parb-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let manifest = blob_path(&registry, &pushed.digest);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replace("\"pylock.toml\"", "\"../pylock.toml\"")).expect("tamper");
    let by_digest = format!("{}/agents/web@{}", registry.host(), pushed.digest);
    let error = loader
        .pull_blocking(&by_digest, &output)
        .expect_err("a manifest with other bytes");
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Manifest { problem, .. }) if problem.contains("digest")),
        "{error}"
    );
    let error = loader
        .pull_blocking(&target, &output)
        .expect_err("a manifest naming a path");
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Manifest { problem, .. }) if problem.contains("../pylock.toml")),
        "{error}"
    );
    assert!(!output.exists());
}

/// A registry that asks for credentials: refused (exit 1, naming the
/// registry) without a login, served with the one in `--registry-auth`.
#[test]
fn credentials_come_from_the_auth_file_and_a_missing_login_is_named() {
    let registry = Registry::start_with_auth("fleet", "s3cret");
    let ws = Workspace::new();
    let parb = bundle(&ws, "web-agent", None);
    let host = registry.host();
    let target = format!("{host}/agents/web:1");
    let push = |auth: &Path| {
        binary().run(
            &ws,
            &[
                "push",
                &parb.display().to_string(),
                &target,
                "--insecure-registry",
                &host,
                "--registry-auth",
                &auth.display().to_string(),
                "--json",
            ],
        )
    };
    let anonymous = push(&auth_file(&ws, &[]));
    assert_eq!(anonymous.status.code(), Some(1));
    assert_eq!(json(&anonymous)["error"]["kind"], "registry-unauthorized");
    let wrong = push(&auth_file(&ws, &[(&host, "fleet", "guess")]));
    assert_eq!(json(&wrong)["error"]["kind"], "registry-unauthorized");
    assert_eq!(registry.blob_uploads(), 0);
    let right = push(&auth_file(&ws, &[(&host, "fleet", "s3cret")]));
    assert_succeeded(&right);
    assert!(registry.blob_uploads() > 0);

    let pulled = ws.path().join("in").join("pulled.parb");
    let output = binary().run(
        &ws,
        &[
            "pull",
            &target,
            "-o",
            &pulled.display().to_string(),
            "--insecure-registry",
            &host,
            "--registry-auth",
            &ws.path().join("in/auth.json").display().to_string(),
        ],
    );
    assert_succeeded(&output);
    assert!(std::fs::read(&pulled).expect("pulled") == std::fs::read(&parb).expect("pushed"));
}

/// References that name no registry or no tag, and a push to a digest, are
/// refused before any request.
#[test]
fn bad_references_are_refused_before_any_request() {
    let ws = Workspace::new();
    let parb = ws.path().join("in").join("none.parb");
    for (args, problem) in [
        (
            vec!["push", parb.to_str().expect("utf-8"), "agents/web:1"],
            "no registry",
        ),
        (
            vec!["pull", "127.0.0.1:9/agents/web", "-o", parb.to_str().expect("utf-8")],
            "no tag or digest",
        ),
        (
            vec!["pull", "127.0.0.1:9/agents/web:1", "-o", "out.apkg"],
            "must end in `.parb`",
        ),
    ] {
        let mut args: Vec<&str> = args;
        args.push("--json");
        let output = binary().run(&ws, &args);
        assert_ne!(output.status.code(), Some(0));
        assert_ne!(output.status.code(), Some(EXIT_PACKAGE_REFUSED));
        let message = json(&output)["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(problem), "{message}");
    }
}

/// `par load oci://…` on a node with a cache of its own: `args` then the
/// registry's settings, with the test's uv and `--json`.
fn load_from_registry(
    ws: &Workspace,
    cache: &Path,
    registry: &Registry,
    auth: &Path,
    reference: &str,
) -> std::process::Child {
    let mut args = binary().load_args(Path::new(&format!("oci://{reference}")), "uv");
    args.extend([
        "--insecure-registry".into(),
        registry.host(),
        "--registry-auth".into(),
        auth.display().to_string(),
    ]);
    binary()
        .command_with_cache(ws, cache, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run par")
}

/// Pushes the bundle of `web-agent` to `agents/web:1.0`; the bundle and
/// what the push reported.
fn pushed_bundle(ws: &Workspace, registry: &Registry, auth: &Path) -> (PathBuf, par::Pushed) {
    let loader = PackageLoader::new(config(ws, &registry.host(), auth)).expect("loader");
    let parb = bundle(ws, "web-agent", None);
    let pushed = loader
        .push_blocking(&parb, &format!("{}/agents/web:1.0", registry.host()))
        .expect("push");
    (parb, pushed)
}

/// A node loads `oci://…:TAG`: the package names the reference and the
/// digest it resolved to, and every layer was fetched; a second node with
/// the same blob cache loads `@DIGEST` fetching no blob at all.
#[test]
fn a_load_from_the_registry_fetches_only_the_blobs_its_cache_lacks() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let (_, pushed) = pushed_bundle(&ws, &registry, &auth);
    let layers = pushed.blobs - 1;
    let cache = binary().private_cache(&ws.path().join("in").join("node-cache"));

    let node = Workspace::new();
    let tag = format!("{}/agents/web:1.0", registry.host());
    let output = load_from_registry(&node, &cache, &registry, &auth, &tag)
        .wait_with_output()
        .expect("par");
    assert_succeeded(&output);
    let package = json(&output);
    assert_eq!(package["source"]["reference"], tag.as_str(), "{package}");
    assert_eq!(package["source"]["digest"], pushed.digest.as_str(), "{package}");
    assert_eq!(package["verified"], true, "{package}");
    assert_eq!(registry.blob_downloads(), layers, "{}", registry.log());

    let second = Workspace::new();
    let pinned = format!("{}/agents/web@{}", registry.host(), pushed.digest);
    let output = load_from_registry(&second, &cache, &registry, &auth, &pinned)
        .wait_with_output()
        .expect("par");
    assert_succeeded(&output);
    let package = json(&output);
    assert_eq!(package["source"]["digest"], pushed.digest.as_str(), "{package}");
    assert_eq!(package["unchanged_redeploy"], false, "another root: {package}");
    assert_eq!(registry.blob_downloads(), layers, "the cache held every blob");
}

/// Two nodes sharing a blob cache load one bundle at the same moment: each
/// blob crosses the network once.
#[test]
fn two_loads_pulling_one_bundle_at_once_fetch_each_blob_once() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let (_, pushed) = pushed_bundle(&ws, &registry, &auth);
    let cache = binary().private_cache(&ws.path().join("in").join("node-cache"));
    let tag = format!("{}/agents/web:1.0", registry.host());
    let nodes = [Workspace::new(), Workspace::new()];
    let loads: Vec<_> = nodes
        .iter()
        .map(|node| load_from_registry(node, &cache, &registry, &auth, &tag))
        .collect();
    for load in loads {
        assert_succeeded(&load.wait_with_output().expect("par"));
    }
    assert_eq!(registry.blob_downloads(), pushed.blobs - 1, "{}", registry.log());
}

/// A registry that redirects to another host, answers with a manifest over
/// the cap, or stalls mid-answer: each is refused, naming why, with nothing
/// written; the redirect is never followed and the stall ends at the
/// deadline.
#[test]
fn a_registry_that_redirects_elsewhere_floods_or_stalls_is_refused() {
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let output = ws.path().join("in").join("pulled.parb");
    let pull = |registry: &HostileRegistry, deadline: Duration| {
        let mut config = config(&ws, &registry.host(), &auth);
        config.registry = config.registry.clone().deadline(deadline);
        let loader = PackageLoader::new(config).expect("loader");
        let error = loader
            .pull_blocking(&format!("{}/agents/web:1", registry.host()), &output)
            .expect_err("a misbehaving registry");
        assert!(!output.exists(), "{error}");
        error
    };

    let elsewhere = IndexTrap::start();
    let redirecting = HostileRegistry::start(Misbehaviour::Redirect(format!(
        "http://localhost:{}/v2/agents/web/manifests/1",
        elsewhere.port()
    )));
    let error = pull(&redirecting, Duration::from_secs(60));
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Unreachable { detail, .. }) if detail.contains("redirect to another host")),
        "{error}"
    );
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");

    let flooding = HostileRegistry::start(Misbehaviour::Huge(8 << 20));
    let error = pull(&flooding, Duration::from_secs(60));
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Manifest { problem, .. }) if problem.contains("larger than")),
        "{error}"
    );

    let stalling = HostileRegistry::start(Misbehaviour::Stall);
    let started = std::time::Instant::now();
    let error = pull(&stalling, Duration::from_secs(2));
    assert_eq!(error.kind(), "registry-deadline", "{error}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

/// A blob longer than its descriptor says (bytes appended in the
/// registry's storage) is refused as longer, not read on.
#[test]
fn a_blob_longer_than_its_descriptor_is_refused() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let (_, pushed) = pushed_bundle(&ws, &registry, &auth);
    let blob = blob_path(&registry, &layer_digest(&registry, &pushed.digest, "pylock.toml"));
    let mut bytes = std::fs::read(&blob).expect("the blob");
    bytes.extend_from_slice(b"\n[[packages]]\nname = \"evil\"\n");
    std::fs::write(&blob, bytes).expect("append");
    let loader = PackageLoader::new(config(&ws, &registry.host(), &auth)).expect("loader");
    let output = ws.path().join("in").join("pulled.parb");
    let error = loader
        .pull_blocking(&format!("{}/agents/web:1.0", registry.host()), &output)
        .expect_err("a longer blob");
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Blob { blob, problem, .. }) if blob == "pylock.toml" && problem.contains("longer than")),
        "{error}"
    );
    assert!(!output.exists());
}

/// The install steps of a load from the registry run with no network: the
/// agent's `setup.py`, which tries to reach the registry, never does (the
/// registry's log has no request of its), and the load succeeds from the
/// blobs the pull fetched.
#[test]
fn the_install_steps_of_a_load_from_the_registry_never_reach_it() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let setup = format!(
        "import urllib.request\ntry:\n    urllib.request.urlopen('http://{}/v2/setup-py-was-here/tags/list', timeout=5)\nexcept Exception:\n    pass\n\
         from setuptools import setup, find_packages\nsetup(name='test-agent', version='1.0.0', packages=find_packages())\n",
        registry.host()
    );
    let apkg = Apkg::valid_agent()
        .replace("requirements.txt", "packaging>=20\n")
        .replace("setup.py", setup);
    let maker = Workspace::new();
    let parb = ws.path().join("in").join("agent.parb");
    PackageLoader::new(offline_config(&maker, env!("CARGO_TARGET_TMPDIR")))
        .expect("loader")
        .bundle_blocking(&maker.apkg("agent", &apkg), &parb, None)
        .expect("the bundle");
    let loader = PackageLoader::new(config(&ws, &registry.host(), &auth)).expect("loader");
    let target = format!("{}/agents/web:1", registry.host());
    loader.push_blocking(&parb, &target).expect("push");
    let package = loader
        .load_blocking(Path::new(&format!("oci://{target}")), None)
        .expect("the load from the registry");
    assert!(
        package.installed_as_package && package.verified == Some(true),
        "{package:?}"
    );
    assert!(registry.blob_downloads() > 0);
    assert!(!registry.log().contains("setup-py-was-here"), "{}", registry.log());
}

/// Where the registry has the OCI 1.1 referrers API, a signed bundle's
/// signature is also pushed as a referrer whose subject is the bundle's
/// manifest; the reference registry, which has no such API, gets the
/// signature as a layer only.
#[test]
fn a_signature_is_also_a_referrer_where_the_registry_has_the_api() {
    use sha2::Digest as _;
    let ws = Workspace::new();
    let auth = auth_file(&ws, &[]);
    let prefix = ws.path().join("in").join("signer");
    par::generate_keys(&prefix).expect("keys");
    let key = par::SigningKey::from_file(&prefix.with_extension("key"), None).expect("key");
    let parb = bundle(&ws, "web-agent", Some(&key));

    let stand_in = HostileRegistry::start(Misbehaviour::Referrers);
    let loader = PackageLoader::new(config(&ws, &stand_in.host(), &auth)).expect("loader");
    let pushed = loader
        .push_blocking(&parb, &format!("{}/agents/web:1", stand_in.host()))
        .expect("push");
    let referrer = pushed.signature_referrer.clone().expect("a referrer");
    let received = stand_in.received();
    let body = &received
        .iter()
        .find(|request| request.method == "PUT" && request.path.ends_with(&format!("/manifests/{referrer}")))
        .unwrap_or_else(|| panic!("no PUT of the referrer: {received:?}"))
        .body;
    assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(body.as_bytes())), referrer);
    let manifest: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(manifest["subject"]["digest"], pushed.digest.as_str(), "{manifest}");
    assert_eq!(manifest["artifactType"], "application/vnd.par.signature.v1+minisign");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["annotations"]["org.opencontainers.image.title"], "bundle.minisig");
    let signature = std::fs::read(parb.with_extension("parb.minisig")).expect("the signature");
    assert_eq!(
        layer["digest"],
        format!("sha256:{:x}", sha2::Sha256::digest(&signature)).as_str()
    );

    let registry = Registry::start();
    let loader = PackageLoader::new(config(&ws, &registry.host(), &auth)).expect("loader");
    let pushed = loader
        .push_blocking(&parb, &format!("{}/agents/web:1", registry.host()))
        .expect("push");
    assert_eq!(pushed.signature_referrer, None);
    assert!(registry.log().contains("/referrers/"), "asked for the API");
}

/// A registry that asks for a Bearer token: par asks the token service it
/// names, with the login from the credentials file, for a token scoped to
/// the repository (pull only, for a pull), and sends the request again with
/// it; without a login the token service's refusal is named.
#[test]
fn a_bearer_challenge_is_answered_with_a_token_from_the_registrys_service() {
    let stand_in = HostileRegistry::start(Misbehaviour::Bearer {
        login: ("fleet".into(), "s3cret".into()),
        token: "t0k3n".into(),
    });
    let ws = Workspace::new();
    let output = ws.path().join("in").join("pulled.parb");
    let pull = |auth: &Path| {
        PackageLoader::new(config(&ws, &stand_in.host(), auth))
            .expect("loader")
            .pull_blocking(&format!("{}/agents/web:1", stand_in.host()), &output)
            .expect_err("the stand-in has no manifest")
    };
    let error = pull(&auth_file(&ws, &[(&stand_in.host(), "fleet", "s3cret")]));
    assert!(
        matches!(&error, LoadError::Registry(RegistryError::Status { status: 404, .. })),
        "the request with the token got through: {error}"
    );
    let received = stand_in.received();
    let token_request = received
        .iter()
        .find(|request| request.path.starts_with("/token"))
        .unwrap_or_else(|| panic!("no token request: {received:?}"));
    assert!(
        token_request.path.contains("scope=repository%3Aagents%2Fweb%3Apull"),
        "{token_request:?}"
    );
    assert!(!token_request.path.contains("push"), "{token_request:?}");
    assert!(token_request.path.contains("service=stand-in"), "{token_request:?}");
    let with_token = received
        .iter()
        .filter(|r| r.authorization.as_deref() == Some("Bearer t0k3n"));
    assert_eq!(with_token.count(), 1, "{received:?}");

    let error = pull(&auth_file(&ws, &[]));
    assert_eq!(error.kind(), "registry-unauthorized", "{error}");
    assert!(error.to_string().contains("token service"), "{error}");
    assert!(!output.exists());
}
