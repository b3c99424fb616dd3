//! The quality-inspection data set behind `appraisecall/details` and `appraisecall/detail`
//! (cec-api.md 2.4, 2.5, table 4.2): call groups of one to three calls, each call with its
//! inspection status and, once inspected (status 2), its ASR segments and emotion scores.
//!
//! Every month of the configured range gets its calls at construction, drawn from the seed.
//! The first call of a month falls on the month's first second, a few more in its first and
//! last hours, and the last group of a month has a second call minutes after the month
//! ends, so a group can straddle two months. Upload times follow the call, some of them days
//! later (into the next month). The data live in memory: the simulator is meant for tests
//! and demos with thousands of calls a month, not millions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};

use chrono::FixedOffset;
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::seeding::{mix, ordinal, round, uuid};
use crate::calendar::Month;

/// Statuses of calls whose inspection has not finished yet.
const IN_PROGRESS: [i64; 3] = [0, 1, 3];
/// Statuses of calls whose inspection failed.
const FAILED: [i64; 11] = [9, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];
/// The only status whose detail carries segments and emotions.
pub(crate) const INSPECTED: i64 = 2;

/// Agents: (userId, name).
const STAFF: &[(&str, &str)] = &[
    ("1600226440112042215", "王芳"),
    ("1679888582905592626", "李娜"),
    ("1611917095665261978", "张伟"),
    ("1623345678901234567", "刘洋"),
    ("1634456789012345678", "陈静"),
    ("1645567890123456789", "欧阳晓明"),
    ("1656678901234567890", "xieyiling"),
];
/// What customers say.
const CUSTOMER_LINES: &[&str] = &[
    "请问是您想询价吗",
    "那您是打算在北京这边买车是吗",
    "我上周买的商品还没有收到，能帮我查一下吗？",
    "你们的退货流程是怎样的",
    "好的，谢谢！",
    "我的订单号是二零二五零一零八",
    "能不能便宜一点",
    "嗯，我再考虑一下",
];
/// What agents say.
const STAFF_LINES: &[&str] = &[
    "对",
    "是的",
    "您好，很高兴为您服务，请问有什么可以帮您？",
    "请您提供一下订单号，我这边帮您查询。",
    "已经为您登记，预计三个工作日内处理完成。",
    "感谢您的来电，祝您生活愉快，再见。",
    "非常抱歉给您带来不便",
    "这款车型目前有优惠活动",
];
/// File names of voice calls besides the dated ones.
const VOICE_FILES: &[&str] =
    &["Consultant", "myvoice", "6335", "20208650", "客户回访录音", "投诉处理"];

/// One call as `appraisecall/details` serialises it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Call {
    pub(crate) call_id: String,
    pub(crate) call_uuid: String,
    pub(crate) call_time: i64,
    pub(crate) call_type: i64,
    pub(crate) create_time: i64,
    pub(crate) deal: i64,
    pub(crate) duration: f64,
    pub(crate) file_name: String,
    pub(crate) left_channel: &'static str,
    pub(crate) left_silence_time: f64,
    pub(crate) left_speech_ratio: f64,
    pub(crate) left_speed: f64,
    pub(crate) right_channel: &'static str,
    pub(crate) right_silence_time: f64,
    pub(crate) right_speech_ratio: f64,
    pub(crate) right_speed: f64,
    pub(crate) staff_id: String,
    pub(crate) staff_name: String,
    pub(crate) status: i64,
    pub(crate) upload_time: i64,
    pub(crate) inspect_status: i64,
    pub(crate) complain_status: i64,
    pub(crate) review_status: i64,
    /// The inspection result; present exactly when `status` is 2.
    #[serde(skip)]
    pub(crate) inspection: Option<Inspection>,
}

/// One ASR segment of a call (cec-api.md 2.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Segment {
    pub(crate) segment_id: i64,
    pub(crate) speaker: &'static str,
    pub(crate) start_time: f64,
    pub(crate) end_time: f64,
    pub(crate) asr_text: &'static str,
    pub(crate) status: i64,
}

/// One emotion score of a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Emotion {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) score: f64,
}

/// What `appraisecall/detail` adds to a finished inspection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inspection {
    pub(crate) segments: Vec<Segment>,
    pub(crate) left_emotions: Vec<Emotion>,
    pub(crate) right_emotions: Vec<Emotion>,
    pub(crate) rule_severity_violation_count: i64,
}

/// Calls handled together; `call_group_id` is the uuid of its first call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) calls: Vec<Call>,
}

impl Group {
    /// The API's order: newest group first (as the documented example), then by id.
    fn key(&self) -> (std::cmp::Reverse<i64>, &str) {
        (std::cmp::Reverse(self.calls.first().map_or(0, |c| c.call_time)), &self.id)
    }
}

/// Which calls a `details` query selects; `None` bounds are open.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallFilter {
    pub(crate) call_from: Option<i64>,
    pub(crate) call_to: Option<i64>,
    pub(crate) upload_from: Option<i64>,
    pub(crate) upload_to: Option<i64>,
    pub(crate) statuses: Vec<i64>,
    pub(crate) call_types: Vec<i64>,
    pub(crate) staff_id: Option<String>,
    pub(crate) staff_name: Option<String>,
    pub(crate) duration_min: Option<f64>,
    pub(crate) duration_max: Option<f64>,
    pub(crate) keyword: Option<String>,
}

impl CallFilter {
    fn matches(&self, call: &Call) -> bool {
        let within = |value: i64, from: Option<i64>, to: Option<i64>| {
            from.is_none_or(|f| value >= f) && to.is_none_or(|t| value <= t)
        };
        within(call.call_time, self.call_from, self.call_to)
            && within(call.upload_time, self.upload_from, self.upload_to)
            && self.statuses.contains(&call.status)
            && self.call_types.contains(&call.call_type)
            && self.staff_id.as_ref().is_none_or(|s| *s == call.staff_id)
            && self.staff_name.as_ref().is_none_or(|s| *s == call.staff_name)
            && self.duration_min.is_none_or(|d| call.duration >= d)
            && self.duration_max.is_none_or(|d| call.duration <= d)
            && self.keyword.as_ref().is_none_or(|k| {
                call.inspection
                    .as_ref()
                    .is_some_and(|i| i.segments.iter().any(|s| s.asr_text.contains(k.as_str())))
            })
    }
}

/// One page of a `details` query.
#[derive(Debug)]
pub(crate) struct DetailsPage {
    /// Matching groups, or matching calls, as the caller asked.
    pub(crate) total: u64,
    /// The page's groups as the API serialises them, each with its matching calls only.
    pub(crate) groups: Vec<Value>,
}

/// Every call group of the tenant, with the counters tests read.
#[derive(Debug)]
pub(crate) struct AppraiseStore {
    seed: u64,
    zone: FixedOffset,
    groups: RwLock<Vec<Group>>,
    /// Where each call is in `groups` (group, call), by call_uuid; rebuilt when groups move.
    /// Locked after `groups`.
    positions: RwLock<HashMap<String, (usize, usize)>>,
    mutations: Mutex<u64>,
    detail_requests: Mutex<BTreeMap<String, u64>>,
}

impl AppraiseStore {
    /// Calls for months `first..=last`, about `per_month` each.
    pub(crate) fn new(
        seed: u64,
        zone: FixedOffset,
        (first, last): (Month, Month),
        per_month: u64,
    ) -> Self {
        let mut groups = Vec::new();
        for month in first.through(last) {
            groups.extend(generate_month(seed, zone, month, per_month));
        }
        groups.sort_by(|a, b| a.key().cmp(&b.key()));
        Self {
            seed,
            zone,
            positions: RwLock::new(positions(&groups)),
            groups: RwLock::new(groups),
            mutations: Mutex::new(0),
            detail_requests: Mutex::default(),
        }
    }

    /// Page `page` (1-based) of `limit` groups among those with a call matching `filter`;
    /// `count_groups` makes the total count groups instead of calls.
    pub(crate) fn details(
        &self,
        filter: &CallFilter,
        page: u64,
        limit: u64,
        count_groups: bool,
    ) -> DetailsPage {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let matching: Vec<(&Group, Vec<&Call>)> = groups
            .iter()
            .map(|g| (g, g.calls.iter().filter(|c| filter.matches(c)).collect::<Vec<_>>()))
            .filter(|(_, calls)| !calls.is_empty())
            .collect();
        let total = if count_groups {
            matching.len() as u64
        } else {
            matching.iter().map(|(_, calls)| calls.len() as u64).sum()
        };
        let skip =
            usize::try_from(page.saturating_sub(1).saturating_mul(limit)).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let groups = matching
            .iter()
            .skip(skip)
            .take(take)
            .map(|(group, calls)| json!({"calls": calls, "call_group_id": group.id}))
            .collect();
        DetailsPage { total, groups }
    }

    /// The `appraisecall/detail` answer for `call_uuid`, or `None` when no call has it;
    /// counts the answer for [`AppraiseStore::detail_requests`].
    pub(crate) fn detail(&self, call_uuid: &str) -> Option<Value> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let positions = self.positions.read().unwrap_or_else(PoisonError::into_inner);
        let &(g, c) = positions.get(call_uuid)?;
        let call = &groups[g].calls[c];
        let body = detail_body(call);
        let mut counts = self.detail_requests.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(call_uuid.to_string()).or_default() += 1;
        Some(body)
    }

    /// Detail answers served so far, by call_uuid.
    pub(crate) fn detail_requests(&self) -> BTreeMap<String, u64> {
        self.detail_requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Ground truth: every call whose `call_time` falls in one of `months`, as the API
    /// serialises it plus `call_group_id`, by call_uuid.
    pub(crate) fn calls(&self, months: &[Month]) -> BTreeMap<String, Value> {
        self.rows(months, |group, call| {
            let mut row = serde_json::to_value(call).unwrap_or_default();
            row["call_group_id"] = json!(group.id);
            vec![(call.call_uuid.clone(), row)]
        })
    }

    /// Ground truth: the segments of the inspected calls of `months`, each with its call's
    /// `call_uuid` and `call_time`, by `call_uuid/segment_id`.
    pub(crate) fn segments(&self, months: &[Month]) -> BTreeMap<String, Value> {
        self.rows(months, |_, call| {
            let segments = call.inspection.iter().flat_map(|i| &i.segments);
            segments
                .map(|s| {
                    let mut row = serde_json::to_value(s).unwrap_or_default();
                    row["call_uuid"] = json!(call.call_uuid);
                    row["call_time"] = json!(call.call_time);
                    (format!("{}/{}", call.call_uuid, s.segment_id), row)
                })
                .collect()
        })
    }

    /// Ground truth: the emotion scores of the inspected calls of `months`, one row per
    /// channel and type, by `call_uuid/channel/type`.
    pub(crate) fn emotions(&self, months: &[Month]) -> BTreeMap<String, Value> {
        self.rows(months, |_, call| {
            let Some(inspection) = &call.inspection else { return Vec::new() };
            let channels =
                [("left", &inspection.left_emotions), ("right", &inspection.right_emotions)];
            channels
                .into_iter()
                .flat_map(|(channel, emotions)| emotions.iter().map(move |e| (channel, e)))
                .map(|(channel, e)| {
                    let row = json!({"call_uuid": call.call_uuid, "call_time": call.call_time,
                                     "channel": channel, "type": e.kind, "score": e.score});
                    (format!("{}/{channel}/{}", call.call_uuid, e.kind), row)
                })
                .collect()
        })
    }

    /// Rows made by `to_rows` from every call of `months`.
    fn rows(
        &self,
        months: &[Month],
        to_rows: impl Fn(&Group, &Call) -> Vec<(String, Value)>,
    ) -> BTreeMap<String, Value> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = BTreeMap::new();
        for group in groups.iter() {
            for call in &group.calls {
                if self.month_of(call).is_some_and(|m| months.contains(&m)) {
                    out.extend(to_rows(group, call));
                }
            }
        }
        out
    }

    /// The month of the call's `call_time` in the server zone.
    fn month_of(&self, call: &Call) -> Option<Month> {
        Month::containing_ms(call.call_time.saturating_mul(1000), self.zone)
    }

    /// Finishes the inspection of up to `finished` calls of `month` that are still being
    /// inspected (status 0, 1 or 3 becomes 2, with segments and emotions), and changes the
    /// review (and sometimes the complaint) status of up to `reviewed` other inspected calls
    /// of `month`; returns the call_uuids changed. Upload times do not change.
    pub(crate) fn advance(&self, month: Month, finished: usize, reviewed: usize) -> Vec<String> {
        let mut rng = self.mutation_rng(month);
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        let in_month: Vec<(usize, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| {
                group.calls.iter().enumerate().map(move |(c, call)| (g, c, call))
            })
            .filter(|(_, _, call)| self.month_of(call) == Some(month))
            .map(|(g, c, _)| (g, c))
            .collect();
        let pick = |rng: &mut SmallRng, wanted: &dyn Fn(&Call) -> bool, groups: &[Group], n| {
            let mut candidates: Vec<_> =
                in_month.iter().copied().filter(|&(g, c)| wanted(&groups[g].calls[c])).collect();
            candidates.shuffle(rng);
            candidates.truncate(n);
            candidates
        };
        let mut changed = Vec::new();
        for (g, c) in pick(&mut rng, &|call| IN_PROGRESS.contains(&call.status), &groups, finished)
        {
            let call = &mut groups[g].calls[c];
            call.status = INSPECTED;
            call.inspection = Some(inspect(&mut rng, call));
            changed.push(call.call_uuid.clone());
        }
        let inspected =
            |call: &Call| call.status == INSPECTED && !changed.contains(&call.call_uuid);
        for (g, c) in pick(&mut rng, &inspected, &groups, reviewed) {
            let call = &mut groups[g].calls[c];
            call.review_status = match call.review_status {
                -1 => 1,
                1 => 2,
                2 => 0,
                _ => 1,
            };
            if rng.random_bool(0.5) {
                call.complain_status = if call.complain_status == -1 { 1 } else { -1 };
            }
            changed.push(call.call_uuid.clone());
        }
        changed
    }

    /// Adds `count` new single-call groups whose calls took place in `month` and were
    /// uploaded at `upload_time` (epoch seconds; never before the call ended); returns their
    /// call_uuids.
    pub(crate) fn add_late_uploads(
        &self,
        month: Month,
        count: usize,
        upload_time: i64,
    ) -> Vec<String> {
        let mut rng = self.mutation_rng(month);
        let slice = month.slice(self.zone);
        let (begin, end) = (slice.begin_ms.div_euclid(1000), slice.end_ms.div_euclid(1000));
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        for _ in 0..count {
            let call_time = rng.random_range(begin..=end);
            let mut call = generate_call(&mut rng, call_time);
            call.upload_time = upload_time.max(call.call_time + call.duration.ceil() as i64);
            call.create_time = call.upload_time;
            added.push(call.call_uuid.clone());
            groups.push(Group { id: call.call_uuid.clone(), calls: vec![call] });
        }
        groups.sort_by(|a, b| a.key().cmp(&b.key()));
        *self.positions.write().unwrap_or_else(PoisonError::into_inner) = positions(&groups);
        added
    }

    /// A generator for the next mutation of `month`: the same sequence of mutations gives
    /// the same data.
    fn mutation_rng(&self, month: Month) -> SmallRng {
        let mut count = self.mutations.lock().unwrap_or_else(PoisonError::into_inner);
        *count += 1;
        SmallRng::seed_from_u64(mix(&[self.seed, ordinal(month), *count, 0x0a77]))
    }
}

/// Where each call of `groups` is: call_uuid -> (group, call).
fn positions(groups: &[Group]) -> HashMap<String, (usize, usize)> {
    groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            group.calls.iter().enumerate().map(move |(c, call)| (call.call_uuid.clone(), (g, c)))
        })
        .collect()
}

/// The `appraisecall/detail` body of `call`: its fields as documented for 2.5, plus the
/// segments, emotions and violation count of a finished inspection. For calls whose
/// inspection has not finished or failed, the documentation says nothing; the simulator
/// answers HTTP 200 with the call's fields, empty `segments`/`left_emotions`/`right_emotions`
/// and no `rule_severity_violation_count`.
fn detail_body(call: &Call) -> Value {
    let mut body = serde_json::to_value(call).unwrap_or_default();
    if let Value::Object(fields) = &mut body {
        for undocumented in ["inspect_status", "complain_status", "review_status"] {
            fields.remove(undocumented);
        }
        let empty = (Vec::new(), Vec::new(), Vec::new());
        let (segments, left, right) = call.inspection.as_ref().map_or(empty, |i| {
            (i.segments.clone(), i.left_emotions.clone(), i.right_emotions.clone())
        });
        fields.insert("segments".into(), json!(segments));
        fields.insert("left_emotions".into(), json!(left));
        fields.insert("right_emotions".into(), json!(right));
        if let Some(i) = &call.inspection {
            fields.insert(
                "rule_severity_violation_count".into(),
                json!(i.rule_severity_violation_count),
            );
        }
    }
    body
}

/// The groups of `month`, about `per_month` calls in all.
fn generate_month(seed: u64, zone: FixedOffset, month: Month, per_month: u64) -> Vec<Group> {
    let mut rng = SmallRng::seed_from_u64(mix(&[seed, ordinal(month), 0xa77a]));
    let slice = month.slice(zone);
    let (begin, end) = (slice.begin_ms.div_euclid(1000), slice.end_ms.div_euclid(1000));
    // Most groups hold one call; the last group holds two when there is room.
    let mut left = per_month;
    let last_pair = per_month >= 3;
    if last_pair {
        left -= 2;
    }
    let mut sizes = Vec::new();
    while left > 0 {
        let size = match rng.random_range(0..20) {
            0 => 3,
            1..=3 => 2,
            _ => 1,
        }
        .min(left);
        sizes.push(size);
        left -= size;
    }
    if last_pair {
        sizes.push(2);
    }
    let count = sizes.len() as i64;
    let span = (end - begin).max(1);
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let i = i as i64;
            let start = match i {
                0 => begin,
                1 => begin + rng.random_range(60..3000),
                _ if i == count - 1 => end - rng.random_range(60..600),
                _ if i == count - 2 => end - rng.random_range(600..3000),
                _ => begin + i * span / count + rng.random_range(0..(span / count / 2).max(1)),
            };
            let mut calls: Vec<Call> = Vec::new();
            for _ in 0..size {
                let call_time = match calls.last() {
                    None => start,
                    // The second call of the month's last group starts after the month ends.
                    Some(_) if i == count - 1 && last_pair => end + rng.random_range(1..300),
                    Some(previous) => {
                        previous.call_time
                            + previous.duration.ceil() as i64
                            + rng.random_range(20..600)
                    }
                };
                calls.push(generate_call(&mut rng, call_time));
            }
            Group { id: calls[0].call_uuid.clone(), calls }
        })
        .collect()
}

/// A call that took place at `call_time`, with every other field drawn from `rng`.
fn generate_call(rng: &mut SmallRng, call_time: i64) -> Call {
    let call_uuid = uuid(rng);
    let call_type = if rng.random_ratio(1, 7) { 2 } else { 0 };
    let duration = round(rng.random_range(15.0..900.0), 2);
    let (left_channel, right_channel) =
        if rng.random_ratio(1, 10) { ("staff", "customer") } else { ("customer", "staff") };
    let left_speech_ratio = round(rng.random_range(0.05..0.7), 4);
    let right_speech_ratio = round(rng.random_range(0.05..(1.0 - left_speech_ratio)), 4);
    let (staff_id, staff_name) = *STAFF.choose(rng).unwrap_or(&STAFF[0]);
    let status = match rng.random_range(0..100) {
        0..72 => INSPECTED,
        72..86 => *IN_PROGRESS.choose(rng).unwrap_or(&0),
        _ => *FAILED.choose(rng).unwrap_or(&9),
    };
    let mut upload_time = call_time + duration.ceil() as i64 + rng.random_range(5..900);
    if rng.random_ratio(1, 8) {
        upload_time += rng.random_range(86_400..8 * 86_400);
    }
    let file_name = if call_type == 2 {
        format!("在线会话记录_{}.txt", rng.random_range(1000..10_000))
    } else if rng.random_bool(0.5) {
        format!("客户咨询录音_{}_{}.wav", call_time, rng.random_range(1..100))
    } else {
        VOICE_FILES.choose(rng).unwrap_or(&"myvoice").to_string()
    };
    let mut call = Call {
        call_id: call_uuid.clone(),
        call_uuid,
        call_time,
        call_type,
        create_time: upload_time,
        deal: i64::from(rng.random_ratio(1, 3)),
        duration,
        file_name,
        left_channel,
        left_silence_time: round(duration * rng.random_range(0.1..0.6), 2),
        left_speech_ratio,
        left_speed: round(rng.random_range(120.0..360.0), 3),
        right_channel,
        right_silence_time: round(duration * rng.random_range(0.1..0.6), 2),
        right_speech_ratio,
        right_speed: round(rng.random_range(120.0..360.0), 3),
        staff_id: staff_id.to_string(),
        staff_name: staff_name.to_string(),
        status,
        upload_time,
        inspect_status: 0,
        complain_status: if rng.random_ratio(1, 10) { rng.random_range(0..2) } else { -1 },
        review_status: -1,
        inspection: None,
    };
    if status == INSPECTED {
        if rng.random_ratio(1, 8) {
            call.review_status = rng.random_range(0..3);
        }
        call.inspection = Some(inspect(rng, &call));
    }
    call
}

/// A finished inspection of `call`: alternating speakers from second 0.0, Chinese text,
/// emotions for the agent's channel (and now and then for the customer's, as in the
/// documented example).
fn inspect(rng: &mut SmallRng, call: &Call) -> Inspection {
    let count = rng.random_range(3..=10);
    let mut speaker_is_customer = rng.random_ratio(2, 3);
    let mut at = 0.0;
    let mut segments = Vec::with_capacity(count);
    for id in 1..=count {
        let end = round(at + rng.random_range(0.4..12.0), 2);
        let (speaker, lines) =
            if speaker_is_customer { ("customer", CUSTOMER_LINES) } else { ("staff", STAFF_LINES) };
        segments.push(Segment {
            segment_id: id as i64,
            speaker,
            start_time: at,
            end_time: end,
            asr_text: lines.choose(rng).unwrap_or(&"好的"),
            status: INSPECTED,
        });
        at = round(end + rng.random_range(0.2..3.0), 2);
        speaker_is_customer = !speaker_is_customer;
    }
    let emotions = |rng: &mut SmallRng| {
        let mut score = || {
            let value = rng.random_range(0.0..100.0);
            if rng.random_bool(0.5) {
                round(value, 0)
            } else {
                round(value, 1)
            }
        };
        vec![
            Emotion { kind: "negative", score: score() },
            Emotion { kind: "positive", score: score() },
        ]
    };
    let both = rng.random_ratio(1, 3);
    let left_is_staff = call.left_channel == "staff";
    let left_emotions = if left_is_staff || both { emotions(rng) } else { Vec::new() };
    let right_emotions = if !left_is_staff || both { emotions(rng) } else { Vec::new() };
    Inspection {
        segments,
        left_emotions,
        right_emotions,
        rule_severity_violation_count: rng.random_range(0..6),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::calendar::parse_zone;

    fn month(text: &str) -> Month {
        text.parse().unwrap()
    }

    fn store(seed: u64, per_month: u64) -> AppraiseStore {
        let zone = parse_zone("+08:00").unwrap();
        AppraiseStore::new(seed, zone, (month("2025-01"), month("2025-06")), per_month)
    }

    /// The calls carry the documented shapes: statuses of every kind, small groups (mostly
    /// one call), fractional measures, Chinese names, calls in the first and last hour of a
    /// month, uploads at or after the call and some of them days later, in the next month.
    #[test]
    fn calls_have_realistic_values() {
        let s = store(7, 400);
        let apr = month("2025-04");
        let calls = s.calls(&[apr]);
        assert!((390..=410).contains(&calls.len()), "{}", calls.len());
        let statuses: BTreeSet<i64> =
            calls.values().map(|c| c["status"].as_i64().unwrap()).collect();
        for wanted in [0, 1, 2, 3, 9] {
            assert!(statuses.contains(&wanted), "status {wanted} in {statuses:?}");
        }
        assert!(statuses.iter().any(|s| (31..=40).contains(s)));
        let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
        for c in calls.values() {
            *sizes.entry(c["call_group_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
        let singles = sizes.values().filter(|&&n| n == 1).count();
        assert!(singles * 2 > sizes.len() && sizes.values().all(|&n| n <= 3));
        assert!(sizes.values().any(|&n| n == 3));
        let has = |f: &dyn Fn(&Value) -> bool| calls.values().any(f);
        assert!(has(&|c| c["duration"].as_f64().unwrap().fract() != 0.0));
        assert!(has(&|c| c["left_speech_ratio"].as_f64().unwrap() < 1.0));
        assert!(has(&|c| c["staff_name"].as_str().unwrap().chars().any(|ch| ch > '\u{4e00}')));
        assert!(has(&|c| c["file_name"].as_str().unwrap().contains("录音")));
        assert!(has(&|c| c["call_type"] == 2));
        assert!(calls.values().all(|c| c["call_id"] == c["call_uuid"]));
        assert!(calls.values().all(|c| c["upload_time"].as_i64() >= c["call_time"].as_i64()));
        assert!(calls.values().all(|c| c["create_time"].is_i64() && c["inspect_status"].is_i64()));
        let late = |c: &&Value| {
            c["upload_time"].as_i64().unwrap() - c["call_time"].as_i64().unwrap() > 86_400
        };
        assert!(calls.values().filter(late).count() > 10);
        let slice = apr.slice(s.zone);
        let (begin, end) = (slice.begin_ms / 1000, slice.end_ms / 1000);
        let times: Vec<i64> = calls.values().map(|c| c["call_time"].as_i64().unwrap()).collect();
        assert!(times.iter().all(|t| (begin..=end).contains(t)));
        assert_eq!(times.iter().min(), Some(&begin));
        assert!(times.iter().filter(|&&t| t < begin + 3600).count() >= 2);
        assert!(times.iter().filter(|&&t| t > end - 3600).count() >= 1);
        assert!(has(&|c| c["upload_time"].as_i64().unwrap() > end), "uploads in the next month");
        assert!(has(&|c| c["complain_status"] == -1 && c["review_status"] == -1));
    }

    /// Segments and emotions exist for inspected calls only, with ids from 1, fractional
    /// times in order and Chinese text; emotion keys are unique per channel and type.
    #[test]
    fn inspections_belong_to_inspected_calls() {
        let s = store(7, 200);
        let may = [month("2025-05")];
        let calls = s.calls(&may);
        let segments = s.segments(&may);
        let emotions = s.emotions(&may);
        for (key, row) in &segments {
            let uuid = row["call_uuid"].as_str().unwrap();
            assert_eq!(calls[uuid]["status"], 2, "{key}");
            assert_eq!(calls[uuid]["call_time"], row["call_time"]);
            assert!(row["start_time"].as_f64() < row["end_time"].as_f64());
            assert!(["customer", "staff"].contains(&row["speaker"].as_str().unwrap()));
        }
        let inspected = calls.values().filter(|c| c["status"] == 2).count();
        let firsts = segments.values().filter(|r| r["segment_id"] == 1 && r["start_time"] == 0.0);
        assert_eq!(firsts.count(), inspected, "every inspected call starts at segment 1, 0.0 s");
        assert!(segments.values().any(|r| r["asr_text"].as_str().unwrap().contains("请")));
        assert!(segments.values().any(|r| r["end_time"].as_f64().unwrap().fract() != 0.0));
        assert!(emotions
            .values()
            .all(|r| ["positive", "negative"].contains(&r["type"].as_str().unwrap())));
        assert!(emotions.values().any(|r| r["channel"] == "left"));
        assert!(emotions.values().any(|r| r["channel"] == "right"));
    }

    /// Same seed, same data; another seed, other data. Mutations change exactly the calls
    /// they return, in the month asked, and late uploads carry the upload time given.
    #[test]
    fn data_is_deterministic_and_mutations_are_exact() {
        let (a, b, c) = (store(7, 80), store(7, 80), store(8, 80));
        let jun = [month("2025-06")];
        assert_eq!(a.calls(&jun), b.calls(&jun));
        assert_eq!(a.segments(&jun), b.segments(&jun));
        assert_ne!(a.calls(&jun), c.calls(&jun));

        let before = a.calls(&jun);
        let waiting = before
            .values()
            .filter(|c| IN_PROGRESS.contains(&c["status"].as_i64().unwrap()))
            .count();
        assert!(waiting >= 2);
        let changed = a.advance(month("2025-06"), 2, 3);
        assert_eq!(changed, b.advance(month("2025-06"), 2, 3), "mutations are seeded");
        assert_eq!(changed.len(), 5);
        let after = a.calls(&jun);
        for (uuid, call) in &after {
            assert_eq!(call != &before[uuid], changed.contains(uuid), "{uuid}");
            assert_eq!(call["upload_time"], before[uuid]["upload_time"]);
        }
        assert!(changed[..2].iter().all(|u| after[u]["status"] == 2));
        assert!(changed[..2].iter().all(|u| a.segments(&jun).contains_key(&format!("{u}/1"))));
        assert!(changed[2..]
            .iter()
            .all(|u| after[u]["review_status"] != before[u]["review_status"]));

        let added = a.add_late_uploads(month("2025-02"), 3, 1_780_000_000);
        let feb = a.calls(&[month("2025-02")]);
        assert_eq!(feb.len(), b.calls(&[month("2025-02")]).len() + 3);
        assert!(added.iter().all(|u| feb[u]["upload_time"] == 1_780_000_000));
        assert!(added.iter().all(|u| feb[u]["call_group_id"] == json!(u)));
    }
}
