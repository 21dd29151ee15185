//! What the venv records about the agent's install. Installed from a wheel
//! file, the agent would be recorded (PEP 610 `direct_url.json`) as that
//! wheel, which is gone once the load ends; `pip install -e .` records the
//! package directory as an editable install instead. This writes the latter,
//! so `pip list --editable`, `pip freeze` and `importlib.metadata` describe
//! the agent the same whichever way it was built.
//!
//! The venv's contents came from a wheel the package's own build made, so
//! every path is opened through `cap_std` under the venv: nothing it holds
//! (a symlink, say) can send a write elsewhere.

use std::io;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

use crate::fs::root::read_bounded;
use crate::fs::venv;
use crate::install::file_url::{file_url, path_of};

/// Rewrites the `direct_url.json` of the distribution installed from
/// `wheel_name` in `venv` to say "editable install of `package`", and its
/// line in `RECORD` to match.
pub(crate) fn record_editable(venv: &Path, wheel_name: &str, package: &Path) -> io::Result<()> {
    let dist_info = dist_info_name(wheel_name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a wheel name: {wheel_name}")))?;
    let dist = open_dist_info(venv, &dist_info)?;
    let url = serde_json::json!({ "url": file_url(package)?, "dir_info": { "editable": true } });
    let json = serde_json::to_vec(&url).map_err(io::Error::other)?;
    dist.write("direct_url.json", &json)?;
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(&json));
    let entry = format!("{dist_info}/direct_url.json");
    let line = format!("{entry},sha256={digest},{}", json.len());
    let record = dist.read_to_string("RECORD")?;
    let mut lines: Vec<String> = record
        .lines()
        .filter(|l| !venv::is_record_line_of(l, &entry))
        .map(str::to_owned)
        .collect();
    lines.push(line);
    dist.write("RECORD", lines.join("\n") + "\n")
}

/// The distribution name (as its `.dist-info` spells it) the venv records as
/// an editable install of `package`, whichever frontend installed it: the
/// agent's entry in the venv's lock.
pub(crate) fn editable_install_of(venv: &Path, package: &Path) -> Option<String> {
    let wanted = package.to_str()?;
    venv::dist_infos(venv).into_iter().find_map(|(name, dist)| {
        let json = read_bounded(&dist, "direct_url.json", 64 * 1024).ok()?;
        let url: serde_json::Value = serde_json::from_slice(&json).ok()?;
        let editable = url["dir_info"]["editable"].as_bool() == Some(true);
        let of_package = url["url"].as_str().and_then(|url| path_of(url).ok()).as_deref() == Some(wanted);
        (editable && of_package).then_some(name)
    })
}

/// `name-1.0-0.editable-py3-none-any.whl` → `name-1.0.dist-info`: the
/// wheel spec names both from the same escaped name and version.
fn dist_info_name(wheel_name: &str) -> Option<String> {
    let stem = wheel_name.strip_suffix(".whl")?;
    let mut parts = stem.split('-');
    let (name, version) = (parts.next()?, parts.next()?);
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+!".contains(&b));
    (plain(name) && plain(version)).then(|| format!("{name}-{version}.dist-info"))
}

/// The dist-info directory in the venv's `lib/python*/site-packages`.
fn open_dist_info(venv: &Path, dist_info: &str) -> io::Result<Dir> {
    venv::site_packages(venv)
        .iter()
        .find_map(|site| site.open_dir(dist_info).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {dist_info} in {}/lib/python*/site-packages", venv.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_follows_the_wheel_name() {
        assert_eq!(
            dist_info_name("test_agent-1.0.0-0.editable-py3-none-any.whl").as_deref(),
            Some("test_agent-1.0.0.dist-info")
        );
        assert_eq!(
            dist_info_name("a-1+local-py3-none-any.whl").as_deref(),
            Some("a-1+local.dist-info")
        );
        assert_eq!(dist_info_name("../x-1-py3-none-any.whl"), None);
        assert_eq!(dist_info_name("x-1-py3-none-any.zip"), None);
        assert_eq!(dist_info_name("x.whl"), None);
    }

    #[test]
    fn the_record_names_the_package_as_an_editable_install() {
        let venv = tempfile::tempdir().expect("dir");
        let dist = venv.path().join("lib/python3.11/site-packages/a-1.dist-info");
        std::fs::create_dir_all(&dist).expect("mkdir");
        std::fs::write(
            dist.join("direct_url.json"),
            r#"{"url":"file:///tmp/a-1-py3-none-any.whl"}"#,
        )
        .expect("write");
        std::fs::write(
            dist.join("RECORD"),
            "a-1.dist-info/METADATA,sha256=x,1\na-1.dist-info/direct_url.json,sha256=old,40\na-1.dist-info/RECORD,,\n",
        )
        .expect("write");
        record_editable(
            venv.path(),
            "a-1-0.editable-py3-none-any.whl",
            Path::new("/r/packages/a@1"),
        )
        .expect("recorded");
        let json = std::fs::read(dist.join("direct_url.json")).expect("read");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(value["url"], "file:///r/packages/a@1");
        assert_eq!(value["dir_info"]["editable"], true);
        let record = std::fs::read_to_string(dist.join("RECORD")).expect("read");
        let expected = format!(
            "a-1.dist-info/direct_url.json,sha256={},{}",
            URL_SAFE_NO_PAD.encode(Sha256::digest(&json)),
            json.len()
        );
        assert_eq!(
            record
                .lines()
                .filter(|l| l.contains("direct_url.json"))
                .collect::<Vec<_>>(),
            [expected.as_str()]
        );
        assert!(record.contains("a-1.dist-info/METADATA,sha256=x,1\n"));
    }

    #[test]
    fn a_symlinked_dist_info_cannot_send_the_write_outside_the_venv() {
        let (venv, outside) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let site = venv.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).expect("mkdir");
        std::fs::write(outside.path().join("RECORD"), "").expect("write");
        std::os::unix::fs::symlink(outside.path(), site.join("a-1.dist-info")).expect("symlink");
        let result = record_editable(venv.path(), "a-1-py3-none-any.whl", Path::new("/r/a@1"));
        assert!(result.is_err(), "the symlink was followed");
        assert!(!outside.path().join("direct_url.json").exists());
    }
}
