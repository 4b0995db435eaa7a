//! Several data directories (Kafka's `log.dirs`): which one holds each
//! partition.
//!
//! Every partition lives in one directory, as `<topic>-<partition>`. One
//! that exists already stays where it is (found by listing the directories
//! when a shard starts); a new one goes to the directory where this shard
//! keeps the fewest partitions, and among those to the one with the most
//! free space. Shards own disjoint partitions spread evenly by hash, so
//! each shard balancing its own share balances the broker. The first
//! directory also holds the broker's metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::BrokerConfig;

/// In the first directory: every data directory this broker has kept
/// partitions in, one path a line. A listed directory found without its
/// format marker at start is a disk that is not there (not mounted, or
/// replaced), not a new directory to initialise.
const RECORD_FILE: &str = "meta/log-dirs";

/// The directories recorded in `first`.
fn recorded(first: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(first.join(RECORD_FILE))
        .map(|text| {
            text.lines()
                .filter(|line| !line.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Before the directories are prepared: a directory this broker kept
/// partitions in that is now missing or empty refuses the start with one
/// line, unless `start_without_missing_log_dirs` is set; then it is left
/// out (its partitions are empty on this broker, re-fetched from their
/// leaders if replicated) and reported offline.
pub fn check_missing(config: &mut BrokerConfig) -> Result<(), String> {
    let known = recorded(&config.data_dir);
    let missing: Vec<PathBuf> = config
        .extra_log_dirs
        .iter()
        .filter(|dir| known.contains(dir))
        .filter(|dir| !dir.join(sluice_engine::metadata::FORMAT_FILE).exists())
        .cloned()
        .collect();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    if !config.start_without_missing_log_dirs {
        return Err(format!(
            "data directory {} is missing or empty, though this broker keeps partitions there (is its disk mounted?): mount it, or set start_without_missing_log_dirs=true to start without it",
            first.display()
        ));
    }
    for dir in &missing {
        tracing::warn!(dir = %dir.display(), "data directory missing: starting without it; its partitions are empty on this broker");
    }
    config.extra_log_dirs.retain(|dir| !missing.contains(dir));
    config.offline_log_dirs = missing;
    Ok(())
}

/// After the directories are prepared: records them (with any offline
/// ones, still this broker's) in the first.
pub fn record(config: &BrokerConfig) -> Result<(), String> {
    let mut dirs = recorded(&config.data_dir);
    for dir in config
        .log_dirs()
        .into_iter()
        .chain(config.offline_log_dirs.iter().cloned())
    {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let mut text = String::new();
    for dir in &dirs {
        text.push_str(&dir.display().to_string());
        text.push('\n');
    }
    let path = config.data_dir.join(RECORD_FILE);
    let staged = path.with_extension("new");
    std::fs::write(&staged, text)
        .and_then(|()| std::fs::File::open(&staged)?.sync_all())
        .and_then(|()| std::fs::rename(&staged, &path))
        .map_err(|error| {
            format!(
                "cannot record the data directories in {}: {error}",
                path.display()
            )
        })
}

/// Which directory holds each partition directory found on disk:
/// `<topic>-<partition>` → index into the directory list. Two copies of one
/// partition in different directories are refused with one line: which
/// copy is current cannot be told, and serving either could lose data.
pub fn scan(dirs: &[PathBuf]) -> Result<HashMap<String, usize>, String> {
    let mut found: HashMap<String, usize> = HashMap::new();
    for (index, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // A directory not made yet holds nothing.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(format!("cannot list {}: {error}", dir.display())),
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !is_partition_dir(&name) || !entry.path().is_dir() {
                continue;
            }
            if let Some(&other) = found.get(&name) {
                return Err(format!(
                    "partition {name} is in two data directories, {} and {}: remove the stale copy, then start again",
                    dirs[other].display(),
                    dir.display()
                ));
            }
            found.insert(name, index);
        }
    }
    Ok(found)
}

/// A partition directory's name: a topic, a dash, a partition number.
fn is_partition_dir(name: &str) -> bool {
    !name.starts_with('.')
        && !sluice_engine::storage::is_doomed(name)
        && name
            .rsplit_once('-')
            .is_some_and(|(topic, partition)| !topic.is_empty() && partition.parse::<u32>().is_ok())
}

/// Total and free bytes of the file system holding `path`; (-1, -1) when
/// it cannot be asked.
pub fn disk_space(path: &Path) -> (i64, i64) {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return (-1, -1);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string; stat is a plain struct statvfs fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return (-1, -1);
    }
    let block = stat.f_frsize as i64;
    (stat.f_blocks as i64 * block, stat.f_bavail as i64 * block)
}

/// One shard's view: the directories, where partitions were found, and how
/// many logs the shard keeps in each.
pub struct LogDirs {
    dirs: Vec<PathBuf>,
    found: HashMap<String, usize>,
    counts: Vec<usize>,
}

impl LogDirs {
    pub fn new(dirs: Vec<PathBuf>) -> Result<LogDirs, String> {
        let found = scan(&dirs)?;
        let counts = vec![0; dirs.len()];
        Ok(LogDirs {
            dirs,
            found,
            counts,
        })
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The directory of a log about to be opened, counted as this shard's.
    /// A new partition avoids the directories in `failing` (whose writes
    /// fail), unless every directory fails; one found on disk stays where
    /// it is.
    pub fn place(&mut self, topic: &str, partition: i32, failing: &[usize]) -> PathBuf {
        let name = format!("{topic}-{partition}");
        let index = match self.found.get(&name) {
            Some(&index) => index,
            None => self.emptiest(failing),
        };
        self.counts[index] += 1;
        self.dirs[index].join(name)
    }

    /// A log in `dir` was closed for good (deleted, moved off this broker).
    pub fn released(&mut self, log_dir: &Path) {
        let Some(index) = self.index_of(log_dir) else {
            return;
        };
        self.counts[index] = self.counts[index].saturating_sub(1);
        if let Some(name) = log_dir.file_name().and_then(|name| name.to_str()) {
            // A partition made again later is placed afresh.
            self.found.remove(name);
        }
    }

    /// A partition made here later goes to directory `target` (an
    /// AlterReplicaLogDirs for a replica this broker does not have yet).
    pub fn prefer(&mut self, topic: &str, partition: i32, target: usize) {
        if target < self.dirs.len() {
            self.found.insert(format!("{topic}-{partition}"), target);
        }
    }

    /// A log moved into directory `target` under `name`.
    pub fn placed_at(&mut self, name: &str, target: usize) {
        if let Some(count) = self.counts.get_mut(target) {
            *count += 1;
            self.found.insert(name.to_string(), target);
        }
    }

    /// A log placed in `log_dir` could not be opened: it no longer counts,
    /// but a partition found there stays there (placing it elsewhere would
    /// make a second copy).
    pub fn unplaced(&mut self, log_dir: &Path) {
        if let Some(index) = self.index_of(log_dir) {
            self.counts[index] = self.counts[index].saturating_sub(1);
        }
    }

    /// Which directory holds a partition's log directory.
    pub fn index_of(&self, log_dir: &Path) -> Option<usize> {
        let parent = log_dir.parent()?;
        self.dirs.iter().position(|dir| dir == parent)
    }

    /// The directory with the fewest of this shard's logs, among those not
    /// `failing` (among all when every one is); ties go to the most free
    /// space, then to the first listed.
    fn emptiest(&self, failing: &[usize]) -> usize {
        let mut candidates: Vec<usize> = (0..self.dirs.len())
            .filter(|index| !failing.contains(index))
            .collect();
        if candidates.is_empty() {
            candidates = (0..self.dirs.len()).collect();
        }
        let fewest = candidates
            .iter()
            .map(|&index| self.counts[index])
            .min()
            .unwrap_or(0);
        let tied: Vec<usize> = candidates
            .into_iter()
            .filter(|&index| self.counts[index] == fewest)
            .collect();
        if tied.len() == 1 {
            return tied[0];
        }
        tied.into_iter()
            .max_by_key(|&index| (disk_space(&self.dirs[index]).1, std::cmp::Reverse(index)))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(count: usize) -> (tempfile_dir::Dir, Vec<PathBuf>) {
        let root = tempfile_dir::Dir::new();
        let dirs = (0..count)
            .map(|index| {
                let dir = root.path().join(format!("disk{index}"));
                std::fs::create_dir_all(&dir).expect("making a test directory");
                dir
            })
            .collect();
        (root, dirs)
    }

    /// A directory removed when the test ends.
    mod tempfile_dir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "sluice-log-dirs-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).expect("making a test directory");
                Dir(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn new_partitions_spread_and_found_ones_stay() {
        let (_root, list) = dirs(2);
        std::fs::create_dir_all(list[1].join("kept-0")).expect("a partition directory");
        std::fs::create_dir_all(list[1].join("meta")).expect("not a partition");
        let mut log_dirs = LogDirs::new(list.clone()).expect("scans");
        assert_eq!(log_dirs.place("kept", 0, &[]), list[1].join("kept-0"));
        // Directory 1 holds one already: the first new one goes to 0, and
        // then they stay within one of each other.
        assert_eq!(log_dirs.place("new", 0, &[]), list[0].join("new-0"));
        for partition in 1..9 {
            let placed = log_dirs.place("new", partition, &[]);
            assert_eq!(
                placed.file_name(),
                list[0].join(format!("new-{partition}")).file_name()
            );
            assert!(
                log_dirs.counts[0].abs_diff(log_dirs.counts[1]) <= 1,
                "{:?}",
                log_dirs.counts
            );
        }
        assert_eq!(log_dirs.counts.iter().sum::<usize>(), 10);
        log_dirs.released(&list[1].join("kept-0"));
        assert_eq!(log_dirs.counts.iter().sum::<usize>(), 9);
        assert_eq!(log_dirs.index_of(&list[0].join("new-0")), Some(0));
        // Released: made again, it is placed afresh, in the emptier one.
        let again = log_dirs.place("kept", 0, &[]);
        assert_eq!(log_dirs.index_of(&again), Some(1));
    }

    #[test]
    fn new_partitions_avoid_failing_directories() {
        let (_root, list) = dirs(3);
        std::fs::create_dir_all(list[1].join("kept-0")).expect("a partition directory");
        let mut log_dirs = LogDirs::new(list.clone()).expect("scans");
        // One found in a failing directory stays there.
        assert_eq!(log_dirs.place("kept", 0, &[1]), list[1].join("kept-0"));
        for partition in 0..6 {
            let placed = log_dirs.place("new", partition, &[1]);
            assert_ne!(log_dirs.index_of(&placed), Some(1), "{placed:?}");
        }
        assert_eq!(log_dirs.counts, vec![3, 1, 3]);
        // Every directory failing: placed as if none were.
        let placed = log_dirs.place("last", 0, &[0, 1, 2]);
        assert_eq!(log_dirs.index_of(&placed), Some(1));
    }

    #[test]
    fn one_partition_in_two_directories_is_refused() {
        let (_root, list) = dirs(2);
        for dir in &list {
            std::fs::create_dir_all(dir.join("twice-3")).expect("a partition directory");
        }
        let error = scan(&list).expect_err("refused");
        assert!(error.contains("twice-3"), "{error}");
        assert!(error.contains("two data directories"), "{error}");
    }

    #[test]
    fn partition_directory_names() {
        assert!(is_partition_dir("orders-0"));
        assert!(is_partition_dir("my-topic-12"));
        assert!(!is_partition_dir("meta"));
        assert!(!is_partition_dir("-1"));
        assert!(!is_partition_dir(".orders-0.deleted-17-5-6"));
        assert!(!is_partition_dir("orders-x"));
    }
}
