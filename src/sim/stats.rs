//! Counters of what the simulator has served, for tests and for the `sim` command's report.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests that reached an API route (`/oifde/...`, `/apigovernance/...`,
    /// `/apiaccess/...`), faulty or not.
    pub requests: u64,
    /// Query pages answered with HTTP 200 and a complete result.
    pub pages_served: u64,
    /// Tokens issued by `gettoken` and `tokenByAkSk`.
    pub tokens_issued: u64,
    /// Requests that reached the `tokenByAkSk` handler (that route has no injected faults).
    pub fabric_token_requests: u64,
    /// Requests that reached the `appraisecall/details` handler (past the injected faults).
    pub details_requests: u64,
    /// Requests that reached the `appraisecall/detail` handler (past the injected faults).
    pub detail_requests: u64,
    /// Requests that reached the `queryCallDetailRecord` handler (past the injected faults).
    pub cdr_requests: u64,
    /// C2-signed requests that reached a CMS handler (past the signature check).
    pub cms_requests: u64,
    /// C2-signed requests that reached an iSales handler (past the signature check),
    /// throttled ones included.
    pub isales_requests: u64,
    /// iSales requests refused because too many were in flight (HTTP 429).
    pub isales_throttled: u64,
    /// The most iSales requests that were being served at the same time (throttled ones
    /// are not counted).
    pub isales_max_in_flight: u64,
    /// Answers with HTTP 200 whose envelope carries an error code (CMS and iSales
    /// parameter errors).
    pub error_envelopes: u64,
    /// Answers with HTTP 401 (bad credentials or a bad `authToken`).
    pub unauthorized: u64,
    /// GUIDs issued by the CC-Gateway configuration login.
    pub gateway_logins: u64,
    /// CC-Gateway logins refused (wrong account or password, malformed body).
    pub gateway_login_refusals: u64,
    /// Requests that reached a CC-Gateway skills handler (past the injected faults).
    pub gateway_requests: u64,
    /// CC-Gateway requests answered `100-006` (no GUID, or an unknown or expired one).
    pub gateway_guids_refused: u64,
    /// Answers with HTTP 400 (malformed or missing parameters).
    pub bad_requests: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// The most API requests that were in flight at the same time.
    pub max_in_flight: u64,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// HTTP 500, 502 or 503 with an HTML error page.
    pub errors: u64,
    /// HTTP 429 with `Retry-After: 1`.
    pub throttles: u64,
    /// HTTP 200 whose body was cut in half.
    pub truncations: u64,
    /// Answers held back for the configured delay.
    pub delays: u64,
    /// Connections closed without an answer.
    pub resets: u64,
}

/// Something worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A request reached an API route.
    Request,
    /// A query page was answered.
    PageServed,
    /// A token was issued.
    TokenIssued,
    /// A request reached the `tokenByAkSk` handler.
    FabricTokenRequest,
    /// A request reached the `appraisecall/details` handler.
    DetailsRequest,
    /// A request reached the `appraisecall/detail` handler.
    DetailRequest,
    /// A request reached the `queryCallDetailRecord` handler.
    CdrRequest,
    /// A signed request reached a CMS handler.
    CmsRequest,
    /// A signed request reached an iSales handler.
    IsalesRequest,
    /// An iSales request was refused for too many in flight.
    IsalesThrottled,
    /// An HTTP 200 answer carried an error code.
    ErrorEnvelope,
    /// An answer with HTTP 401.
    Unauthorized,
    /// An answer with HTTP 400.
    BadRequest,
    /// The CC-Gateway login issued a GUID.
    GatewayLogin,
    /// The CC-Gateway login was refused.
    GatewayLoginRefused,
    /// A request reached a CC-Gateway skills handler.
    GatewayRequest,
    /// A CC-Gateway GUID was refused.
    GuidRefused,
    /// An injected server error.
    Error,
    /// An injected 429.
    Throttle,
    /// An injected truncated body.
    Truncation,
    /// An injected delay.
    Delay,
    /// An injected connection reset.
    Reset,
}

/// How many kinds of [`Event`] there are (`Reset` is the last).
const EVENT_KINDS: usize = Event::Reset as usize + 1;

/// Live counters, shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    events: [AtomicU64; EVENT_KINDS],
    all: Gauge,
    isales: Gauge,
}

/// Requests in flight now, and the most seen at once.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicU64,
    max: AtomicU64,
}

impl Gauge {
    /// Counts one more in flight unless that would make more than `limit`.
    fn enter(&self, limit: u64) -> Option<InFlight<'_>> {
        let before = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()?;
        self.max.fetch_max(before + 1, Ordering::Relaxed);
        Some(InFlight(self))
    }
}

/// Marks one request in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts one `event`.
    pub(crate) fn record(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request in flight until the returned guard is dropped (always `Some`).
    pub(crate) fn enter(&self) -> Option<InFlight<'_>> {
        self.all.enter(u64::MAX)
    }

    /// Counts an iSales request being served until the returned guard is dropped, unless
    /// `limit` are already in flight (then `None`, and nothing is counted).
    pub(crate) fn enter_isales(&self, limit: u64) -> Option<InFlight<'_>> {
        self.isales.enter(limit)
    }

    /// The counters as they are now.
    pub(crate) fn snapshot(&self) -> SimStats {
        let get = |event: Event| self.events[event as usize].load(Ordering::Relaxed);
        SimStats {
            requests: get(Event::Request),
            pages_served: get(Event::PageServed),
            tokens_issued: get(Event::TokenIssued),
            fabric_token_requests: get(Event::FabricTokenRequest),
            details_requests: get(Event::DetailsRequest),
            detail_requests: get(Event::DetailRequest),
            cdr_requests: get(Event::CdrRequest),
            cms_requests: get(Event::CmsRequest),
            isales_requests: get(Event::IsalesRequest),
            isales_throttled: get(Event::IsalesThrottled),
            isales_max_in_flight: self.isales.max.load(Ordering::Relaxed),
            error_envelopes: get(Event::ErrorEnvelope),
            unauthorized: get(Event::Unauthorized),
            bad_requests: get(Event::BadRequest),
            gateway_logins: get(Event::GatewayLogin),
            gateway_login_refusals: get(Event::GatewayLoginRefused),
            gateway_requests: get(Event::GatewayRequest),
            gateway_guids_refused: get(Event::GuidRefused),
            faults: FaultCounts {
                errors: get(Event::Error),
                throttles: get(Event::Throttle),
                truncations: get(Event::Truncation),
                delays: get(Event::Delay),
                resets: get(Event::Reset),
            },
            max_in_flight: self.all.max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each event lands in its own counter and in no other.
    #[test]
    fn events_are_counted_by_kind() {
        let counters = Counters::default();
        counters.record(Event::Request);
        counters.record(Event::Request);
        counters.record(Event::Reset);
        counters.record(Event::BadRequest);
        let stats = counters.snapshot();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.faults.resets, 1);
        assert_eq!(stats.bad_requests, 1);
        assert_eq!(stats.faults.errors + stats.pages_served + stats.unauthorized, 0);
    }

    /// The iSales gauge admits up to its limit, refuses beyond it without counting, and
    /// frees a slot when a guard is dropped.
    #[test]
    fn the_isales_gauge_stops_at_its_limit() {
        let counters = Counters::default();
        let first = counters.enter_isales(2);
        let second = counters.enter_isales(2);
        assert!(first.is_some() && second.is_some());
        assert!(counters.enter_isales(2).is_none());
        drop(first);
        assert!(counters.enter_isales(2).is_some());
        assert_eq!(counters.snapshot().isales_max_in_flight, 2);
        assert_eq!(counters.snapshot().max_in_flight, 0, "the overall gauge is apart");
    }
}
