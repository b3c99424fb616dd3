//! A business request as it goes on the wire: the fields the engine builds (fixed body,
//! `request_body`, paging and range fields) become a JSON body for `POST`, or the query
//! string of a `GET`, which sends no body.

use serde_json::{Map, Value};

use super::signature::canonical_query;
use crate::catalog::pipeline::RequestMethod;

/// One request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The method.
    pub method: RequestMethod,
    /// The full URL, with the query of a `GET`.
    pub url: String,
    /// The JSON body of a `POST`; empty for a `GET`.
    pub body: Vec<u8>,
}

impl Outgoing {
    /// The request of `fields` to `url`: a `POST` serialises them once as its JSON body; a
    /// `GET` appends them to the URL as [`query_pairs`], written as the canonical C2 query
    /// (so that the query sent is the query signed).
    ///
    /// ```
    /// # use cecsync::catalog::pipeline::RequestMethod;
    /// # use cecsync::source::outgoing::Outgoing;
    /// let fields = serde_json::json!({"name": "测试 a", "rowsPerPage": 100});
    /// let fields = fields.as_object().unwrap();
    /// let get = Outgoing::new(RequestMethod::Get, "http://h/c/170", fields);
    /// assert_eq!(get.url, "http://h/c/170?name=%E6%B5%8B%E8%AF%95%20a&rowsPerPage=100");
    /// assert!(get.body.is_empty());
    /// let post = Outgoing::new(RequestMethod::Post, "http://h/c/170", fields);
    /// assert_eq!(post.url, "http://h/c/170");
    /// assert_eq!(post.body, r#"{"name":"测试 a","rowsPerPage":100}"#.as_bytes());
    /// ```
    pub fn new(method: RequestMethod, url: &str, fields: &Map<String, Value>) -> Self {
        match method {
            RequestMethod::Post => Self {
                method,
                url: url.to_string(),
                body: serde_json::to_vec(fields).expect("a JSON map always serialises"),
            },
            RequestMethod::Get => {
                let pairs = query_pairs(fields);
                let url = if pairs.is_empty() {
                    url.to_string()
                } else {
                    let joint = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{joint}{}", canonical_query(&pairs))
                };
                Self { method, url, body: Vec::new() }
            }
        }
    }
}

/// The query parameters of `fields`, their values as plain text: a string as it is, a
/// number in its digits, a boolean as `true`/`false`; each element of an array is a
/// parameter of the field's name; null leaves the field out; an object is its JSON text.
///
/// ```
/// # use cecsync::source::outgoing::query_pairs;
/// let fields = serde_json::json!({"a": "x y", "b": 2, "c": [1, "z"], "d": null, "e": true});
/// let pairs = query_pairs(fields.as_object().unwrap());
/// let want = [("a", "x y"), ("b", "2"), ("c", "1"), ("c", "z"), ("e", "true")];
/// assert_eq!(pairs, want.map(|(k, v)| (k.to_string(), v.to_string())));
/// ```
pub fn query_pairs(fields: &Map<String, Value>) -> Vec<(String, String)> {
    let mut pairs = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let values = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        pairs.extend(values.into_iter().filter_map(plain_text).map(|v| (name.clone(), v)));
    }
    pairs
}

/// A JSON value as the text of a query parameter; `None` for null.
fn plain_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
