//! The CMS routes over real HTTP on loopback, signed as a client signs them.

use std::collections::BTreeMap;

use chrono::Days;

use super::*;
use crate::calendar::Month;
use crate::sim::cms_daily::UNLISTED;
use crate::sim::test_support::{collect_by_call_id, signed_post, start};
use crate::sim::{CmsEnvelope, SimOptions};

const CALLIN: &str = "/rest/cmsapp/v1/callinday/querymanualindexesbycondition";
const CALLOUT: &str = "/rest/cmsapp/v1/calloutday/querymanualindexesbycondition";
const MISSED: &str = "/rest/cmsapp/v1/callin/queryMissedCalls";
const IVR: &str = "/rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo";

fn month(text: &str) -> Month {
    text.parse().unwrap()
}

fn options() -> SimOptions {
    SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-02"),
        ..SimOptions::default()
    }
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// A one-day query of every number and call type of `vdn`, wrapped or flat.
fn daily_body(
    sim: &Simulator,
    direction: Direction,
    vdn: u32,
    day: NaiveDate,
    wrapped: bool,
) -> Value {
    let numbers = match direction {
        Direction::Inbound => sim.called_numbers(vdn),
        Direction::Outbound => sim.caller_numbers(vdn),
    };
    let fields = json!({direction.numbers_field(): numbers, "beginLogDay": day.to_string(),
                        "endLogDay": day.to_string(), "callTypes": sim.call_types(),
                        "subCcNo": 1, "vdn": vdn, "ccId": 1});
    if wrapped {
        json!({"queryParam": fields})
    } else {
        fields
    }
}

/// One request per VDN and day across the January/February edge, wrapped for callinday and
/// flat for calloutday, answers exactly the truth of those days in both arrays.
#[tokio::test]
async fn one_day_requests_equal_the_truth_across_a_month_edge() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let days = [day("2025-01-30"), day("2025-01-31"), day("2025-02-01")];
    for (direction, path) in [(Direction::Inbound, CALLIN), (Direction::Outbound, CALLOUT)] {
        let url = format!("{}{path}", running.base_url);
        let mut got = BTreeMap::new();
        for vdn in sim.vdns() {
            for d in days {
                let body = daily_body(&sim, direction, vdn, d, direction == Direction::Inbound);
                let (status, reply) = signed_post(&url, &body).await;
                assert_eq!(
                    (status, &reply["resultCode"], &reply["result"]),
                    (200, &json!("0100000"), &json!("0"))
                );
                assert_eq!(reply["resultDesc"], reply["resultDatas"]);
                for row in reply["resultDesc"].as_array().unwrap() {
                    let number = row[direction.number_field()].as_str().unwrap();
                    let key = format!("{vdn}/{d}/{number}/{}", row["callType"]);
                    assert!(got.insert(key, row.clone()).is_none());
                }
            }
        }
        let truth = match direction {
            Direction::Inbound => sim.inbound_daily_by_callee([month("2025-01"), month("2025-02")]),
            Direction::Outbound => {
                sim.outbound_daily_by_caller([month("2025-01"), month("2025-02")])
            }
        };
        let truth: BTreeMap<_, _> = truth
            .into_iter()
            .filter(|(k, _)| days.iter().any(|d| k.contains(&format!("/{d}/"))))
            .collect();
        assert!(truth.len() > 20, "{}", truth.len());
        assert_eq!(got, truth, "{direction:?}");
        assert!(got.values().all(|r| r["reserved_col20"].is_i64() && r[UNLISTED].is_i64()));
    }
    assert_eq!(sim.stats().cms_requests, 2 * 2 * 3);
    running.shutdown().await;
}

/// The documented limits and forms are refused with HTTP 200 and the CMS error code, the
/// message naming the field; `tenantId` without `vdn` selects every VDN; another call
/// center has no data.
#[tokio::test]
async fn daily_rules_are_enforced() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let url = format!("{}{CALLIN}", running.base_url);
    let good = daily_body(&sim, Direction::Inbound, 170, day("2025-01-10"), false);
    let too_many: Vec<String> = (0..1001).map(|i| format!("4008170{i:04}")).collect();
    let cases: [(&str, Value, &str); 8] = [
        ("calleeNos", too_many.into(), "at most 1000"),
        ("calleeNos", json!(["12a"]), "digit strings"),
        ("callTypes", json!([]), "callTypes is empty"),
        ("beginLogDay", json!("2025/01/10"), "yyyy-MM-dd"),
        ("endLogDay", json!("2025-01-09"), "on or after"),
        ("endLogDay", json!("2025-02-10"), "31 days"),
        ("skillIds", json!((0..1001).collect::<Vec<_>>()), "at most 1000"),
        ("vdn", json!(5001), "1 to 5000"),
    ];
    for (field, value, message) in cases {
        let mut body = good.clone();
        body[field] = value;
        let (status, reply) = signed_post(&url, &body).await;
        assert_eq!((status, &reply["resultCode"]), (200, &json!(CMS_BAD_PARAMETER)), "{field}");
        assert_eq!(
            (&reply["result"], &reply["returnCode"]),
            (&json!(CMS_BAD_PARAMETER), &json!(CMS_BAD_PARAMETER))
        );
        assert!(reply["resultDesc"].as_str().unwrap().contains(message), "{field}: {reply}");
    }
    assert_eq!(sim.stats().error_envelopes, 8);

    let mut tenant = good.clone();
    tenant.as_object_mut().unwrap().remove("vdn");
    let (_, reply) = signed_post(&url, &tenant).await;
    assert!(reply["resultDesc"].as_str().unwrap().contains("vdn is empty"), "{reply}");
    let mut numbers = sim.called_numbers(170);
    numbers.extend(sim.called_numbers(171));
    tenant["calleeNos"] = json!(numbers);
    tenant["tenantId"] = json!(sim.options().tenant_id);
    let (_, reply) = signed_post(&url, &tenant).await;
    let vdns: std::collections::BTreeSet<_> = reply["resultDesc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["vdn"].as_u64().unwrap())
        .collect();
    assert_eq!(vdns.into_iter().collect::<Vec<_>>(), [170, 171]);
    let mut other_cc = good.clone();
    other_cc["ccId"] = json!(2);
    let (_, reply) = signed_post(&url, &other_cc).await;
    assert_eq!((&reply["resultCode"], &reply["resultDesc"]), (&json!("0100000"), &json!([])));
    running.shutdown().await;
}

/// A range answers one aggregate per group with the range echoed, and a recomputed day
/// answers new figures that equal the new truth.
#[tokio::test]
async fn ranges_aggregate_and_recomputed_days_change() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let url = format!("{}{CALLIN}", running.base_url);
    let mut range = daily_body(&sim, Direction::Inbound, 170, day("2025-01-10"), true);
    range["queryParam"]["endLogDay"] = json!("2025-01-12");
    let (_, reply) = signed_post(&url, &range).await;
    let rows = reply["resultDesc"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 3 * 2);
    assert!(rows
        .iter()
        .all(|r| r["beginLogDay"] == "2025-01-10" && r["endLogDay"] == "2025-01-12"));

    let d = day("2025-02-01");
    let body = daily_body(&sim, Direction::Inbound, 170, d, true);
    let (_, before) = signed_post(&url, &body).await;
    assert_eq!(sim.cms_recompute_day(d), 1);
    let (_, after) = signed_post(&url, &body).await;
    assert_ne!(before["resultDesc"], after["resultDesc"]);
    let truth = sim.inbound_daily_by_callee([month("2025-02")]);
    for row in after["resultDesc"].as_array().unwrap() {
        let key = format!("170/{d}/{}/{}", row["calleeNo"].as_str().unwrap(), row["callType"]);
        assert_eq!(row, &truth[&key]);
    }
    let next = d.checked_add_days(Days::new(1)).unwrap();
    let next_body = daily_body(&sim, Direction::Inbound, 170, next, true);
    let (_, next_reply) = signed_post(&url, &next_body).await;
    let untouched = next_reply["resultDesc"].as_array().unwrap();
    assert!(untouched.iter().all(|r| r
        == &truth[&format!("170/{next}/{}/{}", r["calleeNo"].as_str().unwrap(), r["callType"])]));
    running.shutdown().await;
}

/// The success envelope can be the current half or the legacy half alone.
#[tokio::test]
async fn envelopes_can_be_current_or_legacy_only() {
    for (envelope, present, absent) in [
        (CmsEnvelope::Current, ["resultCode", "resultDesc"], ["result", "resultDatas"]),
        (CmsEnvelope::Legacy, ["result", "resultDatas"], ["resultCode", "resultDesc"]),
    ] {
        let sim = Arc::new(Simulator::new(SimOptions { cms_envelope: envelope, ..options() }));
        let running = start(&sim).await;
        let body = daily_body(&sim, Direction::Inbound, 170, day("2025-01-05"), true);
        let (_, reply) = signed_post(&format!("{}{CALLIN}", running.base_url), &body).await;
        assert!(present.iter().all(|f| reply.get(f).is_some()), "{envelope:?}: {reply}");
        assert!(absent.iter().all(|f| reply.get(f).is_none()), "{envelope:?}: {reply}");
        let (_, reply) =
            signed_post(&format!("{}{IVR}", running.base_url), &json!({"ccId": 1, "vdn": 170}))
                .await;
        assert!(present.iter().all(|f| reply.get(f).is_some()), "{envelope:?}: {reply}");
        running.shutdown().await;
    }
}

/// Reads every page of missed calls of `vdn` in `begin..=end` with `limit`; returns the
/// totals seen and the calls by callId.
async fn missed_pages(
    url: &str,
    vdn: u32,
    (begin, end): (&str, &str),
    limit: u64,
) -> (Vec<u64>, BTreeMap<String, Value>) {
    let (mut totals, mut calls) = (Vec::new(), BTreeMap::new());
    for page in 0.. {
        let body = json!({"queryParam": {"vdn": vdn, "offset": page * limit, "limit": limit,
                                         "beginTime": begin, "endTime": end}});
        let (status, reply) = signed_post(url, &body).await;
        assert_eq!((status, &reply["returnCode"]), (200, &json!("0")), "{reply}");
        totals.push(reply["total"].as_u64().unwrap());
        if !collect_by_call_id(&reply, "missedCalls", &mut calls) {
            break;
        }
    }
    (totals, calls)
}

/// Pages of 7 over a UTC window that straddles the month edge in the server zone read
/// exactly the truth of the window; limits are enforced; with a short retention an older
/// window answers an empty success.
#[tokio::test]
async fn missed_calls_page_to_the_total() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let url = format!("{}{MISSED}", running.base_url);
    // Six-hour slots hold one call each, from 16:00 UTC (midnight in the server zone).
    let window = ("2025-01-29 22:00:00", "2025-02-01 21:59:59");
    let (totals, got) = missed_pages(&url, 171, window, 7).await;
    let truth: BTreeMap<_, _> = sim
        .missed_calls([month("2025-01"), month("2025-02")])
        .into_iter()
        .filter(|(_, c)| c["vdn"] == 171)
        .filter(|(_, c)| (window.0..=window.1).contains(&c["waitBegin"].as_str().unwrap()))
        .map(|(k, mut c)| {
            c.as_object_mut().unwrap().remove("vdn");
            (k, c)
        })
        .collect();
    assert_eq!(truth.len(), 4 * 3);
    assert!(totals.iter().all(|t| *t == 12) && totals.len() == 3);
    assert_eq!(got, truth);

    for (body, field) in [
        (json!({"vdn": 170, "limit": 5001}), "limit"),
        (json!({"vdn": 170}), "limit is empty"),
        (json!({"vdn": 170, "limit": 10, "offset": -1}), "offset"),
        (json!({"vdn": 0, "limit": 10}), "vdn"),
        (json!({"vdn": 170, "limit": 10, "beginTime": "2025-01-30T00:00:00Z"}), "beginTime"),
        (json!({"vdn": 170, "limit": 10, "beginTime": window.1, "endTime": window.0}), "endTime"),
    ] {
        let (status, reply) = signed_post(&url, &body).await;
        assert_eq!((status, &reply["returnCode"]), (200, &json!(CMS_BAD_PARAMETER)), "{body}");
        assert!(reply["returnDesc"].as_str().unwrap().contains(field), "{reply}");
    }
    running.shutdown().await;

    let sim =
        Arc::new(Simulator::new(SimOptions { missed_calls_retention_days: Some(1), ..options() }));
    let running = start(&sim).await;
    let url = format!("{}{MISSED}", running.base_url);
    let (totals, got) = missed_pages(&url, 170, window, 100).await;
    assert_eq!((totals, got.len()), (vec![0], 0));
    let (totals, _) =
        missed_pages(&url, 170, ("2025-02-27 00:00:00", "2025-02-28 23:59:59"), 100).await;
    assert_eq!(totals[0], 4);
    assert_eq!(sim.missed_calls([month("2025-01"), month("2025-02")]).len(), 2 * 4);
    running.shutdown().await;
}

/// Each (ccId, vdn) answers its own flows with the Chinese descriptions byte for byte, wrapped
/// or flat; an edited description is served; the documented ranges are enforced.
#[tokio::test]
async fn ivr_flows_per_vdn() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let url = format!("{}{IVR}", running.base_url);
    let mut got = BTreeMap::new();
    for vdn in sim.vdns() {
        let (status, reply) =
            signed_post(&url, &json!({"queryParam": {"ccId": 1, "vdn": vdn}})).await;
        assert_eq!((status, &reply["resultCode"]), (200, &json!("0100000")));
        let (_, flat) = signed_post(&url, &json!({"ccId": 1, "vdn": vdn})).await;
        assert_eq!(reply, flat);
        for flow in reply["resultDesc"].as_array().unwrap() {
            let mut row = flow.clone();
            row["ccId"] = json!(1);
            row["vdn"] = json!(vdn);
            got.insert(
                format!("1/{vdn}/{}/{}", flow["id"], flow["accessNo"].as_str().unwrap()),
                row,
            );
        }
    }
    assert_eq!(got, sim.ivr_flows());
    assert!(got.values().any(|f| f["description"] == "异常处理流程"));
    assert!(sim.ivr_flow_describe(170, 2, "主流程（新）"));
    let (_, reply) = signed_post(&url, &json!({"ccId": 1, "vdn": 170})).await;
    assert_eq!(reply["resultDesc"][1]["description"], "主流程（新）");
    for body in
        [json!({"ccId": 0, "vdn": 170}), json!({"ccId": 1, "vdn": 5001}), json!({"vdn": 170})]
    {
        let (_, reply) = signed_post(&url, &body).await;
        assert_eq!(reply["resultCode"], CMS_BAD_PARAMETER, "{body}");
    }
    running.shutdown().await;
}
