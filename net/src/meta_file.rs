//! Small metadata files a broker keeps beside its logs (the SCRAM
//! credentials, the ACLs): read with a size bound, parsed with a
//! bounds-checked cursor, and replaced atomically.

use std::io::{Read, Write};
use std::path::Path;

/// Reads at most `bytes_max` bytes of `path` (+1, to see it is larger).
pub fn read_bounded(path: &Path, bytes_max: usize) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(bytes_max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > bytes_max {
        return Err(std::io::Error::other(format!(
            "larger than {bytes_max} bytes"
        )));
    }
    Ok(bytes)
}

/// Replaces `path` atomically: the new bytes go to a temporary file that is
/// synced and renamed over the old one, and the directory is synced, so a
/// crash leaves the old file or the new one. The file is readable by the
/// broker's user alone: credentials and ACLs are nobody else's business.
pub fn save_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let fail = |what: &str, at: &Path, error: std::io::Error| {
        format!("cannot {what} {}: {error}", at.display())
    };
    // A temporary file left by an interrupted run is replaced, so the new
    // one is created with the mode below.
    let _ = std::fs::remove_file(&temporary);
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|error| fail("create", &temporary, error))?;
        file.write_all(bytes)
            .map_err(|error| fail("write", &temporary, error))?;
        file.sync_all()
            .map_err(|error| fail("sync", &temporary, error))?;
    }
    std::fs::rename(&temporary, path).map_err(|error| fail("rename", &temporary, error))?;
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| fail("sync", directory, error))
}

/// A bounds-checked reader of big-endian fields.
pub struct Cursor<'a> {
    pub bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err(format!(
                "cut short: {len} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A UTF-8 string of at most `bytes_max` bytes after a u16 length.
    pub fn string(&mut self, bytes_max: usize, what: &str) -> Result<String, String> {
        let len = self.u16()? as usize;
        if len > bytes_max {
            return Err(format!("{what} of {len} bytes, more than {bytes_max}"));
        }
        std::str::from_utf8(self.take(len)?)
            .map(str::to_string)
            .map_err(|_| format!("{what} is not UTF-8"))
    }
}
