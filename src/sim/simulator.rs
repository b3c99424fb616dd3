//! The simulator's options and its shared state: the ground truth of every dataset, the
//! tokens (OIFDE and API Fabric), the fault generator and the counters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use serde_json::Value;

use super::appraise_data::AppraiseStore;
use super::auth::TokenStore;
use super::cdr::CdrStore;
use super::cms_daily::{DailyStore, Direction};
use super::cms_ivr::IvrStore;
use super::cms_missed::{MissedSizes, MissedStore};
use super::fabric_auth::MAX_TOKEN_LIFETIME_SECS;
use super::faults::{FaultInjector, FaultOptions};
use super::gateway_data::{GatewaySetup, GatewayStore, Skill};
use super::isales_data::IsalesStore;
use super::rbt::RbtTable;
use super::stats::{Counters, SimStats};
use crate::calendar::Month;
use crate::secret::Secret;
use crate::source::signature::Verifier;

/// China Standard Time, the zone of Huawei Cloud's CEC servers.
const CST: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(zone) => zone,
    None => panic!("+08:00 is a valid offset"),
};

/// What the simulator serves and how it misbehaves.
#[derive(Clone)]
pub struct SimOptions {
    /// Seed of every generated value; the same seed gives the same data.
    pub seed: u64,
    /// The tenant that has data; other tenants get empty results.
    pub tenant_id: String,
    /// A fixed authToken accepted in request bodies (C3 static token); empty accepts none.
    pub auth_token: String,
    /// appKey accepted by `POST /oifde/rest/api/gettoken`.
    pub app_key: String,
    /// appSecret accepted by `POST /oifde/rest/api/gettoken`.
    pub app_secret: String,
    /// Lifetime of tokens issued by gettoken (announced in whole seconds).
    pub token_ttl: Duration,
    /// The server zone that defines month tables (default +08:00).
    pub zone: FixedOffset,
    /// First month that holds data.
    pub first_month: Month,
    /// Last month that holds data, inclusive.
    pub last_month: Month,
    /// Records each month table holds before any mutation (at most 10^9).
    pub records_per_month: u64,
    /// Injected faults; none by default.
    pub faults: FaultOptions,
    /// app_key accepted by `tokenByAkSk` (API Fabric, C1).
    pub fabric_app_key: String,
    /// app_secret accepted by `tokenByAkSk`.
    pub fabric_app_secret: String,
    /// The operator the CCSQM routes accept in `x-UserId`.
    pub fabric_user_id: String,
    /// When set, every `tokenByAkSk` token dies after this long, whatever `Expires` says
    /// (as a server that revokes tokens early): tests use it to expire tokens mid-backfill.
    pub fabric_token_lifetime: Option<Duration>,
    /// Calls generated in each month for `appraisecall/details` (a few more or less, as
    /// groups straddle months).
    pub appraise_calls_per_month: u64,
    /// Records generated in each month for `queryCallDetailRecord` (at most 10^7).
    pub cdrs_per_month: u64,
    /// `paging.total` of `appraisecall/details` counts call groups instead of calls.
    pub paging_total_counts_groups: bool,
    /// The AK that C2-signed requests (CMS and iSales) must carry.
    pub c2_ak: String,
    /// The SK of `c2_ak`.
    pub c2_sk: String,
    /// VDNs of the tenant (CMS and iSales), numbered from 170 (at most 800).
    pub vdns: u32,
    /// Called numbers of each VDN in the inbound daily statistics, and calling numbers in
    /// the outbound ones (at most 10,000).
    pub called_numbers: u32,
    /// Call types with daily statistics: `0..call_types`.
    pub call_types: u32,
    /// How the CMS daily statistics and IVR flows write a success.
    pub cms_envelope: CmsEnvelope,
    /// Missed calls of each VDN per day.
    pub missed_calls_per_day: u32,
    /// Days of missed calls the platform keeps before the end of `last_month`; `None`
    /// keeps them all.
    pub missed_calls_retention_days: Option<u32>,
    /// Outbound campaigns of each VDN.
    pub campaigns_per_vdn: u32,
    /// Calls of each campaign in each month (at most 999,999).
    pub campaign_calls_per_month: u64,
    /// The number of the first `callresult` page (the base is not documented).
    pub isales_first_page: u64,
    /// iSales requests served at once; more are answered 429.
    pub isales_max_in_flight: u64,
    /// How long each iSales answer takes (holding its in-flight slot).
    pub isales_latency: Duration,
    /// The `agentId` the CC-Gateway configuration login accepts (C5).
    pub gateway_account: u64,
    /// The password of `gateway_account`.
    pub gateway_password: String,
    /// Agents of the CC-Gateway, work numbers from 101; the last one has no skills.
    pub gateway_agents: u32,
    /// How long a GUID of the configuration login lives (C4 `GUIDTIMEOUT`).
    pub gateway_guid_ttl: Duration,
    /// When set, a GUID older than this is answered with a new one in `Set-GUID` (C4's
    /// dynamic mode, `GUIDINTERVAL`); the old one lives on until its expiry.
    pub gateway_guid_rotation: Option<Duration>,
}

/// How the CMS daily statistics and IVR flows write a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CmsEnvelope {
    /// `result` "0", `resultCode` "0100000", and the rows in both `resultDatas` and
    /// `resultDesc`, as in the documented examples.
    #[default]
    Both,
    /// `resultCode` "0100000" and `resultDesc` only.
    Current,
    /// The legacy (8.13 and before) fields only: `result` "0" and `resultDatas`.
    Legacy,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 7,
            tenant_id: "202401150001".into(),
            auth_token: "sim-token".into(),
            app_key: "202401150001".into(),
            app_secret: "sim-secret".into(),
            token_ttl: Duration::from_secs(3600),
            zone: CST,
            first_month: Month::new(2025, 1).expect("2025-01 is a month"),
            last_month: Month::new(2025, 12).expect("2025-12 is a month"),
            records_per_month: 1000,
            faults: FaultOptions::default(),
            fabric_app_key: "sim-fabric-ak".into(),
            fabric_app_secret: "sim-fabric-sk".into(),
            fabric_user_id: "1611917095665261978".into(),
            fabric_token_lifetime: None,
            appraise_calls_per_month: 40,
            cdrs_per_month: 60,
            paging_total_counts_groups: false,
            c2_ak: "sim-c2-ak".into(),
            c2_sk: "sim-c2-sk".into(),
            vdns: 2,
            called_numbers: 3,
            call_types: 2,
            cms_envelope: CmsEnvelope::Both,
            missed_calls_per_day: 4,
            missed_calls_retention_days: None,
            campaigns_per_vdn: 2,
            campaign_calls_per_month: 30,
            isales_first_page: 1,
            isales_max_in_flight: 10,
            isales_latency: Duration::ZERO,
            gateway_account: 100001,
            gateway_password: "sim-gateway-pw".into(),
            gateway_agents: 5,
            gateway_guid_ttl: Duration::from_secs(120),
            gateway_guid_rotation: None,
        }
    }
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("seed", &self.seed)
            .field("tenant_id", &self.tenant_id)
            .field("auth_token", &"**REDACTED**")
            .field("app_key", &self.app_key)
            .field("app_secret", &"**REDACTED**")
            .field("token_ttl", &self.token_ttl)
            .field("zone", &self.zone)
            .field("first_month", &self.first_month)
            .field("last_month", &self.last_month)
            .field("records_per_month", &self.records_per_month)
            .field("faults", &self.faults)
            .field("fabric_app_key", &self.fabric_app_key)
            .field("fabric_app_secret", &"**REDACTED**")
            .field("fabric_user_id", &self.fabric_user_id)
            .field("fabric_token_lifetime", &self.fabric_token_lifetime)
            .field("appraise_calls_per_month", &self.appraise_calls_per_month)
            .field("cdrs_per_month", &self.cdrs_per_month)
            .field("paging_total_counts_groups", &self.paging_total_counts_groups)
            .field("c2_ak", &self.c2_ak)
            .field("c2_sk", &"**REDACTED**")
            .field("vdns", &self.vdns)
            .field("called_numbers", &self.called_numbers)
            .field("call_types", &self.call_types)
            .field("cms_envelope", &self.cms_envelope)
            .field("missed_calls_per_day", &self.missed_calls_per_day)
            .field("missed_calls_retention_days", &self.missed_calls_retention_days)
            .field("campaigns_per_vdn", &self.campaigns_per_vdn)
            .field("campaign_calls_per_month", &self.campaign_calls_per_month)
            .field("isales_first_page", &self.isales_first_page)
            .field("isales_max_in_flight", &self.isales_max_in_flight)
            .field("isales_latency", &self.isales_latency)
            .field("gateway_account", &self.gateway_account)
            .field("gateway_password", &"**REDACTED**")
            .field("gateway_agents", &self.gateway_agents)
            .field("gateway_guid_ttl", &self.gateway_guid_ttl)
            .field("gateway_guid_rotation", &self.gateway_guid_rotation)
            .finish()
    }
}

/// The simulated CEC: the ground truth the tests compare with, plus counters. Share it as an
/// `Arc` between [`serve`](super::serve) and the code that inspects it.
#[derive(Debug)]
pub struct Simulator {
    options: SimOptions,
    rbt: RbtTable,
    tokens: TokenStore,
    appraise: AppraiseStore,
    cdrs: CdrStore,
    fabric_tokens: TokenStore,
    daily: DailyStore,
    missed: MissedStore,
    ivr: IvrStore,
    isales: IsalesStore,
    gateway: GatewayStore,
    c2_verifier: Verifier,
    faults: FaultInjector,
    counters: Counters,
}

impl Simulator {
    /// A simulator with fresh data generated from `options.seed`.
    pub fn new(options: SimOptions) -> Self {
        let rbt = RbtTable::new(
            options.seed,
            &options.tenant_id,
            options.zone,
            (options.first_month, options.last_month),
            options.records_per_month,
        );
        let tokens = TokenStore::new(
            &options.auth_token,
            &options.app_key,
            &options.app_secret,
            options.token_ttl,
        );
        let months = (options.first_month, options.last_month);
        let appraise = AppraiseStore::new(
            options.seed,
            options.zone,
            months,
            options.appraise_calls_per_month,
        );
        let cdrs = CdrStore::new(options.seed, options.zone, months, options.cdrs_per_month);
        let fabric_tokens = TokenStore::new(
            "",
            &options.fabric_app_key,
            &options.fabric_app_secret,
            Duration::from_secs(MAX_TOKEN_LIFETIME_SECS),
        );
        let daily = DailyStore::new(
            options.seed,
            options.vdns,
            options.called_numbers,
            options.call_types,
            months,
        );
        let sizes = MissedSizes {
            per_day: options.missed_calls_per_day,
            numbers: daily.numbers_per_vdn(),
            retention_days: options.missed_calls_retention_days,
        };
        let vdns = daily.vdns();
        let missed = MissedStore::new(options.seed, options.zone, &vdns, months, sizes);
        let ivr = IvrStore::new(options.seed, &vdns);
        let isales = IsalesStore::new(
            options.seed,
            options.zone,
            &vdns,
            months,
            (options.campaigns_per_vdn, options.campaign_calls_per_month),
        );
        let gateway = GatewayStore::new(GatewaySetup {
            seed: options.seed,
            agents: options.gateway_agents,
            account: options.gateway_account,
            password: &options.gateway_password,
            ttl: options.gateway_guid_ttl,
            rotation: options.gateway_guid_rotation,
        });
        let c2_verifier = Verifier::new(&options.c2_ak, Secret::new(&options.c2_sk));
        let faults = FaultInjector::new(options.faults.clone(), options.seed);
        Self {
            options,
            rbt,
            tokens,
            appraise,
            cdrs,
            fabric_tokens,
            daily,
            missed,
            ivr,
            isales,
            gateway,
            c2_verifier,
            faults,
            counters: Counters::default(),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// The month table's current records, exactly as the API serialises them, in API order
    /// (ascending beginTime, then id). Empty for months outside the configured range.
    pub fn rbt_month(&self, month: Month) -> Vec<Value> {
        self.rbt.month(month).iter().filter_map(|r| serde_json::to_value(r).ok()).collect()
    }

    /// Gives `updated` existing records of `month` a new updateTime, endTime, confirmStatus
    /// and confirmedResult, and appends `added` new ones (beginTime anywhere in the month);
    /// returns the ids touched. Months outside the configured range are left alone.
    pub fn rbt_mutate(&self, month: Month, updated: u64, added: u64) -> Vec<i64> {
        self.rbt.mutate(month, updated, added)
    }

    /// Ground truth of `appraise_calls`: every call whose `call_time` falls in one of
    /// `months` (server zone), as `appraisecall/details` serialises it plus its
    /// `call_group_id`, keyed by `call_uuid`.
    pub fn appraise_calls(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.appraise.calls(&months.into_iter().collect::<Vec<_>>())
    }

    /// Ground truth of `appraise_segments`: the ASR segments of the inspected (status 2)
    /// calls of `months`, each as `appraisecall/detail` serialises it plus the call's
    /// `call_uuid` and `call_time`, keyed by `call_uuid/segment_id`.
    pub fn appraise_segments(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.appraise.segments(&months.into_iter().collect::<Vec<_>>())
    }

    /// Ground truth of `appraise_emotions`: one row (`call_uuid`, `call_time`, `channel`
    /// "left"/"right", `type`, `score`) per emotion score of the inspected calls of `months`,
    /// keyed by `call_uuid/channel/type`.
    pub fn appraise_emotions(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.appraise.emotions(&months.into_iter().collect::<Vec<_>>())
    }

    /// Ground truth of `call_detail_records`: every record whose `startTime` falls in one of
    /// `months`, keyed by `callSerialNo`, with every documented field; times, durations,
    /// `state` and `reasonCode` as numbers whatever the wire typing, null where the call has
    /// not got that far.
    pub fn call_detail_records(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.cdrs.rows(&months.into_iter().collect::<Vec<_>>())
    }

    /// Finishes the inspection of up to `finished` calls of `month` still being inspected
    /// (status 0, 1 or 3 becomes 2, with segments and emotions) and changes the
    /// review/complaint status of up to `reviewed` inspected calls of `month`; returns the
    /// call_uuids changed. Upload times stay as they were.
    pub fn appraise_advance(&self, month: Month, finished: usize, reviewed: usize) -> Vec<String> {
        self.appraise.advance(month, finished, reviewed)
    }

    /// Adds `count` calls made in `month` and uploaded late, at `upload_time` (epoch
    /// seconds), each in a group of its own; returns their call_uuids.
    pub fn appraise_add_late_uploads(
        &self,
        month: Month,
        count: usize,
        upload_time: i64,
    ) -> Vec<String> {
        self.appraise.add_late_uploads(month, count, upload_time)
    }

    /// `appraisecall/detail` answers (HTTP 200) served so far, by call_uuid.
    pub fn appraise_detail_requests(&self) -> BTreeMap<String, u64> {
        self.appraise.detail_requests()
    }

    /// Ends every call record still in progress (`state` becomes 3, end fields set);
    /// returns their `callSerialNo`s.
    pub fn end_in_progress_cdrs(&self) -> Vec<String> {
        self.cdrs.end_in_progress()
    }

    /// The VDN ids of the tenant (CMS and iSales).
    pub fn vdns(&self) -> Vec<u32> {
        self.daily.vdns()
    }

    /// The called numbers of `vdn` that have inbound daily statistics (`4008VVVNNNN`).
    pub fn called_numbers(&self, vdn: u32) -> Vec<String> {
        self.daily.numbers(Direction::Inbound, vdn)
    }

    /// The calling numbers of `vdn` that have outbound daily statistics (`0755VVVNNNN`).
    pub fn caller_numbers(&self, vdn: u32) -> Vec<String> {
        self.daily.numbers(Direction::Outbound, vdn)
    }

    /// The call types that have daily statistics.
    pub fn call_types(&self) -> Vec<i64> {
        self.daily.call_types()
    }

    /// Ground truth of `inbound_daily_by_callee`: one row per VDN, day of `months`, called
    /// number and call type that had calls, exactly as `callinday` answers a one-day
    /// request for it (`beginLogDay` = `endLogDay` = the day), keyed
    /// `vdn/yyyy-MM-dd/calleeNo/callType`.
    pub fn inbound_daily_by_callee(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.daily.rows(Direction::Inbound, &months.into_iter().collect::<Vec<_>>())
    }

    /// Ground truth of `outbound_daily_by_caller`: as [`Self::inbound_daily_by_callee`]
    /// with `callerNo`, keyed `vdn/yyyy-MM-dd/callerNo/callType`.
    pub fn outbound_daily_by_caller(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.daily.rows(Direction::Outbound, &months.into_iter().collect::<Vec<_>>())
    }

    /// Recomputes the daily settlement of `day` (VDN zone): the figures of every row of that
    /// day change, in both directions (`inOccupyNum` grows). Returns the day's revision.
    pub fn cms_recompute_day(&self, day: NaiveDate) -> u32 {
        self.daily.recompute(day)
    }

    /// Ground truth of `missed_calls`: the calls the platform still keeps whose `waitBegin`
    /// falls in one of `months` (server zone), keyed by `callId`, as `queryMissedCalls`
    /// serves them plus their `vdn`.
    pub fn missed_calls(&self, months: impl IntoIterator<Item = Month>) -> BTreeMap<String, Value> {
        self.missed.rows(self.options.zone, &months.into_iter().collect::<Vec<_>>())
    }

    /// Ground truth of `ivr_flows`: every flow of every VDN, keyed
    /// `ccId/vdn/id/accessNo`, as `queryivrprocessinnoinfo` serves it plus `ccId` and `vdn`.
    pub fn ivr_flows(&self) -> BTreeMap<String, Value> {
        self.ivr.rows()
    }

    /// Gives IVR flow `id` of `vdn` a new description; false when there is no such flow.
    pub fn ivr_flow_describe(&self, vdn: u32, id: i64, description: &str) -> bool {
        self.ivr.describe(vdn, id, description)
    }

    /// Every campaign of every VDN, as the campaign list serves it.
    pub fn campaigns(&self) -> Vec<Value> {
        self.isales.all_campaigns()
    }

    /// Ground truth of `campaign_call_results`: the finished calls of every campaign whose
    /// `callTimeStr` falls in one of `months` (server zone), keyed by `callId`, as
    /// `callresult` serves them but with `callStatus` always a string ("5"/"6").
    pub fn campaign_call_results(
        &self,
        months: impl IntoIterator<Item = Month>,
    ) -> BTreeMap<String, Value> {
        self.isales.rows(&months.into_iter().collect::<Vec<_>>())
    }

    /// Finishes the campaign calls still running at the end of the last month, which
    /// `callresult` then serves; returns their `callId`s.
    pub fn finish_campaign_calls(&self) -> Vec<String> {
        self.isales.finish_calls()
    }

    /// The work numbers of the CC-Gateway's agents.
    pub fn gateway_agents(&self) -> Vec<u32> {
        self.gateway.agents()
    }

    /// Ground truth of `agent_skills`: every skill of every agent, keyed `workno/skillId`,
    /// as `agentskillsbyworkno` serves it (`name`, `id`, `mediatype`) plus the agent's
    /// `workno` (a number).
    pub fn agent_skills(&self) -> BTreeMap<String, Value> {
        self.gateway.rows()
    }

    /// Replaces the skills of agent `workno` with `skills` (`id`, `name`, `mediatype`);
    /// false when there is no such agent.
    pub fn set_agent_skills(&self, workno: u32, skills: &[(i64, &str, i64)]) -> bool {
        let skills = skills
            .iter()
            .map(|&(id, name, mediatype)| Skill { id, name: name.to_string(), mediatype })
            .collect();
        self.gateway.set_skills(workno, skills)
    }

    /// Ends every CC-Gateway GUID now: the next request with one is answered `100-006`.
    pub fn expire_gateway_guids(&self) {
        self.gateway.expire_guids()
    }

    /// The counters as they are now.
    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    pub(crate) fn rbt(&self) -> &RbtTable {
        &self.rbt
    }

    pub(crate) fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    pub(crate) fn appraise(&self) -> &AppraiseStore {
        &self.appraise
    }

    pub(crate) fn cdrs(&self) -> &CdrStore {
        &self.cdrs
    }

    pub(crate) fn fabric_tokens(&self) -> &TokenStore {
        &self.fabric_tokens
    }

    pub(crate) fn daily(&self) -> &DailyStore {
        &self.daily
    }

    pub(crate) fn missed(&self) -> &MissedStore {
        &self.missed
    }

    pub(crate) fn ivr(&self) -> &IvrStore {
        &self.ivr
    }

    pub(crate) fn isales(&self) -> &IsalesStore {
        &self.isales
    }

    pub(crate) fn gateway(&self) -> &GatewayStore {
        &self.gateway
    }

    pub(crate) fn c2_verifier(&self) -> &Verifier {
        &self.c2_verifier
    }

    pub(crate) fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug output of the options never shows the token or the secret.
    #[test]
    fn options_debug_hides_secrets() {
        let text = format!("{:?}", SimOptions::default());
        assert!(!text.contains("sim-token") && !text.contains("sim-secret"), "{text}");
        assert!(!text.contains("sim-fabric-sk") && !text.contains("sim-c2-sk"), "{text}");
        assert!(!text.contains("sim-gateway-pw"), "{text}");
        assert!(text.contains("202401150001"));
    }

    /// Two simulators with the same seed hold the same data; another seed differs.
    #[test]
    fn same_seed_same_data() {
        let month = Month::new(2025, 4).unwrap();
        let a = Simulator::new(SimOptions::default());
        let b = Simulator::new(SimOptions::default());
        let c = Simulator::new(SimOptions { seed: 8, ..SimOptions::default() });
        assert_eq!(a.rbt_month(month), b.rbt_month(month));
        assert_ne!(a.rbt_month(month), c.rbt_month(month));
        assert_eq!(a.rbt_month(month).len(), 1000);
    }
}
