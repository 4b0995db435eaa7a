//! A small bounds-checked binary codec for metadata records and controller
//! frames. Everything is big-endian; strings and lists carry a u32 length
//! that is checked against what is left of the input before anything is
//! allocated, so no length or count that arrives over the controller port or
//! from a disk can make the decoder allocate more than the input's size.

use std::fmt;

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Appends encoded values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn bool(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn raw(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    /// A length-prefixed byte string.
    pub fn blob(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.bytes.extend_from_slice(value);
    }

    pub fn str(&mut self, value: &str) {
        self.blob(value.as_bytes());
    }

    pub fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.bool(true);
                self.str(value);
            }
            None => self.bool(false),
        }
    }

    pub fn i32s(&mut self, values: &[i32]) {
        self.u32(values.len() as u32);
        for value in values {
            self.i32(*value);
        }
    }
}

/// Reads encoded values, refusing anything that runs past the input.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.bytes.len() {
            return Err(DecodeError(format!(
                "{len} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError(format!("{other} is not a boolean"))),
        }
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn id(&mut self) -> Result<[u8; 16], DecodeError> {
        self.array()
    }

    pub fn blob(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        let bytes = self.blob()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("a string is not UTF-8".into()))
    }

    pub fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        if self.bool()? {
            Ok(Some(self.str()?))
        } else {
            Ok(None)
        }
    }

    /// A count of items each at least `item_bytes_min` long: refused when
    /// the input cannot hold that many, before anything is allocated.
    pub fn count(&mut self, item_bytes_min: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_bytes_min.max(1)) > self.bytes.len() {
            return Err(DecodeError(format!(
                "a count of {count} does not fit in the {} bytes left",
                self.bytes.len()
            )));
        }
        Ok(count)
    }

    pub fn i32s(&mut self) -> Result<Vec<i32>, DecodeError> {
        let count = self.count(4)?;
        (0..count).map(|_| self.i32()).collect()
    }

    /// Refuses trailing bytes: a record is exactly its encoding.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} bytes left over after the record",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_counts_are_checked_before_allocating() {
        let mut writer = Writer::default();
        writer.u32(u32::MAX);
        assert!(Reader::new(&writer.bytes).blob().is_err());
        assert!(Reader::new(&writer.bytes).i32s().is_err());
        let mut writer = Writer::default();
        writer.i32s(&[1, 2, 3]);
        writer.opt_str(Some("rack-a"));
        writer.opt_str(None);
        let mut reader = Reader::new(&writer.bytes);
        assert_eq!(reader.i32s().unwrap(), vec![1, 2, 3]);
        assert_eq!(reader.opt_str().unwrap().as_deref(), Some("rack-a"));
        assert_eq!(reader.opt_str().unwrap(), None);
        reader.finish().unwrap();
    }
}
