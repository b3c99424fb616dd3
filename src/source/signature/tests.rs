//! The reference's test vectors, tampering, malformed headers and round trips.

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use proptest::prelude::*;

use super::*;

const AK: &str = "testAK0001";
const SK: &str = "testSK-not-a-real-secret-0123456789";

fn sk() -> Secret {
    Secret::new(SK)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
    pairs.iter().map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string()))).collect()
}

const V1_BODY: &str = r#"{"queryParam":{"ccId":1,"vdn":170,"callId":"1631240233-12345"}}"#;

fn v1_request() -> RequestParts<'static> {
    RequestParts {
        method: "POST".into(),
        path: "/rest/cmsapp/v1/openapi/calldata/querycalldetailbyid".into(),
        query: Vec::new(),
        headers: owned(&[
            ("host", "10.0.0.1:28443"),
            ("content-type", "application/json;charset=UTF-8"),
            ("content-length", "63"),
        ]),
        body: V1_BODY.as_bytes(),
    }
}

fn v2_request() -> RequestParts<'static> {
    RequestParts {
        method: "GET".into(),
        path: "/rest/isales/v1/openapi/campaigns/170".into(),
        query: owned(&[("name", "测试 campaign"), ("curPage", "1")]),
        headers: owned(&[("host", "10.0.0.1:28443")]),
        body: b"",
    }
}

/// V1 of the reference: POST, milliseconds, `content-length;content-type;host`, JSON body.
#[test]
fn vector_v1_byte_for_byte() {
    let ts = "2021-08-31T09:38:50.872Z";
    let headers = "content-length;content-type;host";
    let prefix = auth_string_prefix(AK, ts, headers);
    assert_eq!(
        signing_key(&sk(), &prefix).expose(),
        "c8a1f4aa37321317c28a89ee4bfe5a89889ce3de5596c50e2a2d5b7955cde53f"
    );
    let canonical = canonical_request(&v1_request(), headers).unwrap();
    let want = "POST\n\
        /rest/cmsapp/v1/openapi/calldata/querycalldetailbyid\n\
        content-length;content-type;host\n\
        content-length:63\n\
        content-type:application%2Fjson%3Bcharset%3DUTF-8\n\
        host:10.0.0.1%3A28443\n\
        %7B%22queryParam%22%3A%7B%22ccId%22%3A1%2C%22vdn%22%3A170%2C%22callId%22%3A%221631240233-12345%22%7D%7D";
    assert_eq!(canonical, want);
    // The configured order and case of the names do not matter.
    let signer =
        Signer::new(AK, sk(), &["Host", "content-type", "content-length"], Default::default());
    assert_eq!(signer.signed_headers(), headers);
    assert_eq!(
        signer.authorization_at(&v1_request(), ts).unwrap(),
        "auth-v2/testAK0001/2021-08-31T09:38:50.872Z/content-length;content-type;host/\
         9a178e1355e4f8e33297146ecbd267dd3aae94004b492960e557a6988af4455e"
    );
}

/// V2 of the reference: GET, seconds, `host` only, a non-ASCII query, no body.
#[test]
fn vector_v2_byte_for_byte() {
    let ts = "2021-08-31T09:38:50Z";
    assert_eq!(
        signing_key(&sk(), &auth_string_prefix(AK, ts, "host")).expose(),
        "1679ac147b7250cc5fe1a27b2c6a3ebd413200afafc9b5d2f872c69489479b4e"
    );
    assert_eq!(
        canonical_request(&v2_request(), "host").unwrap(),
        "GET\n/rest/isales/v1/openapi/campaigns/170\n\
         curPage=1&name=%E6%B5%8B%E8%AF%95%20campaign\nhost\nhost:10.0.0.1%3A28443\n"
    );
    let signer = Signer::new(AK, sk(), &["host"], TimestampPrecision::Seconds);
    assert_eq!(
        signer.authorization_at(&v2_request(), ts).unwrap(),
        "auth-v2/testAK0001/2021-08-31T09:38:50Z/host/\
         f90d85302ce8b8ef3fdb8409ae2b439afca2e920a70e07da80091c432af62b49"
    );
}

/// Both precisions, from the same instant.
#[test]
fn timestamps_in_both_precisions() {
    let instant = DateTime::parse_from_rfc3339("2021-08-31T09:38:50.872+00:00").unwrap();
    let instant = instant.with_timezone(&Utc);
    assert_eq!(TimestampPrecision::Milliseconds.format(instant), "2021-08-31T09:38:50.872Z");
    assert_eq!(TimestampPrecision::Seconds.format(instant), "2021-08-31T09:38:50Z");
    assert_eq!(TimestampPrecision::default(), TimestampPrecision::Milliseconds);
}

/// N() keeps letters, digits and `- . _ ~`, and writes every other byte as uppercase %XX,
/// one per UTF-8 byte.
#[test]
fn normalize_keeps_unreserved_and_encodes_every_other_byte() {
    let kept = "AZaz09-._~";
    assert_eq!(normalize(kept.as_bytes()), kept);
    for (text, want) in [
        (" ", "%20"),
        ("/", "%2F"),
        (":", "%3A"),
        (";", "%3B"),
        ("=", "%3D"),
        ("{", "%7B"),
        ("\"", "%22"),
        ("+", "%2B"),
        ("*", "%2A"),
        ("%", "%25"),
        ("\n", "%0A"),
        ("测", "%E6%B5%8B"),
        ("é", "%C3%A9"),
    ] {
        assert_eq!(normalize(text.as_bytes()), want, "{text:?}");
    }
    assert_eq!(normalize(&[0x00, 0xff, 0x7f]), "%00%FF%7F");
    // Every byte that is not kept becomes exactly three characters, in uppercase hex.
    for byte in 0..=255u8 {
        let out = normalize(&[byte]);
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            assert_eq!(out.as_bytes(), [byte]);
        } else {
            assert_eq!(out, format!("%{byte:02X}"));
        }
    }
}

/// A signed V1 request as an axum server receives it.
fn received(authorization: &str) -> (Method, Uri, HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "10.0.0.1:28443"),
        ("content-type", "application/json;charset=UTF-8"),
        ("content-length", "63"),
        ("authorization", authorization),
    ] {
        headers.insert(name, HeaderValue::from_str(value).unwrap());
    }
    let uri: Uri = "/rest/cmsapp/v1/openapi/calldata/querycalldetailbyid".parse().unwrap();
    (Method::POST, uri, headers, V1_BODY.as_bytes().to_vec())
}

fn v1_authorization() -> String {
    let signer = Signer::new(AK, sk(), &DEFAULT_SIGNED_HEADERS, Default::default());
    signer.authorization_at(&v1_request(), "2021-08-31T09:38:50.872Z").unwrap()
}

/// The signed request passes; a change to the body, the query, the path, the method or the
/// Host after signing is refused as a mismatch.
#[test]
fn tampered_requests_are_refused() {
    let verifier = Verifier::new(AK, sk());
    let (method, uri, headers, body) = received(&v1_authorization());
    let ok = verifier.verify_http(&method, &uri, &headers, &body).unwrap();
    assert_eq!(ok.timestamp, "2021-08-31T09:38:50.872Z");
    assert_eq!(ok.signed_headers, "content-length;content-type;host");

    let mismatch = Err(SignatureError::Mismatch { ak: AK.into() });
    let mut body2 = body.clone();
    body2[20] = b'2';
    assert_eq!(verifier.verify_http(&method, &uri, &headers, &body2), mismatch, "body");
    let with_query: Uri = format!("{uri}?vdn=170").parse().unwrap();
    assert_eq!(verifier.verify_http(&method, &with_query, &headers, &body), mismatch, "query");
    let other_path: Uri = "/rest/cmsapp/v1/openapi/calldata/querycalldetailbyid2".parse().unwrap();
    assert_eq!(verifier.verify_http(&method, &other_path, &headers, &body), mismatch, "path");
    assert_eq!(verifier.verify_http(&Method::PUT, &uri, &headers, &body), mismatch, "method");
    for host in ["10.0.0.1", "10.0.0.1:443", "proxy.example:28443"] {
        let mut h = headers.clone();
        h.insert("host", HeaderValue::from_static(host));
        assert_eq!(verifier.verify_http(&method, &uri, &h, &body), mismatch, "host {host}");
    }
    let mut no_host = headers.clone();
    no_host.remove("host");
    assert_eq!(
        verifier.verify_http(&method, &uri, &no_host, &body),
        Err(SignatureError::MissingHeader { name: "host".into() })
    );
    // The same request under another SK does not verify either.
    let other = Verifier::new(AK, Secret::new("another-sk"));
    assert_eq!(other.verify_http(&method, &uri, &headers, &body), mismatch, "sk");
}

/// A header of another AK is refused before any signature work, naming both AKs.
#[test]
fn a_wrong_ak_is_refused() {
    let verifier = Verifier::new("ourAK", sk());
    let (method, uri, headers, body) = received(&v1_authorization());
    let err = verifier.verify_http(&method, &uri, &headers, &body).unwrap_err();
    assert_eq!(err, SignatureError::UnknownAk { received: AK.into(), expected: "ourAK".into() });
    assert!(!err.to_string().contains(SK));
}

/// Headers that are not five fields of `auth-v2/...` are refused with a typed error.
#[test]
fn malformed_headers_are_refused_with_typed_errors() {
    let good = v1_authorization();
    let sig = good.rsplit('/').next().unwrap().to_string();
    let field = |field, problem| SignatureError::Field { field, problem };
    let cases = [
        ("Bearer abc".to_string(), SignatureError::FieldCount { found: 1 }),
        (format!("{good}/extra"), SignatureError::FieldCount { found: 6 }),
        (format!("auth-v2/{AK}/ts/host"), SignatureError::FieldCount { found: 4 }),
        (good.replacen("auth-v2", "auth-v1", 1), SignatureError::Version),
        (format!("AUTH-V2/{AK}/ts/host/{sig}"), SignatureError::Version),
        (format!("auth-v2//ts/host/{sig}"), field("AK", "is empty")),
        (format!("auth-v2/{AK}//host/{sig}"), field("timestamp", "is empty")),
        (format!("auth-v2/{AK}/ts//{sig}"), field("SignedHeaders", "has an empty header name")),
        (
            format!("auth-v2/{AK}/ts/host;/{sig}"),
            field("SignedHeaders", "has an empty header name"),
        ),
        (
            format!("auth-v2/{AK}/ts/host/{}", &sig[..63]),
            field("signature", "is not 64 hex digits"),
        ),
        (
            format!("auth-v2/{AK}/ts/host/{}zz", &sig[..62]),
            field("signature", "is not 64 hex digits"),
        ),
    ];
    let verifier = Verifier::new(AK, sk());
    for (header, want) in cases {
        assert_eq!(Authorization::parse(&header), Err(want.clone()), "{header}");
        let (method, uri, headers, body) = received(&header);
        assert_eq!(verifier.verify_http(&method, &uri, &headers, &body), Err(want), "{header}");
    }
    let (method, uri, mut headers, body) = received(&good);
    headers.remove("authorization");
    assert_eq!(
        verifier.verify_http(&method, &uri, &headers, &body),
        Err(SignatureError::MissingAuthorization)
    );
    let text = SignatureError::FieldCount { found: 1 }.to_string();
    assert!(text.contains("auth-v2/AK/TIMESTAMP/SIGNED-HEADERS/SIGNATURE"), "{text}");
}

/// The verifier decodes a form-encoded query (`+` and `%20` both a space) and re-normalises
/// it, so that a query sent by the demo's encoder verifies like one sent with N().
#[test]
fn the_received_query_is_decoded_then_normalised() {
    let signer = Signer::new(AK, sk(), &["host"], TimestampPrecision::Seconds);
    let auth = signer.authorization_at(&v2_request(), "2021-08-31T09:38:50Z").unwrap();
    let verifier = Verifier::new(AK, sk());
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("10.0.0.1:28443"));
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let path = "/rest/isales/v1/openapi/campaigns/170";
    for query in [
        canonical_query(&v2_request().query),
        "name=%E6%B5%8B%E8%AF%95+campaign&curPage=1".to_string(),
    ] {
        let uri: Uri = format!("{path}?{query}").parse().unwrap();
        assert!(verifier.verify_http(&Method::GET, &uri, &headers, b"").is_ok(), "{query}");
    }
    let uri: Uri = format!("{path}?curPage=2&name=%E6%B5%8B%E8%AF%95+campaign").parse().unwrap();
    assert!(verifier.verify_http(&Method::GET, &uri, &headers, b"").is_err());
}

fn request_of<'a>(query: &[(String, String)], body: &'a [u8]) -> RequestParts<'a> {
    RequestParts {
        method: "POST".into(),
        path: "/rest/cmsapp/v1/openapi/x".into(),
        query: query.iter().map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))).collect(),
        headers: owned(&[
            ("host", "127.0.0.1:8443"),
            ("content-type", "application/json; charset=UTF-8"),
        ])
        .into_iter()
        .chain([(Cow::Borrowed("content-length"), Cow::Owned(body.len().to_string()))])
        .collect(),
        body,
    }
}

proptest! {
    /// Sign -> verify round-trips for any body and query, in either precision and signed
    /// header set; changing any one byte of the body makes it fail.
    #[test]
    fn sign_then_verify_round_trips_and_any_body_byte_matters(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        query in proptest::collection::vec((".{0,8}", ".{0,8}"), 0..4),
        flip in any::<proptest::sample::Index>(),
        delta in 1..=255u8,
        seconds in any::<bool>(),
        host_only in any::<bool>(),
    ) {
        let precision =
            if seconds { TimestampPrecision::Seconds } else { TimestampPrecision::Milliseconds };
        let headers: &[&str] = if host_only { &["host"] } else { &DEFAULT_SIGNED_HEADERS };
        let signer = Signer::new(AK, sk(), headers, precision);
        let request = request_of(&query, &body);
        let auth = signer.authorization(&request, Utc::now()).unwrap();
        let verifier = Verifier::new(AK, sk());
        prop_assert!(verifier.verify(&auth, &request).is_ok());
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= delta;
            let err = verifier.verify(&auth, &request_of(&query, &changed)).unwrap_err();
            prop_assert_eq!(err, SignatureError::Mismatch { ak: AK.into() });
        }
    }
}
