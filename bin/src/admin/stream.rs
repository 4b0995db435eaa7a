//! What `sluice produce` and `sluice consume` share: their command-line
//! splitting, whose flags differ from the admin commands' (kcat's
//! one-letter forms such as `-K` and `-f`, repeatable flags; values follow
//! as the next argument or after `=`, `--acks=all`), and how they fail.

use std::process::ExitCode;

use sluice_net::client::{ClientError, KafkaError};

/// Why producing or consuming stopped.
pub(super) enum Failed {
    Client(ClientError),
    /// Not the broker's doing: the input could not be read, or fetched
    /// records do not decode.
    Local(String),
}

impl From<ClientError> for Failed {
    fn from(error: ClientError) -> Failed {
        Failed::Client(error)
    }
}

impl From<KafkaError> for Failed {
    fn from(error: KafkaError) -> Failed {
        Failed::Client(ClientError::Broker(error))
    }
}

impl Failed {
    /// The one line on stderr, and the exit status.
    pub(super) fn report(self, doing: &str) -> ExitCode {
        match self {
            Failed::Client(error) => super::report_failure(doing, &error),
            Failed::Local(message) => {
                eprintln!("sluice: {doing} failed: {message}");
                ExitCode::from(super::EXIT_FAILED)
            }
        }
    }
}

/// One flag a command takes: its long name, its one-letter form, and
/// whether it takes a value.
pub(super) struct FlagSpec {
    pub long: &'static str,
    pub short: Option<char>,
    pub takes_value: bool,
}

/// `--bootstrap` (`-b`, as kcat has it), which both commands take.
pub(super) const BOOTSTRAP: FlagSpec = FlagSpec {
    long: "bootstrap",
    short: Some('b'),
    takes_value: true,
};

/// `--bootstrap-server`, Kafka's tools' name for `--bootstrap`.
pub(super) const BOOTSTRAP_SERVER: FlagSpec = FlagSpec {
    long: "bootstrap-server",
    short: None,
    takes_value: true,
};

/// `--command-config FILE`: how to log in (see [`super::command_config`]).
pub(super) const COMMAND_CONFIG: FlagSpec = FlagSpec {
    long: "command-config",
    short: None,
    takes_value: true,
};

/// `--partition N` (`-p N`), which both commands take.
pub(super) const PARTITION: FlagSpec = FlagSpec {
    long: "partition",
    short: Some('p'),
    takes_value: true,
};

/// The positional arguments and the flags given, in order; a switch's
/// value is empty.
pub(super) struct Split<'a> {
    pub positionals: Vec<&'a str>,
    pub flags: Vec<(&'static str, String)>,
}

/// Splits `args` (after the command word) by `specs`.
pub(super) fn split<'a>(
    command: &str,
    args: &'a [String],
    specs: &[FlagSpec],
) -> Result<Split<'a>, String> {
    let mut split = Split {
        positionals: Vec::new(),
        flags: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (spec, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let spec = specs
                .iter()
                .find(|spec| spec.long == name)
                .ok_or_else(|| format!("'{command}' has no option --{name}"))?;
            (spec, inline)
        } else if let Some(short) = arg.strip_prefix('-').filter(|short| !short.is_empty()) {
            let mut letters = short.chars();
            let letter = letters.next();
            let spec = specs
                .iter()
                .find(|spec| spec.short.is_some() && spec.short == letter)
                .ok_or_else(|| format!("'{command}' has no option {arg}"))?;
            // `-K:` as well as `-K :`, as kcat takes them.
            let attached = letters.as_str();
            (spec, (!attached.is_empty()).then_some(attached))
        } else {
            split.positionals.push(arg);
            continue;
        };
        let value = match (spec.takes_value, inline) {
            (false, None) => String::new(),
            (false, Some(_)) => return Err(format!("--{} takes no value", spec.long)),
            (true, Some(value)) => value.to_string(),
            (true, None) => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("--{} needs a value", spec.long))?,
        };
        split.flags.push((spec.long, value));
    }
    Ok(split)
}

/// The usage text for `--help` or a command line that does not parse,
/// as the exit status to leave with; else what `parse` made of `args`.
pub(super) fn parse_or_exit<T>(
    args: &[String],
    parse: impl FnOnce(&[String]) -> Result<T, String>,
) -> Result<T, ExitCode> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        super::emit(super::USAGE);
        return Err(ExitCode::SUCCESS);
    }
    parse(args).map_err(|message| {
        eprintln!("sluice: {message}\n\n{}", super::USAGE);
        ExitCode::from(super::EXIT_USAGE)
    })
}

/// The one topic a command names.
pub(super) fn one_topic(command: &str, positionals: &[&str]) -> Result<String, String> {
    match positionals {
        [topic] if !topic.is_empty() => Ok(topic.to_string()),
        [] => Err(format!("'{command}' needs a topic name")),
        _ => Err(format!(
            "'{command}' takes one topic name, got {positionals:?}"
        )),
    }
}

/// A partition number from `--partition`.
pub(super) fn partition_number(value: &str) -> Result<i32, String> {
    value
        .parse::<i32>()
        .ok()
        .filter(|partition| *partition >= 0)
        .ok_or_else(|| format!("--partition expects a partition number, got '{value}'"))
}

/// Replaces `\n`, `\t`, `\r`, `\0` and `\\` with the characters they name;
/// other backslashes stay as they are.
pub(super) fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(other) => out.extend_from_slice(&[b'\\', other]),
            None => out.push(b'\\'),
        }
    }
    out
}

/// A command line from one string, for tests.
#[cfg(test)]
pub(super) fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec {
            long: "key-delimiter",
            short: Some('K'),
            takes_value: true,
        },
        FlagSpec {
            long: "follow",
            short: Some('f'),
            takes_value: false,
        },
    ];

    #[test]
    fn splits_long_short_and_attached_values() {
        let line = words("t -K: --key-delimiter=, -K ; -f --follow");
        let parsed = split("x", &line, SPECS).expect("splits");
        assert_eq!(parsed.positionals, ["t"]);
        let values: Vec<_> = parsed
            .flags
            .iter()
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(values, [":", ",", ";", "", ""]);
        for bad in ["t --nope", "t -x", "t -K", "t --follow=yes"] {
            assert!(split("x", &words(bad), SPECS).is_err(), "{bad}");
        }
    }

    #[test]
    fn unescapes_the_usual_escapes() {
        assert_eq!(unescape(r"a\tb\nc\\d\qe\"), b"a\tb\nc\\d\\qe\\");
    }
}
