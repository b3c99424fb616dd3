//! Tests of the spool: round trips, group commit, torn tails and corruption, the lock,
//! removal, and a kill -9 of a real appending process.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::*;

/// A payload that carries its index and checks itself: 8 index bytes, then a filler of a
/// length and a byte value derived from the index.
fn payload(index: u64) -> Vec<u8> {
    let filler = (index.wrapping_mul(7919) % 3000) as usize;
    let mut payload = index.to_le_bytes().to_vec();
    payload.resize(8 + filler, index as u8);
    payload
}

/// The index of a payload made by [`payload`], after checking the rest of it.
fn index_of(payload: &[u8]) -> u64 {
    let index = u64::from_le_bytes(payload[..8].try_into().unwrap());
    assert_eq!(payload, self::payload(index), "payload of entry {index}");
    index
}

fn small_segments() -> SpoolOptions {
    SpoolOptions { max_segment_bytes: 8 * 1024 }
}

/// Every payload of the segments, in order, checking that none has a torn tail.
fn read_all(segments: &[SealedSegment]) -> Vec<u64> {
    let mut indexes = Vec::new();
    for segment in segments {
        let mut entries = segment.read().unwrap();
        indexes.extend(entries.by_ref().map(|payload| index_of(&payload.unwrap())));
        assert_eq!(entries.torn_tail(), None, "{}", segment.path().display());
    }
    indexes
}

/// Appends `indexes` one after the other.
async fn append_each(spool: &Spool, indexes: std::ops::Range<u64>) {
    for index in indexes {
        spool.append(payload(index)).await.unwrap();
    }
}

#[test]
fn a_spool_is_shared_between_tasks_and_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Spool>();
}

#[tokio::test]
async fn entries_come_back_in_order_across_rotations_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    append_each(&spool, 0..40).await;
    let first = spool.seal().await.unwrap();
    assert!(first.len() > 3, "rotated into {} segments", first.len());
    assert_eq!(read_all(&first), (0..40).collect::<Vec<_>>());
    // Nothing was appended since: sealing again changes nothing.
    assert_eq!(spool.seal().await.unwrap(), first);
    drop(spool);

    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    append_each(&spool, 40..60).await;
    let all = spool.seal().await.unwrap();
    assert_eq!(all[..first.len()], first[..], "old segments first, as they were");
    assert!(all.len() > first.len());
    assert_eq!(read_all(&all), (0..60).collect::<Vec<_>>());
    assert_eq!(
        spool.stats(),
        SpoolStats {
            appended: 20,
            appended_bytes: (40..60).map(|i| payload(i).len() as u64).sum(),
            syncs: 20,
        },
        "one at a time, one sync each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let appends = (0..200).map(|index| {
        let spool = spool.clone();
        tokio::spawn(async move { spool.append(payload(index)).await })
    });
    for appended in join_all(appends).await {
        appended.unwrap().unwrap();
    }
    let stats = spool.stats();
    assert_eq!(stats.appended, 200);
    assert!(stats.syncs < stats.appended / 2, "{} syncs for 200 entries", stats.syncs);
    let mut indexes = read_all(&spool.seal().await.unwrap());
    indexes.sort_unstable();
    assert_eq!(indexes, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn after_a_failed_write_later_entries_still_land() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    // The first segment cannot be created: a folder has its name.
    let blocker = dir.path().join(segment::file_name(1));
    fs::create_dir(&blocker).unwrap();
    let error = spool.append(payload(0)).await.unwrap_err();
    assert!(
        matches!(&error, SpoolError::Io { action: "create", path, .. } if *path == blocker),
        "{error}"
    );
    append_each(&spool, 1..3).await;
    fs::remove_dir(&blocker).unwrap();
    assert_eq!(read_all(&spool.seal().await.unwrap()), [1, 2]);
    assert_eq!(spool.stats().appended, 2);
}

/// A spool folder with one sealed segment of entries 0..5, and where each frame starts.
async fn one_segment_of_five(dir: &Path) -> (SealedSegment, Vec<u64>) {
    let spool = Spool::open(dir, SpoolOptions::default()).unwrap();
    append_each(&spool, 0..5).await;
    let [segment] = <[_; 1]>::try_from(spool.seal().await.unwrap()).unwrap();
    let offsets = (0..5)
        .scan(segment::HEADER_LEN, |offset, index| {
            let start = *offset;
            *offset += segment::FRAME_HEAD_LEN + payload(index).len() as u64;
            Some(start)
        })
        .collect();
    (segment, offsets)
}

#[tokio::test]
async fn a_torn_tail_ends_the_segment_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, offsets) = one_segment_of_five(dir.path()).await;
    let whole = fs::read(segment.path()).unwrap();
    let len = whole.len() as u64;

    // The last frame cut short.
    let file = OpenOptions::new().write(true).open(segment.path()).unwrap();
    file.set_len(len - 3).unwrap();
    let mut entries = segment.read().unwrap();
    let read: Vec<u64> = entries.by_ref().map(|p| index_of(&p.unwrap())).collect();
    assert_eq!(read, [0, 1, 2, 3]);
    assert_eq!(
        entries.torn_tail(),
        Some(TornTail { offset: offsets[4], bytes: len - 3 - offsets[4] })
    );

    // Whole frames, then zeros and garbage (a file extended but never written).
    fs::write(segment.path(), whole).unwrap();
    let mut file = OpenOptions::new().append(true).open(segment.path()).unwrap();
    file.write_all(&[0; 100]).unwrap();
    file.write_all(b"garbage").unwrap();
    let mut entries = segment.read().unwrap();
    assert_eq!(entries.by_ref().count(), 5);
    assert_eq!(entries.torn_tail(), Some(TornTail { offset: len, bytes: 107 }));
}

#[tokio::test]
async fn a_bad_frame_followed_by_good_ones_is_skipped_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, offsets) = one_segment_of_five(dir.path()).await;
    let mut bytes = fs::read(segment.path()).unwrap();
    bytes[offsets[2] as usize + 12] ^= 0x40; // in the payload of entry 2
    fs::write(segment.path(), bytes).unwrap();

    let mut entries = segment.read().unwrap();
    let read: Vec<u64> = entries.by_ref().map(|e| index_of(&e.unwrap())).collect();
    assert_eq!(read, [0, 1, 3, 4], "every entry but the damaged one");
    let skipped = DamagedRange { offset: offsets[2], bytes: offsets[3] - offsets[2] };
    assert_eq!(entries.damage(), [skipped]);
    assert_eq!(entries.torn_tail(), None);
}

#[tokio::test]
async fn foreign_files_are_refused_and_a_cut_header_is_an_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment::file_name(1)), b"PAR1 not a spool").unwrap();
    fs::write(dir.path().join(segment::file_name(2)), &segment::header()[..5]).unwrap();
    let mut newer = segment::header();
    newer[8] = 2;
    fs::write(dir.path().join(segment::file_name(3)), newer).unwrap();
    fs::write(dir.path().join("notes.txt"), b"not a segment name: ignored").unwrap();

    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let segments = spool.seal().await.unwrap();
    assert_eq!(segments.len(), 3);
    let error = segments[0].read().unwrap_err();
    assert!(matches!(error, SpoolError::Foreign { ref path } if path == segments[0].path()));
    let mut cut = segments[1].read().unwrap();
    assert_eq!(cut.next().map(|p| p.unwrap()), None);
    assert_eq!(cut.torn_tail(), Some(TornTail { offset: 0, bytes: 5 }));
    let error = segments[2].read().unwrap_err();
    assert!(matches!(error, SpoolError::UnsupportedVersion { version: 2, .. }));

    append_each(&spool, 0..1).await;
    let segments = spool.seal().await.unwrap();
    assert_eq!(segments[3].path(), dir.path().join(segment::file_name(4)));
}

#[tokio::test]
async fn a_locked_folder_is_refused_by_name_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let clone = spool.clone();
    let Err(error) = Spool::open(dir.path(), SpoolOptions::default()) else {
        panic!("a second open of a locked folder succeeded");
    };
    assert!(matches!(error, SpoolError::Locked { .. }));
    assert!(error.to_string().contains(&dir.path().display().to_string()), "{error}");
    drop(spool);
    assert!(Spool::open(dir.path(), SpoolOptions::default()).is_err(), "a clone holds it");
    drop(clone);
    Spool::open(dir.path(), SpoolOptions::default()).unwrap();
}

#[tokio::test]
async fn remove_deletes_only_the_given_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    append_each(&spool, 0..20).await;
    let sealed = spool.seal().await.unwrap();
    assert!(sealed.len() >= 3);
    let size = |s: &SealedSegment| fs::metadata(s.path()).unwrap().len();
    assert_eq!(spool.backlog_bytes().unwrap(), sealed.iter().map(size).sum::<u64>());
    let kept: u64 = sealed[2..].iter().map(size).sum();
    spool.remove(&sealed[..2]).await.unwrap();
    spool.remove(&sealed[..1]).await.unwrap(); // already gone: fine
    assert!(!sealed[0].path().exists() && !sealed[1].path().exists());
    assert_eq!(spool.seal().await.unwrap(), sealed[2..]);
    assert_eq!(spool.backlog_bytes().unwrap(), kept, "the backlog is what is left");
}

/// Environment of the child process of [`kill_9_loses_no_acknowledged_entry`].
const CRASH_DIR_ENV: &str = "CECSYNC_TEST_SPOOL_CRASH_DIR";
const CRASH_FIRST_INDEX_ENV: &str = "CECSYNC_TEST_SPOOL_CRASH_FIRST_INDEX";

/// The child process of [`kill_9_loses_no_acknowledged_entry`]: appends from 32 tasks
/// forever, printing `acked N` for each acknowledged entry. Does nothing as a plain test.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let first: u64 = std::env::var(CRASH_FIRST_INDEX_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let spool = Spool::open(Path::new(&dir), small_segments()).unwrap();
        let next = Arc::new(AtomicU64::new(first));
        let appenders = (0..32).map(|_| {
            let (spool, next) = (spool.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    spool.append(payload(index)).await.unwrap();
                    println!("acked {index}");
                }
            })
        });
        join_all(appenders).await;
    });
}

/// Runs the child appender until it has acknowledged a random number of entries, kills it
/// with SIGKILL, and returns what it acknowledged.
fn append_until_killed(dir: &Path, first: u64) -> HashSet<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "push::spool::tests::crash_child"])
        .args(["--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir)
        .env(CRASH_FIRST_INDEX_ENV, first.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (acks, acked) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest may print "test <name> ... " before the first line.
            if let Some((_, index)) = line.split_once("acked ") {
                let _ = acks.send(index.parse::<u64>().unwrap());
            }
        }
    });
    let kill_after = rand::random_range(1..400);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = HashSet::new();
    while seen.len() < kill_after && Instant::now() < deadline {
        if let Ok(index) = acked.recv_timeout(Duration::from_millis(10)) {
            seen.insert(index);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(acked.try_iter());
    assert!(!seen.is_empty(), "the child acknowledged nothing");
    seen
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = HashSet::new();
    for round in 0..3 {
        acked.extend(append_until_killed(dir.path(), round * 1_000_000));
    }
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    let mut copies: HashMap<u64, usize> = HashMap::new();
    for segment in spool.seal().await.unwrap() {
        for payload in segment.read().unwrap() {
            *copies.entry(index_of(&payload.unwrap())).or_default() += 1;
        }
    }
    assert!(copies.values().all(|&n| n == 1), "an entry was written twice");
    let lost: Vec<_> = acked.iter().filter(|i| !copies.contains_key(i)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

/// Measures appends/s with 200 concurrent appenders of 10 KiB payloads:
/// `cargo test --lib push::spool::tests::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_of_200_appenders() {
    const PER_APPENDER: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let start = Instant::now();
    let appenders = (0..200).map(|_| {
        let spool = spool.clone();
        tokio::spawn(async move {
            for _ in 0..PER_APPENDER {
                spool.append(vec![7; 10 * 1024]).await.unwrap();
            }
        })
    });
    for appender in join_all(appenders).await {
        appender.unwrap();
    }
    let elapsed = start.elapsed();
    let stats = spool.stats();
    println!(
        "{} appends of 10 KiB in {elapsed:?}: {:.0} appends/s, {:.1} MiB/s, {} syncs",
        stats.appended,
        stats.appended as f64 / elapsed.as_secs_f64(),
        stats.appended_bytes as f64 / elapsed.as_secs_f64() / 1048576.0,
        stats.syncs
    );
}
