//! Deciding what `gc` and `remove` take, from a [`Survey`]: pure choice,
//! nothing touched here.
//!
//! `gc` keeps each app's most recently loaded deployments (`keep`, and the
//! current one always), then takes the least recently used of the rest,
//! never an app's current one, until the root fits its budget. A deployment
//! a running agent uses, or that the caller protects (the load that just
//! finished), is never taken; neither is one loaded more recently than
//! `older_than`. What belongs to no kept deployment (venvs no record names,
//! records of vanished trees, links to nowhere, stray entries) goes too.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::survey::{AppSurvey, Deployed, Item, Survey};
use crate::types::lifecycle::{Reason, RemovedKind};

/// One thing to remove, in the order removal must follow.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub item: Item,
    pub kind: RemovedKind,
    pub app: Option<String>,
    pub reason: Reason,
}

/// What `gc` keeps and may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub keep: usize,
    pub max_bytes: Option<u64>,
    pub older_than: Option<Duration>,
    pub now: SystemTime,
    /// Trees never taken, whatever the rules say.
    pub protect: &'a [String],
}

/// What `gc` removes from the apps in `apps` (those it holds the lock of),
/// and the strays that belong to no app.
pub(crate) fn collect(survey: &Survey, apps: &BTreeSet<String>, rules: &Rules<'_>) -> Vec<Planned> {
    let in_use = used_by_agents(survey);
    let mut planned = Vec::new();
    let mut spare: Vec<(&str, &Deployed)> = Vec::new();
    for (app, found) in survey.apps.iter().filter(|(app, _)| apps.contains(*app)) {
        for (rank, deployment) in found.deployments.iter().enumerate() {
            let pinned = rank == 0 || !deployment.agents.is_empty() || rules.protect.contains(&deployment.tree.name);
            let old_enough = rules
                .older_than
                .is_none_or(|age| rules.now.duration_since(deployment.loaded).is_ok_and(|idle| idle > age));
            if pinned || !old_enough {
                continue;
            }
            if rank >= rules.keep.max(1) {
                take_deployment(&mut planned, app, deployment, Reason::Keep, &in_use);
            } else {
                spare.push((app, deployment));
            }
        }
        take_unused(&mut planned, app, found, &in_use);
    }
    if let Some(budget) = rules.max_bytes {
        spare.sort_by_key(|(_, deployment)| deployment.loaded);
        for (app, deployment) in spare {
            let removing = survey.usage.removing(planned.iter().map(|p| &p.item.tally));
            if survey.usage.total().saturating_sub(removing.uncounted) <= budget {
                break;
            }
            take_deployment(&mut planned, app, deployment, Reason::Budget, &in_use);
        }
    }
    planned.extend(survey.strays.iter().map(|item| Planned {
        item: item.clone(),
        kind: RemovedKind::Stray,
        app: None,
        reason: Reason::Unused,
    }));
    planned
}

/// Everything of `app` (or of its `version`), for `remove`.
pub(crate) fn remove(found: &AppSurvey, app: &str, version: Option<&str>) -> Vec<Planned> {
    let mut planned = Vec::new();
    let none_in_use = BTreeSet::new();
    for deployment in &found.deployments {
        if version.is_none_or(|v| v == deployment.version) {
            take_deployment(&mut planned, app, deployment, Reason::Requested, &none_in_use);
        }
    }
    if version.is_none() {
        take_unused(&mut planned, app, found, &none_in_use);
    }
    planned
}

/// Venvs running agents use, which nothing removes.
fn used_by_agents(survey: &Survey) -> BTreeSet<String> {
    survey.agents.iter().map(|agent| agent.venv.clone()).collect()
}

/// A deployment's records first (so no load takes it for current while it
/// goes), then its links, its tree and its venvs.
fn take_deployment(
    planned: &mut Vec<Planned>,
    app: &str,
    deployment: &Deployed,
    reason: Reason,
    in_use: &BTreeSet<String>,
) {
    let parts = deployment
        .records
        .iter()
        .map(|item| (item, RemovedKind::Record))
        .chain(deployment.links.iter().map(|item| (item, RemovedKind::Link)))
        .chain([(&deployment.tree, RemovedKind::Tree)])
        .chain(
            deployment
                .venvs
                .iter()
                .filter(|venv| !in_use.contains(&venv.name))
                .map(|item| (item, RemovedKind::Venv)),
        );
    planned.extend(parts.map(|(item, kind)| Planned {
        item: item.clone(),
        kind,
        app: Some(app.to_owned()),
        reason,
    }));
}

/// What of `app` belongs to no deployment.
fn take_unused(planned: &mut Vec<Planned>, app: &str, found: &AppSurvey, in_use: &BTreeSet<String>) {
    let parts = found
        .stale_records
        .iter()
        .map(|item| (item, RemovedKind::Record))
        .chain(found.dangling_links.iter().map(|item| (item, RemovedKind::Link)))
        .chain(
            found
                .orphan_venvs
                .iter()
                .filter(|venv| !in_use.contains(&venv.name))
                .map(|item| (item, RemovedKind::Venv)),
        )
        .chain(found.strays.iter().map(|item| (item, RemovedKind::Stray)));
    planned.extend(parts.map(|(item, kind)| Planned {
        item: item.clone(),
        kind,
        app: Some(app.to_owned()),
        reason: Reason::Unused,
    }));
}
