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
//! The CC-CMS and CC-iSales interfaces (cec-api.md 1.3 C2, 2.7, 2.9, 2.12, 2.16, 4.3, 4.4)
//! check the C2 signature of every request against [`SimOptions::c2_ak`]/`c2_sk`:
//! `POST /rest/cmsapp/v1/{callinday|calloutday}/querymanualindexesbycondition` (daily
//! settlement by called or calling number), `POST /rest/cmsapp/v1/callin/queryMissedCalls`,
//! `POST /rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo`,
//! `GET /rest/isales/v1/openapi/campaigns/{vdnId}` and
//! `POST /rest/isales/v1/openapi/campaigns/{vdnId}/callresult/{campaignId}` (at most
//! [`SimOptions::isales_max_in_flight`] in flight). Their ground truth is
//! [`Simulator::inbound_daily_by_callee`], [`Simulator::outbound_daily_by_caller`],
//! [`Simulator::missed_calls`], [`Simulator::ivr_flows`] and
//! [`Simulator::campaign_call_results`]; [`Simulator::cms_recompute_day`],
//! [`Simulator::ivr_flow_describe`] and [`Simulator::finish_campaign_calls`] change them.
//!
//! The CC-Gateway interfaces (cec-api.md 1.3 C4/C5, 2.10, 4.5) answer with the session GUID
//! of the configuration login `POST /agentgateway/resource/config/login` (account and
//! password [`SimOptions::gateway_account`]/`gateway_password`) in the `Guid` header:
//! `GET /agentgateway/resource/onlineagent/{agentid}/agentskills` and
//! `.../agentskillsbyworkno/{workno}`. GUIDs expire ([`SimOptions::gateway_guid_ttl`],
//! [`Simulator::expire_gateway_guids`]) and may rotate through `Set-GUID`. Their ground
//! truth is [`Simulator::agent_skills`] over [`Simulator::gateway_agents`];
//! [`Simulator::set_agent_skills`] changes it.
//!
//! It also acts as the platform that pushes (cec-api.md 1.3, 3.1-3.3): [`PushPlan::load`]
//! generates Private Number CDRs and call events and outbound results with duplicates, and
//! [`Pusher`] sends them, signed and re-pushed on failure, to a receiver (`cecsync sim
//! push`). The load's `truth` is what the lake must hold afterwards.
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
mod gateway;
mod gateway_data;
mod isales;
mod isales_data;
mod params;
mod push_data;
mod pusher;
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
pub use push_data::{PushLoad, PushMessage, PushPlan};
pub use pusher::{
    Latency, PushFailure, PushReport, PushTargets, Pusher, PusherError, PusherOptions,
};
pub use server::{serve, serve_tls, RunningSim};
pub use simulator::{CmsEnvelope, SimOptions, Simulator};
pub use stats::{FaultCounts, SimStats};
