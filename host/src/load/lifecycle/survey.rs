//! A snapshot of what loads left under the root, grouped by app: each
//! published tree with its records, venvs and links, and what belongs to no
//! tree (venvs no record names, records whose tree is gone, links that
//! point nowhere, and things par never makes there). Read through the
//! root's handles, sizes included, and never through a symlink.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use cap_std::fs::MetadataExt;

use crate::fs::agents::{self, AgentRecord};
use crate::fs::redeploy::Deployment;
use crate::fs::root::{Area, RootDir};
use crate::fs::usage::{Tally, Usage};
use crate::types::trust::Signed;

/// One entry under one area of the root, and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub area: Area,
    pub name: String,
    pub tally: Tally,
}

/// A published tree and everything that belongs to it.
#[derive(Debug)]
pub(crate) struct Deployed {
    pub tree: Item,
    pub version: String,
    pub digest: String,
    /// Records of loads of this tree.
    pub records: Vec<Item>,
    /// The venvs those records name, newest record's first.
    pub venvs: Vec<Item>,
    /// Links under `packages/` pointing at this tree.
    pub links: Vec<Item>,
    /// When it was last loaded: its newest record, else when the tree was published.
    pub loaded: SystemTime,
    /// Host pids of running agents started from it.
    pub agents: Vec<u32>,
    /// Who signed the archive, as its newest record says.
    pub signed: Option<Signed>,
}

/// Everything of one app.
#[derive(Debug, Default)]
pub(crate) struct AppSurvey {
    /// Most recently loaded first.
    pub deployments: Vec<Deployed>,
    /// Venvs no record names.
    pub orphan_venvs: Vec<Item>,
    /// Records whose tree is gone, or that cannot be read.
    pub stale_records: Vec<Item>,
    /// Links whose target is not a tree under the root.
    pub dangling_links: Vec<Item>,
    /// Entries par never makes (a symlink in `trees/` or `venvs/`, a file).
    pub strays: Vec<Item>,
}

/// The whole root.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    pub usage: Usage,
    pub apps: BTreeMap<String, AppSurvey>,
    /// Entries that name no app at all.
    pub strays: Vec<Item>,
    pub agents: Vec<AgentRecord>,
}

impl Survey {
    /// Surveys the root; with `only`, just that app's entries are gathered
    /// (everything is still walked, so the root's total is whole).
    pub(crate) fn take(root: &RootDir, only: Option<&str>) -> Self {
        let mut survey = Survey {
            // Only agents still the processes recorded: a pid reused since names nothing.
            agents: agents::running(root)
                .into_iter()
                .filter(|agent| agent.process.open().is_some())
                .collect(),
            ..Survey::default()
        };
        let wanted = |app: &str| only.is_none_or(|only| only == app);
        let mut usage = Usage::default();

        // Records first: they say which venv and which tree belong together.
        let mut by_tree: BTreeMap<String, Vec<(Item, Deployment, SystemTime)>> = BTreeMap::new();
        let mut stale_records = Vec::new();
        for (name, record, loaded) in Deployment::all(root) {
            let item = walk(&mut usage, root, Area::Deployments, &name);
            let tree = record
                .as_ref()
                .and_then(|r| root.name_in(&r.package().path, Area::Trees))
                .map(str::to_owned);
            match (record, tree) {
                (Some(record), Some(tree))
                    if root.dir(Area::Trees).symlink_metadata(&tree).is_ok_and(|m| m.is_dir()) =>
                {
                    by_tree.entry(tree).or_default().push((item, record, loaded));
                }
                (record, _) => {
                    let app = record.map(|r| r.app_id().to_owned()).or_else(|| record_app(&name));
                    stale_records.push((app, item));
                }
            }
        }
        for (app, item) in stale_records {
            match app {
                Some(app) if wanted(&app) => survey.app(&app).stale_records.push(item),
                Some(_) => {}
                None if only.is_none() => survey.strays.push(item),
                None => {}
            }
        }

        let links = links(root);
        let mut named_venvs = BTreeSet::new();
        let trees = entries(root, Area::Trees);
        for name in trees {
            let is_dir = root.dir(Area::Trees).symlink_metadata(&name).is_ok_and(|m| m.is_dir());
            let parsed = parse_tree_name(&name);
            let app = parsed.as_ref().map(|(app, _, _)| app.clone());
            if app.as_deref().is_some_and(|app| !wanted(app)) || (app.is_none() && only.is_some()) {
                let _ = walk(&mut usage, root, Area::Trees, &name);
                continue;
            }
            let tree = walk(&mut usage, root, Area::Trees, &name);
            let (Some((app, version, digest)), true) = (parsed, is_dir) else {
                match app {
                    Some(app) => survey.app(&app).strays.push(tree),
                    None => survey.strays.push(tree),
                }
                continue;
            };
            let mut records = by_tree.remove(&name).unwrap_or_default();
            records.sort_by_key(|(_, _, loaded)| std::cmp::Reverse(*loaded));
            let loaded = records.first().map(|(_, _, loaded)| *loaded).unwrap_or_else(|| {
                root.dir(Area::Trees)
                    .symlink_metadata(&name)
                    .map(|m| ctime(&m))
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            });
            let mut venvs: Vec<String> = Vec::new();
            for (_, record, _) in &records {
                if let Some(venv) = root.name_in(&record.package().venv_path, Area::Venvs)
                    && !venvs.iter().any(|known| known == venv)
                {
                    venvs.push(venv.to_owned());
                }
            }
            named_venvs.extend(venvs.iter().cloned());
            let venvs = venvs
                .into_iter()
                .filter(|venv| root.dir(Area::Venvs).symlink_metadata(venv).is_ok_and(|m| m.is_dir()))
                .map(|venv| walk(&mut usage, root, Area::Venvs, &venv))
                .collect();
            let links = links
                .iter()
                .filter(|(_, target)| target.as_deref() == Some(name.as_str()))
                .map(|(link, _)| walk(&mut usage, root, Area::Packages, link))
                .collect();
            let agents = survey
                .agents
                .iter()
                .filter(|agent| agent.tree == name)
                .map(|agent| agent.process.pid)
                .collect();
            let signed = records
                .first()
                .and_then(|(_, record, _)| record.package().signed.clone());
            survey.app(&app).deployments.push(Deployed {
                tree,
                version,
                digest,
                records: records.into_iter().map(|(item, _, _)| item).collect(),
                venvs,
                links,
                loaded,
                agents,
                signed,
            });
        }

        for name in entries(root, Area::Venvs) {
            if named_venvs.contains(&name) {
                continue;
            }
            let app = name.rsplit_once('_').map(|(app, _)| app.to_owned());
            if app.as_deref().is_some_and(|app| !wanted(app)) || (app.is_none() && only.is_some()) {
                let _ = walk(&mut usage, root, Area::Venvs, &name);
                continue;
            }
            let is_dir = root.dir(Area::Venvs).symlink_metadata(&name).is_ok_and(|m| m.is_dir());
            let item = walk(&mut usage, root, Area::Venvs, &name);
            match (app, is_dir) {
                (Some(app), true) => survey.app(&app).orphan_venvs.push(item),
                (Some(app), false) => survey.app(&app).strays.push(item),
                (None, _) => survey.strays.push(item),
            }
        }

        let trees: BTreeSet<String> = survey
            .apps
            .values()
            .flat_map(|app| app.deployments.iter().map(|d| d.tree.name.clone()))
            .collect();
        for (link, target) in links {
            let app = link.split_once('@').map(|(app, _)| app.to_owned());
            let points_at_tree = target.as_ref().is_some_and(|t| trees.contains(t));
            if points_at_tree || app.as_deref().is_some_and(|app| !wanted(app)) {
                continue;
            }
            let item = walk(&mut usage, root, Area::Packages, &link);
            match app {
                Some(app) => survey.app(&app).dangling_links.push(item),
                None if only.is_none() => survey.strays.push(item),
                None => {}
            }
        }

        // The areas themselves, and what is in those whose entries are no item.
        for area in Area::ALL {
            let items = matches!(area, Area::Trees | Area::Venvs | Area::Packages | Area::Deployments);
            let _ = usage.walk_dir(root.dir(area), !items);
        }
        for app in survey.apps.values_mut() {
            app.deployments
                .sort_by(|a, b| b.loaded.cmp(&a.loaded).then_with(|| a.tree.name.cmp(&b.tree.name)));
        }
        survey.usage = usage;
        survey
    }

    /// Every app that has a tree, venv, link or record under the root,
    /// from the names alone: what `gc` locks before it surveys.
    pub(crate) fn app_names(root: &RootDir) -> BTreeSet<String> {
        let trees = entries(root, Area::Trees)
            .into_iter()
            .filter_map(|n| parse_tree_name(&n).map(|(app, _, _)| app));
        let venvs = entries(root, Area::Venvs)
            .into_iter()
            .filter_map(|n| n.rsplit_once('_').map(|(app, _)| app.to_owned()));
        let links = entries(root, Area::Packages)
            .into_iter()
            .filter_map(|n| n.split_once('@').map(|(app, _)| app.to_owned()));
        let records = entries(root, Area::Deployments)
            .into_iter()
            .filter_map(|n| record_app(&n));
        trees
            .chain(venvs)
            .chain(links)
            .chain(records)
            .filter(|app| par_rules::names::is_safe_component(app, false))
            .collect()
    }

    fn app(&mut self, app: &str) -> &mut AppSurvey {
        self.apps.entry(app.to_owned()).or_default()
    }
}

/// `{app_id}@{version}.{digest}` split; app ids never hold `@`, digests never `.`.
pub(crate) fn parse_tree_name(name: &str) -> Option<(String, String, String)> {
    let (app, rest) = name.split_once('@')?;
    let (version, digest) = rest.rsplit_once('.')?;
    let valid = par_rules::names::is_safe_component(app, false)
        && !version.is_empty()
        && !digest.is_empty()
        && digest.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| (app.to_owned(), version.to_owned(), digest.to_owned()))
}

/// The app of a record named `{digest}.{app_id}.json` (`_` when the load named none).
fn record_app(name: &str) -> Option<String> {
    let app = name.strip_suffix(".json")?.split_once('.')?.1;
    (app != "_" && par_rules::names::is_safe_component(app, false)).then(|| app.to_owned())
}

/// Every entry of `packages/`, with the tree each link points at (when it
/// points at a name directly in `trees/`).
fn links(root: &RootDir) -> Vec<(String, Option<String>)> {
    entries(root, Area::Packages)
        .into_iter()
        .filter(|name| {
            root.dir(Area::Packages)
                .symlink_metadata(name)
                .is_ok_and(|m| m.is_symlink())
        })
        .map(|name| {
            let target = root
                .dir(Area::Packages)
                .read_link_contents(&name)
                .ok()
                .and_then(|target| root.name_in(&target, Area::Trees).map(str::to_owned));
            (name, target)
        })
        .collect()
}

/// Names in one area, sorted (names that are not UTF-8 are not par's and are skipped).
fn entries(root: &RootDir, area: Area) -> Vec<String> {
    let mut names: Vec<String> = root
        .dir(area)
        .entries()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn walk(usage: &mut Usage, root: &RootDir, area: Area, name: &str) -> Item {
    Item {
        area,
        name: name.to_owned(),
        tally: usage.walk(root.dir(area), name),
    }
}

fn ctime(meta: &cap_std::fs::Metadata) -> SystemTime {
    let seconds = u64::try_from(meta.ctime()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_names_split_into_app_version_and_digest() {
        assert_eq!(
            parse_tree_name("my-app@1.2.3.0123456789abcdef"),
            Some(("my-app".into(), "1.2.3".into(), "0123456789abcdef".into()))
        );
        assert_eq!(parse_tree_name("no-at-sign.0123"), None);
        assert_eq!(parse_tree_name("app@1.0.not-hex"), None);
        assert_eq!(parse_tree_name("../x@1.ab"), None);
        assert_eq!(record_app("abc.my-app.json").as_deref(), Some("my-app"));
        assert_eq!(record_app("abc._.json"), None);
    }
}
