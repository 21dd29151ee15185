//! Lifecycle: listing what loads left under the root, removing an app, and
//! collecting what is no longer needed.
//!
//! Removal is safe against loads and agents running at the same time:
//! `gc` holds each app's lock exclusively (passing over an app whose lock a
//! load or agent start holds), `remove` waits for it, and neither takes what
//! a running agent uses (`remove --force` stops the agent first). Whatever
//! goes is first renamed into `{root}/trash/` under those locks (records
//! first, so no load takes a deployment for current while it goes) and only
//! deleted once the locks are released; a `gc` killed halfway leaves a trash
//! directory the next loader sweeps, and nothing a load could mistake for
//! finished. Every step goes through the root's handles: a symlink planted
//! anywhere is removed as a link, never followed.

mod plan;
mod survey;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Orchestrator, check_app_id};
use crate::exec::identity;
use crate::fs::cache_dir::CacheDir;
use crate::fs::lock::AppLock;
use crate::fs::root::{Area, RootDir, open_dir_nofollow, read_bounded};
use crate::fs::staging::Scratch;
use crate::fs::venv;
use crate::install::editable::{Generation, discard_generations, generations, users};
use crate::types::error::LifecycleError;
use crate::types::lifecycle::{
    AppListing, BuildEnvironment, Collection, DeploymentListing, GcOptions, Listing, Reason, Removed, RemovedKind,
    RunningAgent,
};
use plan::{Planned, Rules};

/// Largest SBOM read back: far above what a venv's distributions make.
const MAX_SBOM_BYTES: u64 = 64 * 1024 * 1024;
use survey::Survey;

/// How long `remove --force` gives an agent to stop after SIGTERM.
const FORCE_STOP_GRACE: Duration = Duration::from_secs(5);

impl Orchestrator {
    /// Every app under the root, with its deployments and their sizes.
    pub(crate) fn list(&self) -> Result<Listing, LifecycleError> {
        let root = &self.root;
        let survey = Survey::take(root, None);
        let path = |area: Area, name: &str| root.join(area, name);
        let apps = survey
            .apps
            .iter()
            .map(|(app_id, found)| AppListing {
                app_id: app_id.clone(),
                deployments: found
                    .deployments
                    .iter()
                    .enumerate()
                    .map(|(rank, d)| {
                        // A file the host wrote into the deployment's venv, if it is there.
                        let in_venv = |name: &str| {
                            let venv = d.venvs.first()?;
                            let dir = open_dir_nofollow(root.dir(Area::Venvs), &venv.name).ok()?;
                            venv::has(&dir, name).then(|| path(Area::Venvs, &venv.name).join(name))
                        };
                        DeploymentListing {
                            version: d.version.clone(),
                            digest: d.digest.clone(),
                            path: path(Area::Trees, &d.tree.name),
                            link: d.links.first().map(|link| path(Area::Packages, &link.name)),
                            venv: d.venvs.first().map(|venv| path(Area::Venvs, &venv.name)),
                            lock: in_venv(venv::LOCK),
                            sbom: in_venv(venv::SBOM),
                            tree_bytes: d.tree.tally.bytes(),
                            venv_bytes: d.venvs.iter().map(|venv| venv.tally.bytes()).sum(),
                            last_loaded: unix(d.loaded),
                            current: rank == 0,
                            agents: d.agents.clone(),
                            signed: d.signed.clone(),
                        }
                    })
                    .collect(),
                orphan_venvs: found
                    .orphan_venvs
                    .iter()
                    .map(|venv| path(Area::Venvs, &venv.name))
                    .collect(),
            })
            .collect();
        let agents = survey
            .agents
            .iter()
            .map(|agent| RunningAgent {
                pid: agent.process.pid,
                owner: agent.owner,
                app_id: agent.app_id.clone(),
                path: path(Area::Trees, &agent.tree),
                venv: path(Area::Venvs, &agent.venv),
                started: agent.started,
            })
            .collect();
        let cache = self.cache_dir();
        let build_environments = cache
            .as_ref()
            .map(generations)
            .unwrap_or_default()
            .into_iter()
            .map(|generation| BuildEnvironment {
                users: cache
                    .as_ref()
                    .map(|cache| users(cache, &generation.key))
                    .unwrap_or_default(),
                path: generation.path,
                bytes: generation.bytes,
                finished: generation.finished.map_or(0, unix),
            })
            .collect();
        Ok(Listing {
            root: root.path().to_owned(),
            apps,
            build_environments,
            agents,
            root_bytes: survey.usage.total(),
        })
    }

    /// The SBOM of `app_id`'s most recently loaded deployment (of
    /// `version`, when given) that has one (see [`crate::PackageLoader::sbom`]).
    pub(crate) fn sbom(&self, app_id: &str, version: Option<&str>) -> Result<String, LifecycleError> {
        check_app_id(app_id)?;
        let root = &self.root;
        let not_found = || LifecycleError::NotFound {
            app_id: app_id.to_owned(),
            version: version.map(str::to_owned),
        };
        let listing = self.list()?;
        let app = listing
            .apps
            .iter()
            .find(|app| app.app_id == app_id)
            .ok_or_else(not_found)?;
        let venv = app
            .deployments
            .iter()
            .filter(|d| version.is_none_or(|v| d.version == v) && d.sbom.is_some())
            .find_map(|d| d.venv.as_deref())
            .ok_or_else(not_found)?;
        let name = root.name_in(venv, Area::Venvs).ok_or_else(not_found)?;
        let path = venv.join(venv::SBOM);
        let bytes = open_dir_nofollow(root.dir(Area::Venvs), name)
            .and_then(|dir| read_bounded(&dir, venv::SBOM, MAX_SBOM_BYTES))
            .map_err(LifecycleError::io("cannot read", &path))?;
        String::from_utf8(bytes).map_err(|e| LifecycleError::io("cannot read", &path)(std::io::Error::other(e)))
    }

    /// Collects what `options` says is no longer needed (see [`plan`]).
    pub(crate) fn gc(&self, options: &GcOptions) -> Result<Collection, LifecycleError> {
        self.collect(options, &[])
    }

    /// [`Orchestrator::gc`], never taking the trees in `protect`.
    pub(crate) fn collect(&self, options: &GcOptions, protect: &[String]) -> Result<Collection, LifecycleError> {
        let root = &self.root;
        let started = std::time::Instant::now();
        // Every app with anything under the root, locked if no load holds it.
        let mut locks = Vec::new();
        let (mut locked, mut busy) = (BTreeSet::new(), Vec::new());
        for app in Survey::app_names(root) {
            match AppLock::try_exclusive(root, &app)
                .map_err(LifecycleError::io("cannot lock", root.join(Area::Locks, &app)))?
            {
                Some(lock) => {
                    locks.push(lock);
                    locked.insert(app);
                }
                None => busy.push(app),
            }
        }
        let survey = Survey::take(root, None);
        let rules = Rules {
            keep: options.keep,
            max_bytes: options.max_bytes,
            older_than: options.older_than,
            now: SystemTime::now(),
            protect,
        };
        let planned = plan::collect(&survey, &locked, &rules);
        // Venvs of this root that go: they no longer count as a build environment's users.
        let leaving: BTreeSet<std::path::PathBuf> = planned
            .iter()
            .filter(|p| p.kind == RemovedKind::Venv)
            .map(|p| root.join(Area::Venvs, &p.item.name))
            .collect();
        let (mut collection, trash) = self.carry_out(&survey, planned, options.dry_run)?;
        if !options.dry_run {
            crate::fs::archive::forget_unused(root);
        }
        drop(locks);
        drop(trash);
        self.collect_build_environments(&leaving, options.dry_run, &mut collection);
        collection.busy_apps = busy;
        tracing::info!(
            removed = collection.removed.len(),
            bytes_removed = collection.bytes_removed,
            bytes_freed = collection.bytes_freed,
            busy = collection.busy_apps.len(),
            dry_run = options.dry_run,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Collected"
        );
        Ok(collection)
    }

    /// Removes `app_id` (or one version of it): its trees, links, venvs and
    /// records, under its lock. Refuses while an agent uses them, unless
    /// `force`, which stops the agent first.
    pub(crate) fn remove(
        &self,
        app_id: &str,
        version: Option<&str>,
        force: bool,
    ) -> Result<Collection, LifecycleError> {
        check_app_id(app_id)?;
        let root = &self.root;
        let lock = AppLock::exclusive(root, app_id)
            .map_err(LifecycleError::io("cannot lock", root.join(Area::Locks, app_id)))?;
        let survey = Survey::take(root, Some(app_id));
        let not_found = || LifecycleError::NotFound {
            app_id: app_id.to_owned(),
            version: version.map(str::to_owned),
        };
        let found = survey.apps.get(app_id).ok_or_else(not_found)?;
        let planned = plan::remove(found, app_id, version);
        if planned.is_empty() {
            return Err(not_found());
        }
        let trees: BTreeSet<&str> = planned.iter().map(|p| p.item.name.as_str()).collect();
        let users: Vec<_> = survey
            .agents
            .iter()
            .filter(|agent| trees.contains(agent.tree.as_str()) || trees.contains(agent.venv.as_str()))
            .collect();
        if !users.is_empty() && !force {
            return Err(LifecycleError::InUse {
                app_id: app_id.to_owned(),
                pids: users.iter().map(|agent| agent.process.pid).collect(),
            });
        }
        for agent in &users {
            tracing::info!(
                app_id,
                pid = agent.process.pid,
                "Stopping an agent before removing what it uses"
            );
            if !identity::stop(&agent.process, agent.sandbox.as_ref(), FORCE_STOP_GRACE) {
                return Err(LifecycleError::Stop {
                    pid: agent.process.pid,
                    detail: "still running after SIGKILL".into(),
                });
            }
        }
        let (mut collection, trash) = self.carry_out(&survey, planned, false)?;
        collection.stopped_agents = users.iter().map(|agent| agent.process.pid).collect();
        drop(lock);
        drop(trash);
        tracing::info!(
            app_id,
            removed = collection.removed.len(),
            bytes_freed = collection.bytes_freed,
            "Removed"
        );
        Ok(collection)
    }

    fn cache_dir(&self) -> Option<CacheDir> {
        self.config
            .component_cache
            .as_deref()
            .and_then(|dir| CacheDir::open(dir).ok())
    }

    /// Removes the build environments no venv (in any root, but those
    /// `leaving`) was built in and no build holds, adding them to `collection`.
    fn collect_build_environments(
        &self,
        leaving: &BTreeSet<std::path::PathBuf>,
        dry_run: bool,
        collection: &mut Collection,
    ) {
        let Some(cache) = self.cache_dir() else {
            return;
        };
        let unused: Vec<Generation> = generations(&cache)
            .into_iter()
            .filter(|generation| users(&cache, &generation.key).iter().all(|venv| leaving.contains(venv)))
            .collect();
        let removed: BTreeSet<std::path::PathBuf> = match dry_run {
            true => unused.iter().map(|g| g.path.clone()).collect(),
            false => {
                let keys: BTreeSet<&str> = unused.iter().map(|g| g.key.as_str()).collect();
                keys.into_iter()
                    .flat_map(|key| discard_generations(&cache, key))
                    .collect()
            }
        };
        for generation in unused.into_iter().filter(|g| removed.contains(&g.path)) {
            collection.bytes_removed += generation.bytes;
            collection.bytes_freed += generation.freed;
            collection.removed.push(Removed {
                kind: RemovedKind::BuildEnvironment,
                app_id: None,
                path: generation.path,
                bytes: generation.bytes,
                reason: Reason::Unused,
            });
        }
    }

    /// Moves every planned item into a trash directory (unless `dry_run`)
    /// and reports it. The trash is returned, to be dropped (and so emptied)
    /// once the caller has released its locks: loads wait for the renames,
    /// never for the deletion.
    fn carry_out(
        &self,
        survey: &Survey,
        planned: Vec<Planned>,
        dry_run: bool,
    ) -> Result<(Collection, Option<Scratch>), LifecycleError> {
        let root = &self.root;
        let trash = match dry_run {
            true => None,
            false => Some(Scratch::create_in(root, Area::Trash, "gc-")?),
        };
        let mut done = Vec::with_capacity(planned.len());
        for (n, planned) in planned.into_iter().enumerate() {
            if let Some(trash) = &trash {
                match move_to_trash(root, &planned.item.name, planned.item.area, trash, n) {
                    Ok(()) => {
                        let path = root.join(planned.item.area, &planned.item.name);
                        tracing::debug!(path = %path.display(), "Moved to the trash");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        let path = root.join(planned.item.area, &planned.item.name);
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
                        continue;
                    }
                }
            }
            done.push(planned);
        }
        let effect = survey.usage.removing(done.iter().map(|p| &p.item.tally));
        let before = survey.usage.total();
        let removed = done
            .into_iter()
            .map(|p| Removed {
                kind: p.kind,
                app_id: p.app,
                path: root.join(p.item.area, &p.item.name),
                bytes: p.item.tally.bytes(),
                reason: p.reason,
            })
            .collect();
        let collection = Collection {
            dry_run,
            removed,
            busy_apps: Vec::new(),
            stopped_agents: Vec::new(),
            bytes_removed: effect.removed,
            bytes_freed: effect.freed,
            root_bytes_before: before,
            root_bytes_after: before.saturating_sub(effect.uncounted),
        };
        Ok((collection, trash))
    }
}

/// Renames `{area}/{name}` into the trash, as itself (a symlink stays a symlink).
fn move_to_trash(root: &RootDir, name: &str, area: Area, trash: &Scratch, n: usize) -> std::io::Result<()> {
    root.dir(area).rename(name, trash.dir(), n.to_string())
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
