//! Signed packages: `par keygen`, `par sign`, `par verify` and
//! `--trusted-key`, in minisign's format, checked both ways against the
//! `minisign` tool itself; and every unsigned, mis-signed or re-signed
//! package refused with exit code 3 before anything is published.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use par::{LoadError, PackageLoader, SignatureError, TrustedKey};
use par_tests::binary::{Par, assert_succeeded, json};
use par_tests::workspace::offline_config;
use par_tests::{Apkg, Workspace};

const EXIT_PACKAGE_REFUSED: i32 = 3;

fn par(ws: &Workspace, args: &[&str]) -> Output {
    Par::new(env!("CARGO_BIN_EXE_par"), env!("CARGO_TARGET_TMPDIR")).run(ws, args)
}

/// Runs the `minisign` tool (installed by tests/run).
fn minisign(args: &[&str]) -> Output {
    Command::new("minisign")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("minisign is installed (tests/run installs it)")
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The signature beside `apkg`.
fn signature_of(apkg: &Path) -> PathBuf {
    PathBuf::from(format!("{}.minisig", apkg.display()))
}

/// A key pair made by `par keygen` in the workspace: (secret, public).
fn par_keys(ws: &Workspace, name: &str) -> (PathBuf, PathBuf) {
    let prefix = ws.path().join("in").join(name);
    assert_succeeded(&par(ws, &["keygen", "-o", text(&prefix)]));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// A key pair made by `minisign -G` without a password: (secret, public).
fn minisign_keys(ws: &Workspace, name: &str) -> (PathBuf, PathBuf) {
    let (secret, public) = (
        ws.path().join("in").join(format!("{name}.key")),
        ws.path().join("in").join(format!("{name}.pub")),
    );
    let made = minisign(&["-G", "-W", "-p", text(&public), "-s", text(&secret)]);
    assert!(made.status.success(), "minisign -G: {made:?}");
    (secret, public)
}

/// Signs with the `minisign` tool and this trusted comment.
fn minisign_sign(secret: &Path, apkg: &Path, comment: Option<&str>) {
    let mut args = vec!["-S", "-s", text(secret), "-m", text(apkg)];
    if let Some(comment) = comment {
        args.extend(["-t", comment]);
    }
    let signed = minisign(&args);
    assert!(signed.status.success(), "minisign -S: {signed:?}");
}

/// `par keygen` writes a private secret key and a public one, never over a
/// file; `par sign` writes a signature the `minisign` tool verifies, with
/// the package's name and version as its trusted comment.
#[test]
fn par_signs_what_minisign_verifies() {
    let ws = Workspace::new();
    let (secret, public) = par_keys(&ws, "release");
    let mode = std::fs::metadata(&secret).expect("secret key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secret key is private");
    let again = par(&ws, &["keygen", "-o", text(&ws.path().join("in/release"))]);
    assert_ne!(again.status.code(), Some(0), "keygen overwrote a key");
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    let signed = par(&ws, &["sign", text(&apkg), "--key", text(&secret), "--json"]);
    assert_succeeded(&signed);
    let signed = json(&signed);
    assert_eq!(
        (signed["name"].as_str(), signed["version"].as_str()),
        (Some("test-agent"), Some("1.0.0"))
    );
    let key = TrustedKey::from_file(&public).expect("public key");
    assert_eq!(signed["key_id"].as_str(), Some(key.id().as_str()));
    let verified = minisign(&["-V", "-p", text(&public), "-m", text(&apkg)]);
    assert!(
        verified.status.success(),
        "minisign -V refused par's signature: {verified:?}"
    );
    let said = String::from_utf8_lossy(&verified.stdout).into_owned() + &String::from_utf8_lossy(&verified.stderr);
    assert!(
        said.contains("Trusted comment: name=test-agent version=1.0.0"),
        "{said}"
    );
}

/// A signature made by the `minisign` tool, with the trusted comment par
/// documents, verifies in par and lets the package extract; the result
/// names the key.
#[test]
fn minisign_signs_what_par_verifies_and_loads() {
    let ws = Workspace::new();
    let (secret, public) = minisign_keys(&ws, "tool");
    let apkg = ws.apkg("agent", &Apkg::valid_agent());
    minisign_sign(&secret, &apkg, Some("name=test-agent version=1.0.0"));
    let key = TrustedKey::from_file(&public).expect("public key");
    let verified = par(&ws, &["verify", text(&apkg), "--trusted-key", text(&public), "--json"]);
    assert_succeeded(&verified);
    assert_eq!(json(&verified)["key_id"].as_str(), Some(key.id().as_str()));
    let extracted = par(&ws, &["extract", text(&apkg), "--trusted-key", text(&public), "--json"]);
    assert_succeeded(&extracted);
    assert_eq!(json(&extracted)["signed"]["key_id"].as_str(), Some(key.id().as_str()));
}

/// A case: its name, what it does to the archive just written, and the
/// error kind it must end with.
type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);

/// With a trusted key, every package without a valid signature of its own
/// bytes, by a trusted key, naming its own name and version, is refused
/// with exit code 3 and the error's kind, and nothing is published.
#[test]
fn every_package_without_a_valid_signature_is_refused_and_nothing_is_published() {
    let ws = Workspace::new();
    let (secret, public) = minisign_keys(&ws, "trusted");
    let (other_secret, _) = minisign_keys(&ws, "other");
    let agent = || Apkg::valid_agent();
    let cases: Vec<Case> = vec![
        ("unsigned", Box::new(|_: &Path| {}), "signature-missing"),
        (
            "another-key",
            Box::new(|apkg: &Path| minisign_sign(&other_secret, apkg, Some("name=test-agent version=1.0.0"))),
            "signature-invalid",
        ),
        (
            "no-name",
            Box::new(|apkg: &Path| minisign_sign(&secret, apkg, None)),
            "signature-invalid",
        ),
        (
            "another-package",
            Box::new(|apkg: &Path| minisign_sign(&secret, apkg, Some("name=someone-else version=1.0.0"))),
            "signature-invalid",
        ),
        (
            "another-version",
            Box::new(|apkg: &Path| minisign_sign(&secret, apkg, Some("name=test-agent version=2.0.0"))),
            "signature-invalid",
        ),
        (
            "other-bytes",
            Box::new(|apkg: &Path| {
                minisign_sign(&secret, apkg, Some("name=test-agent version=1.0.0"));
                // The same package, one file more: the signature is of other bytes.
                let changed = agent().file("extra.py", "x = 1\n").to_bytes();
                std::fs::write(apkg, changed).expect("replace the archive");
            }),
            "signature-invalid",
        ),
        (
            "not-a-signature",
            Box::new(|apkg: &Path| {
                std::fs::write(signature_of(apkg), "untrusted comment: x\nnot base64\n").expect("junk")
            }),
            "signature-invalid",
        ),
    ];
    for (name, prepare, kind) in cases {
        let apkg = ws.apkg(name, &agent());
        prepare(&apkg);
        for command in ["extract", "verify"] {
            let output = par(&ws, &[command, text(&apkg), "--trusted-key", text(&public), "--json"]);
            assert_eq!(
                output.status.code(),
                Some(EXIT_PACKAGE_REFUSED),
                "{name} ({command}): {output:?}"
            );
            assert_eq!(json(&output)["error"]["kind"], kind, "{name} ({command})");
        }
        ws.assert_left_nothing(name);
    }
}

/// A load with trusted keys checks the signature on every load, the
/// unchanged redeploy included: the bytes par already knows still need
/// their signature beside them.
#[test]
fn a_load_checks_the_signature_every_time_even_an_unchanged_redeploy() {
    let ws = Workspace::new();
    let (secret, public) = minisign_keys(&ws, "trusted");
    let apkg = ws.apkg("agent", &par_tests::agent::agent_apkg("signed-agent", ""));
    minisign_sign(&secret, &apkg, Some("name=signed-agent version=1.0.0"));
    let mut config = offline_config(&ws, env!("CARGO_TARGET_TMPDIR"));
    config.trusted_keys = vec![TrustedKey::from_file(&public).expect("public key")];
    let loader = PackageLoader::new(config).expect("loader");
    let first = loader.load_blocking(&apkg, None).expect("a signed package loads");
    let key_id = TrustedKey::from_file(&public).expect("public key").id();
    assert_eq!(first.signed.as_ref().map(|s| s.key_id.as_str()), Some(key_id.as_str()));
    let listing = loader.list_blocking().expect("list");
    let listed = &listing.apps[0].deployments[0];
    assert_eq!(listed.signed, first.signed, "the listing names the signer");
    par_tests::workspace::settle(&apkg);
    let again = loader.load_blocking(&apkg, None).expect("unchanged, and still signed");
    assert!(again.unchanged_redeploy);
    assert_eq!(again.signed, first.signed);
    std::fs::remove_file(signature_of(&apkg)).expect("remove the signature");
    let error = loader.load_blocking(&apkg, None).expect_err("the signature is gone");
    assert!(
        matches!(error, LoadError::Signature(SignatureError::Missing { .. })),
        "{error}"
    );
    assert_eq!(error.kind(), "signature-missing");
    assert!(error.is_package_fault());
}
