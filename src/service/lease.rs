//! The single-writer lease of one tenant's part of the lake: two services pointed at the
//! same lake and tenant never both write it, while services of different tenants share a
//! lake freely. Each tenant's lease lives under `_state/leases/tenant_id=T/`
//! ([`tenant_store`]).
//!
//! The lease is a small JSON record (holder: service id, host, pid; term; expiry) kept in
//! the lake. Taking it and renewing it are compare-and-swap writes, so of two services
//! racing, exactly one wins; the other learns who holds the lease and until when. A lease
//! not renewed before it expires may be taken over. Expiry compares the holder's clock with
//! the taker's, so keep the hosts' clocks in sync (NTP) and the TTL well above their skew.
//!
//! Two backends, chosen by the destination:
//!
//! - **Conditional** (S3-compatible stores): one object, `lease.json`, created with
//!   `PutMode::Create` and replaced with `PutMode::Update` carrying the e-tag (or version)
//!   read before, so a write based on a stale read fails with a precondition error.
//! - **Terms** (local folders: `LocalFileSystem` has `Create` but not `Update`): every
//!   take-over and renewal creates the next term's object, `terms/term-N.json`, with
//!   an exclusive create (a hard link that fails if the name exists). The current lease is
//!   the highest term; whoever creates term N+1 first wins, the other gets `AlreadyExists`.
//!   Terms older than the current one are deleted after each write, so a free name does
//!   not mean a free term: a writer checks that the term it builds on is still the highest
//!   before it creates the next one, and that its new term is the highest after.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::Destination;
use crate::sink::layout::STATE_DIR;

/// Name of the lease object of the conditional backend, in the tenant's lease folder.
const LEASE_FILE: &str = "lease.json";
/// Folder of the term objects of the terms backend, in the tenant's lease folder.
const TERMS_DIR: &str = "terms";
/// Folder of the tenants' lease folders, under `_state/`.
const LEASES_DIR: &str = "leases";

/// The lake as seen by the lease of `tenant_id`: rooted at `_state/leases/tenant_id=T/`.
pub fn tenant_store(store: Arc<dyn ObjectStore>, tenant_id: &str) -> Arc<dyn ObjectStore> {
    let root = Path::from_iter([STATE_DIR, LEASES_DIR, &format!("tenant_id={tenant_id}")]);
    Arc::new(object_store::prefix::PrefixStore::new(store, root))
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// Random id of the service process, new at each start.
    pub service_id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl Holder {
    /// Whether this holder was a process of the same host as `me` that no longer runs
    /// (killed without releasing its lease): its lease can be taken at once instead of
    /// after it expires.
    pub fn is_dead_here(&self, me: &Holder) -> bool {
        self.host == me.host
            && self.pid != me.pid
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
            && std::path::Path::new("/proc/self").exists()
    }

    /// This process, with a fresh service id.
    pub fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        Self {
            service_id: format!("{:016x}", rand::rng().random::<u64>()),
            host,
            pid: std::process::id(),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service {} (pid {} on host {})", self.service_id, self.pid, self.host)
    }
}

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Who holds it.
    pub holder: Holder,
    /// Incremented by every write.
    pub term: u64,
    /// When this holder took it.
    pub acquired_at: DateTime<Utc>,
    /// Until when it holds without renewal.
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum LeaseFile {
    #[serde(rename = "1")]
    V1(LeaseRecord),
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another service holds a lease that has not expired.
    #[error("the lake is locked by {holder} until {until} (lease term {term}); stop that service, or wait for the lease to expire (lease_mode = \"wait\")")]
    Held {
        /// The holder.
        holder: Holder,
        /// When its lease expires unless renewed.
        until: DateTime<Utc>,
        /// The lease term.
        term: u64,
    },
    /// This service's lease was taken over (it was not renewed in time).
    #[error("the lake's lease was taken over by {holder}; this service stops writing")]
    Lost {
        /// The new holder, as far as known.
        holder: String,
    },
    /// Renewals failed until a third of the TTL before the lease expires: the holder
    /// gives it up while it is still its own, before another service may take it over.
    #[error("the lake's lease could not be renewed (last error: {detail}); this service stops writing before it expires at {until}")]
    Unrenewed {
        /// When the lease expires.
        until: DateTime<Utc>,
        /// Why the last renewal failed.
        detail: String,
    },
    /// This service holds no lease to renew.
    #[error("no lease is held by this service")]
    NotHeld,
    /// The store failed.
    #[error("lease {path}: cannot {action} it: {detail}")]
    Store {
        /// The object.
        path: String,
        /// `read`, `write`, `list`.
        action: &'static str,
        /// The store's error.
        detail: String,
    },
    /// The lease object is not a lease.
    #[error("lease {path} is corrupt: {detail}; delete it when no service is running")]
    Corrupt {
        /// The object.
        path: String,
        /// The parse error.
        detail: String,
    },
}

/// How the lease is written; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One object replaced with conditional puts.
    Conditional,
    /// One exclusively created object per term.
    Terms,
}

impl Backend {
    /// The backend that the destination supports.
    pub fn for_destination(dest: &Destination) -> Self {
        match dest {
            Destination::Local { .. } => Backend::Terms,
            Destination::S3 { .. } => Backend::Conditional,
        }
    }
}

/// A lease read from the store, with what the next conditional write needs.
#[derive(Debug, Clone)]
struct Current {
    record: LeaseRecord,
    version: UpdateVersion,
}

/// One service's handle on the lake's lease.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    holder: Holder,
    ttl: Duration,
    mine: Mutex<Option<Current>>,
}

impl Lease {
    /// A handle for `holder`, not yet holding anything.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        backend: Backend,
        holder: Holder,
        ttl: Duration,
    ) -> Self {
        Self { store, backend, holder, ttl, mine: Mutex::new(None) }
    }

    /// This service.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The lease as stored now, whoever holds it.
    pub async fn current(&self) -> Result<Option<LeaseRecord>, LeaseError> {
        Ok(self.read().await?.map(|c| c.record))
    }

    /// Takes the lease at `now` if it is free, expired or already ours.
    pub async fn acquire(&self, now: DateTime<Utc>) -> Result<LeaseRecord, LeaseError> {
        let current = self.read().await?;
        if let Some(c) = &current {
            let live = c.record.expires_at > now && !c.record.holder.is_dead_here(&self.holder);
            if c.record.holder != self.holder && live {
                return Err(held(&c.record));
            }
        }
        let record = LeaseRecord {
            holder: self.holder.clone(),
            term: current.as_ref().map_or(1, |c| c.record.term + 1),
            acquired_at: now,
            expires_at: now + self.ttl,
        };
        match self.write_next(current.as_ref(), &record).await? {
            Some(version) => {
                *self.mine.lock().await = Some(Current { record: record.clone(), version });
                Ok(record)
            }
            None => match self.read().await? {
                Some(winner) => Err(held(&winner.record)),
                None => Err(LeaseError::Lost { holder: "another service".into() }),
            },
        }
    }

    /// Extends our lease from `now`; fails with [`LeaseError::Lost`] when another service
    /// took it over meanwhile.
    pub async fn renew(&self, now: DateTime<Utc>) -> Result<LeaseRecord, LeaseError> {
        self.rewrite(now + self.ttl).await
    }

    /// Gives the lease up (writes it as expired now), so another service can take it at
    /// once. Does nothing when we hold none.
    pub async fn release(&self, now: DateTime<Utc>) -> Result<(), LeaseError> {
        match self.rewrite(now).await {
            Ok(_) | Err(LeaseError::NotHeld) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes our lease again with a new expiry, as one compare-and-swap.
    async fn rewrite(&self, expires_at: DateTime<Utc>) -> Result<LeaseRecord, LeaseError> {
        let mut mine = self.mine.lock().await;
        let Some(current) = mine.clone() else {
            return Err(LeaseError::NotHeld);
        };
        let record =
            LeaseRecord { term: current.record.term + 1, expires_at, ..current.record.clone() };
        match self.write_next(Some(&current), &record).await? {
            Some(version) => {
                *mine = Some(Current { record: record.clone(), version });
                Ok(record)
            }
            None => {
                *mine = None;
                let holder = match self.read().await {
                    Ok(Some(c)) => c.record.holder.to_string(),
                    _ => "another service".into(),
                };
                Err(LeaseError::Lost { holder })
            }
        }
    }

    /// Reads the current lease.
    async fn read(&self) -> Result<Option<Current>, LeaseError> {
        let path = match self.backend {
            Backend::Conditional => Path::from(LEASE_FILE),
            Backend::Terms => match self.highest_term().await? {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        let failed = |e: object_store::Error| LeaseError::Store {
            path: path.to_string(),
            action: "read",
            detail: e.to_string(),
        };
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            // A term deleted between the listing and the read: a newer one exists.
            Err(object_store::Error::NotFound { .. }) if self.backend == Backend::Terms => {
                return Box::pin(self.read()).await
            }
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        let version =
            UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
        let bytes = got.bytes().await.map_err(failed)?;
        match serde_json::from_slice(&bytes) {
            Ok(LeaseFile::V1(record)) => Ok(Some(Current { record, version })),
            Err(e) => Err(LeaseError::Corrupt { path: path.to_string(), detail: e.to_string() }),
        }
    }

    /// The newest term object, if any.
    async fn highest_term(&self) -> Result<Option<Path>, LeaseError> {
        Ok(self.newest_term().await?.map(|(_, path)| path))
    }

    /// The newest term object and its term, if any.
    async fn newest_term(&self) -> Result<Option<(u64, Path)>, LeaseError> {
        let folder = Path::from(TERMS_DIR);
        let listed: Vec<_> = self.store.list(Some(&folder)).try_collect().await.map_err(|e| {
            LeaseError::Store { path: folder.to_string(), action: "list", detail: e.to_string() }
        })?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| Some((term_of(meta.location.filename()?)?, meta.location)))
            .max_by_key(|(term, _)| *term))
    }

    /// The highest term stored, if any.
    async fn highest_term_number(&self) -> Result<Option<u64>, LeaseError> {
        Ok(self.newest_term().await?.map(|(term, _)| term))
    }

    /// Writes `record` over `previous` as one compare-and-swap; `None` when another
    /// service wrote first.
    async fn write_next(
        &self,
        previous: Option<&Current>,
        record: &LeaseRecord,
    ) -> Result<Option<UpdateVersion>, LeaseError> {
        let (path, mode) = match (self.backend, previous) {
            (Backend::Conditional, None) => (Path::from(LEASE_FILE), PutMode::Create),
            (Backend::Conditional, Some(p)) => {
                (Path::from(LEASE_FILE), PutMode::Update(p.version.clone()))
            }
            (Backend::Terms, _) => (term_path(record.term), PutMode::Create),
        };
        // Terms: the term we build on must still be the highest. A term below the highest
        // may have been pruned, so creating the next one can succeed although the lease
        // moved on (a holder that stalled past its TTL would recreate a pruned term).
        if self.backend == Backend::Terms
            && self.highest_term_number().await? != previous.map(|p| p.record.term)
        {
            return Ok(None);
        }
        let body = serde_json::to_vec_pretty(&LeaseFile::V1(record.clone()))
            .map_err(|e| LeaseError::Corrupt { path: path.to_string(), detail: e.to_string() })?;
        let options = PutOptions { mode, ..PutOptions::default() };
        match self.store.put_opts(&path, PutPayload::from(body), options).await {
            Ok(result) => {
                if self.backend == Backend::Terms {
                    // Another service may have written a higher term between the check
                    // above and our create (and pruned the one we created again): the
                    // lease is ours only if our term is the highest. Terms are deleted
                    // only below a newer one, so the highest term ever written is listed.
                    if self.highest_term_number().await? != Some(record.term) {
                        return Ok(None);
                    }
                    self.prune_before(record.term).await;
                }
                Ok(Some(UpdateVersion { e_tag: result.e_tag, version: result.version }))
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(LeaseError::Store {
                path: path.to_string(),
                action: "write",
                detail: e.to_string(),
            }),
        }
    }

    /// Deletes the term objects older than `term` (best effort: leftovers are harmless).
    async fn prune_before(&self, term: u64) {
        let folder = Path::from(TERMS_DIR);
        let Ok(listed) = self.store.list(Some(&folder)).try_collect::<Vec<_>>().await else {
            return;
        };
        for meta in listed {
            if meta.location.filename().and_then(term_of).is_some_and(|t| t < term) {
                let _ = self.store.delete(&meta.location).await;
            }
        }
    }
}

/// How often a holder renews its lease (and a waiting service checks it).
pub fn renewal_interval(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(250), Duration::from_secs(10))
}

/// Renews `lease`, held until `valid_until`, every [`renewal_interval`] until `stop`
/// resolves (`Ok`). Fails as soon as the lease is lost, or when no renewal has succeeded
/// by a third of the TTL before the lease expires: the holder must stop writing while the
/// lease is still its own, since a standby may take it over at the expiry.
pub async fn keep(
    lease: &Lease,
    mut valid_until: DateTime<Utc>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), LeaseError> {
    let ttl = lease.ttl();
    let every = renewal_interval(ttl);
    let mut last_error = String::from("no renewal yet");
    tokio::pin!(stop);
    loop {
        let give_up_at = valid_until - ttl / 3;
        let unrenewed = |detail: String| LeaseError::Unrenewed { until: valid_until, detail };
        let left = (give_up_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(every.min(left)) => {}
        }
        let now = Utc::now();
        let Ok(left) = (give_up_at - now).to_std() else {
            return Err(unrenewed(last_error));
        };
        if left.is_zero() {
            return Err(unrenewed(last_error));
        }
        // A renewal that hangs must not keep the holder writing past the deadline.
        match tokio::time::timeout(left, lease.renew(now)).await {
            Ok(Ok(record)) => valid_until = record.expires_at,
            Ok(Err(e @ (LeaseError::Lost { .. } | LeaseError::NotHeld))) => return Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not renew the lease; trying again.");
                last_error = e.to_string();
            }
            Err(_) => return Err(unrenewed("the renewal did not answer in time".into())),
        }
    }
}

/// The lease of the lake if someone holds it at `now` (a read only: the commands that
/// write take the lease itself).
pub async fn live_lease(
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    now: DateTime<Utc>,
) -> Result<Option<LeaseRecord>, LeaseError> {
    let me = Holder::this_process();
    let reader = Lease::new(store, backend, me.clone(), Duration::ZERO);
    Ok(reader
        .current()
        .await?
        .filter(|lease| lease.expires_at > now && !lease.holder.is_dead_here(&me)))
}

fn held(record: &LeaseRecord) -> LeaseError {
    LeaseError::Held { holder: record.holder.clone(), until: record.expires_at, term: record.term }
}

/// The object of one term of the terms backend.
fn term_path(term: u64) -> Path {
    Path::from_iter([TERMS_DIR, &format!("term-{term:020}.json")])
}

/// The term of a term object's file name.
fn term_of(file_name: &str) -> Option<u64> {
    file_name.strip_prefix("term-")?.strip_suffix(".json")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;

    fn holder(id: &str) -> Holder {
        Holder { service_id: id.into(), host: "host-a".into(), pid: 42 }
    }

    /// Every backend on every store it is used with: the conditional one on a store with
    /// conditional updates (in memory), the terms one on a local folder and in memory.
    fn cases() -> Vec<(Backend, Arc<dyn ObjectStore>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        vec![
            (Backend::Conditional, Arc::new(InMemory::new()), None),
            (Backend::Terms, Arc::new(local), Some(dir)),
            (Backend::Terms, Arc::new(InMemory::new()), None),
        ]
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    /// A lease whose holder was a process of this host that no longer runs (killed
    /// without releasing it) is taken at once; a live holder's is not.
    #[tokio::test]
    async fn a_dead_local_holder_is_taken_over_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let me = Holder::this_process();
        for (backend, store, _dir) in cases() {
            let ttl = Duration::from_secs(30);
            let dead = Holder { service_id: "dead".into(), pid: dead_pid, ..me.clone() };
            Lease::new(store.clone(), backend, dead, ttl).acquire(t(0)).await.unwrap();
            let taker = Lease::new(store.clone(), backend, me.clone(), ttl);
            let taken = taker.acquire(t(1)).await.unwrap();
            assert_eq!(taken.holder, me, "{backend:?}");

            let alive = Holder { service_id: "alive".into(), pid: 1, ..me.clone() };
            let other = Lease::new(store.clone(), backend, alive, ttl);
            taker.release(t(2)).await.unwrap();
            other.acquire(t(3)).await.unwrap();
            assert!(taker.acquire(t(4)).await.is_err(), "{backend:?}: pid 1 runs");
        }
    }

    /// One service takes the lease; a second is refused with the holder and expiry; the
    /// first renews; after it lapses the second takes it over and the first learns it lost
    /// it; a released lease is free at once.
    #[tokio::test]
    async fn one_writer_at_a_time_with_take_over_after_expiry() {
        for (backend, store, _dir) in cases() {
            let ttl = Duration::from_secs(30);
            let a = Lease::new(store.clone(), backend, holder("a"), ttl);
            let b = Lease::new(store.clone(), backend, holder("b"), ttl);
            assert_eq!(a.current().await.unwrap(), None);
            let first = a.acquire(t(0)).await.unwrap();
            assert_eq!(first.expires_at, t(30));

            let err = b.acquire(t(10)).await.unwrap_err();
            assert!(
                matches!(&err, LeaseError::Held { holder, until, .. } if holder.service_id == "a" && *until == t(30)),
                "{backend:?}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("pid 42") && text.contains("host-a"), "{text}");

            let renewed = a.renew(t(20)).await.unwrap();
            assert_eq!(renewed.expires_at, t(50));
            assert!(b.acquire(t(45)).await.is_err(), "{backend:?}: renewal extends the lease");

            let taken = b.acquire(t(51)).await.unwrap();
            assert_eq!(taken.holder.service_id, "b");
            let lost = a.renew(t(52)).await.unwrap_err();
            assert!(
                matches!(&lost, LeaseError::Lost { holder } if holder.contains("service b")),
                "{backend:?}: {lost}"
            );
            assert_eq!(store_current(&b).await, "b");

            assert!(live_lease(store.clone(), backend, t(60)).await.unwrap().is_some());
            b.release(t(60)).await.unwrap();
            assert_eq!(live_lease(store.clone(), backend, t(60)).await.unwrap(), None);
            a.acquire(t(61)).await.unwrap();
            assert_eq!(store_current(&a).await, "a");
        }
    }

    async fn store_current(lease: &Lease) -> String {
        lease.current().await.unwrap().unwrap().holder.service_id
    }

    /// Two services racing for a free lease: exactly one wins, on every backend.
    #[tokio::test]
    async fn racing_takers_get_one_winner() {
        for (backend, store, _dir) in cases() {
            let ttl = Duration::from_secs(30);
            let takers: Vec<Lease> = (0..4)
                .map(|i| Lease::new(store.clone(), backend, holder(&format!("s{i}")), ttl))
                .collect();
            let results = futures::future::join_all(takers.iter().map(|l| l.acquire(t(0)))).await;
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "{backend:?}: {results:?}");
        }
    }

    /// A holder that stalled past its TTL cannot come back by recreating a pruned term:
    /// A held term 1; B took it over (term 2), renewed (term 3) and pruned terms 1 and 2;
    /// A's renewal, which would create term 2 again, finds the lease lost.
    #[tokio::test]
    async fn a_stale_holder_cannot_recreate_a_pruned_term() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let ttl = Duration::from_secs(30);
        let a = Lease::new(store.clone(), Backend::Terms, holder("a"), ttl);
        let b = Lease::new(store.clone(), Backend::Terms, holder("b"), ttl);
        a.acquire(t(0)).await.unwrap();
        assert_eq!(b.acquire(t(31)).await.unwrap().term, 2);
        assert_eq!(b.renew(t(32)).await.unwrap().term, 3);
        let lost = a.renew(t(33)).await.unwrap_err();
        assert!(
            matches!(&lost, LeaseError::Lost { holder } if holder.contains("service b")),
            "{lost}"
        );
        assert!(matches!(a.renew(t(34)).await, Err(LeaseError::NotHeld)));
        let current = a.current().await.unwrap().unwrap();
        assert_eq!((current.holder.service_id.as_str(), current.term), ("b", 3));
        assert_eq!(b.renew(t(35)).await.unwrap().term, 4, "the holder keeps its lease");
    }

    /// The terms backend keeps only the newest term objects.
    #[tokio::test]
    async fn old_terms_are_pruned() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Lease::new(store.clone(), Backend::Terms, holder("a"), Duration::from_secs(30));
        a.acquire(t(0)).await.unwrap();
        for i in 1..6 {
            a.renew(t(i)).await.unwrap();
        }
        let left: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].location.as_ref(), "terms/term-00000000000000000006.json");
    }
}
