//! What par reads from a registry, on arbitrary bytes: the first byte picks
//! the reader. A bundle manifest it accepts names only bundle members (by
//! par-rules' rule) or the bundle's signature, each once, in a bundle's
//! order, the package and the lock among them, with SHA-256 digests, at
//! most 1024 layers; and the manifest a push would write for those layers
//! reads back the same. A reference it accepts names a host (a `.`, a port
//! or `localhost`) and reads back the same when written out. A challenge
//! never panics and has a token for a scheme.

use par::fuzzing::{read_bundle_manifest, read_challenge, read_reference, write_bundle_manifest};
use par_rules::bundle::{EDITABLE_DIR, FILES_DIR, LOCK, MEMBERS, PACKAGE, is_member};

/// The title of the layer holding the bundle's own signature.
const BUNDLE_SIGNATURE: &str = "bundle.minisig";

/// One input.
pub(crate) fn run(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => manifest(rest),
        1 => reference(&String::from_utf8_lossy(rest)),
        _ => {
            if let Some((scheme, _)) = read_challenge(&String::from_utf8_lossy(rest)) {
                assert!(
                    !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "scheme {scheme:?}"
                );
            }
        }
    }
}

fn manifest(data: &[u8]) {
    let Ok((layers, bundle_sha256)) = read_bundle_manifest(data) else {
        return;
    };
    assert!(layers.len() <= 1024, "{} layers", layers.len());
    assert!(is_hex64(&bundle_sha256), "bundle {bundle_sha256:?}");
    let rank = |member: &str| match MEMBERS.iter().position(|m| *m == member) {
        Some(at) => at,
        None if member.starts_with(FILES_DIR) => MEMBERS.len(),
        None if member.starts_with(EDITABLE_DIR) => MEMBERS.len() + 1,
        None => MEMBERS.len() + 2,
    };
    let mut last: Option<(usize, &str)> = None;
    for (member, _, digest, _) in &layers {
        assert!(
            member == BUNDLE_SIGNATURE || is_member(member, false),
            "member {member:?}"
        );
        assert!(
            digest.strip_prefix("sha256:").is_some_and(is_hex64),
            "digest {digest:?}"
        );
        let here = (rank(member), member.as_str());
        assert!(last.is_none_or(|before| before < here), "{member} out of order");
        last = Some(here);
    }
    for needed in [PACKAGE, LOCK] {
        assert!(layers.iter().any(|(member, ..)| member == needed), "no {needed}");
    }
    let members: Vec<(String, u64, String)> = layers
        .iter()
        .map(|(member, _, digest, size)| (member.clone(), *size, digest.trim_start_matches("sha256:").to_owned()))
        .collect();
    let again = read_bundle_manifest(&write_bundle_manifest(&members, &bundle_sha256)).expect("par's own manifest");
    assert_eq!(again, (layers, bundle_sha256), "written again");
}

fn reference(text: &str) {
    let Ok((registry, repository, tag, digest, written)) = read_reference(text) else {
        return;
    };
    assert!(
        registry.contains(['.', ':']) || registry == "localhost",
        "registry {registry:?}"
    );
    assert!(
        repository
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".."),
        "repository {repository:?}"
    );
    assert!(tag.is_some() || digest.is_some(), "neither tag nor digest");
    assert_eq!(
        read_reference(&written),
        Ok((registry, repository, tag, digest, written.clone())),
        "written again"
    );
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
