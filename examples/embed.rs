//! Embedding par in a runtime: load an APKG the way the spec's
//! `PackageLoader.load_package()` does, then start the agent with the venv's
//! Python (no `sys.path` additions needed when `installed_as_package`).
//!
//! Run: cargo run -p par --example embed -- examples/vivid-commenter.apkg

use std::time::Duration;

use par::{InstallerChoice, LoaderConfig, PackageLoader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let apkg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/vivid-commenter.apkg".into());
    let mut config = LoaderConfig::with_root(std::env::temp_dir().join("par-embed-example"));
    config.install.installer = InstallerChoice::Auto;
    config.install.requirements_timeout = Duration::from_secs(300);
    let loader = PackageLoader::new(config)?;
    let package = loader.load_package(&apkg, Some("example-app")).await?;
    println!("{} loaded", package.package_id);
    println!("  start it with: {}", package.python_path.display());
    if !package.installed_as_package {
        println!("  old package: add {} to sys.path", package.path.display());
    }
    Ok(())
}
