//! A small data disk for tests of a full or failing disk: a loop-mounted
//! ext4 file system (needs root, as CI runs the tests), and a way to fill
//! it to the last byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Between two top-ups of a full disk: the file system hands back blocks
/// it had reserved for the broker's own files, which would let writes
/// through.
const REFILL_INTERVAL: Duration = Duration::from_millis(20);

/// A loop-mounted ext4 file system, unmounted and removed on drop.
pub struct SmallDisk {
    image: PathBuf,
    mount_point: PathBuf,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl SmallDisk {
    pub fn mount(mount_point: &Path, bytes: u64) -> SmallDisk {
        let image = mount_point.with_extension("img");
        let file = fs::File::create(&image).expect("creating the disk image");
        file.set_len(bytes).expect("sizing the disk image");
        drop(file);
        // No blocks reserved for root: the broker runs as root here.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image));
        fs::create_dir_all(mount_point).expect("creating the mount point");
        let disk = SmallDisk {
            image,
            mount_point: mount_point.to_path_buf(),
        };
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&disk.image)
            .arg(mount_point));
        disk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_TEST_KEEP").is_some() {
            // Kept for a post-mortem, as the brokers' own directories are:
            // the file system itself goes with its image.
            let kept = self.mount_point.with_extension("kept");
            let _ = Command::new("cp")
                .arg("-a")
                .arg(&self.mount_point)
                .arg(&kept)
                .status();
        }
        for _ in 0..50 {
            let unmounted = Command::new("umount")
                .arg(&self.mount_point)
                .status()
                .is_ok_and(|status| status.success());
            if unmounted {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_dir_all(&self.mount_point);
        let _ = fs::remove_file(&self.image);
        // A disk mounted on a test broker's data directory outlives the
        // broker (it is declared first, so that it is unmounted after the
        // broker stopped): the broker's own removal of its directory
        // failed on the mount, leaving its log behind. The directory is
        // the broker's alone, and the broker is gone.
        let parent = self.mount_point.parent();
        let broker_root = parent.filter(|dir| {
            dir.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("sluice-it-"))
                && dir.join("broker.log").exists()
        });
        if let Some(root) = broker_root {
            if std::env::var_os("SLUICE_TEST_KEEP").is_none() {
                let _ = fs::remove_dir_all(root);
            }
        }
    }
}

/// ext4's `EXT4_IOC_SHUTDOWN`, `_IOR('X', 125, __u32)`: the file system
/// stops, as on a disk that died; every I/O on it fails with EIO from then
/// on, until it is unmounted.
const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
/// Shut down without flushing the journal: nothing more reaches the disk.
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

impl SmallDisk {
    /// Where the file system is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Fails the disk: every read, write and sync on its file system
    /// fails with EIO from now on (the file system is shut down, as ext4
    /// does itself on a disk error with `errors=` set to stop).
    pub fn fail(&self) {
        use std::os::fd::AsRawFd;
        let root = fs::File::open(&self.mount_point).expect("opening the mount point");
        let flags: u32 = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: an ioctl on a descriptor this function owns, with a
        // pointer to a u32 that outlives the call, as the ioctl expects.
        let status = unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags) };
        assert_eq!(
            status,
            0,
            "shutting down {}: {}",
            self.mount_point.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Writes `path` until the file system has no block left.
pub fn fill_up(path: &Path) {
    use std::io::Write;
    // Appends: called again, it takes whatever space was freed since.
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening the ballast file");
    allocate_most_of_the_free_space(&file);
    // Large pieces first, then smaller ones down to single bytes: the last
    // block of a file takes sub-block writes after a whole block is refused.
    for piece in [1024 * 1024, 4096, 512, 64, 1] {
        let bytes = vec![0xAAu8; piece];
        loop {
            match file.write_all(&bytes).and_then(|()| file.sync_data()) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(error) => panic!("filling the disk: {error}"),
            }
        }
    }
}

/// Left to the writes of `fill_up` after the allocation: they take the
/// last blocks, which an allocation of the whole free space can miss (the
/// file system needs some of them for the file's own extent tree).
const WRITTEN_TAIL_BYTES: u64 = 8 * 1024 * 1024;

/// Allocates all but `WRITTEN_TAIL_BYTES` of the free space to `file` in
/// one call: on a large disk, filling it by writes alone would take
/// seconds and write gigabytes to the disk holding the image.
fn allocate_most_of_the_free_space(file: &fs::File) {
    use std::os::fd::AsRawFd;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: fstatvfs fills the struct it is given for a descriptor this
    // function borrows.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), stats.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: fstatvfs succeeded, so it initialised the struct.
    let stats = unsafe { stats.assume_init() };
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    let Some(bytes) = free.checked_sub(WRITTEN_TAIL_BYTES) else {
        return;
    };
    let end = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    // The writes that follow take the rest whether or not this succeeds.
    // SAFETY: fallocate on a descriptor this function borrows.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            0,
            end as libc::off_t,
            bytes as libc::off_t,
        )
    };
}

impl SmallDisk {
    /// Moves the existing directory `dir` (of a stopped broker) onto a new
    /// small file system mounted in its place.
    pub fn move_onto(dir: &Path, bytes: u64) -> SmallDisk {
        let moving = dir.with_extension("moving");
        fs::rename(dir, &moving).expect("setting the directory aside");
        let disk = SmallDisk::mount(dir, bytes);
        run(Command::new("cp").arg("-a").arg(moving.join(".")).arg(dir));
        fs::remove_dir_all(&moving).expect("removing the directory set aside");
        disk
    }
}

/// A disk kept full: `ballast` written until no block is left, then topped
/// up on a thread of its own until [`KeptFull::free`].
pub struct KeptFull {
    ballast: PathBuf,
    keep_full: Arc<AtomicBool>,
    refill: Option<thread::JoinHandle<()>>,
}

impl KeptFull {
    /// Returns once the disk is full.
    pub fn fill(ballast: &Path) -> KeptFull {
        fill_up(ballast);
        let keep_full = Arc::new(AtomicBool::new(true));
        let refill = {
            let keep_full = Arc::clone(&keep_full);
            let ballast = ballast.to_path_buf();
            thread::spawn(move || {
                while keep_full.load(Ordering::Relaxed) {
                    fill_up(&ballast);
                    thread::sleep(REFILL_INTERVAL);
                }
            })
        };
        KeptFull {
            ballast: ballast.to_path_buf(),
            keep_full,
            refill: Some(refill),
        }
    }

    /// Stops topping up and removes the ballast: the space is back.
    pub fn free(mut self) {
        self.stop_refilling();
        fs::remove_file(&self.ballast).expect("removing the ballast");
    }

    fn stop_refilling(&mut self) {
        self.keep_full.store(false, Ordering::Relaxed);
        if let Some(refill) = self.refill.take() {
            refill.join().expect("the refilling thread");
        }
    }
}

impl Drop for KeptFull {
    /// A failed test stops the refilling too: the thread would otherwise
    /// keep the file system busy when it is unmounted.
    fn drop(&mut self) {
        self.keep_full.store(false, Ordering::Relaxed);
        if let Some(refill) = self.refill.take() {
            let _ = refill.join();
        }
    }
}

/// The partitions of `topic` with a directory in `dir`.
pub fn partitions_in(dir: &Path, topic: &str) -> Vec<i32> {
    let mut found: Vec<i32> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    name.strip_prefix(&format!("{topic}-"))?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// `FIFREEZE` and `FITHAW`, `_IOWR('X', 119, int)` and `_IOWR('X', 120,
/// int)`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// A file system frozen, as `fsfreeze` and snapshot tools freeze one:
/// whatever writes to it (data, a new file, a rename) waits until it is
/// thawed. Thawed on drop, so a failing test can still stop its broker.
pub struct Freeze {
    root: fs::File,
}

impl Freeze {
    pub fn new(mount_point: &Path) -> Freeze {
        let root = fs::File::open(mount_point).expect("opening the mount point");
        freeze_ioctl(&root, FIFREEZE, "freezing", mount_point);
        Freeze { root }
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: an ioctl without an argument on a descriptor this guard
        // owns.
        let status = unsafe { libc::ioctl(self.root.as_raw_fd(), FITHAW, 0) };
        if status != 0 {
            eprintln!("thawing: {}", std::io::Error::last_os_error());
        }
    }
}

fn freeze_ioctl(root: &fs::File, request: libc::c_ulong, what: &str, path: &Path) {
    use std::os::fd::AsRawFd;
    // SAFETY: an ioctl without an argument on a descriptor the caller owns.
    let status = unsafe { libc::ioctl(root.as_raw_fd(), request, 0) };
    assert_eq!(
        status,
        0,
        "{what} {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}
