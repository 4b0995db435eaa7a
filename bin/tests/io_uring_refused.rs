//! A broker that may not use io_uring says so in one line and exits 1,
//! instead of glommio's panic about old kernels. The refusal is made the
//! way a container's seccomp profile makes it (Docker's default profile
//! answers io_uring_setup, io_uring_enter and io_uring_register with
//! EPERM): a seccomp filter installed in the child before it runs `sluice`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The io_uring system calls the filter refuses.
const IO_URING_CALLS: [libc::c_long; 3] = [
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];
/// Where `struct seccomp_data` keeps the system call number.
const SECCOMP_DATA_NR_OFFSET: u32 = 0;

fn statement(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A classic-BPF seccomp program: EPERM for the io_uring calls, everything
/// else allowed.
fn refuse_io_uring() -> Vec<libc::sock_filter> {
    let count = IO_URING_CALLS.len();
    let mut program = vec![statement(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        SECCOMP_DATA_NR_OFFSET,
    )];
    for (index, call) in IO_URING_CALLS.iter().enumerate() {
        // A match jumps over the remaining comparisons and the ALLOW.
        let mut compare = statement(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, *call as u32);
        compare.jt = (count - index) as u8;
        program.push(compare);
    }
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ALLOW,
    ));
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
    ));
    program
}

#[test]
fn a_broker_without_io_uring_says_why_in_one_line() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos());
    let data_dir =
        std::env::temp_dir().join(format!("sluice-no-io-uring-{}-{nanos}", std::process::id()));
    let mut program = refuse_io_uring();
    // The closure must be Send, which a raw pointer is not; the child, a
    // copy of this process, finds the program at the same address.
    let (program_at, program_len) = (program.as_mut_ptr() as usize, program.len() as u16);
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pin-shards",
            "false",
        ])
        // The panic glommio would print is what this replaces: no backtrace
        // should hide in the output either way.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    // SAFETY: between fork and exec the child only makes two prctl calls,
    // which are async-signal-safe, on a program the parent built and keeps
    // alive until the child has been waited for.
    unsafe {
        command.pre_exec(move || {
            let filter = libc::sock_fprog {
                len: program_len,
                filter: program_at as *mut libc::sock_filter,
            };
            // Without it an unprivileged process may not install a filter.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &filter as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("run sluice under the filter");
    drop(program);
    let touched = data_dir.exists();
    let _ = std::fs::remove_dir_all(&data_dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "sluice: io_uring is not available to this process (io_uring_setup: Operation not \
             permitted (os error 1)), and Sluice needs it."
        ) && stderr.contains("seccomp=deploy/seccomp-io_uring.json"),
        "{stderr}"
    );
    assert!(!touched, "refused before touching the data directory");
}
