//! Push ingestion: the CDRs, call events and outbound results that the platforms push to
//! the customer (cec-api.md section 3), received durably and compacted into the lake.
//!
//! ```text
//!  platform ─POST─> receiver (auth, shape, size) ─> spool (fsynced log) ─> 200 answer
//!  schedule ─> compaction: sealed spool segments ─> normalize ─> merge by key into month
//!              partitions (the commit protocol of pulled data) ─> trim the spool
//! ```
//! - [`aksk`]: the Private Number `X-AKSK` / `X-WSSE` UsernameToken check, with a nonce
//!   replay window; also signs, for the simulator's pusher.
//! - [`access`]: the IP allow-list of the outbound-result callback.
//! - [`spool`]: the durable local log a push is written to before it is answered.
//! - [`kind`]: the three interfaces, their datasets and keys, and a push's spool entry.
//! - [`receiver`]: the axum routes: checks, spooling, the documented answers.
//! - [`server`]: the receivers' own listener (HTTPS or plain HTTP).
//! - [`compact`]: sealed spool segments merged by key into month partitions.

pub mod access;
pub mod aksk;
pub mod compact;
pub mod kind;
pub mod receiver;
pub mod server;
pub mod spool;
