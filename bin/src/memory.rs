//! The broker's allocator: jemalloc, with freed memory handed back to the
//! kernel gradually by background threads.
//!
//! glibc's malloc kept the broker's freed memory as holes inside its heaps
//! (request frames live on in the batch cache and are freed out of order),
//! so resident memory grew past 1.5 GiB in a 60 s max-rate run unless
//! something called `malloc_trim`. But `malloc_trim` walks each arena with
//! the arena's lock held: measured with `perf record -e sched:sched_switch`
//! in the compacted-topic benchmark, both shards sat 75–100 ms in
//! `__lll_lock_wait_private` while a trim of a few hundred MiB ran, which
//! was the whole of the cleaner's latency cost (ack p99.9 105–123 ms; with
//! trimming off 14 ms, but RSS 2 GiB). jemalloc returns dirty pages to the
//! kernel as they age (`dirty_decay_ms`), in small steps from its own
//! threads, so no thread of the broker waits on a whole-heap walk. Measured
//! in the same session (README, "Memory"): ack p99.9 12–16 ms, RSS at most
//! 1.26 GiB against 1.48 GiB, and the same throughput and 200 MB/s latency.

use std::ffi::CStr;

/// Options jemalloc reads before the first allocation: background threads
/// do the purging (otherwise it happens inline, in whichever allocation
/// crosses a decay step), and purged pages are released at once
/// (`muzzy_decay_ms:0`, so `allocator_decay_ms` alone bounds what is kept;
/// the broker sets it with [`set_decay_ms`] once its settings are read).
///
/// No allocation goes to jemalloc's separate arena for large ones
/// (`oversize_threshold:0`; by default, those of 8 MiB and more), which
/// hands their pages back to the kernel as soon as they are freed instead
/// of after `allocator_decay_ms`: a fetch of 100,000 partitions builds
/// lists that large on every fetch, and each one faulted its pages in
/// afresh. Measured at 100,000 partitions (a 6 s profile of the broker at
/// the maximum rate): page clearing 27.6 % of the broker's samples, 12.3 %
/// without that arena.
/// The `_rjem_` prefix is the name the prefixed jemalloc build reads.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 61] =
    b"background_thread:true,muzzy_decay_ms:0,oversize_threshold:0\0";

/// Sets how long freed memory may stay resident before jemalloc hands it
/// back to the kernel: the default of arenas still to be created, then each
/// arena that exists. Returns the option jemalloc refused, if any.
pub fn set_decay_ms(decay_ms: u64) -> Result<(), String> {
    let value = libc::ssize_t::try_from(decay_ms).unwrap_or(libc::ssize_t::MAX);
    write_option(c"arenas.dirty_decay_ms", value)
        .map_err(|status| format!("arenas.dirty_decay_ms (error {status})"))?;
    let mut arenas: libc::c_uint = 0;
    read_option(c"arenas.narenas", &mut arenas)?;
    for arena in 0..arenas {
        let name = format!("arena.{arena}.dirty_decay_ms");
        let Ok(name) = std::ffi::CString::new(name) else {
            continue;
        };
        match write_option(&name, value) {
            // An arena not created yet: it starts from the default above.
            Err(libc::EFAULT) => {}
            Err(status) => return Err(format!("{} (error {status})", name.to_string_lossy())),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Writes option `name`; `T` must be the type jemalloc documents for it.
fn write_option<T>(name: &CStr, mut value: T) -> Result<(), libc::c_int> {
    // SAFETY: `name` is NUL-terminated and the value has the size jemalloc
    // is told it has; nothing is read back.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&mut value as *mut T).cast(),
            std::mem::size_of::<T>(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

fn read_option<T>(name: &CStr, value: &mut T) -> Result<(), String> {
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `name` is NUL-terminated and `value` has the size jemalloc
    // is told it has; callers pass the type jemalloc documents for `name`.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (value as *mut T).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(format!("{} (error {status})", name.to_string_lossy()))
    }
}

/// What the allocator counts, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorFigures {
    /// Held by live allocations.
    pub allocated: u64,
    /// Resident pages the allocator maps: allocations, free pages not yet
    /// purged, metadata.
    pub resident: u64,
    /// Allocations made since the start, small and large, over all arenas.
    pub allocations: u64,
}

/// The allocator's figures now (jemalloc refreshes them on an `epoch`
/// write), or `None` if it refused.
pub fn allocator_figures() -> Option<AllocatorFigures> {
    write_option(c"epoch", 1u64).ok()?;
    let mut allocated: libc::size_t = 0;
    let mut resident: libc::size_t = 0;
    read_option(c"stats.allocated", &mut allocated).ok()?;
    read_option(c"stats.resident", &mut resident).ok()?;
    // Arena index 4096 (MALLCTL_ARENAS_ALL) sums every arena. `nrequests`
    // counts allocations a thread cache satisfied too (merged into the
    // arena's figures as the caches flush), where `nmalloc` counts only
    // the arena's refills of those caches.
    let mut small: u64 = 0;
    let mut large: u64 = 0;
    read_option(c"stats.arenas.4096.small.nrequests", &mut small).ok()?;
    read_option(c"stats.arenas.4096.large.nrequests", &mut large).ok()?;
    Some(AllocatorFigures {
        allocated: allocated as u64,
        resident: resident as u64,
        allocations: small.saturating_add(large),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_takes_the_decay_setting() {
        // Allocate from a thread of its own, so that more than one arena
        // exists and each is set.
        let held = std::thread::spawn(|| vec![0u8; 1 << 20]).join();
        assert!(held.is_ok());
        assert_eq!(set_decay_ms(250), Ok(()));
        let mut default: libc::ssize_t = 0;
        assert_eq!(read_option(c"arenas.dirty_decay_ms", &mut default), Ok(()));
        assert_eq!(default, 250);
        let mut first: libc::ssize_t = 0;
        assert_eq!(read_option(c"arena.0.dirty_decay_ms", &mut first), Ok(()));
        assert_eq!(first, 250);
    }

    #[test]
    fn jemalloc_reads_the_options_and_keeps_no_oversize_arena() {
        let mut threshold: libc::size_t = 1;
        assert_eq!(
            read_option(c"opt.oversize_threshold", &mut threshold),
            Ok(())
        );
        assert_eq!(threshold, 0);
        let mut background = false;
        assert_eq!(
            read_option(c"opt.background_thread", &mut background),
            Ok(())
        );
        assert!(background);
    }

    #[test]
    fn the_allocator_counts_a_live_allocation() {
        let before = allocator_figures().map(|figures| figures.allocated);
        let held = vec![1u8; 64 << 20];
        let during = allocator_figures();
        assert!(during.is_some());
        if let (Some(before), Some(during)) = (before, during) {
            assert!(
                during.allocated >= before + (60 << 20),
                "{before} -> {during:?}"
            );
            assert!(during.resident >= during.allocated / 2, "{during:?}");
        }
        drop(held);
    }

    #[test]
    fn the_allocator_counts_allocations() {
        let before = allocator_figures().map(|figures| figures.allocations);
        let held: Vec<Box<u64>> = (0..10_000u64).map(Box::new).collect();
        let after = allocator_figures().map(|figures| figures.allocations);
        assert!(before.is_some() && after.is_some());
        if let (Some(before), Some(after)) = (before, after) {
            // The thread's cache may not have merged its last few hundred.
            assert!(after >= before + 9_000, "{before} -> {after}");
        }
        drop(held);
    }
}
