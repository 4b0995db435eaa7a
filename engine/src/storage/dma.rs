//! The real backend: glommio DMA files (O_DIRECT through io_uring).

use std::io;
use std::path::Path;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::{Storage, StorageFile};
use crate::constants::IO_ALIGNMENT;

/// Files on a real file system, written with direct I/O.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaStorage;

fn glommio_error(error: glommio::GlommioError<()>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(error) => error,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaStorageFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(glommio_error)?;
        Ok(DmaStorageFile { file })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let directory = glommio::io::Directory::open(path).await.map_err(glommio_error)?;
        directory.sync().await.map_err(glommio_error)?;
        directory.close().await.map_err(glommio_error)
    }

    async fn read_small(&self, path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
        let size = std::fs::metadata(path)?.len();
        if size > bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {size} bytes, more than the {bytes_max} expected", path.display()),
            ));
        }
        std::fs::read(path)
    }

    async fn write_small_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = std::path::PathBuf::from(temp);
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
        }
        std::fs::rename(&temp, path)?;
        self.sync_dir(parent).await
    }
}

/// An open DMA file.
#[derive(Debug)]
pub struct DmaStorageFile {
    file: DmaFile,
}

impl StorageFile for DmaStorageFile {
    type Buffer = DmaBuffer;

    fn alloc(&self, len: usize) -> DmaBuffer {
        debug_assert!((len as u64).is_multiple_of(IO_ALIGNMENT));
        self.file.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buffer: DmaBuffer, pos: u64) -> io::Result<()> {
        let len = buffer.len();
        let written = self.file.write_at(buffer, pos).await.map_err(glommio_error)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short direct write: {written} of {len} bytes at {pos}"),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let result = self.file.read_at(pos, len).await.map_err(glommio_error)?;
        // The read buffer belongs to this shard's reactor and is not `Send`;
        // one copy turns it into bytes any shard can hold (cold reads only).
        Ok(Bytes::copy_from_slice(&result))
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(glommio_error)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(glommio_error)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.file.pre_allocate(len, true).await.map_err(glommio_error)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(glommio_error)
    }
}
