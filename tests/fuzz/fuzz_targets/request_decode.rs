//! Every Kafka request decoder Sluice has (`sluice_net::codec`), on any
//! bytes: no panic, no abort, no allocation larger than the input justifies.
//!
//! Input: byte 0 picks the API from `SUPPORTED_APIS` (0xf0.. pick raw keys
//! 60..=75, supported or not), byte 1 the version (below 0x80 a supported
//! one when the API is picked from the table, otherwise any in -2..=125, so
//! unsupported versions are refused, not read), and
//! the rest is decoded twice: as a request body, and as the server reads a
//! frame (request header, then body).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use sluice_net::codec::{self, SUPPORTED_APIS};

/// Selector bytes from here on name raw API keys (a range holding both
/// supported and unsupported APIs).
const RAW_KEY_SELECTOR_MIN: u8 = 0xf0;
/// The first API key tried for those selectors; Kafka's keys end in the 70s.
const RAW_KEY_BASE: i16 = 60;
/// Version selector bytes from here on give raw versions.
const RAW_VERSION_SELECTOR_MIN: u8 = 0x80;
/// The lowest raw version: negative versions must be refused too.
const RAW_VERSION_LOWEST: i16 = -2;

fuzz_target!(|data: &[u8]| {
    let [api_selector, version_selector, rest @ ..] = data else {
        return;
    };
    let (api_key, range) = if *api_selector >= RAW_KEY_SELECTOR_MIN {
        let key = RAW_KEY_BASE + i16::from(api_selector - RAW_KEY_SELECTOR_MIN);
        (key, None)
    } else {
        let (key, range) = SUPPORTED_APIS[usize::from(*api_selector) % SUPPORTED_APIS.len()];
        (key as i16, Some(range))
    };
    let api_version = match range {
        Some((min, max)) if *version_selector < RAW_VERSION_SELECTOR_MIN => {
            let span = (max - min + 1) as u16;
            min + (u16::from(*version_selector) % span) as i16
        }
        _ => RAW_VERSION_LOWEST + i16::from(version_selector & !RAW_VERSION_SELECTOR_MIN),
    };
    // A raw key can still name a supported API: ask the table itself.
    let supported = ApiKey::try_from(api_key)
        .ok()
        .and_then(codec::supported_versions)
        .is_some_and(|(min, max)| (min..=max).contains(&api_version));

    // The body alone.
    check(
        api_key,
        api_version,
        supported,
        Bytes::copy_from_slice(rest),
    );

    // A frame as `server::handle_frame` reads it: header, then body.
    let mut frame = Bytes::copy_from_slice(rest);
    if let Ok(header) = codec::decode_request_header(&mut frame, api_key, api_version) {
        assert_eq!(header.request_api_key, api_key);
        assert_eq!(header.request_api_version, api_version);
        assert!(frame.len() <= rest.len());
        check(api_key, api_version, supported, frame);
    }
});

fn check(api_key: i16, api_version: i16, supported: bool, body: Bytes) {
    if let Ok(request) = codec::decode_request(api_key, api_version, body) {
        // The documented contract: keys and versions outside the table are
        // refused before a byte is read.
        assert!(
            supported,
            "decoded api {api_key} v{api_version}, which is not supported"
        );
        assert_eq!(request.api_key() as i16, api_key);
    }
}
