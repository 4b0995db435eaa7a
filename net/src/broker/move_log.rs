//! AlterReplicaLogDirs: a partition's log moves to another data directory
//! of this broker while it keeps serving.
//!
//! The move copies the log's files into the target directory under a name
//! that start-up discards (`.<name>.deleted-moving`) while the log serves
//! from where it is; then it takes the log out of service (requests get
//! NOT_LEADER_OR_FOLLOWER, which clients retry), closes it, copies what
//! changed since, and makes the copy durable. The copy is renamed to
//! `.<name>.moved` (complete), the old directory is set aside, and the copy
//! gets its final name; the log is opened there and serves again. A crash
//! at any point leaves a log start-up can settle (`finish_moves`): before
//! the copy is complete, the old directory is the log; after, the copy is.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use sluice_engine::{DmaStorage, PartitionLog, Storage};

use super::{Broker, PartitionKey};
use crate::constants::OFF_SHARD_POLL;
use crate::errors::code;

/// Suffix of a complete copy that has not yet replaced its source.
const MOVED_SUFFIX: &str = ".moved";

impl Broker {
    /// On the partition's owner shard: starts moving each `(topic,
    /// partition)` to data directory `target`; one Kafka error code each.
    pub(super) fn start_moves(self: &Rc<Self>, moves: Vec<(String, i32, usize)>) -> Vec<i16> {
        moves
            .into_iter()
            .map(|(topic, partition, target)| self.start_move(topic, partition, target))
            .collect()
    }

    fn start_move(self: &Rc<Self>, topic: String, partition: i32, target: usize) -> i16 {
        let Some(log) = self.log(&topic, partition) else {
            // As Kafka: the directory is remembered for when the replica is
            // made here, and the request is told there is none yet.
            self.log_dirs.borrow_mut().prefer(&topic, partition, target);
            return code::NOT_LEADER_OR_FOLLOWER;
        };
        if self.log_dirs.borrow().index_of(log.dir()) == Some(target) {
            return code::NONE;
        }
        let key: PartitionKey = (topic, partition);
        if self.moving.borrow().contains_key(&key) {
            // One move at a time per partition; it goes where it was sent.
            return code::NONE;
        }
        self.moving.borrow_mut().insert(key.clone(), target);
        let this = Rc::clone(self);
        glommio::spawn_local(async move {
            match this.move_log(&key, target).await {
                Ok(destination) => {
                    tracing::info!(topic = %key.0, partition = key.1, to = %destination.display(), "partition moved to another data directory")
                }
                Err(reason) => {
                    tracing::warn!(topic = %key.0, partition = key.1, %reason, "moving a partition to another data directory failed; it stays where it was")
                }
            }
            this.moving.borrow_mut().remove(&key);
        })
        .detach();
        code::NONE
    }

    async fn move_log(&self, key: &PartitionKey, target: usize) -> Result<PathBuf, String> {
        let log = self.log(&key.0, key.1).ok_or("the partition went away")?;
        let source = log.dir().to_path_buf();
        let name = source
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or("the log's directory has no name")?
            .to_string();
        let root = self.log_dirs.borrow().dirs()[target].clone();
        let staging = root.join(format!(".{name}.deleted-moving"));
        let moved = root.join(format!(".{name}{MOVED_SUFFIX}"));
        let destination = root.join(&name);
        // Whatever changes after this is copied again in the switch (a tail
        // page can be rewritten in place, so the size alone does not tell).
        let copy_started = SystemTime::now();
        let copying = (source.clone(), staging.clone());
        off_shard(move || copy_dir(&copying.0, &copying.1, None))
            .await
            .map_err(|error| format!("copying to {}: {error}", staging.display()))?;
        if self.shutting_down.get() {
            let _ = DmaStorage.remove_dir_all(&staging);
            return Err("the broker is stopping".into());
        }
        // The switch: out of service, closed, the rest copied.
        let config = log.config();
        self.logs.borrow_mut().remove(&key.0, key.1);
        let closed = log.close().await;
        drop(log);
        let finished = match closed {
            Ok(()) => {
                let paths = (
                    source.clone(),
                    staging.clone(),
                    moved.clone(),
                    destination.clone(),
                );
                off_shard(move || {
                    let (source, staging, moved, destination) = paths;
                    copy_dir(&source, &staging, Some(copy_started))?;
                    std::fs::rename(&staging, &moved)?;
                    sync_dir(moved.parent().unwrap_or(Path::new(".")))?;
                    // From here the copy is the log: the source goes, then
                    // the copy takes the partition's name.
                    set_aside(&source)?;
                    std::fs::rename(&moved, &destination)?;
                    sync_dir(destination.parent().unwrap_or(Path::new(".")))
                })
                .await
                .map_err(|error| format!("switching to {}: {error}", destination.display()))
            }
            Err(error) => Err(format!("closing the log: {error}")),
        };
        let at = match &finished {
            Ok(()) => destination.clone(),
            Err(_) => {
                let _ = DmaStorage.remove_dir_all(&staging);
                source.clone()
            }
        };
        if self.shutting_down.get() {
            return finished.map(|()| destination);
        }
        let reopened = PartitionLog::open(DmaStorage, at.clone(), config, Rc::clone(&self.cache))
            .await
            .map_err(|error| format!("opening {}: {error}", at.display()))?;
        if let Some(state) = self.metadata().partition(&key.0, key.1) {
            if state.leader == self.config.node_id {
                reopened
                    .set_leader_epoch(sluice_engine::types::LeaderEpoch(state.leader_epoch))
                    .await
                    .map_err(|error| format!("recording the leader epoch: {error}"))?;
            }
        }
        self.logs.borrow_mut().insert(&key.0, key.1, reopened);
        if finished.is_ok() {
            let mut log_dirs = self.log_dirs.borrow_mut();
            log_dirs.released(&source);
            log_dirs.placed_at(&name, target);
        }
        finished.map(|()| destination)
    }
}

/// Runs blocking file work on a thread of its own, so that the shard keeps
/// serving: the shard polls for the result (a plain thread cannot wake it).
async fn off_shard<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-move".into())
        .spawn(move || {
            let _ = sender.send(work());
        })?;
    loop {
        match receiver.try_recv() {
            Ok(result) => return result,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                glommio::timer::sleep(OFF_SHARD_POLL).await;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(std::io::Error::other("the copying thread stopped"));
            }
        }
    }
}

/// Copies the files of `from` into `to` (made if need be) and syncs them.
/// With `changed_since`, only files changed since then or of another size
/// are copied again, and files `from` no longer has are removed from `to`.
fn copy_dir(from: &Path, to: &Path, changed_since: Option<SystemTime>) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name();
        let target = to.join(&name);
        names.push(name);
        let unchanged = match (changed_since, std::fs::metadata(&target)) {
            (Some(since), Ok(copied)) => {
                copied.len() == meta.len() && meta.modified().is_ok_and(|at| at < since)
            }
            _ => false,
        };
        if unchanged {
            continue;
        }
        std::fs::copy(entry.path(), &target)?;
        std::fs::File::open(&target)?.sync_all()?;
    }
    if changed_since.is_some() {
        for entry in std::fs::read_dir(to)? {
            let entry = entry?;
            if !names.contains(&entry.file_name()) {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Renames a directory out of the way for deletion (the storage's own
/// deferred removal finishes it, or the next start does).
fn set_aside(dir: &Path) -> std::io::Result<()> {
    DmaStorage.remove_dir_all(dir)
}

/// At start, before the directories are scanned: settles moves a crash cut
/// short. A complete copy (`.<name>.moved`) replaces any other copy of the
/// partition and takes its name; an incomplete one is a `.deleted-` name
/// and goes with the other leftovers.
pub fn finish_moves(dirs: &[PathBuf]) -> Result<(), String> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = file_name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(MOVED_SUFFIX))
            else {
                continue;
            };
            let failed = |error: std::io::Error| {
                format!(
                    "finishing the move of partition {name} into {}: {error}",
                    dir.display()
                )
            };
            for other in dirs {
                let stale = other.join(name);
                if stale.exists() {
                    set_aside(&stale).map_err(failed)?;
                }
            }
            std::fs::rename(entry.path(), dir.join(name)).map_err(failed)?;
            sync_dir(dir).map_err(failed)?;
            tracing::info!(partition = name, dir = %dir.display(), "finished a move a stop cut short");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("sluice-move-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(path.join("a")).expect("a scratch directory");
            std::fs::create_dir_all(path.join("b")).expect("a scratch directory");
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_complete_copy_replaces_its_source_at_start() {
        let scratch = Scratch::new("complete");
        let (a, b) = (scratch.0.join("a"), scratch.0.join("b"));
        std::fs::create_dir_all(a.join("t-0")).expect("source");
        std::fs::write(a.join("t-0").join("0.log"), b"old").expect("a file");
        std::fs::create_dir_all(b.join(".t-0.moved")).expect("copy");
        std::fs::write(b.join(".t-0.moved").join("0.log"), b"new").expect("a file");
        finish_moves(&[a.clone(), b.clone()]).expect("settles");
        assert!(!a.join("t-0").exists());
        assert_eq!(
            std::fs::read(b.join("t-0").join("0.log")).expect("read"),
            b"new"
        );
    }

    #[test]
    fn the_second_pass_copies_what_changed_and_drops_what_went() {
        let scratch = Scratch::new("passes");
        let (from, to) = (scratch.0.join("a"), scratch.0.join("b").join("copy"));
        std::fs::write(from.join("sealed"), b"12345").expect("a file");
        std::fs::write(from.join("active"), b"1").expect("a file");
        std::fs::write(from.join("gone"), b"x").expect("a file");
        copy_dir(&from, &to, None).expect("first pass");
        let since = SystemTime::now();
        std::fs::write(from.join("active"), b"123").expect("appended");
        std::fs::remove_file(from.join("gone")).expect("retention");
        copy_dir(&from, &to, Some(since)).expect("second pass");
        assert_eq!(std::fs::read(to.join("active")).expect("read"), b"123");
        assert_eq!(std::fs::read(to.join("sealed")).expect("read"), b"12345");
        assert!(!to.join("gone").exists());
    }
}
