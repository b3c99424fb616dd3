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
    /// Answers with HTTP 401 (bad credentials or a bad `authToken`).
    pub unauthorized: u64,
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
    /// An answer with HTTP 401.
    Unauthorized,
    /// An answer with HTTP 400.
    BadRequest,
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
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Marks one request in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Counters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts one `event`.
    pub(crate) fn record(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(self)
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
            unauthorized: get(Event::Unauthorized),
            bad_requests: get(Event::BadRequest),
            faults: FaultCounts {
                errors: get(Event::Error),
                throttles: get(Event::Throttle),
                truncations: get(Event::Truncation),
                delays: get(Event::Delay),
                resets: get(Event::Reset),
            },
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
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
}
