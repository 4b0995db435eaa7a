//! TLS for the client listener (Kafka's SSL and SASL_SSL): rustls, with the
//! `ring` provider, driven over glommio's sockets by futures-rustls.
//!
//! The server certificate and key come from one PEM file, as Kafka's
//! `ssl.keystore.type=PEM` keystore holds them; client certificates are
//! checked against the CAs of a PEM truststore when `ssl_client_auth` asks
//! for them, and the principal of such a client is its certificate's
//! subject, written as Kafka's default principal builder writes it (the
//! RFC 2253 form Java's `X500Principal.getName()` gives). The files are read
//! again on SIGHUP: connections made after a reload use the new ones, those
//! open keep theirs, and a reload that fails keeps the old ones.
//!
//! Sluice's own glommio client (the benchmark's) speaks TLS the same way,
//! trusting the CAs of one PEM file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::constants::TLS_WRITE_GATHER_BYTES;

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A client certificate is asked for; a client without one connects
    /// as `User:ANONYMOUS`, one with a certificate the truststore does not
    /// vouch for is refused.
    Requested,
    /// A client without a certificate the truststore vouches for is
    /// refused.
    Required,
}

impl ClientAuth {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// A TLS version of `ssl_enabled_protocols`, by Kafka's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProtocol {
    Tls12,
    Tls13,
}

impl TlsProtocol {
    pub fn name(self) -> &'static str {
        match self {
            TlsProtocol::Tls12 => "TLSv1.2",
            TlsProtocol::Tls13 => "TLSv1.3",
        }
    }

    pub fn parse(name: &str) -> Option<TlsProtocol> {
        match name {
            "TLSv1.2" => Some(TlsProtocol::Tls12),
            "TLSv1.3" => Some(TlsProtocol::Tls13),
            _ => None,
        }
    }

    fn version(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsProtocol::Tls12 => &rustls::version::TLS12,
            TlsProtocol::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// The TLS settings, by Kafka's names with underscores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl.keystore.location` (PEM): the private key and the certificate
    /// chain, server certificate first.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.truststore.location` (PEM): the CAs client certificates must
    /// chain to.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`.
    pub enabled_protocols: Vec<TlsProtocol>,
    /// `ssl.principal.mapping.rules`.
    pub principal_rules: PrincipalRules,
}

impl Default for TlsSettings {
    /// Kafka's defaults: no client certificates, TLS 1.2 and 1.3.
    fn default() -> TlsSettings {
        TlsSettings {
            keystore_location: None,
            truststore_location: None,
            client_auth: ClientAuth::None,
            enabled_protocols: vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
            principal_rules: PrincipalRules::default(),
        }
    }
}

/// The listener's TLS configuration, shared by every shard and replaced
/// whole on a reload.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the keystore (and truststore): a one-line error saying what
    /// to fix when they cannot be used.
    pub fn load(settings: &TlsSettings) -> Result<Tls, String> {
        let config = server_config(settings)?;
        Ok(Tls {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// What a new connection's handshake uses.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        futures_rustls::TlsAcceptor::from(Arc::clone(&current))
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.settings)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }
}

/// A connection's byte stream: the socket itself, or TLS over it (either
/// end of it: the broker's or a client's).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(context),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_close(context),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(context),
        }
    }
}

/// Writes pieces through TLS: small ones gathered into records of up to
/// `TLS_WRITE_GATHER_BYTES`, large ones (record batches) handed over as
/// they are; then flushed, so that they leave now. Each TLS write becomes
/// at least one record, so a piece per write would send a record per
/// header field.
pub async fn write_gathered<W: AsyncWrite + Unpin>(
    writer: &mut W,
    gathered: &mut Vec<u8>,
    pieces: &mut Vec<Bytes>,
) -> io::Result<()> {
    for piece in pieces.drain(..) {
        if gathered.len() + piece.len() > TLS_WRITE_GATHER_BYTES && !gathered.is_empty() {
            writer.write_all(gathered).await?;
            gathered.clear();
        }
        if piece.len() >= TLS_WRITE_GATHER_BYTES {
            writer.write_all(&piece).await?;
        } else {
            gathered.extend_from_slice(&piece);
        }
    }
    if !gathered.is_empty() {
        writer.write_all(gathered).await?;
        gathered.clear();
    }
    writer.flush().await
}

/// A client's TLS: the CAs it trusts.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// A client's certificate for brokers that ask for one: the PEM file with
/// its chain and the PEM file with its private key (one file may hold
/// both, as Kafka's PEM keystore does).
pub struct ClientIdentity<'a> {
    pub certificate: &'a Path,
    pub key: &'a Path,
}

/// A client configuration trusting the CAs of the PEM file `ca`, with a
/// client certificate when `identity` names one.
pub fn client_config(ca: &Path, identity: Option<ClientIdentity<'_>>) -> Result<ClientTls, String> {
    const SETTING: &str = "the CA file";
    let pem = read_pem(SETTING, ca)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates(SETTING, ca, &pem)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{SETTING} {}: {error}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            const CERTIFICATE: &str = "the client certificate";
            const KEY: &str = "the client key";
            let pem = read_pem(CERTIFICATE, identity.certificate)?;
            let chain = certificates(CERTIFICATE, identity.certificate, &pem)?;
            let pem = read_pem(KEY, identity.key)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
                format!(
                    "{KEY} {} holds no usable private key ({error})",
                    identity.key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| format!("{CERTIFICATE}: {error}"))?
        }
    };
    Ok(Arc::new(config))
}

/// The name a broker's certificate must carry: the host of `address`
/// (`host:port`, `[v6]:port`), a DNS name or an IP address.
pub fn server_name(address: &str) -> io::Result<ServerName<'static>> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))
}

/// A blocking connection's byte stream (Sluice's admin client): the
/// socket, or TLS over it.
pub enum BlockingStream {
    Plain(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl BlockingStream {
    /// TLS over `socket` to `address`; the handshake is done here, so that
    /// a broker that cannot be trusted fails the connect, not a request.
    pub fn connect_tls(
        tls: &ClientTls,
        address: &str,
        mut socket: std::net::TcpStream,
    ) -> io::Result<BlockingStream> {
        let mut connection = rustls::ClientConnection::new(Arc::clone(tls), server_name(address)?)
            .map_err(io::Error::other)?;
        while connection.is_handshaking() {
            connection.complete_io(&mut socket)?;
        }
        Ok(BlockingStream::Tls(Box::new(rustls::StreamOwned::new(
            connection, socket,
        ))))
    }
}

impl io::Read for BlockingStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(stream) => stream.read(buffer),
            BlockingStream::Tls(stream) => stream.read(buffer),
        }
    }
}

impl io::Write for BlockingStream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(stream) => stream.write(buffer),
            BlockingStream::Tls(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(stream) => stream.flush(),
            BlockingStream::Tls(stream) => stream.flush(),
        }
    }
}

/// Connects TLS over `stream` to `address` (`host:port`), checking the
/// broker's certificate names the host.
pub async fn connect(tls: &ClientTls, address: &str, stream: TcpStream) -> io::Result<Stream> {
    let name = server_name(address)?;
    let stream = futures_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, stream)
        .await?;
    Ok(Stream::Tls(Box::new(futures_rustls::TlsStream::Client(
        stream,
    ))))
}

fn read_pem(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|error| format!("cannot read {setting} {}: {error}", path.display()))
}

fn certificates(
    setting: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{setting} {}: not PEM: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{setting} {} holds no CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Reads the controller port's TLS files and makes every controller
/// connection from now on use them; on an error what was in use stays.
pub fn install_controller_tls(settings: &TlsSettings) -> Result<(), String> {
    sluice_cluster::stream::install(Some(controller_tls(settings)?));
    Ok(())
}

/// The controller port's TLS from the `ssl_*` settings: the keystore's
/// certificate shown by both ends, the truststore's CAs checking the
/// other end's, a client certificate always required whatever
/// `ssl_client_auth` says of the client listeners, and no session tickets
/// (see `sluice_cluster::stream::install`).
fn controller_tls(settings: &TlsSettings) -> Result<sluice_cluster::stream::ControllerTls, String> {
    let mut server = server_config(&TlsSettings {
        client_auth: ClientAuth::Required,
        ..settings.clone()
    })?;
    server.send_tls13_tickets = 0;
    let keystore = settings
        .keystore_location
        .as_deref()
        .ok_or("the controller port's TLS needs ssl_keystore_location")?;
    let truststore = settings
        .truststore_location
        .as_deref()
        .ok_or("the controller port's TLS needs ssl_truststore_location")?;
    let client = client_config(
        truststore,
        Some(ClientIdentity {
            certificate: keystore,
            key: keystore,
        }),
    )?;
    Ok(sluice_cluster::stream::ControllerTls {
        client,
        server: Arc::new(server),
    })
}

/// Builds the rustls configuration the settings describe.
fn server_config(settings: &TlsSettings) -> Result<ServerConfig, String> {
    const KEYSTORE: &str = "ssl_keystore_location";
    const TRUSTSTORE: &str = "ssl_truststore_location";
    let keystore = settings.keystore_location.as_deref().ok_or_else(|| {
        format!("an SSL or SASL_SSL listener needs {KEYSTORE}: a PEM file with the private key and the certificate chain")
    })?;
    let pem = read_pem(KEYSTORE, keystore)?;
    let chain = certificates(KEYSTORE, keystore, &pem)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        format!(
            "{KEYSTORE} {} holds no usable private key ({error}); an unencrypted PKCS#8, \
             PKCS#1 or SEC1 PEM key is needed",
            keystore.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static SupportedProtocolVersion> = settings
        .enabled_protocols
        .iter()
        .map(|protocol| protocol.version())
        .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|error| format!("ssl_enabled_protocols: {error}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let truststore = settings.truststore_location.as_deref().ok_or_else(|| {
                format!(
                    "ssl_client_auth {} needs {TRUSTSTORE}: a PEM file with the CAs client \
                     certificates are signed by",
                    settings.client_auth.name()
                )
            })?;
            let pem = read_pem(TRUSTSTORE, truststore)?;
            let mut roots = RootCertStore::empty();
            for certificate in certificates(TRUSTSTORE, truststore, &pem)? {
                roots
                    .add(certificate)
                    .map_err(|error| format!("{TRUSTSTORE} {}: {error}", truststore.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if settings.client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| format!("{TRUSTSTORE} {}: {error}", truststore.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(chain, key).map_err(|error| {
        format!(
            "{KEYSTORE} {}: the key and certificate cannot be used together: {error}",
            keystore.display()
        )
    })
}

/// The subject of a DER certificate as Kafka names an SSL principal: the
/// RFC 2253 form (last relative name first, `CN=alice,OU=eng,O=acme`).
/// `None` when the certificate cannot be read (rustls verified it, so this
/// is a certificate whose subject uses encodings this reader does not know).
pub fn subject_name(certificate: &[u8]) -> Option<String> {
    let (_, certificate, _) = der::element(certificate, der::SEQUENCE)?;
    let (_, mut tbs, _) = der::element(certificate, der::SEQUENCE)?;
    // version [0] EXPLICIT, absent in v1 certificates.
    if tbs.first() == Some(&der::VERSION) {
        tbs = der::element(tbs, der::VERSION)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped in order.
    for tag in [der::INTEGER, der::SEQUENCE, der::SEQUENCE, der::SEQUENCE] {
        tbs = der::element(tbs, tag)?.2;
    }
    let (_, mut subject, _) = der::element(tbs, der::SEQUENCE)?;
    let mut names = Vec::new();
    while !subject.is_empty() {
        let (_, mut set, rest) = der::element(subject, der::SET)?;
        subject = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (_, attribute, rest) = der::element(set, der::SEQUENCE)?;
            set = rest;
            let (_, oid, value) = der::element(attribute, der::OID)?;
            let (tag, content, rest) = der::any(value)?;
            if !rest.is_empty() {
                return None;
            }
            let value_der = &value[..value.len() - rest.len()];
            attributes.push(attribute_text(oid, tag, content, value_der)?);
        }
        names.push(attributes.join("+"));
    }
    names.reverse();
    Some(names.join(","))
}

/// One `type=value` of a relative name: a known type by its keyword and a
/// string value escaped, else the dotted OID and the value's DER in hex,
/// as RFC 2253 (and Java) write them.
fn attribute_text(oid: &[u8], tag: u8, content: &[u8], value_der: &[u8]) -> Option<String> {
    let keyword = KEYWORDS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, keyword)| *keyword);
    match (keyword, der::string(tag, content)) {
        (Some(keyword), Some(text)) => Some(format!("{keyword}={}", escape(&text))),
        _ => {
            let hex: String = value_der.iter().map(|byte| format!("{byte:02x}")).collect();
            Some(format!("{}=#{hex}", der::dotted(oid)?))
        }
    }
}

/// Kafka's `ssl.principal.mapping.rules`: how a certificate subject
/// becomes a principal name. Rules are tried in order; `DEFAULT` keeps the
/// subject as it is, `RULE:pattern/replacement/` turns a subject the
/// pattern matches whole into the replacement (`$1` for a group), and a
/// trailing `L` or `U` lowercases or uppercases the result. A subject no
/// rule matches has no principal, and its connection is refused, as in
/// Kafka.
#[derive(Clone, Debug)]
pub struct PrincipalRules {
    rules: Vec<PrincipalRule>,
    /// As configured, for DescribeConfigs.
    text: String,
}

#[derive(Clone, Debug)]
enum PrincipalRule {
    Default,
    Rule {
        /// The pattern anchored at both ends: Kafka's `Matcher.matches()`.
        whole: regex::Regex,
        pattern: regex::Regex,
        /// In the regex crate's syntax (`${1}`).
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Lower,
    Upper,
}

impl Default for PrincipalRules {
    fn default() -> PrincipalRules {
        PrincipalRules {
            rules: vec![PrincipalRule::Default],
            text: "DEFAULT".to_string(),
        }
    }
}

impl PartialEq for PrincipalRules {
    fn eq(&self, other: &PrincipalRules) -> bool {
        self.text == other.text
    }
}

impl Eq for PrincipalRules {}

impl PrincipalRules {
    /// Parses Kafka's rule list: `DEFAULT` and `RULE:pattern/replacement/[LU]`
    /// separated by commas (a pattern may hold commas; `\/` is a slash).
    pub fn parse(text: &str) -> Result<PrincipalRules, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(PrincipalRule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("'{}': no '/' after the pattern", clip_rule(rest)))?;
                let (replacement, after) = until_slash(after).ok_or_else(|| {
                    format!("'{}': no '/' after the replacement", clip_rule(rest))
                })?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let compile = |source: &str| {
                    regex::Regex::new(source)
                        .map_err(|error| format!("'{pattern}' is not a usable pattern: {error}"))
                };
                rules.push(PrincipalRule::Rule {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: compile(pattern)?,
                    replacement: java_replacement(replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "'{}': expected DEFAULT or RULE:pattern/replacement/[LU]",
                    clip_rule(rest)
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("'{}': expected a comma", clip_rule(rest))),
            }
        }
        if rules.is_empty() {
            return Err("no rule: use DEFAULT for the subject as it is".to_string());
        }
        Ok(PrincipalRules {
            rules,
            text: text.trim().to_string(),
        })
    }

    /// The rules as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The principal name of `subject` (its RFC 2253 form), by the first
    /// rule that matches it.
    pub fn apply(&self, subject: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            PrincipalRule::Default => Some(subject.to_string()),
            PrincipalRule::Rule {
                whole,
                pattern,
                replacement,
                case,
            } => {
                if !whole.is_match(subject) {
                    return None;
                }
                let name = pattern.replace_all(subject, replacement.as_str());
                Some(match case {
                    None => name.into_owned(),
                    Some(Case::Lower) => name.to_lowercase(),
                    Some(Case::Upper) => name.to_uppercase(),
                })
            }
        })
    }
}

/// The text up to the first `/` not escaped by `\`, and what follows it.
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        match character {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((&text[..index], &text[index + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// A Java replacement (`$1`, `\$` for a dollar) in the regex crate's
/// syntax (`${1}`, `$$`): `$1a` is group 1 then `a` in Java, a group named
/// `1a` in the regex crate.
fn java_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len() + 4);
    let mut characters = replacement.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' => match characters.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(digit) = characters.peek().filter(|c| c.is_ascii_digit()) {
                    digits.push(*digit);
                    characters.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The start of a rule, for an error message.
fn clip_rule(text: &str) -> &str {
    const SHOWN_CHARS: usize = 40;
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// The attribute types RFC 2253 names by keyword, by their OID's DER.
const KEYWORDS: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x09], "STREET"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// RFC 2253 section 2.4: `,+"\<>;` escaped anywhere, `#` and space at the
/// start, space at the end.
fn escape(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut escaped = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (character == '#' || character == ' '))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Just enough DER to find a certificate's subject. Every length is
/// checked against the bytes there: a short or odd certificate gives
/// `None`, never a panic.
mod der {
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const INTEGER: u8 = 0x02;
    pub const OID: u8 = 0x06;
    /// `[0] EXPLICIT Version` of a TBSCertificate.
    pub const VERSION: u8 = 0xa0;

    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    const TELETEX_STRING: u8 = 0x14;
    const IA5_STRING: u8 = 0x16;
    const BMP_STRING: u8 = 0x1e;

    /// Longest length field taken: 4 bytes, far past any certificate.
    const LENGTH_BYTES_MAX: usize = 4;

    /// The next element, whatever its tag: (tag, content, what follows).
    pub fn any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let bytes = (first & 0x7f) as usize;
            if bytes == 0 || bytes > LENGTH_BYTES_MAX || rest.len() < bytes {
                return None;
            }
            let (digits, rest) = rest.split_at(bytes);
            let length = digits
                .iter()
                .fold(0usize, |length, &digit| (length << 8) | digit as usize);
            (length, rest)
        };
        if rest.len() < length {
            return None;
        }
        let (content, rest) = rest.split_at(length);
        Some((tag, content, rest))
    }

    /// The next element, which must have `tag`.
    pub fn element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
        any(input).filter(|(found, _, _)| *found == tag)
    }

    /// A directory string's text; `None` for a type this does not read.
    pub fn string(tag: u8, content: &[u8]) -> Option<String> {
        match tag {
            UTF8_STRING | PRINTABLE_STRING | IA5_STRING => {
                std::str::from_utf8(content).ok().map(str::to_string)
            }
            // T.61 read as Latin-1, as most readers do.
            TELETEX_STRING => Some(content.iter().map(|&byte| byte as char).collect()),
            BMP_STRING if content.len().is_multiple_of(2) => {
                let units: Vec<u16> = content
                    .chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                    .collect();
                String::from_utf16(&units).ok()
            }
            _ => None,
        }
    }

    /// An OID's content as dotted decimal.
    pub fn dotted(oid: &[u8]) -> Option<String> {
        let mut arcs: Vec<u64> = Vec::new();
        let mut value: u64 = 0;
        for &byte in oid {
            value = value.checked_mul(128)?.checked_add((byte & 0x7f) as u64)?;
            if byte & 0x80 == 0 {
                if arcs.is_empty() {
                    let first = (value / 40).min(2);
                    arcs.push(first);
                    arcs.push(value - first * 40);
                } else {
                    arcs.push(value);
                }
                value = 0;
            }
        }
        if arcs.is_empty() || oid.last().is_some_and(|byte| byte & 0x80 != 0) {
            return None;
        }
        Some(
            arcs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("."),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rfc_2253_says() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("x#y"), "x#y");
        assert_eq!(
            escape("say \"hi\"; <me>\\"),
            "say \\\"hi\\\"\\; \\<me\\>\\\\"
        );
    }

    #[test]
    fn principal_rules_map_subjects_as_kafka_does() {
        // The examples of Kafka's documentation.
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/ , \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules
                .apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            rules
                .apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(rules.apply("CN=other").as_deref(), Some("CN=other"));
        // $1a is group 1 then "a"; a slash escaped in the pattern; U.
        let rules = PrincipalRules::parse("RULE:^CN=([a-z]+)\\/x$/$1a/U").unwrap();
        assert_eq!(rules.apply("CN=bob/x").as_deref(), Some("BOBA"));
        assert_eq!(rules.apply("CN=bob"), None, "no rule matches");
        assert_eq!(
            PrincipalRules::default().apply("CN=a,O=b").as_deref(),
            Some("CN=a,O=b")
        );
        for bad in [
            "",
            "RULE:^CN=a",
            "RULE:^CN=a/b",
            "RULE:(/x/",
            "DEFAULT DEFAULT",
            "NONE",
        ] {
            assert!(PrincipalRules::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(der::dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(
            der::dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
        assert_eq!(der::dotted(&[0x86]), None);
        assert_eq!(der::dotted(&[]), None);
    }

    #[test]
    fn a_truncated_certificate_has_no_subject() {
        // A SEQUENCE claiming 300 bytes with 3 there, and long-form lengths
        // of 0 and of 5 bytes.
        assert_eq!(
            subject_name(&[0x30, 0x82, 0x01, 0x2c, 0x30, 0x00, 0x02]),
            None
        );
        assert_eq!(subject_name(&[0x30, 0x80]), None);
        assert_eq!(subject_name(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(subject_name(&[]), None);
    }
}
