//! Where the machine's CPU went during the measured window: this process
//! (the clients), the broker (when its pid is known), and everything else.
//! Client and broker share the machine, so a throughput figure means little
//! without knowing whether an unrelated process (a compiler, a backup) took
//! a core meanwhile; a busy neighbour is reported next to the results. So
//! is the time the hypervisor took from a virtual machine's CPUs (steal):
//! a guest that is not run for some milliseconds shows it as a latency
//! stall of the broker and the clients alike.

use serde::{Deserialize, Serialize};

/// Other processes using more than this many cores make a run suspect.
pub const OTHER_CORES_WARNING: f64 = 0.1;

/// The clock ticks /proc/stat counts per second (the kernel's `USER_HZ`,
/// fixed at 100 for user space whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// Busy, total and stolen ticks of all CPUs, summed, and how many CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MachineTicks {
    busy: u64,
    all: u64,
    /// Time the hypervisor ran something else while a CPU of this guest
    /// had work (inside `busy`).
    steal: u64,
    cpus: u32,
}

/// CPU counters at one instant, in clock ticks, and the kernel's pressure
/// stall totals (microseconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    busy: u64,
    all: u64,
    steal: u64,
    own: u64,
    broker: Option<u64>,
    /// The CPUs `all` covers (the `cpuN` lines of /proc/stat): the
    /// machine's, where the affinity this process runs with may allow
    /// fewer (`taskset`).
    cpus: u32,
    io_stall_us: Option<u64>,
    cpu_stall_us: Option<u64>,
    at: Option<std::time::Instant>,
}

/// CPU used between two samples, in cores (1.0 = one core busy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub client_cores: f64,
    pub broker_cores: Option<f64>,
    /// Everything else (including the broker when its pid is unknown).
    pub other_cores: f64,
    pub idle_cores: f64,
    /// CPU the hypervisor took from this machine while it had work (steal
    /// time; 0 on bare metal): not in `other_cores`.
    #[serde(default)]
    pub stolen_cores: f64,
    /// Share of the window in which some task waited for I/O or for a CPU
    /// (Linux pressure stall information, `some` line): a slow or busy
    /// shared disk shows here even when the CPUs are idle.
    pub io_pressure_pct: Option<f64>,
    pub cpu_pressure_pct: Option<f64>,
}

/// The `some ... total=` value of a /proc/pressure file.
fn pressure(resource: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
    let some = text.lines().find(|line| line.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The CPUs of the machine, as /proc/stat lists them (0 if it cannot be
/// read): the result's machine line names the machine, whatever CPUs the
/// clients were held to.
pub fn machine_cpus() -> u32 {
    machine().map_or(0, |ticks| ticks.cpus)
}

/// Milliseconds of CPU time the hypervisor took from this machine so far,
/// summed over its CPUs (0 where /proc/stat cannot be read).
pub fn stolen_ms() -> u64 {
    machine().map_or(0, |ticks| ticks.steal * 1000 / USER_HZ)
}

/// The machine's CPU count from a /proc/stat count (`machine_cpus`, or a
/// sample's), or where that read nothing, the CPUs this process may use:
/// not `available_parallelism` first, which under `taskset -c 0` made a
/// 2-core machine one core and every figure of such a run half of what it
/// was.
pub fn cpus_or_affinity(proc_stat_cpus: u32) -> u32 {
    match proc_stat_cpus {
        0 => std::thread::available_parallelism().map_or(1, |cpus| {
            u32::try_from(usize::from(cpus)).unwrap_or(u32::MAX)
        }),
        cpus => cpus,
    }
}

/// The ticks of all CPUs, and how many CPUs, from /proc/stat.
fn machine() -> Option<MachineTicks> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The first line of a /proc/stat text (every CPU's ticks summed) and the
/// count of the per-CPU lines after it.
fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let mut lines = stat.lines();
    let fields: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user and nice).
    let value = |index: usize| fields.get(index).copied().unwrap_or(0);
    let idle = value(3) + value(4);
    let all: u64 = (0..8).map(value).sum();
    let cpus = lines
        .take_while(|line| line.starts_with("cpu"))
        .filter(|line| {
            line.split_whitespace()
                .next()
                .and_then(|name| name.strip_prefix("cpu"))
                .is_some_and(|number| number.parse::<u32>().is_ok())
        })
        .count();
    Some(MachineTicks {
        busy: all - idle,
        all,
        steal: value(7),
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
    })
}

/// utime + stime of a process, all threads included.
fn process(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count
    // fields from the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The broker's ticks: the sum over its processes (one per node of a
/// cluster on this machine), or nothing when none is known or one cannot be
/// read, since a partial sum would pass for the whole broker's use.
fn brokers(broker_pids: &[u32]) -> Option<u64> {
    if broker_pids.is_empty() {
        return None;
    }
    broker_pids
        .iter()
        .map(|pid| process(&pid.to_string()))
        .sum()
}

/// Reads the counters now.
pub fn sample(broker_pids: &[u32]) -> Sample {
    let MachineTicks {
        busy,
        all,
        steal,
        cpus,
    } = machine().unwrap_or_default();
    Sample {
        busy,
        all,
        steal,
        own: process("self").unwrap_or(0),
        broker: brokers(broker_pids),
        cpus,
        io_stall_us: pressure("io"),
        cpu_stall_us: pressure("cpu"),
        at: Some(std::time::Instant::now()),
    }
}

/// What was used between `before` and `after`.
pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let cores = f64::from(cpus_or_affinity(after.cpus.max(before.cpus)));
    let all = after.all.saturating_sub(before.all);
    if all == 0 {
        return Usage::default();
    }
    // /proc/stat's ticks cover every core: convert ticks to cores.
    let per_core = all as f64 / cores;
    let to_cores = |ticks: u64| ticks as f64 / per_core;
    let busy = after.busy.saturating_sub(before.busy);
    let own = after.own.saturating_sub(before.own);
    let broker = match (before.broker, after.broker) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let steal = after.steal.saturating_sub(before.steal);
    let other = busy
        .saturating_sub(own)
        .saturating_sub(broker.unwrap_or(0))
        .saturating_sub(steal);
    let window_us = match (before.at, after.at) {
        (Some(before), Some(after)) => after.duration_since(before).as_micros() as f64,
        _ => 0.0,
    };
    let share = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if window_us > 0.0 => {
            Some(after.saturating_sub(before) as f64 / window_us * 100.0)
        }
        _ => None,
    };
    Usage {
        io_pressure_pct: share(before.io_stall_us, after.io_stall_us),
        cpu_pressure_pct: share(before.cpu_stall_us, after.cpu_stall_us),
        client_cores: to_cores(own),
        broker_cores: broker.map(to_cores),
        other_cores: to_cores(other),
        idle_cores: to_cores(all.saturating_sub(busy)),
        stolen_cores: to_cores(steal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the test burns CPU: 100 ticks of each core at 100 Hz.
    const CPU_TEST_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    #[test]
    fn counters_are_read_and_split() {
        let before = sample(&[std::process::id()]);
        // Burn CPU for a window of many clock ticks: the per-process and
        // machine-wide counters are kept apart and each is off by a few
        // ticks, so over a window of ~20 ticks (a fixed loop that took
        // ~60 ms) they once summed to 2.8 cores on 2.
        let burn_until = std::time::Instant::now() + CPU_TEST_WINDOW;
        let mut x = 0u64;
        let mut index = 0u64;
        while std::time::Instant::now() < burn_until {
            x = x.wrapping_mul(31).wrapping_add(index);
            index += 1;
        }
        std::hint::black_box(x);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let after = sample(&[std::process::id()]);
        let used = usage(&before, &after);
        assert!(used.client_cores >= 0.0 && used.idle_cores >= 0.0);
        assert!(used.broker_cores.is_some());
        let total = used.client_cores + used.other_cores + used.idle_cores;
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1) as f64;
        // The "broker" is this process too here, so it is counted twice.
        assert!(total <= cores + 0.5, "{used:?}");
    }

    /// Ticks become cores by the CPUs /proc/stat covers, whatever the
    /// affinity of the process reading them.
    #[test]
    fn cores_are_counted_from_proc_stat() {
        let stat = "cpu  100 0 100 600 0 0 0 0 0 0\n\
                    cpu0 25 0 25 150 0 0 0 0 0 0\n\
                    cpu1 25 0 25 150 0 0 0 0 0 0\n\
                    cpu2 25 0 25 150 0 0 0 0 0 0\n\
                    cpu3 25 0 25 150 0 0 0 0 0 0\n\
                    intr 12345 0 0\n\
                    ctxt 999\n";
        assert_eq!(
            parse_machine(stat),
            Some(MachineTicks {
                busy: 200,
                all: 800,
                steal: 0,
                cpus: 4
            })
        );
        let before = Sample {
            broker: Some(0),
            cpus: 4,
            ..Sample::default()
        };
        // 400 ticks over 4 CPUs: 100 ticks make one core.
        let after = Sample {
            busy: 300,
            all: 400,
            own: 100,
            broker: Some(100),
            cpus: 4,
            ..Sample::default()
        };
        let used = usage(&before, &after);
        assert_eq!(used.client_cores, 1.0, "{used:?}");
        assert_eq!(used.broker_cores, Some(1.0), "{used:?}");
        assert_eq!(used.other_cores, 1.0, "{used:?}");
        assert_eq!(used.idle_cores, 1.0, "{used:?}");
    }

    /// Steal is busy time the hypervisor took: counted as stolen, not as
    /// other processes' work.
    #[test]
    fn stolen_time_is_apart_from_other_processes() {
        let stat = "cpu  100 0 100 500 0 0 0 100 0 0\n\
                    cpu0 50 0 50 250 0 0 0 50 0 0\n\
                    cpu1 50 0 50 250 0 0 0 50 0 0\n";
        assert_eq!(
            parse_machine(stat),
            Some(MachineTicks {
                busy: 300,
                all: 800,
                steal: 100,
                cpus: 2
            })
        );
        let before = Sample {
            broker: Some(0),
            cpus: 2,
            ..Sample::default()
        };
        // 200 ticks over 2 CPUs: 100 make one core; of the 150 busy, 50
        // are the clients', 25 the broker's and 50 stolen.
        let after = Sample {
            busy: 150,
            all: 200,
            steal: 50,
            own: 50,
            broker: Some(25),
            cpus: 2,
            ..Sample::default()
        };
        let used = usage(&before, &after);
        assert_eq!(used.stolen_cores, 0.5, "{used:?}");
        assert_eq!(used.other_cores, 0.25, "{used:?}");
        assert_eq!(used.idle_cores, 0.5, "{used:?}");
    }

    #[test]
    fn several_brokers_are_summed_and_none_is_unknown() {
        let own = process("self").expect("this process has a stat file");
        let twice = brokers(&[std::process::id(), std::process::id()]).expect("both readable");
        // Ticks only grow, so the sum of two later reads is at least twice
        // the earlier one.
        assert!(twice >= 2 * own, "{twice} < 2 * {own}");
        assert_eq!(brokers(&[]), None);
        // Pid 0 has no /proc entry: a sum missing a broker is no answer.
        assert_eq!(brokers(&[std::process::id(), 0]), None);
    }
}
