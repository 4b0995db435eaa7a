//! What `sluice produce` and `sluice consume` share: how they fail, and
//! the escapes their delimiters and formats take.

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

/// Parses `args` (after the command word) as clap parses them for `T`,
/// for tests; the error is clap's message.
#[cfg(test)]
pub(super) fn parse_as<T: clap::Args + clap::FromArgMatches>(args: &[String]) -> Result<T, String> {
    let command = T::augment_args(clap::Command::new("sluice").no_binary_name(true));
    let matches = command
        .try_get_matches_from(args)
        .map_err(|error| error.to_string())?;
    T::from_arg_matches(&matches).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_the_usual_escapes() {
        assert_eq!(unescape(r"a\tb\nc\\d\qe\"), b"a\tb\nc\\d\\qe\\");
    }
}
