//! The spool's single writer: a thread that takes every command waiting in its channel,
//! writes the waiting entries in one go, syncs once, then answers all of them (group
//! commit).
//!
//! After an I/O error the current segment is dropped, unsynced entries are answered with
//! the error, and the next entry starts a new segment: a failed write never leaves a half
//! frame before good ones. Payloads are dropped as soon as they are written.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use super::segment::{self, io_error, SealedSegment, FRAME_HEAD_LEN, HEADER_LEN};
use super::{Counters, SpoolError};

/// Size of the buffer that gathers small frames into large writes.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Where the writer answers an append.
pub(super) type AppendReply = oneshot::Sender<Result<(), SpoolError>>;

/// A request to the writer thread.
pub(super) enum Command {
    /// Write this payload (its length fits a `u32`), answer once it is synced.
    Append { payload: Vec<u8>, reply: AppendReply },
    /// Close the active segment, answer with every sealed segment.
    Seal { reply: oneshot::Sender<Result<Vec<SealedSegment>, SpoolError>> },
}

/// An appender waiting for the sync of its entry.
struct Waiter {
    bytes: u64,
    reply: AppendReply,
}

/// The segment being written. Created on the first entry after opening or sealing.
struct Active {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
    /// Whether frames were written since the last sync.
    unsynced: bool,
}

impl Active {
    /// Creates segment number `seq` in `dir`: header written and synced, folder entry
    /// synced.
    fn create(dir: &Path, seq: u64) -> Result<Self, SpoolError> {
        let path = dir.join(segment::file_name(seq));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        file.write_all(&segment::header())
            .and_then(|()| file.sync_all())
            .map_err(io_error("write the header of", &path))?;
        segment::sync_dir(dir)?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            len: HEADER_LEN,
            unsynced: false,
        })
    }
}

/// The state of the writer thread.
pub(super) struct Writer {
    dir: PathBuf,
    /// Number of the next segment to create.
    next_seq: u64,
    max_segment_bytes: u64,
    counters: Arc<Counters>,
    active: Option<Active>,
}

impl Writer {
    /// A writer that will create segments in `dir`, numbered from `next_seq`.
    pub(super) fn new(
        dir: PathBuf,
        next_seq: u64,
        max_segment_bytes: u64,
        counters: Arc<Counters>,
    ) -> Self {
        Self { dir, next_seq, max_segment_bytes, counters, active: None }
    }

    /// Serves commands until every sender is gone.
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut appends = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Append { payload, reply } => appends.push((payload, reply)),
                    Command::Seal { reply } => {
                        self.commit(mem::take(&mut appends));
                        let _ = reply.send(self.seal());
                    }
                }
                next = commands.try_recv().ok();
            }
            self.commit(appends);
        }
    }

    /// Writes the entries, syncs, and answers each appender.
    fn commit(&mut self, appends: Vec<(Vec<u8>, AppendReply)>) {
        let mut waiting = Vec::with_capacity(appends.len());
        for (payload, reply) in appends {
            let frame_len = FRAME_HEAD_LEN + payload.len() as u64;
            if self.active.as_ref().is_some_and(|active| {
                active.len > HEADER_LEN && active.len + frame_len > self.max_segment_bytes
            }) {
                let synced = self.close_active();
                self.answer(&mut waiting, synced);
            }
            match self.write_frame(&payload) {
                Ok(()) => waiting.push(Waiter { bytes: payload.len() as u64, reply }),
                Err(error) => {
                    self.abandon_active();
                    self.answer(&mut waiting, Err(error.clone()));
                    let _ = reply.send(Err(error));
                }
            }
        }
        if !waiting.is_empty() {
            let synced = self.sync_active();
            if synced.is_err() {
                self.abandon_active();
            }
            self.answer(&mut waiting, synced);
        }
    }

    /// Answers every waiter with `result`, counting the entries that succeeded.
    fn answer(&self, waiting: &mut Vec<Waiter>, result: Result<(), SpoolError>) {
        if result.is_ok() {
            let bytes = waiting.iter().map(|waiter| waiter.bytes).sum();
            self.counters.appended.fetch_add(waiting.len() as u64, Ordering::Relaxed);
            self.counters.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        for waiter in waiting.drain(..) {
            let _ = waiter.reply.send(result.clone());
        }
    }

    /// Appends one frame to the active segment, creating the segment if there is none.
    fn write_frame(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        // `Spool::append` refuses longer payloads.
        let len = payload.len() as u32;
        let active = match &mut self.active {
            Some(active) => active,
            empty @ None => {
                // Numbers are never reused, even when creating failed half way.
                let seq = self.next_seq;
                self.next_seq += 1;
                empty.insert(Active::create(&self.dir, seq)?)
            }
        };
        active
            .out
            .write_all(&segment::frame_head(payload, len))
            .and_then(|()| active.out.write_all(payload))
            .map_err(io_error("write", &active.path))?;
        active.len += FRAME_HEAD_LEN + u64::from(len);
        active.unsynced = true;
        Ok(())
    }

    /// Flushes and fdatasyncs the active segment, if it has unsynced frames.
    fn sync_active(&mut self) -> Result<(), SpoolError> {
        let Some(active) = self.active.as_mut().filter(|active| active.unsynced) else {
            return Ok(());
        };
        active
            .out
            .flush()
            .and_then(|()| active.out.get_ref().sync_data())
            .map_err(io_error("sync", &active.path))?;
        active.unsynced = false;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs and closes the active segment, if any: it is sealed, never written again.
    fn close_active(&mut self) -> Result<(), SpoolError> {
        let synced = self.sync_active();
        // Also on error: a segment that failed is not written again.
        self.abandon_active();
        synced
    }

    /// Drops the active segment without flushing what is left in its buffer (nothing after
    /// a good sync; after a failed write, bytes that must not follow the failed ones).
    fn abandon_active(&mut self) {
        if let Some(active) = self.active.take() {
            let _ = active.out.into_parts();
        }
    }

    /// Closes the active segment and lists every sealed one.
    fn seal(&mut self) -> Result<Vec<SealedSegment>, SpoolError> {
        self.close_active()?;
        segment::list(&self.dir)
    }
}
