//! Keeps the allocator's free memory within a bound.
//!
//! The broker tells glibc to keep freed memory instead of handing it back at
//! every free (see `tune_allocator` in main.rs: trimming on every free cost
//! a page fault and a clear per 4 KiB reused, 54% of broker CPU at 10k
//! produce requests/s). Kept memory is not only the top of each heap:
//! request frames live on in the batch cache for a while and are freed out
//! of order, so most free memory is holes inside the heaps, which no trim
//! threshold returns. Measured in a 60 s 100-partition max-rate run (2 shards,
//! 2 × 256 MiB cache): memory in use stayed between 550 and 860 MiB while
//! free memory held by the allocator grew to 1 GiB, and RSS to 1.8 GiB.
//!
//! A thread looks at the allocator once per `CHECK_INTERVAL` and returns the
//! free pages to the kernel (`malloc_trim`) once more than
//! `allocator_free_bytes_max` (default 256 MiB) of resident memory is not in use: rarely (the
//! free memory grows by tens of MB/s at most), so the page faults of reusing
//! trimmed memory stay small, and RSS stays within what is in use plus that
//! bound (plus one interval's growth).

use std::time::Duration;

/// How often the allocator's free memory is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the thread (glibc only; elsewhere the allocator returns memory on
/// its own terms), unless `free_bytes_max` is 0. Statistics are logged at
/// debug level under `sluice::memory`.
pub fn spawn_allocator_keeper(free_bytes_max: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if free_bytes_max > 0 {
        let started = std::thread::Builder::new()
            .name("sluice-memory".into())
            .spawn(move || keep_allocator(free_bytes_max));
        if let Err(error) = started {
            tracing::warn!(%error, "no allocator keeper thread: free memory is not handed back");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_allocator(free_bytes_max: usize) {
    loop {
        std::thread::sleep(CHECK_INTERVAL);
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        // Free memory still resident: what the process holds beyond what it
        // uses (the allocator counts trimmed pages as free too, so its own
        // free figure would trim every time once it passed the bound).
        let resident = resident_bytes();
        let resident_free = resident.saturating_sub(info.uordblks + info.hblkhd);
        let trimmed = resident_free > free_bytes_max;
        if trimmed {
            // SAFETY: malloc_trim only returns free pages to the kernel.
            unsafe { libc::malloc_trim(0) };
        }
        tracing::debug!(
            target: "sluice::memory",
            rss_mib = resident >> 20,
            in_use_mib = info.uordblks >> 20,
            free_mib = info.fordblks >> 20,
            trimmed,
            "allocator"
        );
    }
}

/// The process's resident memory, from /proc (0 if unreadable).
pub fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    pages * page_bytes
}
