//! The CC-Gateway side of the simulator (cec-api.md 1.3 C4/C5, 2.10): the agents of the
//! tenant's VDN with their skills, and the session GUIDs issued by the configuration login.
//!
//! Agents are work numbers 101, 102, ...; each has up to four skills drawn from the seed
//! out of [`SKILLS`], except the last agent, which has none. A test may replace an agent's
//! skills ([`GatewayStore::set_skills`]).
//!
//! GUIDs live [`SimOptions::gateway_guid_ttl`](super::SimOptions) from their login, and
//! [`GatewayStore::expire_guids`] ends them all at once. With a rotation interval (C4's
//! dynamic mode, `GUIDINTERVAL`), a GUID older than the interval is answered with a new one
//! in `Set-GUID`; the old one stays valid until its own expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::seeding::{mix, uuid};

/// The skills of the VDN: id, name and media type (a documented code of 2.10).
const SKILLS: &[(i64, &str, i64)] = &[
    (1, "defaultMediaSkill", 53),
    (2, "普通话语音", 5),
    (3, "英语语音", 5),
    (4, "在线客服", 51),
    (5, "预测外呼", 15),
    (6, "预览外呼", 16),
    (7, "点击通话", 2),
    (8, "文字交谈", 1),
    (9, "回呼请求", 4),
    (10, "消息呼叫", 17),
    (11, "视频客服", 19),
];

/// The first work number.
const FIRST_WORK_NO: u32 = 101;

/// One skill of an agent, as `agentskills` serialises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skill {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) mediatype: i64,
}

impl Skill {
    /// The skill as the API answers it.
    pub(crate) fn to_json(&self) -> Value {
        json!({"name": self.name, "id": self.id, "mediatype": self.mediatype})
    }
}

/// An issued GUID: when it was issued and when it dies.
#[derive(Debug, Clone, Copy)]
struct Session {
    issued: Instant,
    expires: Instant,
}

/// What the check of a request's GUID found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GuidCheck {
    /// A live GUID.
    Valid,
    /// A live GUID older than the rotation interval: answered with this new one.
    Rotated(String),
    /// No GUID, or an unknown or expired one.
    Refused,
}

/// The agents, their skills and the sessions.
#[derive(Debug)]
pub(crate) struct GatewayStore {
    account: u64,
    password: String,
    ttl: Duration,
    rotation: Option<Duration>,
    agents: RwLock<BTreeMap<u32, Vec<Skill>>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// How the store is set up.
pub(crate) struct GatewaySetup<'a> {
    pub(crate) seed: u64,
    pub(crate) agents: u32,
    pub(crate) account: u64,
    pub(crate) password: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) rotation: Option<Duration>,
}

impl GatewayStore {
    /// The agents of `setup` with their seeded skills, and no session yet.
    pub(crate) fn new(setup: GatewaySetup<'_>) -> Self {
        let agents = (0..setup.agents)
            .map(|n| {
                let work_no = FIRST_WORK_NO + n;
                let last = n + 1 == setup.agents;
                let count =
                    if last { 0 } else { 1 + mix(&[setup.seed, 0x6a, u64::from(work_no)]) % 4 };
                let start = mix(&[setup.seed, 0x6b, u64::from(work_no)]) as usize % SKILLS.len();
                let skills = (0..count as usize)
                    .map(|i| {
                        let (id, name, mediatype) = SKILLS[(start + i * 3) % SKILLS.len()];
                        Skill { id, name: name.to_string(), mediatype }
                    })
                    .collect();
                (work_no, skills)
            })
            .collect();
        Self {
            account: setup.account,
            password: setup.password.to_string(),
            ttl: setup.ttl,
            rotation: setup.rotation,
            agents: RwLock::new(agents),
            sessions: Mutex::default(),
        }
    }

    /// A new GUID for the configured account and password; `None` for others.
    pub(crate) fn log_in(&self, account: u64, password: &str) -> Option<String> {
        (account == self.account && password == self.password).then(|| self.issue())
    }

    fn issue(&self) -> String {
        let guid = format!("{}.AgentGateway1", uuid(&mut rand::rng()));
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(guid.clone(), Session { issued: now, expires: now + self.ttl });
        guid
    }

    /// Checks a request's GUID.
    pub(crate) fn check(&self, guid: Option<&str>) -> GuidCheck {
        let Some(guid) = guid else { return GuidCheck::Refused };
        let now = Instant::now();
        let session =
            self.sessions.lock().unwrap_or_else(PoisonError::into_inner).get(guid).copied();
        match session {
            Some(s) if s.expires > now => match self.rotation {
                Some(interval) if now.duration_since(s.issued) >= interval => {
                    GuidCheck::Rotated(self.issue())
                }
                _ => GuidCheck::Valid,
            },
            _ => GuidCheck::Refused,
        }
    }

    /// Ends every session now.
    pub(crate) fn expire_guids(&self) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The work numbers of the agents.
    pub(crate) fn agents(&self) -> Vec<u32> {
        self.agents.read().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }

    /// The skills of agent `work_no`; `None` when there is no such agent.
    pub(crate) fn skills(&self, work_no: u32) -> Option<Vec<Skill>> {
        self.agents.read().unwrap_or_else(PoisonError::into_inner).get(&work_no).cloned()
    }

    /// Replaces the skills of agent `work_no`; false when there is no such agent.
    pub(crate) fn set_skills(&self, work_no: u32, skills: Vec<Skill>) -> bool {
        let mut agents = self.agents.write().unwrap_or_else(PoisonError::into_inner);
        agents.get_mut(&work_no).map(|s| *s = skills).is_some()
    }

    /// Every skill of every agent, keyed `workno/skillId`: the skill as served plus the
    /// agent's `workno`.
    pub(crate) fn rows(&self) -> BTreeMap<String, Value> {
        let agents = self.agents.read().unwrap_or_else(PoisonError::into_inner);
        let mut rows = BTreeMap::new();
        for (work_no, skills) in agents.iter() {
            for skill in skills {
                let mut row = skill.to_json();
                row["workno"] = json!(work_no);
                rows.insert(format!("{work_no}/{}", skill.id), row);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(seed: u64, rotation: Option<Duration>) -> GatewayStore {
        GatewayStore::new(GatewaySetup {
            seed,
            agents: 6,
            account: 100001,
            password: "pw",
            ttl: Duration::from_secs(60),
            rotation,
        })
    }

    /// Agents have distinct skills with documented media types, the last one none; the
    /// same seed gives the same skills.
    #[test]
    fn skills_are_seeded() {
        let a = store(7, None);
        assert_eq!(a.agents(), [101, 102, 103, 104, 105, 106]);
        assert_eq!(a.skills(106), Some(vec![]));
        assert_eq!(a.skills(99), None);
        for work_no in 101..106 {
            let skills = a.skills(work_no).unwrap();
            assert!((1..=4).contains(&skills.len()), "{work_no}: {skills:?}");
            let mut ids: Vec<_> = skills.iter().map(|s| s.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), skills.len());
            for s in &skills {
                assert!([1, 2, 4, 5, 15, 16, 17, 19, 51, 53].contains(&s.mediatype), "{s:?}");
            }
        }
        assert_eq!(a.rows(), store(7, None).rows());
        assert!(a.rows().values().any(|r| r["name"].as_str().is_some_and(|n| !n.is_ascii())));
    }

    /// Only the configured account and password log in; GUIDs are refused once expired,
    /// and a GUID older than the rotation interval is answered with a new one.
    #[test]
    fn guids_live_until_expired_and_rotate() {
        let s = store(7, None);
        assert_eq!(s.log_in(100001, "nope"), None);
        assert_eq!(s.log_in(100002, "pw"), None);
        let guid = s.log_in(100001, "pw").unwrap();
        assert!(guid.ends_with(".AgentGateway1") && guid.len() == 36 + 14, "{guid}");
        assert_eq!(s.check(Some(&guid)), GuidCheck::Valid);
        assert_eq!(s.check(Some("made-up")), GuidCheck::Refused);
        assert_eq!(s.check(None), GuidCheck::Refused);
        s.expire_guids();
        assert_eq!(s.check(Some(&guid)), GuidCheck::Refused);

        let s = store(7, Some(Duration::ZERO));
        let guid = s.log_in(100001, "pw").unwrap();
        let GuidCheck::Rotated(new) = s.check(Some(&guid)) else { panic!("not rotated") };
        assert_ne!(new, guid);
        assert!(matches!(s.check(Some(&guid)), GuidCheck::Rotated(_)), "the old one lives on");
    }
}
