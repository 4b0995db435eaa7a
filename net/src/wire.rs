//! Framing and the scatter-gather response writer.
//!
//! A response is a list of byte slices: the length prefix and response header
//! in one small buffer, then the body as encoded pieces and record slices
//! straight from the log. They go to the socket with a gathering `sendmsg`
//! (`MSG_DONTWAIT`: the fd itself is in blocking mode) on the raw fd, so
//! fetched record bytes are never copied into a single response buffer; on
//! EAGAIN the writer waits through glommio's own write.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use smallvec::SmallVec;

use crate::constants::IOVECS_MAX;
use crate::reuse::Arena;

/// Pieces of one `sendmsg` described on the stack: a produce answer is
/// two, a fetch answer a few per partition; more go to the heap.
const IOVECS_INLINE: usize = 32;

/// Bytes of a response's length prefix and header at most: length,
/// correlation id, and the empty tagged fields of header v1.
const HEAD_BYTES_MAX: usize = 4 + 4 + 1;

/// Bytes of each buffer response heads are cut from: a head cut from a
/// shared buffer costs no allocation, where a buffer of its own cost one
/// per response. A head in a slow client's queue keeps its whole buffer
/// alive, so the buffer is small.
const HEAD_ARENA_BYTES: usize = 4096;

thread_local! {
    /// This thread's buffer response heads are cut from.
    static HEADS: Arena = Arena::new(HEAD_ARENA_BYTES);
}

/// A response ready to send, minus the 4-byte length prefix.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    pub pieces: Pieces,
}

/// A response's pieces: its length and header, then its body. Most bodies
/// are one buffer, so two are kept inline (no allocation for the list);
/// a fetch's record slices go to the heap.
pub type Pieces = SmallVec<[Bytes; PIECES_INLINE]>;

/// See [`Pieces`].
pub const PIECES_INLINE: usize = 2;

impl ResponseFrame {
    /// Builds a frame from a response header version and body pieces.
    pub fn new(correlation_id: i32, header_version: i16, body: Pieces) -> ResponseFrame {
        let body_len: usize = body.iter().map(Bytes::len).sum();
        let header_len = if header_version >= 1 { 5 } else { 4 };
        let head = HEADS.with(|heads| {
            heads.put(HEAD_BYTES_MAX, |head| {
                head.put_i32((header_len + body_len) as i32);
                head.put_i32(correlation_id);
                if header_version >= 1 {
                    // No tagged fields.
                    head.put_u8(0);
                }
            })
        });
        let mut pieces = Pieces::with_capacity(body.len() + 1);
        pieces.push(head);
        pieces.extend(body.into_iter().filter(|piece| !piece.is_empty()));
        ResponseFrame { pieces }
    }

    /// A bare SASL token, length-prefixed without a Kafka header: the
    /// answers after a SaslHandshake v0.
    pub fn raw_token(token: Vec<u8>) -> ResponseFrame {
        let mut frame = BytesMut::with_capacity(4 + token.len());
        frame.put_i32(token.len() as i32);
        frame.extend_from_slice(&token);
        ResponseFrame {
            pieces: smallvec::smallvec![frame.freeze()],
        }
    }

    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends whatever the socket holds right now to `buffer`, reserving at
/// least `wanted` bytes of room first, without waiting and without
/// zero-filling that room (a zero-filled read window costs a page fault and
/// a page clear per fresh page on every request). `Ok(None)` when nothing
/// is there yet (EAGAIN: wait through glommio); `Ok(Some(0))` at end of
/// stream.
pub fn receive_ready(fd: i32, buffer: &mut BytesMut, wanted: usize) -> io::Result<Option<usize>> {
    buffer.reserve(wanted);
    let spare = buffer.spare_capacity_mut();
    loop {
        // SAFETY: recv writes at most `spare.len()` bytes into memory the
        // buffer owns; fd is the caller's open, non-blocking socket.
        let received = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if received >= 0 {
            let received = received as usize;
            // SAFETY: recv initialised exactly `received` bytes of the spare
            // capacity, right after the current length.
            unsafe { buffer.set_len(buffer.len() + received) };
            return Ok(Some(received));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
}

/// Writes all pieces to the socket: a gathering non-blocking `sendmsg`
/// while the kernel takes data, glommio's awaited write when it would block.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    stream: &mut W,
    fd: i32,
    pieces: &mut Vec<Bytes>,
) -> io::Result<()> {
    let mut first = 0usize;
    while first < pieces.len() {
        let end = (first + IOVECS_MAX).min(pieces.len());
        let iovecs: SmallVec<[libc::iovec; IOVECS_INLINE]> = pieces[first..end]
            .iter()
            .map(|piece| libc::iovec {
                iov_base: piece.as_ptr() as *mut libc::c_void,
                iov_len: piece.len(),
            })
            .collect();
        // SAFETY: the iovecs point into `pieces`, alive and unchanged for the
        // duration of the call; the header only borrows them; fd is this
        // connection's open socket.
        let written = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
            header.msg_iovlen = iovecs.len();
            // The socket is in blocking mode (glommio drives it through
            // io_uring), so a plain writev into a full send buffer would put
            // the whole shard to sleep until this one peer reads: every other
            // connection and partition of the shard would stall with it, and
            // a peer that is itself waiting on the shard would never read.
            // MSG_DONTWAIT turns that into EAGAIN; MSG_NOSIGNAL turns a
            // closed peer into EPIPE instead of a signal.
            libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if written < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => {
                    // Socket buffer full: let glommio wait for room while it
                    // sends the next piece, then go back to sendmsg.
                    let piece = pieces[first].clone();
                    stream.write_all(&piece).await?;
                    first += 1;
                    continue;
                }
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
        let mut written = written as usize;
        while written > 0 && first < pieces.len() {
            let len = pieces[first].len();
            if written >= len {
                written -= len;
                first += 1;
            } else {
                let rest = pieces[first].slice(written..);
                pieces[first] = rest;
                written = 0;
            }
        }
    }
    pieces.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_cut_from_one_buffer() {
        let body = || -> Pieces { smallvec::smallvec![Bytes::from_static(b"body")] };
        let first = ResponseFrame::new(7, 1, body());
        let second = ResponseFrame::new(8, 0, body());
        let (a, b) = (&first.pieces[0], &second.pieces[0]);
        assert_eq!(a[..], [0, 0, 0, 9, 0, 0, 0, 7, 0]);
        assert_eq!(b[..], [0, 0, 0, 8, 0, 0, 0, 8]);
        // Unless the first took the last room of a buffer, the second head
        // lies right after it: no buffer of its own was allocated.
        let adjacent = a.as_ptr().wrapping_add(a.len()) == b.as_ptr();
        let third = ResponseFrame::new(9, 1, body());
        let c = &third.pieces[0];
        let adjacent_later = b.as_ptr().wrapping_add(b.len()) == c.as_ptr();
        assert!(
            adjacent || adjacent_later,
            "each head has a buffer of its own"
        );
        assert_eq!(first.pieces[1][..], *b"body");
    }
}
