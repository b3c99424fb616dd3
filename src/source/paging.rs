//! Paging strategies: turning one request range into every page of its result.
//!
//! `page_number`: ask for the cap, read the total from the first page, then fetch the
//! remaining pages concurrently (bounded) and hand them over in page order. Whether the
//! rows add up to the total is checked by the caller, which sees every record.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::auth::Authenticator;
use super::client::SourceClient;
use super::envelope::{parse_page, Page};
use super::error::SourceError;
use crate::catalog::pipeline::{PagingSpec, PipelineSpec};

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

/// Fetches every page of the request `body` (the fixed and range fields) and calls
/// `on_page` with each, in page order.
pub async fn fetch_pages<E, F>(
    client: &SourceClient,
    auth: &Authenticator,
    spec: &PipelineSpec,
    body: Map<String, Value>,
    concurrency: usize,
    mut on_page: F,
) -> Result<PagingSummary, E>
where
    E: From<SourceError>,
    F: FnMut(u64, Page<'_>) -> Result<(), E>,
{
    let PagingSpec::PageNumber { page_field, size_field, first_page, page_size, total_path } =
        &spec.paging;
    let path = spec.request.path.as_str();
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
    let page = match parse_page(first, &spec.envelope, &spec.records.path, Some(total_path), &url) {
        Ok(page) => page,
        Err(e) => return Err(auth.redact(e).await.into()),
    };
    let total = page.total.unwrap_or(0);
    let first_len = page.records.len() as u64;
    // A server that clamps the page size below what was asked shows it on the first page.
    let per_page = if first_len > 0 && first_len < *page_size && first_len < total {
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
    let mut summary = PagingSummary { pages: 1, records: first_len, total, total_changed: false };
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
        let page =
            match parse_page(body, &spec.envelope, &spec.records.path, Some(total_path), &url) {
                Ok(page) => page,
                Err(e) => return Err(auth.redact(e).await.into()),
            };
        summary.pages += 1;
        summary.records += page.records.len() as u64;
        summary.total_changed |= page.total.is_some_and(|t| t != total);
        // A page short of rows before the last means the data moved or the total is wrong:
        // stop here, the caller's reconciliation fails the attempt.
        let short = n < last_page && (page.records.len() as u64) < per_page;
        on_page(n, page)?;
        if short {
            summary.total_changed = true;
            break;
        }
    }
    Ok(summary)
}
