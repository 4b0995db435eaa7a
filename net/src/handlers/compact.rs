//! Fields of the flexible (compact, tagged) encoding, for the responses
//! written by hand: Fetch's (scatter-gather, so that record bytes are never
//! copied) and the versions the kafka-protocol crate cannot encode yet
//! (OffsetCommit and OffsetFetch v10).

use bytes::{BufMut, BytesMut};

pub(super) fn put_unsigned_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// A compact array's or string's length: one more than it is, 0 meaning null.
pub(super) fn put_compact_len(out: &mut BytesMut, len: usize) {
    put_unsigned_varint(out, len as u64 + 1);
}

pub(super) fn put_compact_string(out: &mut BytesMut, text: &str) {
    put_compact_len(out, text.len());
    out.put_slice(text.as_bytes());
}

pub(super) fn put_compact_nullable_string(out: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_compact_string(out, text),
        None => put_unsigned_varint(out, 0),
    }
}

/// An empty tagged-field section.
pub(super) fn put_no_tags(out: &mut BytesMut) {
    put_unsigned_varint(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_compact_fields_are_kafkas() {
        let mut out = BytesMut::new();
        put_unsigned_varint(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
        out.clear();
        put_compact_string(&mut out, "ab");
        put_compact_nullable_string(&mut out, None);
        put_compact_nullable_string(&mut out, Some(""));
        put_no_tags(&mut out);
        assert_eq!(&out[..], &[3, b'a', b'b', 0, 1, 0]);
    }
}
