//! Records of running agents, in `{root}/agents/`: what `list` shows as in
//! use, what `gc` never removes, and what `remove --force` stops.
//!
//! The loader that starts an agent writes one record (under a name no other
//! record has, sealed with the root's key) and holds an exclusive `flock`
//! on it until the agent is reaped, when it removes it. The kernel drops the
//! lock when that loader dies, and the agent dies with its loader, so a
//! record whose lock can be taken is stale and is removed by whoever finds
//! it. A record names its agent by pid and start time (and its sandbox's
//! PID namespace), never by pid alone: whoever acts on it checks that
//! identity first (`crate::exec::identity`), so a pid reused after the
//! agent ended names nothing.

use std::io::{self, Read as _, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::fs::{Dir, OpenOptions};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::fs::root::{Area, RootDir, open_file_nofollow};
use crate::fs::seal::Sealed;
use crate::types::process::{ProcessId, SandboxId};

/// Largest record read back.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// One running agent, as the loader that started it recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentRecord {
    /// The process par started (bubblewrap, when sandboxed): pid and start time.
    pub process: ProcessId,
    /// Its sandbox's PID namespace, as bubblewrap reported it.
    pub sandbox: Option<SandboxId>,
    /// The loader watching it.
    pub owner: u32,
    /// Its app.
    pub app_id: String,
    /// The tree's name under `{root}/trees/`.
    pub tree: String,
    /// The venv's name under `{root}/venvs/`.
    pub venv: String,
    /// When it started, in seconds since the epoch.
    pub started: u64,
}

/// A record this loader holds; removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    agents: Dir,
    name: String,
    _lock: crate::fs::lock::LockFile,
}

impl Registration {
    /// Writes `record` and holds its lock. The record is written and locked
    /// under a temporary name and renamed into place, so no reader ever
    /// finds it unlocked.
    pub(crate) fn register(root: &RootDir, record: &AgentRecord) -> io::Result<Self> {
        let agents = root.dir(Area::Agents).try_clone()?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("{}-{}-{nanos}.json", record.process.pid, std::process::id());
        let temporary = format!(".{name}.tmp");
        let mut file = agents
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true))?
            .into_std();
        let written = rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(io::Error::from)
            .and_then(|()| {
                let json = serde_json::to_vec(record).map_err(io::Error::other)?;
                file.write_all(&root.seal().seal(Sealed::Agent, &json))
            })
            .and_then(|()| agents.rename(&temporary, &agents, &name));
        if let Err(error) = written {
            let _ = agents.remove_file(&temporary);
            return Err(error);
        }
        Ok(Self {
            agents,
            name,
            _lock: crate::fs::lock::LockFile::new(file),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.agents.remove_file(&self.name);
    }
}

/// The agents whose loaders still watch them, by their sealed records;
/// stale records (and temporary files of killed loaders) are removed on
/// the way. Whether each process is still the one recorded is the caller's
/// to check (by its identity).
pub(crate) fn running(root: &RootDir) -> Vec<AgentRecord> {
    let agents = root.dir(Area::Agents);
    let Ok(entries) = agents.entries() else {
        return Vec::new();
    };
    let mut running = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match read_if_held(root, &name) {
            Held::Live(record) => running.push(record),
            Held::Stale => {
                let _ = agents.remove_file(&name);
            }
            Held::Unreadable => {}
        }
    }
    running.sort_by_key(|record| record.process.pid);
    running
}

enum Held {
    Live(AgentRecord),
    Stale,
    Unreadable,
}

/// The record `name`, if its lock is held and its seal holds.
fn read_if_held(root: &RootDir, name: &str) -> Held {
    let agents = root.dir(Area::Agents);
    let Ok(mut file) = open_file_nofollow(agents, name) else {
        return Held::Unreadable;
    };
    match crate::fs::lock::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => return Held::Stale,
        Err(e) if e != rustix::io::Errno::WOULDBLOCK => return Held::Unreadable,
        Err(_) => {}
    }
    let mut text = Vec::new();
    if (&mut file).take(MAX_RECORD_BYTES).read_to_end(&mut text).is_err() {
        return Held::Unreadable;
    }
    let Some(Ok(record)) = root
        .seal()
        .unseal(Sealed::Agent, &text)
        .map(serde_json::from_slice::<AgentRecord>)
    else {
        // A temporary file being written: its loader holds the lock.
        return Held::Unreadable;
    };
    Held::Live(record)
}
