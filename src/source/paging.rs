//! Paging strategies: turning one request range into every page of its result.
//!
//! `page_number`: ask for the cap, read the total from the first page, then fetch the
//! remaining pages concurrently (bounded) and hand them over in page order. Whether the
//! rows add up to the total is checked by the caller, which sees every record.
//!
//! A page's length is counted in the unit the API pages by: records, or groups for nested
//! records. When the first page is shorter than asked while the total says more exist, the
//! server's page length is taken as its cap (logged). With `total_counts = "either"` the
//! total may count records rather than groups, so the page count it gives is an upper
//! bound: the first empty page ends the result, and a short page is not an alarm.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use tracing::info;

use super::auth::Authenticator;
use super::client::SourceClient;
use super::envelope::{parse_page, Page};
use super::error::SourceError;
use crate::catalog::pipeline::{PagingSpec, PipelineSpec, TotalCounts};

/// The most pages one slice may take (100 million rows at 1000 a page): a larger total
/// is an error of the API, not a month of data.
pub const MAX_PAGES: u64 = 100_000;

/// A page request running as a task of its own; dropping it (a failed slice) cancels it.
struct PageTask(tokio::task::JoinHandle<Result<bytes::Bytes, SourceError>>);

impl Drop for PageTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::future::Future for PageTask {
    type Output = Result<bytes::Bytes, SourceError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(e) => Err(SourceError::Transport {
                url: String::new(),
                reason: "the request task ended".into(),
                detail: e.to_string(),
                attempts: 0,
            }),
        })
    }
}

/// What a paged fetch saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagingSummary {
    /// Pages fetched.
    pub pages: u64,
    /// Records received, duplicates included.
    pub records: u64,
    /// The total the first page reported.
    pub total: u64,
    /// Whether a later page reported a different total, or a page before the last came back
    /// short (the data moved under us).
    pub total_changed: bool,
}

/// Number of pages needed for `total` rows at `per_page` rows a page.
///
/// ```
/// # use cecsync::source::paging::pages_needed;
/// assert_eq!(pages_needed(0, 1000), 1);
/// assert_eq!(pages_needed(1000, 1000), 1);
/// assert_eq!(pages_needed(25001, 1000), 26);
/// ```
pub fn pages_needed(total: u64, per_page: u64) -> u64 {
    total.div_ceil(per_page.max(1)).max(1)
}

/// Fetches every page of the request `body` (the fixed and range fields) to `path` (the
/// pipeline's resolved request path) and calls `on_page` with each, in page order.
pub async fn fetch_pages<E, F>(
    client: &SourceClient,
    auth: &Authenticator,
    spec: &PipelineSpec,
    path: &str,
    body: Map<String, Value>,
    concurrency: usize,
    mut on_page: F,
) -> Result<PagingSummary, E>
where
    E: From<SourceError>,
    F: FnMut(u64, Page<'_>) -> Result<(), E>,
{
    let PagingSpec::PageNumber {
        page_field,
        size_field,
        first_page,
        page_size,
        total_path,
        total_counts,
    } = &spec.paging;
    let either = *total_counts == TotalCounts::Either;
    let url = client.url(path);
    // Each page is fetched by a task of its own, so that pages keep arriving while the
    // caller processes the ones before.
    let request = |page: u64| {
        let mut b = body.clone();
        b.insert(page_field.clone(), Value::from(page));
        b.insert(size_field.clone(), Value::from(*page_size));
        let (client, auth, path) = (client.clone(), auth.clone(), path.to_string());
        PageTask(tokio::spawn(async move { auth.post(&client, &path, b).await }))
    };
    fn text<'b>(bytes: &'b [u8], url: &str) -> Result<&'b str, SourceError> {
        std::str::from_utf8(bytes).map_err(|_| SourceError::Shape {
            url: url.to_string(),
            path: "$".into(),
            problem: "the body is not UTF-8".into(),
        })
    }

    let first_bytes = request(*first_page).await?;
    let first = text(&first_bytes, &url)?;
    fn parse<'b>(
        body: &'b str,
        spec: &PipelineSpec,
        total_path: &str,
        url: &str,
    ) -> Result<Page<'b>, SourceError> {
        let records = &spec.records;
        parse_page(
            body,
            &spec.envelope,
            &records.path,
            &records.parent_fields,
            Some(total_path),
            url,
        )
    }
    let page = match parse(first, spec, total_path, &url) {
        Ok(page) => page,
        Err(e) => return Err(auth.redact(e).await.into()),
    };
    let total = page.total.unwrap_or(0);
    let first_len = page.length as u64;
    // A server that clamps the page size below what was asked shows it on the first page.
    let per_page = if first_len > 0 && first_len < *page_size && first_len < total {
        info!(
            url = %url, asked = *page_size, served = first_len, total,
            "The first page is shorter than asked while more exist: paging with the server's \
             page length as its cap."
        );
        first_len
    } else {
        *page_size
    };
    let pages = pages_needed(total, per_page);
    if pages > MAX_PAGES {
        return Err(SourceError::Shape {
            url,
            path: total_path.clone(),
            problem: format!(
                "total {total} at {per_page} rows a page needs {pages} pages, more than the \
                 {MAX_PAGES} a slice may take"
            ),
        }
        .into());
    }
    let mut summary =
        PagingSummary { pages: 1, records: page.records.len() as u64, total, total_changed: false };
    on_page(*first_page, page)?;
    drop(first_bytes);

    let last_page = first_page + pages - 1;
    let mut bodies = stream::iter((first_page + 1)..=last_page)
        .map(|n| {
            let task = request(n);
            async move { task.await.map(|b| (n, b)) }
        })
        .buffered(concurrency.max(1))
        .map_err(E::from);
    while let Some((n, bytes)) = bodies.try_next().await? {
        let body = text(&bytes, &url)?;
        let page = match parse(body, spec, total_path, &url) {
            Ok(page) => page,
            Err(e) => return Err(auth.redact(e).await.into()),
        };
        summary.pages += 1;
        summary.records += page.records.len() as u64;
        summary.total_changed |= page.total.is_some_and(|t| t != total);
        if either && page.length == 0 {
            // The total counted records, not groups: the groups have run out.
            break;
        }
        // A page short of rows before the last means the data moved or the total is wrong:
        // stop here, the caller's reconciliation fails the attempt.
        let short = !either && n < last_page && (page.length as u64) < per_page;
        on_page(n, page)?;
        if short {
            summary.total_changed = true;
            break;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::catalog::pipeline::AuthSpec;
    use crate::config::SourceAuth;
    use crate::secret::Secret;
    use crate::source::scripted::{client, Answer, Received, ScriptedServer};

    /// A pipeline of nested calls in groups, asking 3 groups a page.
    fn spec() -> PipelineSpec {
        PipelineSpec::parse(
            "d.toml",
            r#"
            name = "d"
            description = "x"
            source = "s"
            [request]
            path = "/{svc}/details"
            path_params = { svc = "CCSQM" }
            [auth]
            style = "body_token"
            field = "t"
            [paging]
            style = "page_number"
            page_field = "page"
            size_field = "limit"
            page_size = 3
            total_path = "paging.total"
            total_counts = "either"
            [slicing]
            style = "calendar_month"
            begin_field = "a"
            end_field = "b"
            time_format = "epoch_s"
            [records]
            path = "data[].calls[]"
            parent_fields = ["g"]
            primary_key = ["id"]
            event_time = "t"
        "#,
        )
        .unwrap()
    }

    /// Five groups of 1 or 2 calls (7 calls), served 2 groups a page whatever is asked;
    /// `paging.total` counts calls or groups as `total_counts_calls` says.
    fn server(total_counts_calls: bool) -> crate::source::scripted::Script {
        Arc::new(move |r: &Received| {
            let page = r.body["page"].as_u64().unwrap_or(0);
            let groups: Vec<String> = (1..=5u64)
                .filter(|g| g.div_ceil(2) == page)
                .map(|g| {
                    let calls: Vec<String> = (0..(1 + g % 2))
                        .map(|c| format!(r#"{{"id":"c{g}-{c}","t":1700000000}}"#))
                        .collect();
                    format!(r#"{{"g":"g{g}","calls":[{}]}}"#, calls.join(","))
                })
                .collect();
            let total = if total_counts_calls { 8 } else { 5 };
            let body = format!(r#"{{"data":[{}],"paging":{{"total":{total}}}}}"#, groups.join(","));
            Answer::status(200, &body)
        })
    }

    async fn fetch(total_counts_calls: bool) -> (PagingSummary, Vec<String>, Vec<Received>) {
        let server = ScriptedServer::start(server(total_counts_calls)).await;
        let client = client(&server.base_url, Duration::from_secs(5), 1);
        let spec = spec();
        let auth = Authenticator::new(
            &AuthSpec::BodyToken { field: "t".into() },
            "s",
            &SourceAuth::StaticToken(Secret::new("tok")),
        )
        .unwrap();
        let mut records = Vec::new();
        let summary = fetch_pages::<SourceError, _>(
            &client,
            &auth,
            &spec,
            "/CCISQM/details",
            Map::new(),
            2,
            |_, page| {
                records.extend(page.records.iter().map(|r| r.get().to_string()));
                Ok(())
            },
        )
        .await
        .unwrap();
        (summary, records, server.received())
    }

    /// The server's page length (2 groups) below the asked 3 is followed; a total that
    /// counts calls plans too many pages, and the first empty page ends the result; a total
    /// that counts groups plans exactly the pages there are. Every call arrives once, with
    /// its group's id, at the resolved path.
    #[tokio::test]
    async fn nested_pages_follow_the_server_cap_and_end_at_an_empty_page() {
        for counts_calls in [true, false] {
            let (summary, records, received) = fetch(counts_calls).await;
            assert_eq!(records.len(), 8, "{records:?}");
            assert!(
                records[0].contains(r#""g":"g1""#) && records[0].contains("c1-0"),
                "{records:?}"
            );
            assert!(!summary.total_changed);
            assert!(received.iter().all(|r| r.path == "/CCISQM/details" && r.body["limit"] == 3));
            let mut pages: Vec<u64> =
                received.iter().map(|r| r.body["page"].as_u64().unwrap()).collect();
            pages.sort();
            if counts_calls {
                // 8 "rows" at 2 a page plan 4 pages; page 4 is empty and ends the result.
                assert_eq!((summary.total, summary.pages), (8, 4));
                assert_eq!(pages, [1, 2, 3, 4]);
            } else {
                assert_eq!((summary.total, summary.pages), (5, 3));
                assert_eq!(pages, [1, 2, 3]);
            }
        }
    }
}
