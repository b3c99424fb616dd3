//! The interfaces signed with C2 (cec-api.md 1.3): the signature check in front of the CMS
//! and iSales routes, and the envelopes their errors are written in.
//!
//! Readings of what the documentation leaves open:
//! - A missing or wrong signature is HTTP 401 (documented) with the family's error
//!   envelope whose code is "401" (the body is not documented). The message names what is
//!   wrong and the AK, never the SK.
//! - The timestamp is not judged: the allowed clock skew is not documented.
//! - Parameter errors are HTTP 200 with an error code in the envelope: CMS
//!   [`CMS_BAD_PARAMETER`] (the CMS error-code table was not retrieved, so the code is the
//!   simulator's choice), iSales `0200001` or `02000001` (table 4.4).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::simulator::Simulator;
use super::stats::Event;

/// The largest request body read (larger ones are refused with 413): axum's default limit
/// of the handlers' `Bytes`, so a body the check lets through is one a handler can read.
const MAX_BODY: usize = 2 << 20;
/// The path prefix of the iSales interfaces; every other signed route is CMS.
const ISALES_PREFIX: &str = "/rest/isales/";
/// The CMS code of a refused parameter (not documented: chosen by the simulator).
pub(crate) const CMS_BAD_PARAMETER: &str = "0100001";

/// The interface families signed with C2, each with its own envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// CC-CMS: `result`/`resultCode`/`resultDesc`, or `returnCode`/`returnDesc`.
    Cms,
    /// CC-iSales: `resultCode`/`returnCode` and `resultDesc`/`returnDesc`.
    Isales,
}

impl Family {
    fn of_path(path: &str) -> Self {
        if path.starts_with(ISALES_PREFIX) {
            Self::Isales
        } else {
            Self::Cms
        }
    }

    /// The error body with `code` and `message`. A CMS error sets every code field of the
    /// family (`result`, `resultCode`, `returnCode`) to `code`, so that whichever field an
    /// interface's readers look at, they see a failure.
    pub(crate) fn error_body(self, code: &str, message: &str) -> Value {
        match self {
            Self::Cms => json!({"result": code, "resultCode": code, "returnCode": code,
                                "resultDesc": message, "returnDesc": message}),
            Self::Isales => json!({"resultCode": code, "returnCode": code,
                                   "resultDesc": message, "returnDesc": message}),
        }
    }
}

/// An HTTP 200 answer that carries the error `code`, counted.
pub(crate) fn error_envelope(
    sim: &Simulator,
    family: Family,
    code: &str,
    message: &str,
) -> Response {
    sim.counters().record(Event::ErrorEnvelope);
    Json(family.error_body(code, message)).into_response()
}

/// Middleware of the signed routes: reads the body, checks the `Authorization` header
/// against the simulator's AK/SK ([`Verifier::verify_http`](crate::source::signature::Verifier::verify_http))
/// and hands the request on unchanged, or answers 401 in the family's envelope.
pub(crate) async fn verify(
    State(sim): State<Arc<Simulator>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let family = Family::of_path(parts.uri.path());
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        let body = family.error_body("413", "the request body is too large");
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    };
    match sim.c2_verifier().verify_http(&parts.method, &parts.uri, &parts.headers, &bytes) {
        Ok(_) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(e) => {
            sim.counters().record(Event::Unauthorized);
            let message = format!("authentication failed: {e}");
            (StatusCode::UNAUTHORIZED, Json(family.error_body("401", &message))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderValue, AUTHORIZATION, HOST};
    use reqwest::Method;

    use super::*;
    use crate::sim::test_support::{signed, start, C2_AK};
    use crate::sim::SimOptions;

    const IVR: &str = "/rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo";
    const CAMPAIGNS: &str = "/rest/isales/v1/openapi/campaigns/170";

    /// A correctly signed request passes; a wrong SK, another AK, no C2 header, or a body,
    /// query or Host changed after signing is HTTP 401 in the family's envelope, whose
    /// message names the AK and never the SK.
    #[tokio::test]
    async fn only_requests_signed_with_the_simulators_keys_pass() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let url = format!("{}{IVR}", running.base_url);
        let body = json!({"ccId": 1, "vdn": 170});
        let sk = sim.options().c2_sk.clone();
        let post = |keys: (&'static str, String), tamper: fn(&mut reqwest::Request)| {
            let (url, body) = (url.clone(), body.clone());
            async move { signed(Method::POST, &url, (keys.0, &keys.1), &[], Some(&body), tamper).await }
        };
        let ok = post((C2_AK, sk.clone()), |_| {}).await;
        assert_eq!((ok.0, &ok.1["resultCode"]), (200, &json!("0100000")), "{}", ok.1);

        let wrong_sk = post((C2_AK, "not-the-sk".into()), |_| {}).await;
        assert_eq!((wrong_sk.0, &wrong_sk.1["resultCode"]), (401, &json!("401")));
        let text = wrong_sk.1.to_string();
        assert!(text.contains(C2_AK) && !text.contains(&sk), "{text}");
        assert_eq!(post(("someone-else", sk.clone()), |_| {}).await.0, 401);
        let unsigned = post((C2_AK, sk.clone()), |r| {
            r.headers_mut().insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        });
        assert_eq!(unsigned.await.0, 401);
        let changed_body = post((C2_AK, sk.clone()), |r| {
            *r.body_mut() =
                Some(serde_json::to_vec(&json!({"ccId": 1, "vdn": 171})).unwrap().into());
        });
        assert_eq!(changed_body.await.0, 401);
        let changed_host = post((C2_AK, sk.clone()), |r| {
            r.headers_mut().insert(HOST, HeaderValue::from_static("localhost:1"));
        });
        assert_eq!(changed_host.await.0, 401);

        let url = format!("{}{CAMPAIGNS}", running.base_url);
        let query = [("curPage", "1"), ("rowsPerPage", "10")];
        let ok = signed(Method::GET, &url, (C2_AK, &sk), &query, None, |_| {}).await;
        assert_eq!((ok.0, &ok.1["returnCode"]), (200, &json!("0200000")), "{}", ok.1);
        let wrong = signed(Method::GET, &url, (C2_AK, "x"), &query, None, |_| {}).await;
        assert_eq!((wrong.0, &wrong.1["returnCode"]), (401, &json!("401")));
        let changed_query = signed(Method::GET, &url, (C2_AK, &sk), &query, None, |r| {
            r.url_mut().query_pairs_mut().append_pair("status", "2");
        });
        assert_eq!(changed_query.await.0, 401);
        assert_eq!(sim.stats().unauthorized, 7);
        running.shutdown().await;
    }
}
