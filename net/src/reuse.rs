//! Vectors and small buffers kept on a shard's thread for the next request.
//!
//! A produce request used to allocate each of its lists afresh: the decoded
//! topics and partitions, the outcomes, the response's topics and
//! partitions, the encoded body. Each is now taken from a spare the thread
//! keeps and given back once the request is answered, so a shard in steady
//! state reuses the same few vectors instead of asking the allocator for
//! them on every request.
//!
//! Spares are per thread (a shard is one thread), so taking and giving are a
//! `RefCell` borrow, never a lock. A vector given back on another thread
//! than the one that took it (a shard's answer read by the asking shard)
//! simply joins that thread's spares.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Spare vectors kept per element type and thread: about as many as the
/// requests a shard has in flight at once keep the steady state free of
/// allocations, and the bound keeps a burst from holding memory after it.
const SPARE_VECTORS_MAX: usize = 64;

/// A vector with room for more elements than this is freed, not kept: a
/// request of very many partitions must not leave its lists behind for
/// every later request of a few.
const SPARE_CAPACITY_MAX: usize = 4096;

/// Vectors of `T` kept for reuse on one thread (in a `thread_local!`).
pub struct Spares<T> {
    free: RefCell<Vec<Vec<T>>>,
}

impl<T> Spares<T> {
    pub const fn new() -> Spares<T> {
        Spares {
            free: RefCell::new(Vec::new()),
        }
    }

    /// An empty vector with room for at least `capacity` elements: a spare
    /// when one is kept, a new one otherwise.
    pub fn take(&self, capacity: usize) -> Vec<T> {
        let spare = self
            .free
            .try_borrow_mut()
            .ok()
            .and_then(|mut free| free.pop());
        match spare {
            Some(mut vector) => {
                vector.reserve(capacity);
                vector
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keeps `vector` (emptied) for a later `take`, unless enough are kept
    /// or it is too large to keep.
    pub fn give(&self, mut vector: Vec<T>) {
        if vector.capacity() == 0 || vector.capacity() > SPARE_CAPACITY_MAX {
            return;
        }
        vector.clear();
        if let Ok(mut free) = self.free.try_borrow_mut() {
            if free.len() < SPARE_VECTORS_MAX {
                free.push(vector);
            }
        }
    }

    /// How many vectors are kept now.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.free.borrow().len()
    }
}

impl<T> Default for Spares<T> {
    fn default() -> Spares<T> {
        Spares::new()
    }
}

/// Small byte strings cut one after another from a shared buffer: each
/// costs no allocation of its own, where a buffer each cost one. What is
/// cut keeps the whole buffer alive until every piece cut from it is
/// dropped, so only short-lived pieces (responses on their way to the
/// socket) are cut, and the buffer is small.
pub struct Arena {
    rest: RefCell<BytesMut>,
    /// Bytes of each new buffer.
    buffer_bytes: usize,
}

impl Arena {
    pub fn new(buffer_bytes: usize) -> Arena {
        Arena {
            rest: RefCell::new(BytesMut::new()),
            buffer_bytes,
        }
    }

    /// `cut` for a `fill` that cannot fail.
    pub fn put(&self, room: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
        let cut = self.cut(room, |buffer| {
            fill(buffer);
            Ok::<(), std::convert::Infallible>(())
        });
        match cut {
            Ok(bytes) => bytes,
            Err(never) => match never {},
        }
    }

    /// The bytes `fill` writes, given room for at least `room` of them,
    /// cut from the shared buffer when they fit in one, in a buffer of
    /// their own otherwise. `fill` may write more than `room` (the buffer
    /// then grows, as a `BytesMut` does).
    pub fn cut<E>(
        &self,
        room: usize,
        fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        let Ok(mut rest) = self.rest.try_borrow_mut().map_err(|_| ()) else {
            let mut own = BytesMut::with_capacity(room);
            fill(&mut own)?;
            return Ok(own.freeze());
        };
        if room > self.buffer_bytes / 2 {
            drop(rest);
            let mut own = BytesMut::with_capacity(room);
            fill(&mut own)?;
            return Ok(own.freeze());
        }
        if rest.capacity() < room {
            *rest = BytesMut::with_capacity(self.buffer_bytes);
        }
        match fill(&mut rest) {
            Ok(()) => Ok(rest.split().freeze()),
            Err(error) => {
                rest.clear();
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_given_back_is_taken_again_empty_with_its_room() {
        let spares: Spares<u64> = Spares::new();
        let mut first = spares.take(10);
        first.extend([1, 2, 3]);
        let pointer = first.as_ptr();
        spares.give(first);
        assert_eq!(spares.kept(), 1);
        let again = spares.take(5);
        assert!(again.is_empty());
        assert!(again.capacity() >= 10);
        assert_eq!(again.as_ptr(), pointer);
        assert_eq!(spares.kept(), 0);
    }

    #[test]
    fn spares_are_bounded_in_number_and_in_size() {
        let spares: Spares<u8> = Spares::new();
        spares.give(Vec::with_capacity(SPARE_CAPACITY_MAX + 1));
        assert_eq!(spares.kept(), 0);
        for _ in 0..SPARE_VECTORS_MAX + 5 {
            spares.give(Vec::with_capacity(1));
        }
        assert_eq!(spares.kept(), SPARE_VECTORS_MAX);
    }

    #[test]
    fn pieces_are_cut_side_by_side_from_one_buffer() {
        let arena = Arena::new(1024);
        let fill = |byte: u8| {
            move |buffer: &mut BytesMut| -> Result<(), ()> {
                buffer.extend_from_slice(&[byte; 100]);
                Ok(())
            }
        };
        let first = arena.cut(100, fill(1)).unwrap();
        let second = arena.cut(100, fill(2)).unwrap();
        assert_eq!(&first[..], &[1; 100][..]);
        assert_eq!(&second[..], &[2; 100][..]);
        assert_eq!(first.as_ptr().wrapping_add(100), second.as_ptr());
        // Too large to share: a buffer of its own, the shared one untouched.
        let large = arena.cut(600, fill(3)).unwrap();
        let third = arena.cut(100, fill(4)).unwrap();
        assert_eq!(large.len(), 100);
        assert_eq!(second.as_ptr().wrapping_add(100), third.as_ptr());
        // A failed fill leaves nothing behind in the shared buffer.
        assert!(arena.cut(100, |_| Err::<(), ()>(())).is_err());
        let fourth = arena.cut(100, fill(5)).unwrap();
        assert_eq!(third.as_ptr().wrapping_add(100), fourth.as_ptr());
    }
}
