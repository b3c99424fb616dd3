//! IVR flows of each VDN (cec-api.md 2.9, `vdn/queryivrprocessinnoinfo`): a small
//! configuration table with Chinese descriptions, which a test may edit.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use serde_json::{json, Value};

use super::cms_daily::CC_ID;
use super::seeding::mix;

/// Descriptions given to the flows, in order; the first two are the documented example's.
const DESCRIPTIONS: &[&str] = &[
    "异常处理流程",
    "主流程",
    "满意度调查（按1满意，按2不满意）",
    "自助查询：账单/余额",
    "夜间留言 — 非工作时间",
    "VIP客户专线",
];

/// One flow: `id`, `serviceNo`, `realFlag` (1 real, 2 virtual queue), `accessNo` and
/// `description`.
#[derive(Debug, Clone, PartialEq)]
struct IvrFlow {
    id: i64,
    service_no: i64,
    real_flag: i64,
    access_no: String,
    description: String,
}

/// The flows of every VDN of call center [`CC_ID`].
#[derive(Debug)]
pub(crate) struct IvrStore {
    flows: RwLock<BTreeMap<u32, Vec<IvrFlow>>>,
}

impl IvrStore {
    /// Two to six flows for each of `vdns`.
    pub(crate) fn new(seed: u64, vdns: &[u32]) -> Self {
        let flows = vdns
            .iter()
            .enumerate()
            .map(|(n, &vdn)| {
                let count = 2 + mix(&[seed, 0x1f, u64::from(vdn)]) % 5;
                let flows = (0..count as usize)
                    .map(|i| IvrFlow {
                        id: i as i64 + 1,
                        service_no: 1,
                        real_flag: if i % 3 == 2 { 2 } else { 1 },
                        access_no: format!("85{:03}", n * 10 + i),
                        description: DESCRIPTIONS[i % DESCRIPTIONS.len()].to_string(),
                    })
                    .collect();
                (vdn, flows)
            })
            .collect();
        Self { flows: RwLock::new(flows) }
    }

    /// The flows of `vdn` in call center `cc_id`, in id order (none for others).
    pub(crate) fn flows(&self, cc_id: i64, vdn: u32) -> Vec<Value> {
        if cc_id != CC_ID {
            return Vec::new();
        }
        let flows = self.flows.read().unwrap_or_else(PoisonError::into_inner);
        flows.get(&vdn).into_iter().flatten().map(wire).collect()
    }

    /// Ground truth: every flow, keyed `ccId/vdn/id/accessNo`, as served plus `ccId` and
    /// `vdn`.
    pub(crate) fn rows(&self) -> BTreeMap<String, Value> {
        let flows = self.flows.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = BTreeMap::new();
        for (vdn, list) in flows.iter() {
            for flow in list {
                let mut row = wire(flow);
                row["ccId"] = json!(CC_ID);
                row["vdn"] = json!(vdn);
                out.insert(format!("{CC_ID}/{vdn}/{}/{}", flow.id, flow.access_no), row);
            }
        }
        out
    }

    /// Gives flow `id` of `vdn` a new description; false when there is no such flow.
    pub(crate) fn describe(&self, vdn: u32, id: i64, description: &str) -> bool {
        let mut flows = self.flows.write().unwrap_or_else(PoisonError::into_inner);
        let flow = flows.get_mut(&vdn).into_iter().flatten().find(|f| f.id == id);
        flow.map(|f| f.description = description.to_string()).is_some()
    }
}

fn wire(flow: &IvrFlow) -> Value {
    json!({"id": flow.id, "serviceNo": flow.service_no, "realFlag": flow.real_flag,
           "accessNo": flow.access_no, "description": flow.description})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each VDN has its own flows with distinct access codes; another call center has none;
    /// a new description shows in the answers and the truth.
    #[test]
    fn flows_per_vdn_and_edits() {
        let store = IvrStore::new(7, &[170, 171]);
        let (a, b) = (store.flows(1, 170), store.flows(1, 171));
        assert!(a.len() >= 2 && b.len() >= 2);
        assert_eq!(a[1]["description"], "主流程");
        assert!(a.iter().all(|f| b.iter().all(|g| f["accessNo"] != g["accessNo"])));
        assert!(store.flows(2, 170).is_empty() && store.flows(1, 999).is_empty());
        assert_eq!(store.rows().len(), a.len() + b.len());
        assert!(store.describe(171, 1, "新流程"));
        assert!(!store.describe(171, 99, "x"));
        assert_eq!(store.flows(1, 171)[0]["description"], "新流程");
    }
}
