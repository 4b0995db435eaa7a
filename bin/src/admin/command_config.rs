//! `--command-config FILE`: the client properties file Kafka's tools take
//! (`kafka-acls.sh --command-config admin.properties`), read for how to
//! connect: `security.protocol`, `sasl.mechanism`, and the credentials
//! from `sasl.jaas.config` (Kafka's form) or `sasl.username` and
//! `sasl.password` (librdkafka's). `sasl.jaas.config` wins when both are
//! given. For SSL and SASL_SSL, the CAs to trust from
//! `ssl.truststore.location` (a PEM truststore) or `ssl.ca.location`, and a
//! client certificate from `ssl.keystore.location` (a PEM keystore) or
//! `ssl.certificate.location` with `ssl.key.location`. Other keys are
//! ignored, as Kafka's tools ignore the ones they do not use.
//!
//! The file is read in `java.util.Properties` syntax: `key=value` or
//! `key: value`, `#` and `!` comments, a line ending in `\` continued on
//! the next, and `\` escapes. A line without `=` or `:` is refused rather
//! than read as a key with an empty value, as Java would: it is almost
//! always a typing mistake. Errors name the file and the line, and never
//! quote a value (it may be a password).

use std::io::Read;
use std::path::Path;

use sluice_net::client::{ClientOptions, SaslCredentials};
use sluice_net::config::SecurityProtocol;
use sluice_net::constants::{SASL_PASSWORD_BYTES_MAX, SASL_USER_BYTES_MAX};
use sluice_net::sasl::Mechanism;
use sluice_net::tls::{ClientIdentity, ClientTls};

/// Largest command config read: a client properties file is a few hundred
/// bytes, and a larger file is more likely a wrong path than a config.
const COMMAND_CONFIG_BYTES_MAX: u64 = 1024 * 1024;

/// The JAAS login modules whose options carry a user name and a password.
const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";
const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// JAAS control flags (javax.security.auth.login.Configuration).
const CONTROL_FLAGS: &[&str] = &["required", "requisite", "sufficient", "optional"];

/// The settings of every admin command: the defaults, with the SASL login
/// of `command_config` when a path is given.
pub(super) fn client_options(command_config: Option<&str>) -> Result<ClientOptions, String> {
    let (sasl, tls) = match command_config {
        None => (None, None),
        Some(path) => load(Path::new(path))?,
    };
    Ok(ClientOptions {
        sasl,
        tls,
        ..ClientOptions::default()
    })
}

/// The SASL login and the TLS a command config asks for.
fn load(path: &Path) -> Result<(Option<SaslCredentials>, Option<ClientTls>), String> {
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(COMMAND_CONFIG_BYTES_MAX + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|error| format!("cannot read the command config {shown}: {error}"))?;
    if bytes.len() as u64 > COMMAND_CONFIG_BYTES_MAX {
        return Err(format!(
            "the command config {shown} is larger than {COMMAND_CONFIG_BYTES_MAX} bytes"
        ));
    }
    // Java reads properties as ISO 8859-1 and Kafka's tools as UTF-8
    // through a reader; UTF-8 is what anyone writes today.
    let text =
        String::from_utf8(bytes).map_err(|_| format!("the command config {shown} is not UTF-8"))?;
    let properties = parse_properties(&text)
        .map_err(|(line, reason)| format!("command config {shown} line {line}: {reason}"))?;
    let sasl =
        sasl_of(&properties).map_err(|reason| format!("command config {shown}: {reason}"))?;
    let tls = tls_of(&properties).map_err(|reason| format!("command config {shown}: {reason}"))?;
    Ok((sasl, tls))
}

/// One `key=value` of the file, with the line it starts on.
#[derive(Debug, PartialEq, Eq)]
struct Property {
    line: usize,
    key: String,
    value: String,
}

/// The properties in file order; a key given twice keeps its last value
/// (see [`value_of`]), as `java.util.Properties` does.
fn parse_properties(text: &str) -> Result<Vec<Property>, (usize, String)> {
    let mut properties = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, natural)) = lines.next() {
        let start = index + 1;
        let trimmed = natural.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // A logical line: natural lines joined while one ends in an odd
        // number of backslashes, the next one's leading blanks dropped.
        let mut logical = String::from(trimmed);
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical)
            .ok_or((start, "expected key=value (or a # comment)".to_string()))?;
        let key = unescape(key).map_err(|reason| (start, reason))?;
        if key.is_empty() {
            return Err((start, "a property without a key".to_string()));
        }
        let value = unescape(value).map_err(|reason| (start, reason))?;
        properties.push(Property {
            line: start,
            key,
            value,
        });
    }
    Ok(properties)
}

fn ends_in_continuation(line: &str) -> bool {
    let backslashes = line.bytes().rev().take_while(|byte| *byte == b'\\').count();
    backslashes % 2 == 1
}

/// The key and the value of a logical line: the key ends at the first `=`
/// or `:` not escaped; blanks around the separator are dropped. `None`
/// without a separator.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (at, character) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match character {
            '\\' => escaped = true,
            '=' | ':' => {
                let key = line[..at].trim_end();
                let value = line[at + 1..].trim_start();
                return Some((key, value));
            }
            _ => {}
        }
    }
    None
}

/// `java.util.Properties` escapes: `\t \n \r \f`, `\uXXXX`, and `\` before
/// any other character standing for that character.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        match characters.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let digits: String = characters.by_ref().take(4).collect();
                let decoded = (digits.len() == 4)
                    .then(|| u32::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or("a malformed \\uXXXX escape")?;
                out.push(decoded);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The last value of `key`.
fn value_of<'a>(properties: &'a [Property], key: &str) -> Option<&'a Property> {
    properties.iter().rev().find(|property| property.key == key)
}

/// `security.protocol` (PLAINTEXT when absent), upper-cased.
fn protocol_of(properties: &[Property]) -> Result<SecurityProtocol, String> {
    let protocol = value_of(properties, "security.protocol")
        .map_or("PLAINTEXT".to_string(), |property| {
            property.value.trim().to_ascii_uppercase()
        });
    SecurityProtocol::parse(&protocol).ok_or_else(|| {
        format!(
            "security.protocol: unknown protocol '{protocol}' (PLAINTEXT, SASL_PLAINTEXT, SSL \
             or SASL_SSL)"
        )
    })
}

/// The TLS the properties describe; `None` without SSL or SASL_SSL (Kafka's
/// clients ignore the `ssl.*` settings then).
fn tls_of(properties: &[Property]) -> Result<Option<ClientTls>, String> {
    let protocol = protocol_of(properties)?;
    if !protocol.is_tls() {
        return Ok(None);
    }
    let protocol = protocol.name();
    let path_of = |key: &str| {
        value_of(properties, key)
            .map(|property| property.value.trim())
            .filter(|value| !value.is_empty())
            .map(Path::new)
    };
    for key in ["ssl.truststore.type", "ssl.keystore.type"] {
        if let Some(kind) = value_of(properties, key) {
            if !kind.value.trim().eq_ignore_ascii_case("PEM") {
                return Err(format!(
                    "line {}: {key} {}: only PEM files are read (JKS and PKCS12 are not)",
                    kind.line,
                    kind.value.trim()
                ));
            }
        }
    }
    if value_of(properties, "ssl.key.password").is_some() {
        return Err(
            "ssl.key.password: encrypted private keys are not read; give an unencrypted PEM key"
                .to_string(),
        );
    }
    let ca = path_of("ssl.truststore.location")
        .or_else(|| path_of("ssl.ca.location"))
        .ok_or_else(|| {
            format!(
                "{protocol} needs the CA the brokers' certificates chain to: \
                 ssl.truststore.location (PEM) or ssl.ca.location"
            )
        })?;
    let identity = match (
        path_of("ssl.keystore.location"),
        path_of("ssl.certificate.location"),
        path_of("ssl.key.location"),
    ) {
        (Some(keystore), _, _) => Some(ClientIdentity {
            certificate: keystore,
            key: keystore,
        }),
        (None, Some(certificate), Some(key)) => Some(ClientIdentity { certificate, key }),
        (None, None, None) => None,
        (None, _, _) => {
            return Err(
                "a client certificate needs both ssl.certificate.location and ssl.key.location"
                    .to_string(),
            )
        }
    };
    sluice_net::tls::client_config(ca, identity).map(Some)
}

/// The login the properties describe; `None` without SASL_PLAINTEXT or
/// SASL_SSL.
fn sasl_of(properties: &[Property]) -> Result<Option<SaslCredentials>, String> {
    let protocol = protocol_of(properties)?;
    // Kafka's clients ignore the SASL settings without a SASL protocol.
    if !protocol.is_sasl() {
        return Ok(None);
    }
    let protocol = protocol.name();
    let mechanism = match value_of(properties, "sasl.mechanism") {
        None => {
            return Err(format!(
                "{protocol} needs sasl.mechanism: Kafka's default, GSSAPI (Kerberos), is not \
                 supported; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            ))
        }
        Some(property) => {
            let name = property.value.trim();
            Mechanism::from_name(name)
                .filter(|mechanism| mechanism.uses_credentials())
                .ok_or_else(|| {
                    format!(
                    "line {}: sasl.mechanism '{name}' is not supported (PLAIN, SCRAM-SHA-256 or \
                     SCRAM-SHA-512)",
                    property.line
                )
                })?
        }
    };
    let (user, password) = match value_of(properties, "sasl.jaas.config") {
        Some(property) => parse_jaas(&property.value)
            .map_err(|reason| format!("line {}: sasl.jaas.config: {reason}", property.line))?,
        None => {
            let user = value_of(properties, "sasl.username");
            let password = value_of(properties, "sasl.password");
            match (user, password) {
                (Some(user), Some(password)) => (user.value.clone(), password.value.clone()),
                _ => {
                    return Err(format!(
                        "{protocol} needs credentials: sasl.jaas.config, or sasl.username and \
                         sasl.password"
                    ))
                }
            }
        }
    };
    if user.is_empty() || user.len() > SASL_USER_BYTES_MAX {
        return Err(format!(
            "the user name takes 1 to {SASL_USER_BYTES_MAX} bytes"
        ));
    }
    if password.is_empty() || password.len() > SASL_PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password takes 1 to {SASL_PASSWORD_BYTES_MAX} bytes"
        ));
    }
    Ok(Some(SaslCredentials::new(mechanism, user, password)))
}

/// A token of a JAAS configuration entry.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

/// Splits a JAAS entry into words, quoted strings (with `\` escaping the
/// next character), `=` and `;`.
fn jaas_tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut characters = text.chars().peekable();
    while let Some(&character) = characters.peek() {
        match character {
            _ if character.is_whitespace() => {
                characters.next();
            }
            '=' => {
                characters.next();
                tokens.push(Token::Equals);
            }
            ';' => {
                characters.next();
                tokens.push(Token::Semicolon);
            }
            '"' => {
                characters.next();
                let mut quoted = String::new();
                loop {
                    match characters.next() {
                        None => return Err("a quoted value is not closed".to_string()),
                        Some('"') => break,
                        Some('\\') => match characters.next() {
                            Some(escaped) => quoted.push(escaped),
                            None => return Err("a quoted value is not closed".to_string()),
                        },
                        Some(other) => quoted.push(other),
                    }
                }
                tokens.push(Token::Quoted(quoted));
            }
            _ => {
                let mut word = String::new();
                while let Some(&next) = characters.peek() {
                    if next.is_whitespace() || matches!(next, '=' | ';' | '"') {
                        break;
                    }
                    word.push(next);
                    characters.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// The user name and password of a `sasl.jaas.config` value: one
/// PlainLoginModule or ScramLoginModule entry, `required` (or another
/// control flag), `name=value` options, and a closing `;`.
fn parse_jaas(text: &str) -> Result<(String, String), String> {
    let tokens = jaas_tokens(text)?;
    let mut tokens = tokens.into_iter();
    let module = match tokens.next() {
        Some(Token::Word(module)) => module,
        _ => return Err("expected a login module class".to_string()),
    };
    if module != SCRAM_LOGIN_MODULE && module != PLAIN_LOGIN_MODULE {
        return Err(format!(
            "login module {module} is not supported (ScramLoginModule or PlainLoginModule)"
        ));
    }
    match tokens.next() {
        Some(Token::Word(flag)) if CONTROL_FLAGS.contains(&flag.to_ascii_lowercase().as_str()) => {}
        _ => return Err(format!("expected a control flag after {module} (required)")),
    }
    let mut user = None;
    let mut password = None;
    loop {
        let name = match tokens.next() {
            Some(Token::Semicolon) => break,
            Some(Token::Word(name)) => name,
            None => return Err("the entry does not end with ';'".to_string()),
            Some(_) => return Err("expected an option name".to_string()),
        };
        if tokens.next() != Some(Token::Equals) {
            return Err(format!("expected '=' after option {name}"));
        }
        let value = match tokens.next() {
            Some(Token::Quoted(value) | Token::Word(value)) => value,
            _ => return Err(format!("option {name} has no value")),
        };
        match name.as_str() {
            "username" => user = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
    }
    if tokens.next().is_some() {
        return Err("more than one login module (Kafka takes exactly one)".to_string());
    }
    match (user, password) {
        (Some(user), Some(password)) => Ok((user, password)),
        (None, _) => Err("no username option".to_string()),
        (_, None) => Err("no password option".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(text: &str) -> Result<Option<SaslCredentials>, String> {
        let properties =
            parse_properties(text).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        sasl_of(&properties)
    }

    fn login(text: &str) -> SaslCredentials {
        match sasl(text) {
            Ok(Some(credentials)) => credentials,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn kafkas_scram_form_with_comments_and_continuations() {
        // In a properties file `\\` is one backslash, so the JAAS parser
        // sees `\"` (an escaped quote) where the file has `\\\"`.
        let credentials = login(
            r##"# the admin's login
bootstrap.servers=ignored:9092
security.protocol = SASL_PLAINTEXT
! another comment
sasl.mechanism: SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
    username="admin" \
    password="p@ss=w;o\\\"rd";
some.unknown.key=whatever
"##,
        );
        assert_eq!(credentials.mechanism, Mechanism::ScramSha512);
        assert_eq!(credentials.user, "admin");
        assert_eq!(credentials.password(), "p@ss=w;o\"rd");
    }

    #[test]
    fn the_plain_module_and_librdkafkas_keys() {
        let plain = login(
            "security.protocol=sasl_plaintext\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=alice password=secret;\n",
        );
        assert_eq!(
            (plain.mechanism, plain.user.as_str(), plain.password()),
            (Mechanism::Plain, "alice", "secret")
        );
        let librdkafka = login(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.username=bob\nsasl.password=pa\\u0073s word\n",
        );
        assert_eq!(
            (librdkafka.user.as_str(), librdkafka.password()),
            ("bob", "pass word")
        );
        // The later of two values counts, as in java.util.Properties.
        let twice = login(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
             sasl.username=first\nsasl.username=second\nsasl.password=pw\n",
        );
        assert_eq!(twice.user, "second");
    }

    fn tls(text: &str) -> Result<bool, String> {
        let properties =
            parse_properties(text).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        tls_of(&properties).map(|tls| tls.is_some())
    }

    #[test]
    fn tls_settings_are_read_and_checked() {
        assert_eq!(tls("security.protocol=SASL_PLAINTEXT\n"), Ok(false));
        assert_eq!(
            tls("ssl.ca.location=/nowhere\n"),
            Ok(false),
            "ignored on PLAINTEXT"
        );
        for (text, says) in [
            ("security.protocol=SSL\n", "SSL needs the CA"),
            ("security.protocol=sasl_ssl\n", "SASL_SSL needs the CA"),
            (
                "security.protocol=SSL\nssl.truststore.type=JKS\nssl.truststore.location=t.jks\n",
                "line 2: ssl.truststore.type JKS: only PEM files are read",
            ),
            (
                "security.protocol=SSL\nssl.ca.location=/nowhere/ca.pem\n",
                "cannot read the CA file /nowhere/ca.pem",
            ),
            (
                "security.protocol=SSL\nssl.ca.location=ca.pem\nssl.key.password=s3cret\n",
                "encrypted private keys are not read",
            ),
            (
                "security.protocol=SSL\nssl.ca.location=ca.pem\nssl.key.location=k.pem\n",
                "needs both ssl.certificate.location and ssl.key.location",
            ),
        ] {
            let error = tls(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn plaintext_and_empty_files_need_no_login() {
        assert_eq!(sasl(""), Ok(None));
        assert_eq!(sasl("# nothing\n\n"), Ok(None));
        assert_eq!(
            sasl("security.protocol=PLAINTEXT\nsasl.mechanism=GSSAPI\n"),
            Ok(None)
        );
    }

    #[test]
    fn refusals_name_the_problem_and_never_the_password() {
        for (text, says) in [
            ("security.protocol=SASL_SSL\n", "SASL_SSL needs sasl.mechanism"),
            ("security.protocol=QUIC\n", "unknown protocol 'QUIC'"),
            ("security.protocol=SASL_PLAINTEXT\n", "sasl.mechanism"),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n",
                "line 2: sasl.mechanism 'GSSAPI' is not supported",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=a\n",
                "needs credentials",
            ),
            ("sasl.mechanism=PLAIN\nthis line is wrong s3cret\n", "line 2: expected key=value"),
            ("=s3cret\n", "line 1: a property without a key"),
            ("a=\\u00s3cret\n", "line 1: a malformed \\uXXXX escape"),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=com.example.Krb5LoginModule required;\n",
                "line 3: sasl.jaas.config: login module com.example.Krb5LoginModule is not supported",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"a\" password=\"s3cret\"\n",
                "does not end with ';'",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"a\" password=\"s3cret;\n",
                "not closed",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
                 username=\"a\" password=\"s3cret\";\n",
                "control flag",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
                 password=\"s3cret\";\n",
                "no username",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=a password=s3cret; org.apache.kafka.common.security.plain.PlainLoginModule required;\n",
                "more than one login module",
            ),
        ] {
            let error = sasl(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
            assert!(!error.contains("s3cret"), "{text:?}: {error}");
        }
    }

    #[test]
    fn files_are_read_bounded_and_named_in_errors() {
        let dir =
            std::env::temp_dir().join(format!("sluice-command-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("admin.properties");
        std::fs::write(
            &file,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.username=admin\nsasl.password=pw\n",
        )
        .unwrap();
        let options = client_options(file.to_str()).unwrap();
        assert_eq!(options.sasl.map(|sasl| sasl.user), Some("admin".into()));
        std::fs::write(&file, "x\n").unwrap();
        let error = client_options(file.to_str()).unwrap_err();
        assert!(
            error.starts_with(&format!("command config {} line 1: ", file.display())),
            "{error}"
        );
        std::fs::write(&file, vec![b'#'; COMMAND_CONFIG_BYTES_MAX as usize + 1]).unwrap();
        assert!(client_options(file.to_str())
            .unwrap_err()
            .contains("larger than"));
        let missing = dir.join("missing.properties");
        assert!(client_options(missing.to_str())
            .unwrap_err()
            .contains("cannot read the command config"));
        assert!(client_options(None).unwrap().sasl.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
