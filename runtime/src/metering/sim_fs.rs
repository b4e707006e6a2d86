//! An in-memory file system for the journal (the fault simulation's, and
//! the journal fuzz target's) that fails, tears and forgets on demand: what a full disk, a failing disk, a read-only remount and a
//! power loss do to the journal's files.
//!
//! It keeps, for every file, what was written and what is durable (what the
//! last `fsync` covered), and for the directory, which names exist and which
//! of them are durable (what the last directory `fsync` covered). A
//! [`SimFs::crash`] keeps only what is durable, plus a random part of what
//! was not: some of an unsynced append (possibly ending in zeros, as a torn
//! final frame), and either the current or the durable directory.
//!
//! An `EIO` from `fsync` behaves as on Linux: the data it failed to write
//! is never written, even if a later `fsync` succeeds.

// The fuzz target uses only the file system, not the faults.
#![cfg_attr(
    not(all(feature = "testing", feature = "dev")),
    allow(dead_code, unreachable_pub)
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::storage::{LockGuard, Storage, StoredFile};

/// A fault the file system answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsFault {
    /// `ENOSPC` before anything is written.
    NoSpace,
    /// `ENOSPC` after half of an append is written.
    ShortWrite,
    /// `EIO`, on reads as on writes; an `fsync` that fails this way loses
    /// the data it should have written.
    Io,
}

/// What the file system has done, for a test's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Operations answered with an injected error.
    pub faults: u64,
    /// Operations refused while read-only.
    pub read_only_refusals: u64,
    /// Crashes.
    pub crashes: u64,
    /// Crashes that tore an unsynced write.
    pub torn_writes: u64,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    /// The durable prefix of `data` is `data[..synced]`, unless an
    /// overwrite (truncation) happened since.
    durable: Vec<u8>,
    /// `fsync` failed with `EIO`: data from this length on is never made
    /// durable by this file's later syncs.
    lost_from: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    fault: Option<(FsFault, u32)>,
    read_only: bool,
    stats: FsStats,
    rng: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The injected fault for a mutating operation, if one is due.
    fn check_write(&mut self) -> Result<(), (io::Error, Option<FsFault>)> {
        if self.read_only {
            self.stats.read_only_refusals += 1;
            return Err((io::Error::from_raw_os_error(libc::EROFS), None));
        }
        self.check_read()
    }

    fn check_read(&mut self) -> Result<(), (io::Error, Option<FsFault>)> {
        match &mut self.fault {
            Some((fault, left)) if *left > 0 => {
                *left -= 1;
                let fault = *fault;
                self.stats.faults += 1;
                let errno = match fault {
                    FsFault::NoSpace | FsFault::ShortWrite => libc::ENOSPC,
                    FsFault::Io => libc::EIO,
                };
                Err((io::Error::from_raw_os_error(errno), Some(fault)))
            }
            _ => Ok(()),
        }
    }

    fn inode(&mut self, path: &Path) -> io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn create(&mut self, path: &Path) -> io::Result<usize> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !self.dirs.contains(parent) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        self.inodes.push(Inode::default());
        let id = self.inodes.len() - 1;
        self.names.insert(path.to_path_buf(), id);
        Ok(id)
    }
}

/// The in-memory file system. Clones share it: keep one to inject faults
/// and crash it while a pipeline uses another.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system whose crashes tear writes as `seed` decides.
    #[must_use]
    pub fn new(seed: u64) -> SimFs {
        let fs = SimFs::default();
        fs.lock().rng = seed;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `operations` operations (reads for [`FsFault::Io`], writes,
    /// syncs, renames and removals) fail with `fault`.
    pub fn fail(&self, fault: FsFault, operations: u32) {
        self.lock().fault = Some((fault, operations));
    }

    /// Stops failing operations.
    pub fn heal(&self) {
        self.lock().fault = None;
    }

    /// Refuses (`EROFS`) or allows every write from now on.
    pub fn set_read_only(&self, read_only: bool) {
        self.lock().read_only = read_only;
    }

    /// A power loss: everything not durable is forgotten, except a random
    /// part of each unsynced append (its end possibly zeroed); the
    /// directory is either as it was last synced or as it is. Locks are
    /// released (their process is gone) and faults end.
    pub fn crash(&self) {
        let mut s = self.lock();
        s.stats.crashes += 1;
        s.locks.clear();
        s.fault = None;
        s.read_only = false;
        if s.names != s.durable_names && s.next().is_multiple_of(2) {
            s.names = s.durable_names.clone();
        }
        s.durable_names = s.names.clone();
        for id in 0..s.inodes.len() {
            let roll = s.next();
            let zero = s.next().is_multiple_of(3);
            let inode = &mut s.inodes[id];
            let durable = inode.durable.len();
            let extra = inode.data.len().saturating_sub(durable);
            let same_prefix = inode.data.get(..durable) == Some(&inode.durable[..]);
            let mut kept = inode.durable.clone();
            let mut torn = false;
            if extra > 0 && same_prefix && inode.lost_from.is_none() {
                let take = usize::try_from(roll % (extra as u64 + 1)).unwrap_or(0);
                kept.extend_from_slice(&inode.data[durable..durable + take]);
                if zero && take > 0 {
                    let from = durable + take / 2;
                    kept[from..].fill(0);
                }
                torn = take > 0 && take < extra;
            }
            inode.data = kept.clone();
            inode.durable = kept;
            inode.lost_from = None;
            if torn {
                s.stats.torn_writes += 1;
            }
        }
    }

    /// What the file at `path` holds now, if it exists.
    #[must_use]
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names.get(path).map(|id| s.inodes[*id].data.clone())
    }

    /// Replaces what the file at `path` holds (creating it and its
    /// directory), durably: for planting a damaged journal.
    pub fn write(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.lock();
        let mut dir = path.parent();
        while let Some(d) = dir {
            s.dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
        let id = match s.names.get(path) {
            Some(id) => *id,
            None => s.create(path).unwrap_or_default(),
        };
        s.inodes[id] = Inode {
            data: bytes.to_vec(),
            durable: bytes.to_vec(),
            lost_from: None,
        };
        s.durable_names = s.names.clone();
    }

    /// What happened so far.
    #[must_use]
    pub fn stats(&self) -> FsStats {
        self.lock().stats
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    id: usize,
}

impl StoredFile for SimFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut s = self.fs.lock();
        s.check_read().map_err(|(e, _)| e)?;
        Ok(s.inodes[self.id].data.clone())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        match s.check_write() {
            Ok(()) => {
                s.inodes[self.id].data.extend_from_slice(bytes);
                Ok(())
            }
            Err((e, Some(FsFault::ShortWrite))) => {
                s.inodes[self.id]
                    .data
                    .extend_from_slice(&bytes[..bytes.len() / 2]);
                Err(e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.fs.lock();
        match s.check_write() {
            Ok(()) => {
                let inode = &mut s.inodes[self.id];
                let upto = inode.lost_from.unwrap_or(inode.data.len());
                let upto = upto.min(inode.data.len());
                inode.durable = inode.data[..upto].to_vec();
                Ok(())
            }
            Err((e, Some(FsFault::Io))) => {
                let inode = &mut s.inodes[self.id];
                let from = inode.durable.len().min(inode.data.len());
                inode.lost_from = Some(inode.lost_from.map_or(from, |l| l.min(from)));
                Err(e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.check_write().map_err(|(e, _)| e)?;
        let inode = &mut s.inodes[self.id];
        inode
            .data
            .resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        if inode.lost_from.is_some_and(|l| l >= inode.data.len()) {
            inode.lost_from = None;
        }
        Ok(())
    }
}

impl Storage for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.dirs.contains(dir) {
            return Ok(());
        }
        s.check_write().map_err(|(e, _)| e)?;
        let mut at = Some(dir);
        while let Some(d) = at {
            s.dirs.insert(d.to_path_buf());
            at = d.parent();
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let mut s = self.lock();
        if s.locks.contains(path) {
            return Ok(None);
        }
        if s.inode(path).is_err() {
            s.check_write().map_err(|(e, _)| e)?;
            s.create(path)?;
        }
        s.locks.insert(path.to_path_buf());
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        })))
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StoredFile>> {
        let mut s = self.lock();
        let id = match s.inode(path) {
            Ok(id) => id,
            Err(e) if !create => return Err(e),
            Err(_) => {
                s.check_write().map_err(|(e, _)| e)?;
                s.create(path)?
            }
        };
        Ok(Box::new(SimFile {
            fs: self.clone(),
            id,
        }))
    }

    fn create_new(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut s = self.lock();
        if s.names.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        s.check_write().map_err(|(e, _)| e)?;
        let id = s.create(path)?;
        s.inodes[id].data = bytes.to_vec();
        if sync {
            match s.check_write() {
                Ok(()) => s.inodes[id].durable = bytes.to_vec(),
                Err((e, _)) => return Err(e),
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let id = s.inode(from)?;
        s.check_write().map_err(|(e, _)| e)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.inode(path)?;
        s.check_write().map_err(|(e, _)| e)?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.check_write().map_err(|(e, _)| e)?;
        let current: Vec<(PathBuf, usize)> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        s.durable_names.extend(current);
        Ok(())
    }

    fn list(&self, dir: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
        let mut s = self.lock();
        s.check_read().map_err(|(e, _)| e)?;
        let mut found: Vec<(usize, PathBuf)> = s
            .names
            .iter()
            .filter(|(p, _)| {
                p.parent() == Some(dir)
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .map(|(p, id)| (*id, p.clone()))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }
}
