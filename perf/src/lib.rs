//! sluice-perf's library part: what the benchmark and the fault harness
//! share. Today only the fault harness's history checker ([`history`]); the
//! benchmark's modules live with its binary.

pub mod history;
