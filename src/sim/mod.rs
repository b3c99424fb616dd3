//! A simulator of the CEC query APIs, served over real HTTP (or HTTPS with [`serve_tls`]):
//! the ground truth for the integration tests, the server behind `cecsync sim` and the data
//! of `cecsync demo`.
//!
//! It follows the documented behaviour of the OIFDE outbound failure-cause analysis
//! interface (cec-api.md 1.3 C3 and 2.1): C3 tokens in the request body, one table per month
//! in the server zone with only the month of `beginTime` queried, 1-based pages of at most
//! 1000 rows, and ids beyond 2^53. Records are generated on the fly from a seed, so memory
//! stays flat however large the months are; [`Simulator::rbt_mutate`] changes them for
//! incremental-sync tests, and [`FaultOptions`] injects the failures a client must survive.
//!
//! It also serves the API Fabric interfaces (cec-api.md 1.3 C1, 2.4, 2.5, 2.13, 4.2) on the
//! same server: `POST /apigovernance/api/oauth/tokenByAkSk` (Bearer tokens that expire),
//! `POST /apiaccess/{CCSQM|CCISQM}/rest/ccisqm/v1/appraisecall/details` and `.../detail`
//! (call groups returned whole, inspection statuses, ASR segments and emotions; `x-UserId`
//! required on details) and `POST /apiaccess/CC-Management/v1/mobileAgent/
//! queryCallDetailRecord` (string-typed epoch-ms windows of at most 7 days, `retCode`
//! envelope, mixed field typing). Their ground truth is [`Simulator::appraise_calls`],
//! [`Simulator::appraise_segments`], [`Simulator::appraise_emotions`] and
//! [`Simulator::call_detail_records`]; [`Simulator::appraise_advance`],
//! [`Simulator::appraise_add_late_uploads`] and [`Simulator::end_in_progress_cdrs`] change
//! them for incremental tests.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use cecsync::sim::{serve, SimOptions, Simulator};
//!
//! let sim = Arc::new(Simulator::new(SimOptions::default()));
//! let running = serve(sim.clone(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("querying {}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod appraise;
mod appraise_data;
mod auth;
mod cdr;
pub mod cli;
mod cms;
mod cms_daily;
mod cms_ivr;
mod cms_missed;
mod fabric_auth;
mod faults;
mod isales;
mod isales_data;
mod params;
mod rbt;
mod seeding;
mod server;
mod signed;
mod simulator;
mod stats;
#[cfg(test)]
mod test_support;
mod tls;

pub use faults::FaultOptions;
pub use server::{serve, serve_tls, RunningSim};
pub use simulator::{CmsEnvelope, SimOptions, Simulator};
pub use stats::{FaultCounts, SimStats};
