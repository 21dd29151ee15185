//! A venv's SBOM: CycloneDX 1.5 JSON, written beside its lock. The agent is
//! the root component; every distribution of the lock is a library
//! component with its version, package URL, SHA-256 hashes and origin, all
//! from the lock the host checked. Licences come from what each installed
//! distribution's metadata declares (`License-Expression`, else `License`),
//! read through handles under the venv, bounded; they are a claim of the
//! distribution's, reported as made.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use cyclonedx_bom::models::component::Classification;
use cyclonedx_bom::models::external_reference::{ExternalReference, ExternalReferenceType, ExternalReferences};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};
use cyclonedx_bom::models::tool::{Tool, Tools};
use cyclonedx_bom::prelude::{
    Bom, Component, Components, Metadata, NormalizedString, Purl, SpdxExpression, SpecVersion, Uri,
};
use uv_normalize::PackageName;

use crate::fs::root::open_file_nofollow;
use crate::fs::venv;
use crate::install::pylock::Lock;

/// Most of a `METADATA` file read for its headers.
const MAX_METADATA_HEAD: u64 = 256 * 1024;
/// Longest licence text kept (a `License` header may hold a whole licence).
const MAX_LICENCE: usize = 200;

/// A licence as a distribution's metadata declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Licence {
    /// `License-Expression` (PEP 639): an SPDX expression.
    Expression(String),
    /// `License`: free text, its first line.
    Named(String),
}

/// The SBOM of a venv holding `lock`'s distributions, for the agent `name`
/// `version`, with `licences` by normalised name.
pub(crate) fn sbom(lock: &Lock, agent: (&str, &str), licences: &BTreeMap<String, Licence>) -> Result<String, String> {
    let (name, version) = agent;
    let root = Component::new(
        Classification::Application,
        name,
        version,
        Some(format!("agent:{name}")),
    );
    let components = lock
        .named()
        .map(|named| {
            let version = named.version.unwrap_or_default();
            let mut component = Component::new(
                Classification::Library,
                named.name,
                version,
                Some(format!("pypi:{}", named.name)),
            );
            if named.version.is_none() {
                component.version = None;
            }
            component.purl = Purl::new("pypi", named.name, version).ok();
            if !named.sha256.is_empty() {
                component.hashes = Some(Hashes(
                    named
                        .sha256
                        .iter()
                        .map(|sha256| Hash {
                            alg: HashAlgorithm::SHA_256,
                            content: HashValue(sha256.to_string()),
                        })
                        .collect(),
                ));
            }
            if let Some(origin) = named.origin {
                component.external_references = Some(ExternalReferences(vec![ExternalReference::new(
                    ExternalReferenceType::Distribution,
                    Uri::new(origin),
                )]));
            }
            component.licenses = licences.get(named.name).map(|licence| {
                Licenses(vec![match licence {
                    Licence::Expression(expression) => LicenseChoice::Expression(SpdxExpression::new(expression)),
                    Licence::Named(text) => LicenseChoice::License(License::named_license(text)),
                }])
            });
            component
        })
        .collect();
    let bom = Bom {
        serial_number: None,
        metadata: Some(Metadata {
            timestamp: None,
            tools: Some(Tools::List(vec![Tool {
                vendor: None,
                name: Some(NormalizedString::new("par")),
                version: Some(NormalizedString::new(env!("CARGO_PKG_VERSION"))),
                hashes: None,
                external_references: None,
            }])),
            authors: None,
            component: Some(root),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: None,
            lifecycles: None,
        }),
        components: Some(Components(components)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The licence each distribution installed in `venv` declares, by
/// normalised name: every `*.dist-info/METADATA` of its site-packages,
/// never through a symlink, read up to the end of its headers.
pub(crate) fn licences_in(venv: &Path) -> BTreeMap<String, Licence> {
    venv::dist_infos(venv)
        .into_iter()
        .filter_map(|(name, dist)| {
            let name = PackageName::from_str(&name).ok()?;
            let mut head = Vec::new();
            open_file_nofollow(&dist, "METADATA")
                .ok()?
                .take(MAX_METADATA_HEAD)
                .read_to_end(&mut head)
                .ok()?;
            Some((name.to_string(), licence(&String::from_utf8_lossy(&head))?))
        })
        .collect()
}

/// The licence a `METADATA` file's headers declare: `License-Expression`
/// first, else the first line of `License` (neither empty nor `UNKNOWN`).
fn licence(metadata: &str) -> Option<Licence> {
    let headers = metadata.split("\n\n").next().unwrap_or_default();
    let value = |header: &str| {
        headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            let value = value.trim();
            let plain = !value.is_empty() && value != "UNKNOWN" && !value.chars().any(char::is_control);
            (key.eq_ignore_ascii_case(header) && plain).then(|| value.chars().take(MAX_LICENCE).collect::<String>())
        })
    };
    value("License-Expression")
        .map(Licence::Expression)
        .or_else(|| value("License").map(Licence::Named))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_licence_is_the_expression_else_the_first_line_of_the_licence() {
        let head = "Metadata-Version: 2.4\nName: x\nLicense-Expression: Apache-2.0 OR BSD-2-Clause\nLicense: MIT\n\nbody License-Expression: no\n";
        assert_eq!(
            licence(head),
            Some(Licence::Expression("Apache-2.0 OR BSD-2-Clause".into()))
        );
        assert_eq!(
            licence("Name: x\nLicense: BSD License\n        Copyright (c) someone\n"),
            Some(Licence::Named("BSD License".into()))
        );
        assert_eq!(licence("Name: x\nLicense: UNKNOWN\n"), None);
        assert_eq!(licence("Name: x\n\nLicense: in the body\n"), None);
    }
}
