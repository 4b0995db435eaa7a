//! Removals on the real backend free the name at once and delete in the
//! background, off the shard's thread; leftovers of a deletion cut short
//! are finished at the next open of the data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;
use sluice_engine::metadata::prepare_data_dir;
use sluice_engine::{DmaStorage, Storage};

/// How long a background deletion may take on a slow disk.
const DELETION_DEADLINE: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-deferred-removal-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Waits (yielding to the executor, which runs the deletion's completion)
/// until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DELETION_DEADLINE,
            "{what}: not done within {DELETION_DEADLINE:?}"
        );
        glommio::timer::sleep(POLL_INTERVAL).await;
    }
}

fn run<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::default()
        .spawn(test)
        .expect("executor")
        .join()
        .expect("test executor");
}

#[test]
fn a_removed_file_frees_its_name_at_once_and_is_deleted_later() {
    let dir = scratch_dir("file");
    run({
        let dir = dir.clone();
        move || async move {
            let storage = DmaStorage;
            let path = dir.join("00000000000000000000.log");
            std::fs::write(&path, vec![7u8; 1 << 20]).expect("writing");
            storage.remove_file(&path).expect("remove");
            assert!(!path.exists(), "the name is free as soon as remove returns");
            // A new file of the same name is not touched by the deletion.
            std::fs::write(&path, b"new").expect("re-creating");
            eventually("the removed file deleted", || {
                entries(&dir) == vec!["00000000000000000000.log".to_string()]
            })
            .await;
            assert_eq!(std::fs::read(&path).expect("reading"), b"new");

            let tree = dir.join("topic-0");
            std::fs::create_dir_all(&tree).expect("mkdir");
            std::fs::write(tree.join("00000000000000000000.log"), b"x").expect("writing");
            storage.remove_dir_all(&tree).expect("remove tree");
            assert!(!tree.exists());
            eventually("the removed tree deleted", || entries(&dir).len() == 1).await;

            let missing = storage.remove_file(&dir.join("absent.log"));
            assert_eq!(
                missing.expect_err("removing a missing file").kind(),
                std::io::ErrorKind::NotFound
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leftovers_of_a_cut_short_deletion_are_finished_at_open() {
    let dir = scratch_dir("leftover");
    // As a crash in the middle of a topic deletion leaves them.
    let doomed_tree = dir.join(".orders-0.deleted-1-2-3");
    std::fs::create_dir_all(&doomed_tree).expect("mkdir");
    std::fs::write(doomed_tree.join("00000000000000000000.log"), b"x").expect("writing");
    std::fs::write(dir.join(".old.log.deleted-4-5-6"), b"y").expect("writing");
    run({
        let dir = dir.clone();
        move || async move {
            prepare_data_dir(&DmaStorage, &dir)
                .await
                .expect("a data directory with only leftovers is Sluice's");
            eventually("leftovers deleted", || {
                !entries(&dir).iter().any(|name| name.contains(".deleted-"))
            })
            .await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
