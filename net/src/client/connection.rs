//! One blocking connection to one broker: framing, correlation ids,
//! timeouts, and the ApiVersions negotiation done right after connecting.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::error::{ClientError, KafkaError};
use super::{ClientOptions, RESPONSE_BYTES_MAX, RESPONSE_BYTES_MIN};
use crate::tls::BlockingStream;

/// The versions of each API this client can build requests for and read
/// responses of, `(api, min, max)`. Each lower bound is where a field the
/// admin calls rely on first appears; each upper bound is the newest version
/// whose fields the admin calls set correctly.
pub const CLIENT_API_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    // From v4 the request says whether to auto-create the topics it names;
    // earlier versions could create a topic that was only being described.
    (ApiKey::Metadata, 4, 13),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    // v1 (KIP-860) can refuse changes of the replication factor.
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // v0 knows only preferred elections; v1 (KIP-460) adds unclean ones.
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    // From v2 a null topic list fetches every committed offset; v8 moved
    // the group to a batch array this client does not build.
    (ApiKey::OffsetFetch, 2, 7),
    // Up to v9 the request carries no topic ids, which this client does not use.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    // v3 is the first that carries v2 record batches (and a transactional
    // id); v13 names topics by id, which this client does not use.
    (ApiKey::Produce, 3, 12),
    // v4 is the first with an isolation level and v2 record batches; v13
    // names topics by id.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::DescribeLogDirs, 1, 4),
    // v0 sends the mechanism's messages as bare tokens outside Kafka's
    // framing; v1 (KIP-152) wraps them in SaslAuthenticate.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    // v0 knows only literal patterns (KIP-290 added the pattern type in v1).
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Bytes of the length prefix in front of every frame.
const FRAME_LENGTH_BYTES: usize = 4;

/// The API key of a `kafka-protocol` request type. Every request type of the
/// crate has a key in its `ApiKey` enum, so failing here is a bug.
fn api_of<R: Request>() -> ApiKey {
    match ApiKey::try_from(R::KEY) {
        Ok(api) => api,
        Err(()) => panic!(
            "kafka-protocol request type with unknown api key {}",
            R::KEY
        ),
    }
}

/// For each API this client speaks, the highest version inside both its own
/// range and the broker's; APIs without a common version are left out.
fn pick_versions(broker: &[ApiVersion]) -> Vec<(ApiKey, i16)> {
    CLIENT_API_VERSIONS
        .iter()
        .filter_map(|(api, client_min, client_max)| {
            let theirs = broker
                .iter()
                .find(|version| version.api_key == *api as i16)?;
            let low = theirs.min_version.max(*client_min);
            let high = theirs.max_version.min(*client_max);
            (low <= high).then_some((*api, high))
        })
        .collect()
}

/// An encoding failure. `kafka-protocol` reports them as `anyhow::Error`;
/// only the text is kept, so this crate need not depend on `anyhow`.
fn encode_error(api: ApiKey, version: i16, error: impl fmt::Display) -> ClientError {
    ClientError::Encode {
        api,
        version,
        message: error.to_string(),
    }
}

/// A connection to one broker, with the API versions agreed on it.
pub struct Connection {
    stream: BlockingStream,
    /// `host:port` as given, for messages and for recognising a broker's
    /// advertised address as this connection.
    address: String,
    client_id: StrBytes,
    request_timeout_ms: u64,
    correlation_id: i32,
    versions: Vec<(ApiKey, i16)>,
    /// Whether the connection logs in: a SASL listener closes a connection
    /// that has not at its first request past ApiVersions, and an error
    /// without SASL says so.
    logs_in: bool,
}

impl Connection {
    /// Connects to `address` (`host:port`), negotiates API versions and,
    /// with [`ClientOptions::sasl`], logs in.
    pub fn connect(address: &str, options: &ClientOptions) -> Result<Connection, ClientError> {
        let resolved: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map_err(|source| ClientError::Resolve {
                address: address.to_string(),
                source: Some(source),
            })?
            .collect();
        let mut last_error = None;
        let mut connected = None;
        // A name may resolve to several addresses (IPv6 and IPv4): try each.
        for socket_address in &resolved {
            match TcpStream::connect_timeout(socket_address, options.connect_timeout) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let stream = match (connected, last_error) {
            (Some(stream), _) => stream,
            (None, Some(source)) => {
                return Err(ClientError::Connect {
                    address: address.to_string(),
                    source,
                })
            }
            (None, None) => {
                return Err(ClientError::Resolve {
                    address: address.to_string(),
                    source: None,
                })
            }
        };
        let configure = |stream: &TcpStream| -> io::Result<()> {
            // Requests are small and answered one at a time: do not let
            // Nagle's algorithm hold them back.
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(options.request_timeout))?;
            stream.set_write_timeout(Some(options.request_timeout))
        };
        configure(&stream).map_err(|source| ClientError::Connect {
            address: address.to_string(),
            source,
        })?;
        let stream = match &options.tls {
            None => BlockingStream::Plain(stream),
            Some(tls) => BlockingStream::connect_tls(tls, address, stream).map_err(|source| {
                ClientError::Connect {
                    address: address.to_string(),
                    source,
                }
            })?,
        };
        let mut connection = Connection {
            stream,
            address: address.to_string(),
            client_id: StrBytes::from_string(options.client_id.clone()),
            request_timeout_ms: u64::try_from(options.request_timeout.as_millis())
                .unwrap_or(u64::MAX),
            correlation_id: 0,
            versions: Vec::new(),
            logs_in: options.sasl.is_some(),
        };
        connection.negotiate()?;
        if let Some(credentials) = &options.sasl {
            super::sasl::authenticate(&mut connection, credentials)?;
        }
        Ok(connection)
    }

    /// The address this connection was opened with.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The version agreed for `api`, or why there is none.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.versions
            .iter()
            .find(|(known, _)| *known == api)
            .map(|(_, version)| *version)
            .ok_or(ClientError::UnsupportedApi {
                address: self.address.clone(),
                api,
            })
    }

    /// Whether the broker and this client share a version of `api`.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.version(api).is_ok()
    }

    /// Sends `request` at `version` (from [`Connection::version`], so the
    /// caller can set the fields that version has) and decodes the response.
    pub fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let api = api_of::<R>();
        let mut body = self.exchange(api, version, request)?;
        R::Response::decode(&mut body, version)
            .map_err(|error| self.decode_error(api, version, error))
    }

    /// Sends `request` at `version` without waiting for an answer: for
    /// Produce with acks=0, which the broker does not answer.
    pub fn send_without_response<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.write_request(api_of::<R>(), version, request)
            .map(|_| ())
    }

    /// Asks for the broker's API versions, once more at the broker's own
    /// highest ApiVersions version if it does not know ours (KIP-511).
    fn negotiate(&mut self) -> Result<(), ClientError> {
        let api = ApiKey::ApiVersions;
        let mut version = CLIENT_API_VERSIONS
            .iter()
            .find(|(known, _, _)| *known == api)
            .map_or(0, |(_, _, max)| *max);
        let mut retried = false;
        loop {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request.client_software_name = StrBytes::from_static_str("sluice");
                request.client_software_version =
                    StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let mut body = self.exchange(api, version, &request)?;
            // Every ApiVersions response starts with its error code. A broker
            // that does not know the request's version answers in the v0
            // layout with UNSUPPORTED_VERSION and the versions it does know.
            let error_code = body
                .get(..2)
                .and_then(|prefix| <[u8; 2]>::try_from(prefix).ok())
                .map(i16::from_be_bytes)
                .ok_or_else(|| ClientError::Decode {
                    address: self.address.clone(),
                    api,
                    version,
                    message: "empty ApiVersions response".to_string(),
                })?;
            if error_code == UNSUPPORTED_VERSION && !retried {
                let response = ApiVersionsResponse::decode(&mut body, 0)
                    .map_err(|error| self.decode_error(api, 0, error))?;
                let broker_max = response
                    .api_keys
                    .iter()
                    .find(|known| known.api_key == api as i16)
                    .map_or(0, |known| known.max_version);
                version = broker_max.clamp(0, version.saturating_sub(1).max(0));
                retried = true;
                continue;
            }
            let response = ApiVersionsResponse::decode(&mut body, version)
                .map_err(|error| self.decode_error(api, version, error))?;
            KafkaError::check(response.error_code, None)?;
            self.versions = pick_versions(&response.api_keys);
            return Ok(());
        }
    }

    /// Writes one request frame and reads its response frame; returns the
    /// response body after the response header.
    fn exchange<Q: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Q,
    ) -> Result<Bytes, ClientError> {
        let correlation_id = self.write_request(api, version, request)?;
        self.read_response(api, version, correlation_id)
    }

    /// Writes one request frame; returns its correlation id.
    fn write_request<Q: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Q,
    ) -> Result<i32, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let mut frame = BytesMut::new();
        // The length prefix is patched in once the frame is complete.
        frame.put_i32(0);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(|error| encode_error(api, version, error))?;
        request
            .encode(&mut frame, version)
            .map_err(|error| encode_error(api, version, error))?;
        let length =
            i32::try_from(frame.len() - FRAME_LENGTH_BYTES).map_err(|_| ClientError::Encode {
                api,
                version,
                message: "request longer than 2 GiB".to_string(),
            })?;
        frame[..FRAME_LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
        self.stream
            .write_all(&frame)
            .map_err(|error| self.io_error(api, error))?;
        Ok(correlation_id)
    }

    /// Reads the response frame to the request `correlation_id`; returns
    /// its body after the response header.
    fn read_response(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let mut prefix = [0u8; FRAME_LENGTH_BYTES];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|error| self.io_error(api, error))?;
        let length = i32::from_be_bytes(prefix);
        // Checked before allocating: the length comes from the peer.
        let size = usize::try_from(length)
            .ok()
            .filter(|size| (RESPONSE_BYTES_MIN..=RESPONSE_BYTES_MAX).contains(size))
            .ok_or_else(|| ClientError::FrameLength {
                address: self.address.clone(),
                api,
                length,
            })?;
        let mut buffer = vec![0u8; size];
        self.stream
            .read_exact(&mut buffer)
            .map_err(|error| self.io_error(api, error))?;
        let mut body = Bytes::from(buffer);
        let header_version = api.response_header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|error| self.decode_error(api, version, error))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::CorrelationMismatch {
                address: self.address.clone(),
                expected: correlation_id,
                received: header.correlation_id,
            });
        }
        Ok(body)
    }

    fn io_error(&self, api: ApiKey, error: io::Error) -> ClientError {
        let address = self.address.clone();
        match error.kind() {
            // A socket timeout shows up as either kind, depending on the platform.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                address,
                api,
                timeout_ms: self.request_timeout_ms,
            },
            io::ErrorKind::UnexpectedEof => ClientError::Io {
                address,
                api,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if self.logs_in || api == ApiKey::ApiVersions {
                        "the broker closed the connection"
                    } else {
                        "the broker closed the connection (no SASL login is configured, and a \
                         SASL listener closes a connection that has not logged in)"
                    },
                ),
            },
            _ => ClientError::Io {
                address,
                api,
                source: error,
            },
        }
    }

    fn decode_error(&self, api: ApiKey, version: i16, error: impl fmt::Display) -> ClientError {
        ClientError::Decode {
            address: self.address.clone(),
            api,
            version,
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_version(api: ApiKey, min: i16, max: i16) -> ApiVersion {
        let mut version = ApiVersion::default();
        version.api_key = api as i16;
        version.min_version = min;
        version.max_version = max;
        version
    }

    #[test]
    fn client_ranges_are_inside_the_crate_ranges() {
        for (api, min, max) in CLIENT_API_VERSIONS {
            let valid = api.valid_versions();
            assert!(
                valid.min <= *min && *min <= *max && *max <= valid.max,
                "{api:?}"
            );
        }
    }

    #[test]
    fn picks_the_highest_common_version() {
        let broker = [
            broker_version(ApiKey::Metadata, 0, 12),
            broker_version(ApiKey::CreateTopics, 0, 3),
            broker_version(ApiKey::DescribeCluster, 5, 9),
            broker_version(ApiKey::ListOffsets, 0, 20),
        ];
        let picked = pick_versions(&broker);
        assert!(picked.contains(&(ApiKey::Metadata, 12)));
        assert!(picked.contains(&(ApiKey::CreateTopics, 3)));
        assert!(picked.contains(&(ApiKey::ListOffsets, 10)));
        // No overlap, and not listed by the broker at all.
        assert!(!picked
            .iter()
            .any(|(api, _)| *api == ApiKey::DescribeCluster));
        assert!(!picked.iter().any(|(api, _)| *api == ApiKey::DeleteTopics));
    }

    /// What a fake broker writes back for one request: whole bytes, length
    /// prefix included, so a test can send a bad one.
    type Respond = dyn FnMut(&RequestHeader) -> Vec<u8> + Send;

    /// A one-connection fake broker on a free port. Returns its address and
    /// the thread, which yields the headers of the requests it saw.
    fn fake_broker(
        mut respond: Box<Respond>,
    ) -> (String, std::thread::JoinHandle<Vec<RequestHeader>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let address = listener
            .local_addr()
            .expect("test listener address")
            .to_string();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let Ok((mut stream, _)) = listener.accept() else {
                return seen;
            };
            loop {
                let mut prefix = [0u8; 4];
                if stream.read_exact(&mut prefix).is_err() {
                    return seen;
                }
                let mut payload = vec![0u8; i32::from_be_bytes(prefix) as usize];
                if stream.read_exact(&mut payload).is_err() {
                    return seen;
                }
                let mut payload = Bytes::from(payload);
                let header =
                    kafka_protocol::protocol::decode_request_header_from_buffer(&mut payload)
                        .expect("the client sends valid headers");
                let answer = respond(&header);
                seen.push(header);
                if stream.write_all(&answer).is_err() {
                    return seen;
                }
            }
        });
        (address, thread)
    }

    /// A whole ApiVersions response frame (its header is always v0).
    fn api_versions_frame(
        correlation_id: i32,
        version: i16,
        error_code: i16,
        apis: &[(ApiKey, i16, i16)],
    ) -> Vec<u8> {
        let mut response = ApiVersionsResponse::default();
        response.error_code = error_code;
        response.api_keys = apis
            .iter()
            .map(|(api, min, max)| broker_version(*api, *min, *max))
            .collect();
        let mut payload = BytesMut::new();
        payload.put_i32(correlation_id);
        response
            .encode(&mut payload, version)
            .expect("encode a test response");
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    fn quick_options() -> ClientOptions {
        ClientOptions {
            request_timeout: std::time::Duration::from_millis(300),
            ..ClientOptions::default()
        }
    }

    #[test]
    fn retries_api_versions_at_the_brokers_version() {
        let (address, broker) = fake_broker(Box::new(|header| {
            let apis = [
                (ApiKey::ApiVersions, 0, 2),
                (ApiKey::Metadata, 0, 8),
                (ApiKey::CreateTopics, 0, 3),
            ];
            if header.request_api_version > 2 {
                // What a broker does for an ApiVersions version it does not know.
                api_versions_frame(header.correlation_id, 0, UNSUPPORTED_VERSION, &apis[..2])
            } else {
                api_versions_frame(header.correlation_id, header.request_api_version, 0, &apis)
            }
        }));
        let connection = match Connection::connect(&address, &quick_options()) {
            Ok(connection) => connection,
            Err(error) => panic!("connect: {error}"),
        };
        assert_eq!(connection.version(ApiKey::Metadata).ok(), Some(8));
        assert_eq!(connection.version(ApiKey::CreateTopics).ok(), Some(3));
        assert!(!connection.supports(ApiKey::DescribeCluster));
        drop(connection);
        let seen = broker.join().expect("fake broker thread");
        let versions: Vec<i16> = seen
            .iter()
            .map(|header| header.request_api_version)
            .collect();
        assert_eq!(versions, [3, 2]);
        assert_eq!(
            seen[0].client_id.as_ref().map(|id| id.as_str()),
            Some("sluice-admin")
        );
        assert_ne!(seen[0].correlation_id, seen[1].correlation_id);
    }

    fn connect_error(respond: Box<Respond>) -> ClientError {
        let (address, broker) = fake_broker(respond);
        let result = Connection::connect(&address, &quick_options());
        let error = match result {
            Ok(_) => panic!("connecting to a misbehaving broker succeeded"),
            Err(error) => error,
        };
        let _ = broker.join();
        error
    }

    #[test]
    fn refuses_frame_lengths_out_of_bounds_before_allocating() {
        for length in [i32::MAX, -1, 0, (RESPONSE_BYTES_MAX + 1) as i32] {
            let error = connect_error(Box::new(move |_| length.to_be_bytes().to_vec()));
            assert!(
                matches!(error, ClientError::FrameLength { length: got, .. } if got == length),
                "{length}: {error}"
            );
        }
    }

    #[test]
    fn refuses_a_response_to_another_request() {
        let error = connect_error(Box::new(|header| {
            api_versions_frame(
                header.correlation_id + 1,
                header.request_api_version,
                0,
                &[],
            )
        }));
        assert!(
            matches!(error, ClientError::CorrelationMismatch { .. }),
            "{error}"
        );
    }

    #[test]
    fn times_out_when_the_broker_is_silent() {
        let error = connect_error(Box::new(|_| Vec::new()));
        assert!(
            matches!(
                error,
                ClientError::Timeout {
                    timeout_ms: 300,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn reports_a_truncated_response_as_decode_error() {
        let error = connect_error(Box::new(|header| {
            let mut frame =
                api_versions_frame(header.correlation_id, 3, 0, &[(ApiKey::Metadata, 0, 12)]);
            // Drop the last 3 bytes of the body but keep the length prefix honest.
            frame.truncate(frame.len() - 3);
            let length = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&length.to_be_bytes());
            frame
        }));
        assert!(matches!(error, ClientError::Decode { .. }), "{error}");
    }
}
