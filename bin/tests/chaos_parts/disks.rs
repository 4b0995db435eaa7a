//! The fault harness's disk faults: every broker's data directory on a
//! small file system of its own, which the nemesis fills to the last byte
//! (the broker's writes fail with ENOSPC), slows down (the block layer
//! throttles the broker's reads and writes to a trickle) or freezes
//! (`common::disk::Freeze`: every write waits until the thaw). All need
//! root: a loop-mounted ext4 image and a blkio control group.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::common::disk::{KeptFull, SmallDisk};
use crate::common::{wait_for, Stop, TestBroker};

/// Each broker's file system: room for a short chaos run's logs several
/// times over (a 75 s run writes a few MiB a broker), so only the nemesis
/// fills it; a long run gets `DISK_BYTES_PER_SECOND` more for each second
/// of faults. The image is sparse: only what is written takes space.
const DISK_BYTES: u64 = 256 * 1024 * 1024;
/// About four times what every workload together writes to a broker each
/// second (22 MB in a 79 s run).
const DISK_BYTES_PER_SECOND: u64 = 1024 * 1024;
/// The file that fills a disk, next to the broker's own files.
const BALLAST: &str = ".chaos-ballast";
/// The v1 blkio hierarchy, where the throttling control groups are made.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";
/// A slowed disk's limits for the broker: a few dozen I/Os a second, as a
/// failing or saturated disk gives, where the loop device does thousands.
const SLOW_IOPS: u64 = 25;
const SLOW_BYTES_PER_SEC: u64 = 1024 * 1024;
/// For a broker moved onto its small disk to be back in the cluster.
const BACK_TIMEOUT: Duration = Duration::from_secs(60);
const BACK_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// One Metadata request of that wait.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The brokers' small file systems, in broker order. Declared before the
/// brokers, so that it is dropped (unmounted) after they have stopped.
pub struct Disks {
    disks: Vec<SmallDisk>,
}

impl Drop for Disks {
    /// Unmounts the file systems, then removes the brokers' own
    /// directories they were mounted in: each broker, stopped before, could
    /// not remove its directory while a file system was mounted in it, and
    /// left its log there.
    fn drop(&mut self) {
        let roots: Vec<PathBuf> = self
            .disks
            .iter()
            .filter_map(|disk| disk.mount_point().parent().map(Path::to_path_buf))
            .collect();
        self.disks.clear();
        if std::env::var_os("SLUICE_TEST_KEEP").is_none() {
            for root in roots {
                let _ = fs::remove_dir_all(root);
            }
        }
    }
}

impl Disks {
    /// Moves every broker, one after the other, onto a small file system
    /// of its own (stopped with SIGTERM, its directory copied over,
    /// started again), waiting each time until all brokers list it again.
    pub fn move_brokers_onto(brokers: &mut [TestBroker], faults_for: Duration) -> Disks {
        let bytes = DISK_BYTES + faults_for.as_secs() * DISK_BYTES_PER_SECOND;
        let mut disks = Vec::with_capacity(brokers.len());
        for index in 0..brokers.len() {
            brokers[index].stop(Stop::Term);
            disks.push(SmallDisk::move_onto(&brokers[index].data_dir(), bytes));
            brokers[index].start_again();
            wait_for(
                &format!("broker {} back on its small disk", index + 1),
                BACK_TIMEOUT,
                BACK_POLL_INTERVAL,
                || {
                    for broker in brokers.iter() {
                        let listed = broker
                            .consumer(&[])
                            .fetch_metadata(None, METADATA_REQUEST_TIMEOUT)
                            .map_err(|error| format!("Metadata: {error}"))?
                            .brokers()
                            .len();
                        if listed != brokers.len() {
                            return Err(format!("{listed} brokers listed"));
                        }
                    }
                    Ok(())
                },
            );
        }
        Disks { disks }
    }

    pub fn len(&self) -> usize {
        self.disks.len()
    }
}

/// Fills the data disk of `broker` and keeps it full for `full_for`, then
/// frees the space.
pub fn fill_for(broker: &TestBroker, full_for: Duration) {
    let full = KeptFull::fill(&broker.data_dir().join(BALLAST));
    thread::sleep(full_for);
    full.free();
}

/// A broker's data disk throttled to a trickle: its process in a blkio
/// control group with read and write limits on the disk's loop device.
/// Dropping it, also when a test fails, lifts the limits.
pub struct Slowed {
    group: PathBuf,
    pid: u32,
}

impl Slowed {
    pub fn slow(broker: &TestBroker) -> Slowed {
        let pid = broker.pid();
        assert!(pid > 0, "the broker is not running");
        let device = device_numbers(&broker.data_dir());
        let group = Path::new(BLKIO_ROOT).join(format!("sluice-chaos-{pid}"));
        fs::create_dir_all(&group)
            .unwrap_or_else(|error| panic!("making the control group {group:?}: {error}"));
        let slowed = Slowed { group, pid };
        for (file, limit) in [
            ("blkio.throttle.read_iops_device", SLOW_IOPS),
            ("blkio.throttle.write_iops_device", SLOW_IOPS),
            ("blkio.throttle.read_bps_device", SLOW_BYTES_PER_SEC),
            ("blkio.throttle.write_bps_device", SLOW_BYTES_PER_SEC),
        ] {
            write_control(&slowed.group.join(file), &format!("{device} {limit}"));
        }
        // Every thread of the process, io_uring's workers included.
        write_control(&slowed.group.join("cgroup.procs"), &pid.to_string());
        slowed
    }
}

impl Drop for Slowed {
    fn drop(&mut self) {
        // Back to the root group (a process that died meanwhile has left
        // already), then the empty group can go.
        let _ = fs::write(
            Path::new(BLKIO_ROOT).join("cgroup.procs"),
            self.pid.to_string(),
        );
        let _ = fs::remove_dir(&self.group);
    }
}

fn write_control(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|error| panic!("writing {value:?} to {path:?}: {error}"));
}

/// `major:minor` of the block device the file system at `dir` is mounted
/// from (the loop device of its image).
fn device_numbers(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let device = fs::metadata(dir)
        .unwrap_or_else(|error| panic!("reading {dir:?}: {error}"))
        .dev();
    format!("{}:{}", libc::major(device), libc::minor(device))
}
