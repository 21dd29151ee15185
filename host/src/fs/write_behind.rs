//! Small files written on a thread of their own (`host-copy.write-file`):
//! the guest hands over a file's path and bytes and goes on inflating the
//! next entry while this thread creates and writes the file. Creating a
//! file costs more than the guest's work on a small one, so on two cores
//! the two overlap.
//!
//! The queue is bounded ([`MAX_PENDING`] files of at most
//! [`par_rules::limits::MAX_WRITE_BEHIND_BYTES`] each), so memory stays flat
//! however many files an archive holds. The first failure stops the writing
//! and is kept, by path, for [`WriteBehind::flush`] and [`WriteBehind::finish`].

use std::io::{self, Write as _};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use cap_std::fs::{Dir, OpenOptions};

/// Files queued at most; the guest waits when the writer is this far behind.
pub(crate) const MAX_PENDING: usize = 64;

/// A file the writer could not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write `{}`: {problem}", path.escape_default())]
pub(crate) struct WriteFailure {
    /// The path the guest gave.
    pub path: String,
    /// What went wrong.
    pub problem: WriteProblem,
}

/// Why a file was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteProblem {
    /// Something already exists at the path.
    #[error("something already exists there")]
    Exists,
    /// What the system said.
    #[error("{0}")]
    Io(String),
}

/// One request to the writer.
enum Job {
    /// Create `path` anew with these bytes.
    Write { path: String, contents: Vec<u8> },
    /// Everything sent before is done: say so.
    Flush(SyncSender<()>),
}

/// The writing thread, its queue and its first failure.
#[derive(Debug)]
pub(crate) struct WriteBehind {
    jobs: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<WriteFailure>>>,
}

impl WriteBehind {
    /// Starts a thread that writes into `tree`.
    pub(crate) fn start(tree: Dir) -> io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel(MAX_PENDING);
        let failure = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&failure);
        let worker = std::thread::Builder::new()
            .name("par-write-behind".into())
            .spawn(move || work(&tree, &queue, &kept))?;
        Ok(Self {
            jobs: Some(jobs),
            worker: Some(worker),
            failure,
        })
    }

    /// Queues a file; waits only while the queue is full. Nothing more is
    /// written once a write has failed.
    pub(crate) fn write(&self, path: String, contents: Vec<u8>) -> Result<(), WriteFailure> {
        self.failed()?;
        self.send(Job::Write { path, contents })
    }

    /// Waits until every file queued so far is written; the first failure, if any.
    pub(crate) fn flush(&self) -> Result<(), WriteFailure> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Job::Flush(done))?;
        // The writer answers every flush it receives, even after a failure.
        let _ = wait.recv();
        self.failed()
    }

    /// Stops the thread once the queue is written; the first failure, if any.
    pub(crate) fn finish(mut self) -> Result<(), WriteFailure> {
        self.stop();
        self.failed()
    }

    fn send(&self, job: Job) -> Result<(), WriteFailure> {
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => self.failed().and(Err(WriteFailure {
                path: String::new(),
                problem: WriteProblem::Io("the writing thread has stopped".into()),
            })),
        }
    }

    fn failed(&self) -> Result<(), WriteFailure> {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            self.failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(WriteFailure {
                    path: String::new(),
                    problem: WriteProblem::Io("the writing thread panicked".into()),
                });
        }
    }
}

impl Drop for WriteBehind {
    /// Never leaves the thread writing into a tree that is going away.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: writes each file until the queue closes, skipping all after
/// the first failure.
fn work(tree: &Dir, queue: &Receiver<Job>, failure: &Mutex<Option<WriteFailure>>) {
    for job in queue {
        match job {
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Write { path, contents } => {
                let mut kept = failure.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.is_some() {
                    continue;
                }
                drop(kept);
                if let Err(problem) = write_new(tree, &path, &contents) {
                    kept = failure.lock().unwrap_or_else(PoisonError::into_inner);
                    kept.get_or_insert(WriteFailure { path, problem });
                }
            }
        }
    }
}

/// Creates `path` (never an existing file, never through a symlink) with
/// exactly `contents`; a file left half-written is removed.
fn write_new(tree: &Dir, path: &str, contents: &[u8]) -> Result<(), WriteProblem> {
    let mut file = match tree.open_with(path, OpenOptions::new().write(true).create_new(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(WriteProblem::Exists),
        Err(e) => return Err(WriteProblem::Io(e.to_string())),
    };
    file.write_all(contents).map_err(|e| {
        drop(file);
        let _ = tree.remove_file(path);
        WriteProblem::Io(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, Dir) {
        let dir = tempfile::tempdir().expect("dir");
        let tree = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).expect("tree");
        (dir, tree)
    }

    #[test]
    fn files_are_written_in_full_by_the_time_flush_returns() {
        let (dir, tree) = scratch();
        let writer = WriteBehind::start(tree).expect("start");
        for i in 0..(3 * MAX_PENDING) {
            writer.write(format!("f{i}"), vec![i as u8; i]).expect("queued");
        }
        writer.flush().expect("all written");
        for i in 0..(3 * MAX_PENDING) {
            assert_eq!(
                std::fs::read(dir.path().join(format!("f{i}"))).expect("file"),
                vec![i as u8; i]
            );
        }
        writer.finish().expect("finished");
    }

    #[test]
    fn the_first_failure_is_kept_by_path_and_stops_the_writing() {
        let (dir, tree) = scratch();
        std::fs::write(dir.path().join("taken"), b"old").expect("existing file");
        let writer = WriteBehind::start(tree).expect("start");
        writer.write("first".into(), b"1".to_vec()).expect("queued");
        writer
            .write("taken".into(), b"new".to_vec())
            .expect("queued: the check is the writer's");
        writer.write("after".into(), b"2".to_vec()).ok();
        let failure = writer.flush().expect_err("an existing file is never overwritten");
        assert_eq!(
            failure,
            WriteFailure {
                path: "taken".into(),
                problem: WriteProblem::Exists
            }
        );
        assert_eq!(writer.write("later".into(), b"3".to_vec()), Err(failure.clone()));
        assert_eq!(writer.finish(), Err(failure));
        assert_eq!(std::fs::read(dir.path().join("taken")).expect("kept"), b"old");
        assert!(dir.path().join("first").exists());
        assert!(!dir.path().join("after").exists() && !dir.path().join("later").exists());

        let (dir, tree) = scratch();
        std::os::unix::fs::symlink(dir.path().join("outside"), dir.path().join("link")).expect("link");
        let writer = WriteBehind::start(tree).expect("start");
        writer.write("link".into(), b"x".to_vec()).expect("queued");
        writer.write("link/../escape".into(), b"x".to_vec()).ok();
        assert!(writer.finish().is_err(), "through a symlink");
        assert!(!dir.path().join("outside").exists());
    }

    #[test]
    fn dropping_the_writer_waits_for_what_it_was_given() {
        let (dir, tree) = scratch();
        let writer = WriteBehind::start(tree).expect("start");
        writer.write("last".into(), vec![7; 1000]).expect("queued");
        drop(writer);
        assert_eq!(std::fs::read(dir.path().join("last")).expect("written").len(), 1000);
    }
}
