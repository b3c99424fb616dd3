//! The on-disk format of a spool segment, its file names, and the reader of sealed ones.
//!
//! ```text
//! segment = header frame*
//! header  = "CECSPOOL" version:u32le                      (12 bytes)
//! frame   = len:u32le crc:u32le payload[len]              crc = CRC32(len bytes ++ payload)
//! ```
//! The checksum covers the length too, so a torn or zeroed length is caught like a torn
//! payload. A bad frame with nothing valid after it is the torn tail of a write cut by a
//! crash (never acknowledged): it ends the segment. A bad frame followed by a valid one is
//! corruption. (A killed process leaves whole writes in the page cache, so its tail is
//! always a clean cut; only a power loss that wrote back the pages of the last, unsynced
//! batch out of order could make that batch read as corruption.)

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SpoolError;

const MAGIC: &[u8; 8] = b"CECSPOOL";
const VERSION: u32 = 1;
const SUFFIX: &str = ".seg";
/// Digits of the zero-padded sequence number in a segment's file name (fits every u64).
const SEQ_DIGITS: usize = 20;
/// Bytes of the file header.
pub(super) const HEADER_LEN: u64 = 12;
/// Bytes before a frame's payload: its length and its checksum.
pub(super) const FRAME_HEAD_LEN: u64 = 8;

/// The file header that starts every segment.
pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// The length and checksum written before `payload`, whose length the caller has checked
/// to fit a `u32`.
pub(super) fn frame_head(payload: &[u8], len: u32) -> [u8; FRAME_HEAD_LEN as usize] {
    let len = len.to_le_bytes();
    let mut head = [0; FRAME_HEAD_LEN as usize];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&checksum(len, payload).to_le_bytes());
    head
}

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// Splits a frame head into the payload length and the expected checksum.
fn parse_head(head: [u8; FRAME_HEAD_LEN as usize]) -> (u32, u32) {
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    (len, crc)
}

/// Whether `bytes` starts with a complete frame whose checksum matches.
fn starts_with_frame(bytes: &[u8]) -> bool {
    let Some((head, rest)) = bytes.split_first_chunk::<{ FRAME_HEAD_LEN as usize }>() else {
        return false;
    };
    let (len, crc) = parse_head(*head);
    rest.get(..len as usize).is_some_and(|payload| checksum(len.to_le_bytes(), payload) == crc)
}

/// The file name of segment number `seq`; names sort in the order of their numbers.
pub(super) fn file_name(seq: u64) -> String {
    format!("{seq:0width$}{SUFFIX}", width = SEQ_DIGITS)
}

fn parse_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A context-adding converter from an I/O error to [`SpoolError::Io`].
pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { action, path, source: Arc::new(source) }
}

/// Makes the entries of `dir` (files created or deleted in it) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|folder| folder.sync_all()).map_err(io_error("sync the folder", dir))
}

/// Every segment file in `dir`, in order of creation.
pub(super) fn list(dir: &Path) -> Result<Vec<SealedSegment>, SpoolError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_seq) {
            segments.push(SealedSegment { seq, path: entry.path() });
        }
    }
    segments.sort_unstable_by_key(|segment| segment.seq);
    Ok(segments)
}

/// A segment that is no longer written to: its entries can be read, committed, then removed
/// with [`Spool::remove`](super::Spool::remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    pub(super) seq: u64,
    path: PathBuf,
}

impl SealedSegment {
    /// The segment's file, for logs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the segment and checks its header; the returned iterator yields its payloads in
    /// the order they were appended. Reading is blocking file I/O (use `spawn_blocking` from
    /// async code).
    pub fn read(&self) -> Result<SegmentEntries, SpoolError> {
        let file = File::open(&self.path).map_err(io_error("open", &self.path))?;
        let len = file.metadata().map_err(io_error("read the size of", &self.path))?.len();
        let mut entries = SegmentEntries {
            path: self.path.clone(),
            reader: BufReader::new(file),
            offset: 0,
            len,
            torn_tail: None,
            damage: Vec::new(),
            done: false,
        };
        entries.check_header()?;
        Ok(entries)
    }
}

/// The bytes at the end of a segment that a crash cut in the middle of a write: they were
/// never acknowledged, and are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes start in the file.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
}

/// Bytes in the middle of a segment that hold no valid frame, skipped to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRange {
    /// Where the damage starts in the file.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
}

/// The payloads of a sealed segment, in order (see [`SealedSegment::read`]). After the
/// iterator has ended, [`SegmentEntries::torn_tail`] tells whether a torn tail was skipped
/// and [`SegmentEntries::damage`] which damaged bytes were. An `Err` item (I/O) is the last
/// one.
#[derive(Debug)]
pub struct SegmentEntries {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    len: u64,
    torn_tail: Option<TornTail>,
    damage: Vec<DamagedRange>,
    done: bool,
}

impl SegmentEntries {
    /// The torn tail skipped at the end of the segment, if any; known once the iterator has
    /// returned `None`.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn_tail
    }

    /// The damaged bytes skipped before a good frame (a disk fault: a frame written and
    /// synced, then changed), in order; known once the iterator has returned `None`.
    pub fn damage(&self) -> &[DamagedRange] {
        &self.damage
    }

    fn check_header(&mut self) -> Result<(), SpoolError> {
        let expected = header();
        let mut found = Vec::with_capacity(expected.len());
        (&mut self.reader)
            .take(expected.len() as u64)
            .read_to_end(&mut found)
            .map_err(io_error("read", &self.path))?;
        if found.len() < expected.len() && expected.starts_with(&found) {
            // Cut by a crash right after the file was created: it holds no entry.
            self.done = true;
            self.torn_tail = (!found.is_empty()).then_some(TornTail { offset: 0, bytes: self.len });
            return Ok(());
        }
        if !found.starts_with(MAGIC) || found.len() < expected.len() {
            return Err(SpoolError::Foreign { path: self.path.clone() });
        }
        let version = u32::from_le_bytes([found[8], found[9], found[10], found[11]]);
        if version != VERSION {
            return Err(SpoolError::UnsupportedVersion { path: self.path.clone(), version });
        }
        self.offset = expected.len() as u64;
        Ok(())
    }

    /// The next good frame's payload, `None` at the end or at a torn tail. A bad frame
    /// followed by a good one is damage: the bytes up to the good frame are skipped and
    /// noted, and reading goes on from there.
    fn next_payload(&mut self) -> Result<Option<Vec<u8>>, SpoolError> {
        loop {
            if self.offset == self.len {
                return Ok(None);
            }
            if let Some(payload) = self.read_frame()? {
                self.offset += FRAME_HEAD_LEN + payload.len() as u64;
                return Ok(Some(payload));
            }
            let bad = self.offset;
            match self.next_frame_after(bad)? {
                Some(good) => {
                    self.damage.push(DamagedRange { offset: bad, bytes: good - bad });
                    self.reader
                        .seek(SeekFrom::Start(good))
                        .map_err(io_error("read", &self.path))?;
                    self.offset = good;
                }
                None => {
                    self.torn_tail = Some(TornTail { offset: bad, bytes: self.len - bad });
                    return Ok(None);
                }
            }
        }
    }

    /// The frame at the current offset, `None` if it is short or its checksum is wrong.
    fn read_frame(&mut self) -> Result<Option<Vec<u8>>, SpoolError> {
        let remaining = self.len - self.offset;
        if remaining < FRAME_HEAD_LEN {
            return Ok(None);
        }
        let mut head = [0; FRAME_HEAD_LEN as usize];
        self.reader.read_exact(&mut head).map_err(io_error("read", &self.path))?;
        let (len, crc) = parse_head(head);
        if u64::from(len) > remaining - FRAME_HEAD_LEN {
            return Ok(None);
        }
        let mut payload = vec![0; len as usize];
        self.reader.read_exact(&mut payload).map_err(io_error("read", &self.path))?;
        Ok((checksum(len.to_le_bytes(), &payload) == crc).then_some(payload))
    }

    /// Where the first valid frame after the bad one at `bad` starts, if any.
    fn next_frame_after(&mut self, bad: u64) -> Result<Option<u64>, SpoolError> {
        let mut rest = Vec::new();
        self.reader
            .seek(SeekFrom::Start(bad + 1))
            .and_then(|_| (&mut self.reader).take(self.len - bad - 1).read_to_end(&mut rest))
            .map_err(io_error("read", &self.path))?;
        Ok((0..rest.len())
            .find(|&start| starts_with_frame(&rest[start..]))
            .map(|start| bad + 1 + start as u64))
    }
}

impl Iterator for SegmentEntries {
    type Item = Result<Vec<u8>, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_payload();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}
