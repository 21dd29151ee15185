//! `keygen`, `sign`, `verify` and `--trusted-key`: minisign signatures on packages.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use par::{LoaderConfig, PackageLoader, Signed, SigningKey, TrustedKey};

/// Which signers a load trusts.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Trust")]
pub(crate) struct TrustArgs {
    /// Load only packages signed (APKG.minisig, minisign's format) by this
    /// public key or another given; refused otherwise, before the sandbox
    /// reads a byte. Repeatable.
    #[arg(long = "trusted-key", value_name = "PUB")]
    pub trusted_keys: Vec<PathBuf>,
}

impl TrustArgs {
    /// Reads every key into the configuration.
    pub(crate) fn apply(&self, config: &mut LoaderConfig) -> anyhow::Result<()> {
        config.trusted_keys = read_keys(&self.trusted_keys)?;
        Ok(())
    }
}

/// Reads public key files.
pub(crate) fn read_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<TrustedKey>> {
    paths
        .iter()
        .map(|path| TrustedKey::from_file(path).map_err(anyhow::Error::from))
        .collect()
}

/// `par keygen`: a key pair at `prefix`.
pub(crate) fn keygen(json: bool, prefix: &Path) -> anyhow::Result<()> {
    let key = par::generate_keys(prefix)?;
    let with = |suffix: &str| format!("{}{suffix}", prefix.display());
    if json {
        let body = serde_json::json!({
            "key_id": key.id(),
            "secret_key": with(".key"),
            "public_key": with(".pub"),
        });
        println!("{body}");
    } else {
        println!(
            "Key {} written: {} (secret, keep it private) and {} (public, for --trusted-key)",
            key.id(),
            with(".key"),
            with(".pub")
        );
    }
    Ok(())
}

/// `par sign`.
pub(crate) async fn sign(
    json: bool,
    loader: &PackageLoader,
    apkg: &Path,
    key: &Path,
    password_env: Option<&str>,
) -> anyhow::Result<()> {
    let key = signing_key(key, password_env)?;
    let (loader, apkg) = (loader.clone(), apkg.to_owned());
    let signed = tokio::task::spawn_blocking(move || loader.sign_blocking(&apkg, &key))
        .await
        .context("the signing task failed")??;
    print_signed(json, &signed, "Signed")
}

/// The secret key at `path`, decrypted with the password in the variable
/// `password_env` when one is named.
pub(crate) fn signing_key(path: &Path, password_env: Option<&str>) -> anyhow::Result<SigningKey> {
    let password = match password_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("the password variable `{var}` is not set"))?),
        None => None,
    };
    Ok(SigningKey::from_file(path, password)?)
}

/// `par bundle`.
pub(crate) async fn bundle(
    json: bool,
    loader: &PackageLoader,
    apkg: &Path,
    output: &Path,
    key: Option<(&Path, Option<&str>)>,
) -> anyhow::Result<()> {
    let key = key
        .map(|(path, password_env)| signing_key(path, password_env))
        .transpose()?;
    let (loader, apkg, output) = (loader.clone(), apkg.to_owned(), output.to_owned());
    let written = tokio::task::spawn_blocking(move || loader.bundle_blocking(&apkg, &output, key.as_ref()))
        .await
        .context("the bundling task failed")??;
    if json {
        println!(
            "{}",
            serde_json::to_string(&written).context("cannot render the result")?
        );
    } else {
        println!(
            "Wrote {} ({}@{}, {} files, {} bytes){}",
            written.path.display(),
            written.name,
            written.version,
            written.files.len(),
            written.bytes,
            match &written.signed {
                Some(signed) => format!(", signed by key {} ({})", signed.key_id, signed.signature.display()),
                None => String::new(),
            }
        );
    }
    Ok(())
}

/// `par verify`.
pub(crate) async fn verify(json: bool, loader: &PackageLoader, apkg: &Path) -> anyhow::Result<()> {
    let (loader, apkg) = (loader.clone(), apkg.to_owned());
    let signed = tokio::task::spawn_blocking(move || loader.verify_blocking(&apkg))
        .await
        .context("the verifying task failed")??;
    print_signed(json, &signed, "Verified")
}

fn print_signed(json: bool, signed: &Signed, what: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(signed).context("cannot render the result")?);
    } else {
        println!(
            "{what}: {}@{} by key {} ({})",
            signed.name,
            signed.version,
            signed.key_id,
            signed.signature.display()
        );
    }
    Ok(())
}
