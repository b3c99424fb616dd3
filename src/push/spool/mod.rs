//! The push spool: a durable, group-committed local log of pushed payloads.
//!
//! A push is acknowledged only once [`Spool::append`] has returned, that is once its payload
//! is written and fdatasynced. One writer thread serves all appenders: it takes every entry
//! waiting, writes them in one go and syncs once (group commit), so hundreds of concurrent
//! appenders cost a few syncs, not one each.
//!
//! The folder holds `LOCK` (held by the open [`Spool`], so that two processes never share a
//! folder) and numbered segment files (format in the `segment` module). The segment being written is
//! created on the first entry after opening or sealing, with a number above every existing
//! one: a process never appends to a segment left by an earlier one, so the torn tail of a
//! crash stays the tail of a sealed segment. [`Spool::seal`] hands the compaction the
//! sealed segments; it reads them ([`SealedSegment::read`]), commits their records into the
//! lake, then trims them with [`Spool::remove`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), cecsync::push::spool::SpoolError> {
//! use cecsync::push::spool::{Spool, SpoolOptions};
//! let spool = Spool::open("spool".as_ref(), SpoolOptions::default())?;
//! spool.append(b"{\"retCode\":\"0\"}".to_vec()).await?; // durable: answer the push now
//! let sealed = spool.seal().await?;
//! for segment in &sealed {
//!     for payload in segment.read()? {
//!         let _record = payload?; // commit it to the lake
//!     }
//! }
//! spool.remove(&sealed).await?; // after the lake commit
//! # Ok(()) }
//! ```

mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

use segment::{io_error, sync_dir};
pub use segment::{DamagedRange, SealedSegment, SegmentEntries, TornTail};
use writer::{Command, Writer};

/// Folder (inside the spool folder) of the segments that could not be read to the end.
const QUARANTINE_DIR: &str = "quarantine";
/// Name of the lock file in the spool folder.
const LOCK_FILE: &str = "LOCK";

/// Why a spool operation failed. I/O causes are shared (`Arc`) because one failed sync
/// answers every entry that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// Another open spool (in this process or another) holds the folder.
    #[error("spool folder {dir} is locked by another running spool")]
    Locked {
        /// The folder.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("spool: cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write" or "sync".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: Arc<io::Error>,
    },
    /// A file named like a segment does not start with the segment magic.
    #[error("{path} is not a spool segment (bad header)")]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// A segment written by another version of the format.
    #[error("{path} is a spool segment of unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        version: u32,
    },
    /// A payload longer than a frame can hold.
    #[error("spool entry of {len} bytes is longer than the {} bytes a frame holds", u32::MAX)]
    TooLarge {
        /// The payload's length.
        len: usize,
    },
    /// A background part of the spool (the writer thread, a removal task) stopped before
    /// answering: it panicked, or the runtime is shutting down.
    #[error("the spool's background work stopped before answering")]
    Stopped,
}

/// How the spool is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// A segment is sealed and a new one started before an entry would make it longer than
    /// this (a single larger entry still gets a segment of its own). The compaction holds
    /// one segment's rows in memory at a time: 16 MiB (about 15,000 CDRs) by default.
    pub max_segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self { max_segment_bytes: 16 * 1024 * 1024 }
    }
}

/// Counters of the spool since it was opened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries acknowledged (written and synced).
    pub appended: u64,
    /// Payload bytes of those entries.
    pub appended_bytes: u64,
    /// Group-commit syncs of written entries (header and folder syncs not counted): with
    /// concurrent appenders, far fewer than entries.
    pub syncs: u64,
}

/// The counters behind [`SpoolStats`], bumped by the writer.
#[derive(Default)]
struct Counters {
    appended: AtomicU64,
    appended_bytes: AtomicU64,
    syncs: AtomicU64,
}

/// An open spool folder. Cheap to clone (all clones share one writer); the folder is
/// unlocked when the last clone is dropped.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// Holds the folder's lock; released when dropped, after the writer has stopped.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered what it holds.
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Spool {
    /// Opens (creating it if needed) and locks the spool folder `dir`, and starts its writer
    /// thread. Fails with [`SpoolError::Locked`] if another spool holds the folder.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error("create the folder", dir))?;
        // The folder's own entry must survive a crash too.
        sync_dir(match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked { dir: dir.to_path_buf() })
            }
            Err(TryLockError::Error(error)) => return Err(io_error("lock", &lock_path)(error)),
        }
        let next_seq = segment::list(dir)?.last().map_or(1, |last| last.seq + 1);
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(
            dir.to_path_buf(),
            next_seq,
            options.max_segment_bytes,
            Arc::clone(&counters),
        );
        let (commands, received) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(received))
            .map_err(io_error("start the writer thread for", dir))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                commands: Some(commands),
                writer: Some(writer),
                counters,
                _lock: lock,
            }),
        })
    }

    /// Appends one entry; returns `Ok` only once it is written and synced, so that the push
    /// can be acknowledged. On `Err` the entry may or may not have reached the disk (answer
    /// the push with a 5xx; the re-push is merged by key).
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), SpoolError> {
        if u32::try_from(payload.len()).is_err() {
            return Err(SpoolError::TooLarge { len: payload.len() });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append { payload, reply })?;
        answer.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Closes the segment being written (if it holds any entry), so that it is never
    /// written again, and returns every sealed segment of the folder, those of earlier
    /// processes too, in order of creation. Entries appended before the call are in them.
    pub async fn seal(&self) -> Result<Vec<SealedSegment>, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Seal { reply })?;
        answer.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Deletes sealed segments (after their records are committed to the lake), then syncs
    /// the folder. A segment already gone is not an error.
    pub async fn remove(&self, segments: &[SealedSegment]) -> Result<(), SpoolError> {
        let dir = self.inner.dir.clone();
        let paths: Vec<PathBuf> = segments.iter().map(|s| s.path().to_path_buf()).collect();
        tokio::task::spawn_blocking(move || {
            for path in &paths {
                match fs::remove_file(path) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        return Err(io_error("remove", path)(error));
                    }
                    _ => {}
                }
            }
            sync_dir(&dir)
        })
        .await
        .map_err(|_| SpoolError::Stopped)?
    }

    /// Moves sealed segments that could not be read whole into `quarantine/` of the folder
    /// (where compaction no longer sees them, and an operator can inspect them), each under
    /// its name prefixed with the time of the move (so that nothing there is replaced), then
    /// syncs both folders. Returns the folder they were moved to.
    pub async fn quarantine(&self, segments: &[SealedSegment]) -> Result<PathBuf, SpoolError> {
        let dir = self.inner.dir.clone();
        let paths: Vec<PathBuf> = segments.iter().map(|s| s.path().to_path_buf()).collect();
        tokio::task::spawn_blocking(move || {
            let aside = dir.join(QUARANTINE_DIR);
            fs::create_dir_all(&aside).map_err(io_error("create", &aside))?;
            for path in &paths {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let moved_at = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
                let target = aside.join(format!("{moved_at}-{name}"));
                if target.exists() {
                    return Err(io_error("move aside", path)(io::ErrorKind::AlreadyExists.into()));
                }
                fs::rename(path, &target).map_err(io_error("move aside", path))?;
            }
            sync_dir(&aside)?;
            sync_dir(&dir)?;
            Ok(aside)
        })
        .await
        .map_err(|_| SpoolError::Stopped)?
    }

    /// Bytes of the segment files in the folder (sealed and active): what waits for a
    /// compaction. Blocking file I/O (a folder listing).
    pub fn backlog_bytes(&self) -> Result<u64, SpoolError> {
        let mut bytes = 0;
        for segment in segment::list(&self.inner.dir)? {
            let path = segment.path();
            bytes += fs::metadata(path).map_err(io_error("read the size of", path))?.len();
        }
        Ok(bytes)
    }

    /// The counters since the spool was opened.
    pub fn stats(&self) -> SpoolStats {
        let counters = &self.inner.counters;
        SpoolStats {
            appended: counters.appended.load(Ordering::Relaxed),
            appended_bytes: counters.appended_bytes.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
        }
    }

    fn send(&self, command: Command) -> Result<(), SpoolError> {
        self.inner
            .commands
            .as_ref()
            .and_then(|commands| commands.send(command).ok())
            .ok_or(SpoolError::Stopped)
    }
}
