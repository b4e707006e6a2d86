//! The file operations the journal makes, behind a trait: production uses
//! the real file system ([`RealFs`]); the fault simulation
//! (`testing::simulation`) substitutes an in-memory file system that fails,
//! tears and forgets unsynced writes on demand.
//!
//! The trait is as small as the journal needs: it names each step whose
//! failure or loss at a crash the journal must survive (append, `fsync` of
//! data, truncation, a fresh file written and synced, rename, removal,
//! `fsync` of the directory).

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Held while a journal's lock is taken; dropping it releases the lock.
pub(crate) type LockGuard = Box<dyn Debug + Send + Sync>;

/// A journal file, open for reading and appending.
pub(crate) trait StoredFile: Debug + Send + Sync {
    /// Everything in the file from where the cursor stands (the start, when
    /// freshly opened).
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Appends all of `bytes` (a failure may leave part of them written).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The directory operations of the journal.
pub(crate) trait Storage: Debug + Send + Sync {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock at `path` (creating the file), or `None`
    /// when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>>;
    /// Opens a regular file for reading and appending, creating it when
    /// `create` is set. Never follows a symbolic link, never blocks on a
    /// FIFO.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StoredFile>>;
    /// Creates `path`, which must not exist, holding `bytes`; with `sync`,
    /// waits until they are durable.
    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The files in `dir` whose names start with `prefix`, oldest first.
    fn list(&self, dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealFs;

/// Opens `path` as a regular file, never blocking and never following a
/// symbolic link: a FIFO, device or link planted in the state directory is
/// refused instead of hanging the runtime's thread or redirecting writes.
fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if file.metadata()?.file_type().is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

#[derive(Debug)]
struct RealFile(File);

impl StoredFile for RealFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.0.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let lock = open_regular(
            path,
            OpenOptions::new().write(true).create(true).truncate(false),
        )?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(Box::new(lock))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StoredFile>> {
        let file = open_regular(
            path,
            OpenOptions::new().read(true).append(true).create(create),
        )?;
        Ok(Box::new(RealFile(file)))
    }

    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut file = open_regular(path, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .and_then(|d| d.sync_all())
    }

    fn list(&self, dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        Ok(found)
    }
}
