//! What the simulated platforms push (cec-api.md 3.1-3.3), generated from a seed: Private
//! Number CDRs and call events of the same calls, and CC-iSales outbound results, cut into
//! messages with the duplicates real senders produce.
//!
//! Readings of what the documentation leaves open:
//! - A call's CDR and its events share `sessionId`; a call has `callin` (or `callout` for
//!   direction 0), `alerting`, `answer` when answered, and `disconnect` (`stateCode` 0
//!   answered, 8101 not answered). `callin` carries `notifyMode` "Notify".
//! - Private Number times are UTC `yyyy-MM-dd HH:mm:ss`; `callTimeStr` of the outbound
//!   results is in the tenant zone. A sixth of the calls fall in the first hour of a month
//!   and a sixth in its last hour, so month boundaries are exercised.
//! - Optional CDR fields (`subscriptionId`, the recording fields, the forwarded-leg answer
//!   time) are absent when they do not apply.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::seeding::{mix, uuid};
use crate::calendar::Month;
use crate::push::kind::PushKind;

/// The text form of every time field pushed.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Failure causes of table 4.3 drawn for failed outbound calls.
const FAIL_CODES: &[&str] = &["00531", "00537", "00538", "00548", "00549", "00601", "00603"];
/// Seed streams, so that calls and outbound results do not share random numbers.
const CALL_STREAM: u64 = 1;
const OUTBOUND_STREAM: u64 = 2;
const MESSAGE_STREAM: u64 = 3;
/// Outbound results in one callback at most.
const MAX_RESULTS_PER_CALLBACK: usize = 5;

/// The natural key of `record` of interface `kind`: `appKey|icid`,
/// `sessionId|eventType|timestamp` (of an event body) or `callId`.
pub(super) fn record_key(kind: PushKind, record: &Value) -> String {
    let field = |value: &Value, name: &str| value[name].as_str().unwrap_or_default().to_string();
    match kind {
        PushKind::PrivateNumberCdr => {
            format!("{}|{}", field(record, "appKey"), field(record, "icid"))
        }
        PushKind::PrivateNumberEvent => {
            let info = &record["statusInfo"];
            let event = field(record, "eventType");
            format!("{}|{event}|{}", field(info, "sessionId"), field(info, "timestamp"))
        }
        PushKind::OutboundResult => field(record, "callId"),
    }
}

/// What to push: how many messages of each interface, over which months, with how many
/// duplicates.
#[derive(Debug, Clone)]
pub struct PushPlan {
    /// Seed of the data and of the duplicates.
    pub seed: u64,
    /// Messages per interface.
    pub messages: usize,
    /// First month of the call times.
    pub first_month: Month,
    /// Last month of the call times (inclusive).
    pub last_month: Month,
    /// The tenant zone of `callTimeStr` (outbound results).
    pub zone: FixedOffset,
    /// `appKey` of the CDRs (the app that signs).
    pub app_key: String,
    /// CDRs in one message at least.
    pub min_cdrs_per_message: usize,
    /// CDRs in one message at most (the platform sends 1 to 50).
    pub max_cdrs_per_message: usize,
    /// Share of messages that re-send a whole earlier message, and share of CDRs and
    /// outbound results that repeat a record of an earlier message.
    pub duplicate_rate: f64,
}

impl Default for PushPlan {
    fn default() -> Self {
        Self {
            seed: 7,
            messages: 100,
            first_month: Month::new(2025, 1).expect("valid month"),
            last_month: Month::new(2025, 3).expect("valid month"),
            zone: FixedOffset::east_opt(8 * 3600).expect("valid zone"),
            app_key: "sim-app-key".into(),
            min_cdrs_per_message: 1,
            max_cdrs_per_message: 50,
            duplicate_rate: 0.1,
        }
    }
}

/// One message as it is pushed: the body and the natural keys of its records.
#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    /// The interface it goes to.
    pub interface: PushKind,
    /// The JSON body.
    pub body: Value,
    /// The natural keys of its records (with repeats when a record is in it twice).
    pub keys: Vec<String>,
}

/// The messages of a plan and the distinct records they carry.
#[derive(Debug, Clone)]
pub struct PushLoad {
    /// Every message, in sending order, re-sends included.
    pub messages: Vec<PushMessage>,
    /// Ground truth: the distinct records per interface, by natural key (an event record
    /// is the whole body, `eventType` with `statusInfo`).
    pub truth: BTreeMap<PushKind, BTreeMap<String, Value>>,
}

impl PushPlan {
    /// Generates the messages and their ground truth (the same for the same plan).
    pub fn load(&self) -> PushLoad {
        let mut rng = SmallRng::seed_from_u64(mix(&[self.seed, MESSAGE_STREAM]));
        let mut truth: BTreeMap<PushKind, BTreeMap<String, Value>> = BTreeMap::new();
        let mut per_interface = Vec::new();
        let events = (0..).flat_map(|i| self.call(i).events());
        let mut events = events.map(|e| vec![e]);
        let mut cdrs = (0..).map(|i| self.call(i).cdr(&self.app_key));
        let mut outbound = (0..).map(|i| self.outbound_result(i));
        for interface in PushKind::ALL {
            let mut sent: Vec<PushMessage> = Vec::new();
            let mut records: Vec<Value> = Vec::new();
            while sent.len() < self.messages {
                if !sent.is_empty() && rng.random_bool(self.duplicate_rate) {
                    let again = sent.choose(&mut rng).expect("not empty").clone();
                    sent.push(again);
                    continue;
                }
                let batch = match interface {
                    PushKind::PrivateNumberEvent => events.next().expect("endless"),
                    PushKind::PrivateNumberCdr => {
                        let most = self.max_cdrs_per_message.max(1);
                        let size =
                            rng.random_range(self.min_cdrs_per_message.clamp(1, most)..=most);
                        self.batch(&mut rng, &mut cdrs, &mut records, size)
                    }
                    PushKind::OutboundResult => {
                        let size = rng.random_range(1..=MAX_RESULTS_PER_CALLBACK);
                        self.batch(&mut rng, &mut outbound, &mut records, size)
                    }
                };
                let message = message(interface, batch);
                let known = truth.entry(interface).or_default();
                for (key, record) in message.keys.iter().zip(records_of(&message)) {
                    known.entry(key.clone()).or_insert(record);
                }
                sent.push(message);
            }
            per_interface.push(sent);
        }
        PushLoad { messages: interleave(per_interface), truth }
    }

    /// `size` records: fresh ones from `fresh`, some replaced by a repeat of an earlier one.
    fn batch(
        &self,
        rng: &mut SmallRng,
        fresh: &mut impl Iterator<Item = Value>,
        earlier: &mut Vec<Value>,
        size: usize,
    ) -> Vec<Value> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            if !earlier.is_empty() && rng.random_bool(self.duplicate_rate) {
                batch.push(earlier.choose(rng).expect("not empty").clone());
            } else {
                batch.push(fresh.next().expect("endless"));
            }
        }
        earlier.extend(batch.iter().cloned());
        batch
    }

    /// An instant in the plan's months (of `zone`): a sixth in a first hour, a sixth in a
    /// last hour of a month.
    fn instant(&self, rng: &mut SmallRng, zone: FixedOffset) -> DateTime<Utc> {
        let months: Vec<Month> = self.first_month.through(self.last_month).collect();
        let month = *months.choose(rng).unwrap_or(&self.first_month);
        let (start, end) = (month.start(zone), month.next().start(zone));
        let seconds = match rng.random_range(0..6) {
            0 => rng.random_range(0..3600),
            1 => (end - start).num_seconds() - rng.random_range(1..=3600),
            _ => rng.random_range(0..(end - start).num_seconds()),
        };
        start + TimeDelta::seconds(seconds)
    }

    /// Call `index` of the Private Number app.
    fn call(&self, index: u64) -> Call {
        let mut rng = SmallRng::seed_from_u64(mix(&[self.seed, CALL_STREAM, index]));
        let start = self.instant(&mut rng, FixedOffset::east_opt(0).expect("UTC"));
        let alerting = start + TimeDelta::seconds(rng.random_range(2..10));
        let answered = rng.random_bool(0.8);
        let answer = answered.then(|| alerting + TimeDelta::seconds(rng.random_range(3..20)));
        let end = match answer {
            Some(answer) => answer + TimeDelta::seconds(rng.random_range(10..600)),
            None => alerting + TimeDelta::seconds(rng.random_range(10..40)),
        };
        let number = |rng: &mut SmallRng, prefix: &str| {
            format!("+86{prefix}{:08}", rng.random_range(0..100_000_000u32))
        };
        Call {
            index,
            direction: rng.random_range(0..=1),
            session_id: format!(
                "1200_{index}_4294967295_{}@callenabler246.huaweicaas.com",
                start.format("%Y%m%d%H%M%S")
            ),
            icid: format!(
                "{:032x}.{}.{}.{index}",
                rng.random::<u128>(),
                rng.random::<u32>(),
                rng.random::<u32>()
            ),
            subscription_id: rng.random_bool(0.8).then(|| uuid(&mut rng)),
            caller: number(&mut rng, "138"),
            bind: number(&mut rng, "170"),
            callee: number(&mut rng, "139"),
            recorded: answered && rng.random_bool(0.5),
            start,
            alerting,
            answer,
            end,
        }
    }

    /// Outbound result `index`.
    fn outbound_result(&self, index: u64) -> Value {
        let mut rng = SmallRng::seed_from_u64(mix(&[self.seed, OUTBOUND_STREAM, index]));
        let time = self.instant(&mut rng, self.zone).with_timezone(&self.zone);
        let success = rng.random_bool(0.6);
        let mut result = json!({
            "campaignId": rng.random_range(1..=4).to_string(),
            "sessionId": format!("1202_test{index:06}"),
            "called": format!("6058{:04}", rng.random_range(0..10_000)),
            "callTimeStr": time.format(TIME_FORMAT).to_string(),
            "callStatus": if success { 6 } else { 5 },
            "failCode": if success { "00000" } else { FAIL_CODES.choose(&mut rng).expect("codes") },
            "vdnId": rng.random_range(170..172),
            "callId": format!("{}-{index}", time.timestamp()),
        });
        if rng.random_bool(0.5) {
            result["customField"] = json!(format!("order-{}", rng.random_range(1000..10_000)));
        }
        result["recordPath"] = json!(if success {
            format!("Y:/1/11/{}/{index}.V3", time.format("%Y%m%d"))
        } else {
            String::new()
        });
        result
    }
}

/// One Private Number call, from which its CDR and its events are written.
#[derive(Debug, Clone)]
struct Call {
    index: u64,
    direction: u8,
    session_id: String,
    icid: String,
    subscription_id: Option<String>,
    caller: String,
    bind: String,
    callee: String,
    recorded: bool,
    start: DateTime<Utc>,
    alerting: DateTime<Utc>,
    answer: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
}

/// `instant` as the Private Number platform writes times.
fn text(instant: DateTime<Utc>) -> Value {
    Value::String(instant.format(TIME_FORMAT).to_string())
}

impl Call {
    /// The FeeInfo of the call (3.2).
    fn cdr(&self, app_key: &str) -> Value {
        let mut fee = Map::new();
        let mut put = |name: &str, value: Value| {
            fee.insert(name.to_string(), value);
        };
        put("direction", json!(self.direction));
        put("spId", json!("sim-sp"));
        put("appKey", json!(app_key));
        put("icid", json!(self.icid));
        put("bindNum", json!(self.bind));
        put("sessionId", json!(self.session_id));
        if let Some(id) = &self.subscription_id {
            put("subscriptionId", json!(id));
        }
        put("callerNum", json!(self.caller));
        put("calleeNum", json!(self.bind));
        put("fwdDisplayNum", json!(self.bind));
        put("fwdDstNum", json!(self.callee));
        put("callInTime", text(self.start));
        put("fwdStartTime", text(self.start + TimeDelta::seconds(1)));
        put("fwdAlertingTime", text(self.alerting));
        if let Some(answer) = self.answer {
            put("fwdAnswerTime", text(answer));
        }
        put("callEndTime", text(self.end));
        put("fwdUnaswRsn", json!(if self.answer.is_some() { 0 } else { 19 }));
        put("ulFailReason", json!(0));
        put("sipStatusCode", json!(if self.answer.is_some() { 0 } else { 480 }));
        put("recordFlag", json!(u8::from(self.recorded)));
        if let (true, Some(answer)) = (self.recorded, self.answer) {
            put("recordStartTime", text(answer + TimeDelta::seconds(1)));
            put("recordDomain", json!("ostor.huawei.com"));
            put("recordBucketName", json!("sp-sim-records"));
            put(
                "recordObjectName",
                json!(format!("{}{:06}.wav", self.start.format("%y%m%d%H%M%S"), self.index)),
            );
        }
        put("ttsPlayTimes", json!(0));
        put("ttsTransDuration", json!(0));
        put("serviceType", json!("004"));
        put("hostName", json!("callenabler246.huaweicaas.com"));
        Value::Object(fee)
    }

    /// The call events of the call (3.3), in order, as whole message bodies.
    fn events(self) -> Vec<Value> {
        let info = |at: DateTime<Utc>| {
            let mut info = json!({
                "sessionId": self.session_id,
                "timestamp": text(at),
                "caller": self.caller,
                "called": self.bind,
            });
            if let Some(id) = &self.subscription_id {
                info["subscriptionId"] = json!(id);
            }
            info
        };
        let first = if self.direction == 0 { "callout" } else { "callin" };
        let mut opening = info(self.start);
        if first == "callin" {
            opening["notifyMode"] = json!("Notify");
        }
        let mut events = vec![
            json!({"eventType": first, "statusInfo": opening}),
            json!({"eventType": "alerting", "statusInfo": info(self.alerting)}),
        ];
        if let Some(answer) = self.answer {
            events.push(json!({"eventType": "answer", "statusInfo": info(answer)}));
        }
        let mut hangup = info(self.end);
        let (code, desc) = match self.answer {
            Some(_) => (0, "The user releases the call."),
            None => (8101, "No answer after ringing."),
        };
        hangup["stateCode"] = json!(code);
        hangup["stateDesc"] = json!(desc);
        events.push(json!({"eventType": "disconnect", "statusInfo": hangup}));
        events
    }
}

/// The message of `interface` carrying `records` (one event body for events).
fn message(interface: PushKind, records: Vec<Value>) -> PushMessage {
    let keys = records.iter().map(|r| record_key(interface, r)).collect();
    let body = match interface {
        PushKind::PrivateNumberCdr => json!({"eventType": "fee", "feeLst": records}),
        PushKind::PrivateNumberEvent => records.into_iter().next().expect("one event"),
        PushKind::OutboundResult => Value::Array(records),
    };
    PushMessage { interface, body, keys }
}

/// The records of `message`, in the order of its keys.
fn records_of(message: &PushMessage) -> Vec<Value> {
    match message.interface {
        PushKind::PrivateNumberCdr => {
            message.body["feeLst"].as_array().cloned().unwrap_or_default()
        }
        PushKind::PrivateNumberEvent => vec![message.body.clone()],
        PushKind::OutboundResult => message.body.as_array().cloned().unwrap_or_default(),
    }
}

/// The messages of each interface taken in turn.
fn interleave(lists: Vec<Vec<PushMessage>>) -> Vec<PushMessage> {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

impl PushLoad {
    /// The records carried more than once over all messages (in two messages, or in a
    /// message sent again), per interface.
    pub fn repeated_keys(&self) -> BTreeMap<PushKind, BTreeSet<String>> {
        let mut seen: BTreeSet<(PushKind, &str)> = BTreeSet::new();
        let mut repeated: BTreeMap<PushKind, BTreeSet<String>> = BTreeMap::new();
        for message in &self.messages {
            for key in &message.keys {
                if !seen.insert((message.interface, key)) {
                    repeated.entry(message.interface).or_default().insert(key.clone());
                }
            }
        }
        repeated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PushPlan {
        PushPlan {
            messages: 60,
            max_cdrs_per_message: 10,
            duplicate_rate: 0.2,
            ..PushPlan::default()
        }
    }

    /// The same plan gives the same load; every message has its documented shape.
    #[test]
    fn load_is_seeded_and_shaped() {
        let load = plan().load();
        assert_eq!(load.messages, plan().load().messages);
        assert_eq!(load.messages.len(), 180);
        for m in &load.messages {
            match m.interface {
                PushKind::PrivateNumberCdr => {
                    assert_eq!(m.body["eventType"], "fee");
                    let n = m.body["feeLst"].as_array().unwrap().len();
                    assert!((1..=10).contains(&n) && n == m.keys.len());
                }
                PushKind::PrivateNumberEvent => {
                    let kind = m.body["eventType"].as_str().unwrap();
                    assert!(
                        ["callin", "callout", "alerting", "answer", "disconnect"].contains(&kind)
                    );
                    assert_eq!(
                        m.body["statusInfo"]["notifyMode"].as_str(),
                        (kind == "callin").then_some("Notify")
                    );
                    assert_eq!(m.body["statusInfo"]["stateCode"].is_number(), kind == "disconnect");
                }
                PushKind::OutboundResult => {
                    let results = m.body.as_array().unwrap();
                    assert!(!results.is_empty() && results.len() <= MAX_RESULTS_PER_CALLBACK);
                    for r in results {
                        assert!(r["callStatus"].is_i64() && r["vdnId"].is_i64());
                        assert_eq!(r["failCode"].as_str().unwrap().len(), 5);
                        assert!(r["campaignId"].is_string());
                    }
                }
            }
        }
        assert!(!load.repeated_keys().is_empty());
    }

    /// CDRs and events share session ids; times cover every month and month edges; the
    /// truth holds each distinct record once.
    #[test]
    fn records_join_and_cover_the_months() {
        let load = plan().load();
        let cdrs = &load.truth[&PushKind::PrivateNumberCdr];
        let events = &load.truth[&PushKind::PrivateNumberEvent];
        let sessions: BTreeSet<&str> =
            cdrs.values().map(|c| c["sessionId"].as_str().unwrap()).collect();
        assert!(events
            .values()
            .all(|e| sessions.contains(e["statusInfo"]["sessionId"].as_str().unwrap())));
        assert!(cdrs.values().all(|c| c["appKey"] == "sim-app-key"));
        assert!(cdrs.values().any(|c| c.get("subscriptionId").is_none()));
        assert!(cdrs.values().any(|c| c.get("recordObjectName").is_some()));
        let months: BTreeSet<&str> =
            cdrs.values().map(|c| &c["callInTime"].as_str().unwrap()[..7]).collect();
        assert_eq!(months, BTreeSet::from(["2025-01", "2025-02", "2025-03"]));
        let edge = |c: &&Value| {
            let t = c["callInTime"].as_str().unwrap();
            t[8..13] == *"01 00" || (t[11..13] == *"23" && ["31", "28"].contains(&&t[8..10]))
        };
        assert!(cdrs.values().filter(edge).count() >= 2);
        let outbound = &load.truth[&PushKind::OutboundResult];
        let carried: BTreeSet<&String> = load
            .messages
            .iter()
            .filter(|m| m.interface == PushKind::OutboundResult)
            .flat_map(|m| &m.keys)
            .collect();
        assert_eq!(carried.len(), outbound.len());
        assert!(outbound.iter().all(|(key, r)| r["callId"] == key.as_str()));
    }
}
