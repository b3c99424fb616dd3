//! The simulator's options and its shared state: the ground truth of every dataset, the
//! tokens, the fault generator and the counters.

use std::fmt;
use std::time::Duration;

use chrono::FixedOffset;
use serde_json::Value;

use super::auth::TokenStore;
use super::faults::{FaultInjector, FaultOptions};
use super::rbt::RbtTable;
use super::stats::{Counters, SimStats};
use crate::calendar::Month;

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
        let faults = FaultInjector::new(options.faults.clone(), options.seed);
        Self { options, rbt, tokens, faults, counters: Counters::default() }
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
