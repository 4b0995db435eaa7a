//! `sluice completions SHELL` prints a completion script that knows the
//! subcommands, and refuses a shell it does not know.

use std::process::Command;

#[test]
fn completions_name_the_subcommands() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["completions", "bash"])
        .output()
        .expect("run sluice completions");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let script = String::from_utf8_lossy(&output.stdout);
    for word in [
        "topic",
        "consume",
        "produce",
        "elect-leaders",
        "--bootstrap",
    ] {
        assert!(script.contains(word), "{word} not in the bash script");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run sluice completions");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("sluice: "));
}
