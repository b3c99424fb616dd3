//! Pipeline specs (`pipelines/*.toml`): how one dataset is extracted — the endpoint, the
//! auth style, the paging style, the slicing, where the records are, and their keys.
//!
//! Each strategy is a tagged table (`style = "..."`) so that a second dataset with the
//! same auth and paging needs only a pipeline file and a schema file.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::calendar::parse_zone;
use crate::source::signature::{TimestampPrecision, DEFAULT_SIGNED_HEADERS, SIGNABLE_HEADERS};

/// Everything the engine needs to know to extract one dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Dataset name: the lake folder and the schema file's name.
    pub name: String,
    /// One line on what the dataset holds.
    pub description: String,
    /// Which `[sources.NAME]` table of the configuration serves this pipeline.
    pub source: String,
    /// The HTTP request.
    pub request: RequestSpec,
    /// How the request is authenticated.
    pub auth: AuthSpec,
    /// How results are paged.
    pub paging: PagingSpec,
    /// How a time range becomes request parameters.
    pub slicing: SlicingSpec,
    /// Where the records are and what identifies them.
    pub records: RecordsSpec,
    /// How an API error is recognised in a response body.
    #[serde(default)]
    pub envelope: EnvelopeSpec,
    /// Defaults of the incremental sync that the dataset's nature sets.
    #[serde(default)]
    pub sync: SyncSpec,
}

/// Defaults of the incremental sync of a dataset, which the configuration may override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// How far before the last sync each sync reads again, in hours, when the configuration
    /// sets no `lookback_hours` (72 for daily settlement tables that the platform
    /// recomputes for three days). None: the configuration's default, 48.
    #[serde(default)]
    pub lookback_hours: Option<u64>,
    /// Whether every write merges by key into the month partitions, a whole month's
    /// included, instead of replacing them: the dataset is also written by push ingestion
    /// (see [`crate::push`]), whose rows a pull need not return.
    #[serde(default)]
    pub always_merge: bool,
}

/// The HTTP request of a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// HTTP method: `POST` (default) sends the fields as a JSON body; `GET` sends no body
    /// and the same fields as the query string.
    #[serde(default)]
    pub method: RequestMethod,
    /// Path appended to the source's base URL; `{name}` placeholders are filled by
    /// [`RequestSpec::resolve_path`].
    pub path: String,
    /// Default values of the path's `{name}` placeholders; a source's `path_params` wins.
    #[serde(default)]
    pub path_params: BTreeMap<String, String>,
    /// Fixed body fields. String values may use `{tenant_id}`.
    #[serde(default)]
    pub body: BTreeMap<String, toml::Value>,
    /// A list field of the body sent in requests of at most `size` values each (the called
    /// numbers of a statistics query), each request paged and reconciled on its own.
    #[serde(default)]
    pub chunk: Option<ChunkSpec>,
    /// Body fields every request must carry, from the pipeline's body, the configuration's
    /// `request_body` or a `for_each` entry (`callTypes`, which the CMS requires): a
    /// request without one is refused before it is sent, naming what to configure.
    #[serde(default)]
    pub required: Vec<String>,
    /// Sends the whole body inside an object of this name (`queryParam`, as the CMS
    /// examples do), unless the source sets `flat_body = true`.
    #[serde(default)]
    pub wrap_in: Option<String>,
    /// Keys that every entry of the configuration's `[pipelines.NAME] for_each` must give
    /// (`["ccId", "vdn"]`): the pipeline then needs `for_each`, one request (paged and
    /// reconciled on its own) per entry. A key that is a `{placeholder}` of the path fills
    /// it; the others are body fields. Empty: `for_each` is optional.
    #[serde(default)]
    pub for_each: Vec<String>,
}

/// A `for_each` entry split by [`RequestSpec::split_entry`]: the values of the path's
/// placeholders, and the body fields.
pub type PathAndBody<'e> = (BTreeMap<String, String>, BTreeMap<&'e str, &'e toml::Value>);

/// A list-valued body field split over several requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSpec {
    /// The body field (`calleeNos`).
    pub field: String,
    /// Values per request at most (1000).
    pub size: usize,
}

impl RequestSpec {
    /// The path with every `{name}` placeholder replaced: from `overrides` (the source's
    /// `path_params`) first, then from the pipeline's own `[request.path_params]`.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use cecsync::catalog::pipeline::RequestSpec;
    /// let spec: RequestSpec = toml::from_str(r#"
    ///     path = "/{svc}/rest/v1/x"
    ///     path_params = { svc = "CCSQM" }
    /// "#).unwrap();
    /// assert_eq!(spec.resolve_path(&BTreeMap::new()).unwrap(), "/CCSQM/rest/v1/x");
    /// let source = BTreeMap::from([("svc".to_string(), "CCISQM".to_string())]);
    /// assert_eq!(spec.resolve_path(&source).unwrap(), "/CCISQM/rest/v1/x");
    /// ```
    pub fn resolve_path(&self, overrides: &BTreeMap<String, String>) -> Result<String, String> {
        self.fill_path(|name| overrides.get(name).or_else(|| self.path_params.get(name)).cloned())
    }

    /// Splits one entry of the configuration's `for_each` into the values of the path's
    /// placeholders (each one path segment, written as a string or an integer) and the body
    /// fields (every other key); checks that the entry is not empty and gives every key of
    /// `[request] for_each`.
    ///
    /// ```
    /// # use cecsync::catalog::pipeline::RequestSpec;
    /// let spec: RequestSpec =
    ///     toml::from_str("path = \"/c/{vdnId}\"\nfor_each = [\"vdnId\", \"campaignId\"]").unwrap();
    /// let entry = toml::from_str("vdnId = 170\ncampaignId = \"9\"").unwrap();
    /// let (path, body) = spec.split_entry(&entry).unwrap();
    /// assert_eq!(path["vdnId"], "170");
    /// assert_eq!(body.keys().copied().collect::<Vec<_>>(), ["campaignId"]);
    /// assert!(spec.split_entry(&toml::from_str("vdnId = 1").unwrap()).unwrap_err().contains("campaignId"));
    /// assert!(spec.split_entry(&toml::from_str("vdnId = \"a/b\"\ncampaignId = 1").unwrap()).is_err());
    /// ```
    pub fn split_entry<'e>(
        &self,
        entry: &'e BTreeMap<String, toml::Value>,
    ) -> Result<PathAndBody<'e>, String> {
        if entry.is_empty() {
            return Err("is an empty table; give the keys of one request".into());
        }
        if let Some(missing) = self.for_each.iter().find(|k| !entry.contains_key(*k)) {
            return Err(format!(
                "has no '{missing}'; every entry needs {}",
                self.for_each.join(", ")
            ));
        }
        let placeholders = self.placeholders();
        let mut path = BTreeMap::new();
        let mut body = BTreeMap::new();
        for (key, value) in entry {
            if !placeholders.contains(&key.as_str()) {
                body.insert(key.as_str(), value);
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(format!(
                        "'{key}' fills the path placeholder {{{key}}}: give a string or an \
                         integer, not {}",
                        other.type_str()
                    ))
                }
            };
            path_segment(&text).map_err(|problem| format!("'{key}': {problem}"))?;
            path.insert(key.clone(), text);
        }
        Ok((path, body))
    }

    /// The names of the path's `{name}` placeholders.
    ///
    /// ```
    /// # use cecsync::catalog::pipeline::RequestSpec;
    /// let spec: RequestSpec = toml::from_str(r#"path = "/c/{vdnId}/r/{campaignId}""#).unwrap();
    /// assert_eq!(spec.placeholders(), ["vdnId", "campaignId"]);
    /// ```
    pub fn placeholders(&self) -> Vec<&str> {
        self.path
            .split('{')
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(name, _)| name))
            .collect()
    }

    /// The path with each placeholder replaced by `value(name)`, which must be one path
    /// segment.
    fn fill_path(&self, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::with_capacity(self.path.len());
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("'{}' has a '{{' without its '}}'", self.path))?;
            let name = &after[..close];
            let value = value(name).ok_or_else(|| {
                format!(
                    "placeholder {{{name}}} has no value: set it in the source's path_params, \
                     in [request.path_params] or in each for_each entry"
                )
            })?;
            let value = path_segment(&value)
                .map_err(|problem| format!("placeholder {{{name}}}: {problem}"))?;
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Checks that `value` can fill a path placeholder: one non-empty path segment.
///
/// ```
/// # use cecsync::catalog::pipeline::path_segment;
/// assert_eq!(path_segment("170"), Ok("170"));
/// assert!(path_segment("a/b").unwrap_err().contains("'a/b'"));
/// assert!(path_segment("").is_err());
/// ```
pub fn path_segment(value: &str) -> Result<&str, String> {
    if value.is_empty() || value.contains(['/', '?', '#', '{', '}', '%']) {
        return Err(format!("'{value}' is not one path segment (no /, ?, #, {{, }} or %)"));
    }
    Ok(value)
}

/// The HTTP method of a pipeline's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestMethod {
    /// The fields (fixed body, `request_body`, paging and range fields) as a JSON body.
    #[default]
    Post,
    /// No body: the same fields as query parameters, their values as plain text.
    Get,
}

impl RequestMethod {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
        }
    }
}

impl<'de> Deserialize<'de> for RequestMethod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_uppercase().as_str() {
            "POST" => Ok(Self::Post),
            "GET" => Ok(Self::Get),
            _ => Err(serde::de::Error::custom(format!(
                "method '{text}' is not supported; use POST or GET"
            ))),
        }
    }
}

/// Authentication styles.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// The OIFDE token (C3) sent as a field of the JSON body.
    BodyToken {
        /// Name of the body field, `authToken`.
        field: String,
    },
    /// The C2 AK/SK signature (CC-CMS, CC-FS, CC-iSales): every request carries
    /// `Authorization: auth-v2/...` computed with the source's `ak` and `sk`.
    AkskSignature {
        /// Headers signed, lowercase names among `content-length`, `content-type` and
        /// `host`, which is required. Default: all three (the CEC example); `["host"]` is
        /// the documented fallback.
        #[serde(default = "default_signed_headers")]
        signed_headers: Vec<String>,
        /// How the timestamp is written: `milliseconds` (default) or `seconds`.
        #[serde(default)]
        timestamp_precision: TimestampPrecision,
    },
    /// The API Fabric token (C1): obtained with `tokenByAkSk` from the source's app key and
    /// app secret (see the source's `token_url`, `token_lifetime_secs` and `user_id`), sent
    /// as `Authorization: Bearer` with `x-app-key` and `X-UserId` headers.
    FabricToken,
    /// The CC-Gateway session (C5): a GUID obtained with the configuration login from the
    /// source's `gateway_account` and `gateway_password`, sent as the `Guid` header.
    GatewayGuid,
}

fn default_signed_headers() -> Vec<String> {
    DEFAULT_SIGNED_HEADERS.iter().map(|h| h.to_string()).collect()
}

/// Paging styles.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum PagingSpec {
    /// Page number and page size in the body, the row count in the response.
    PageNumber {
        /// Body field of the page number (`pageNum`).
        page_field: String,
        /// Body field of the page size (`pageSize`).
        size_field: String,
        /// Number of the first page (1 for 1-based APIs).
        #[serde(default = "one")]
        first_page: u64,
        /// Rows asked for per page: the API's cap.
        page_size: u64,
        /// Dotted path of the total row count in the response (`total`).
        total_path: String,
        /// What the total counts: the records, or (for nested records) either the records
        /// or the groups holding them.
        #[serde(default)]
        total_counts: TotalCounts,
    },
    /// Row offset and row limit in the body, the row count in the response. The first page
    /// is at offset 0; page `i` is at `i` times the rows a page holds.
    OffsetLimit {
        /// Body field of the row offset (`offset`).
        offset_field: String,
        /// Body field of the row limit (`limit`).
        limit_field: String,
        /// Rows asked for per page.
        page_size: u64,
        /// Dotted path of the total row count in the response (`result.total`).
        total_path: String,
        /// Whether offset and limit are sent as JSON strings (`"0"`, `"100"`), as interfaces
        /// that take every value as a string want.
        #[serde(default)]
        as_strings: bool,
    },
    /// No paging: one response holds every record of the request (a detail object, a
    /// configuration list). The records are their own total.
    None,
}

impl PagingSpec {
    /// Rows asked for per page (unbounded without paging).
    pub fn page_size(&self) -> u64 {
        match self {
            Self::PageNumber { page_size, .. } | Self::OffsetLimit { page_size, .. } => *page_size,
            Self::None => u64::MAX,
        }
    }

    /// Dotted path of the total row count in the response; None without paging.
    pub fn total_path(&self) -> Option<&str> {
        match self {
            Self::PageNumber { total_path, .. } | Self::OffsetLimit { total_path, .. } => {
                Some(total_path)
            }
            Self::None => None,
        }
    }

    /// The body fields that ask for page `index` (0 for the first page) when a page holds
    /// `per_page` rows, and the page's number for messages (the API's page number, or
    /// `index + 1` for offsets and for the single response of `none`).
    pub fn page_fields(&self, index: u64, per_page: u64) -> (u64, Vec<(&str, serde_json::Value)>) {
        match self {
            Self::PageNumber { page_field, size_field, first_page, page_size, .. } => {
                let page = first_page + index;
                (
                    page,
                    vec![
                        (page_field.as_str(), page.into()),
                        (size_field.as_str(), (*page_size).into()),
                    ],
                )
            }
            Self::OffsetLimit { offset_field, limit_field, page_size, as_strings, .. } => {
                let number = |n: u64| match as_strings {
                    true => serde_json::Value::String(n.to_string()),
                    false => serde_json::Value::from(n),
                };
                let fields = vec![
                    (offset_field.as_str(), number(index * per_page)),
                    (limit_field.as_str(), number(*page_size)),
                ];
                (index + 1, fields)
            }
            Self::None => (index + 1, Vec::new()),
        }
    }
}

/// What an API's total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalCounts {
    /// The records: a slice is complete when its distinct records (+ rejects) equal the
    /// total, and a page short of rows before the last means the data moved.
    #[default]
    Records,
    /// Either the records or the groups of a nested records path (the API does not say
    /// which): a slice is complete when either count equals the total. The page count
    /// derived from the total is then an upper bound, so an empty page ends the result.
    Either,
}

fn one() -> u64 {
    1
}

/// Slicing styles.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlicingSpec {
    /// Calendar months of the source's zone, sent as a begin/end pair.
    CalendarMonth {
        /// Body field of the range start (`beginTime`).
        begin_field: String,
        /// Body field of the range end, inclusive (`endTime`).
        end_field: String,
        /// How the instants are written.
        time_format: TimeFormat,
        /// When set, incremental syncs send their window in these fields instead (an
        /// arrival-time cursor such as `upload_from`/`upload_to`), and each row goes to the
        /// month partition of its event time.
        #[serde(default)]
        cursor: Option<CursorSpec>,
        /// The longest range one request may cover, in days: a month slice is then asked for
        /// as consecutive windows of at most this many days, each paged and reconciled with
        /// its own total (interfaces that refuse longer ranges). None: one request range per
        /// slice.
        #[serde(default)]
        max_window_days: Option<u32>,
        /// Whether the end field names the first instant after the range rather than its
        /// last (the day after the last day, with `date`): for interfaces that want
        /// `beginTime < endTime` and read `[begin, end)`, such as iSales `callresult`.
        #[serde(default)]
        end_exclusive: bool,
        /// Zones besides the source's whose month edges no request may cross (`["UTC"]`):
        /// for an interface that queries only the table of its begin time's month when the
        /// zone of those tables is not documented. Each request range is split again at
        /// these zones' month edges, and each part is paged and reconciled on its own.
        #[serde(default, deserialize_with = "zones")]
        month_table_zones: Vec<chrono::FixedOffset>,
    },
    /// No time range of its own: one request per row of a parent dataset (a detail per
    /// call), made while the parent's partition is staged and committed before it, into a
    /// partition of the same month. See [`FanOutSpec`].
    FanOut(FanOutSpec),
    /// A dimension with no time range (a configuration table): every run fetches all of it
    /// and writes it as the partition `snapshot_date=YYYY-MM-DD` of the day in the source
    /// zone, replacing that day's snapshot and keeping the older days'.
    Snapshot,
}

/// Reads `slicing.month_table_zones`, offsets written as the configuration writes them
/// (`+08:00`, `UTC`); the error names the key (a tagged table's parse error points only at
/// the table).
fn zones<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<chrono::FixedOffset>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    let zone = |text: &String| {
        parse_zone(text)
            .map_err(|e| serde::de::Error::custom(format!("slicing.month_table_zones: {e}")))
    };
    texts.iter().map(zone).collect()
}

/// How a fan-out dataset follows its parent: which parent rows are asked about, with what
/// body, and when they are asked again.
///
/// A parent row is fetched when it passes `when` and is new to its partition, or any of the
/// `changed` columns differs from the stored row, or the fan-out dataset has no partition
/// for the month yet. The rows of the other parent rows stay as they are; the rows of a
/// parent row that left the partition or no longer passes `when` are dropped. Fan-out
/// datasets of one parent that send the same request share one request per parent row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutSpec {
    /// The parent dataset: a pipeline with `calendar_month` slicing.
    pub parent: String,
    /// Request body fields taken from the parent row: body field name -> parent column.
    pub body_from_parent: BTreeMap<String, String>,
    /// Only the parent rows whose integer column holds one of the values (`status` 2).
    #[serde(default)]
    pub when: Option<OneOf>,
    /// Parent columns whose change since the last sync fetches the row again.
    #[serde(default)]
    pub changed: Vec<String>,
}

/// A condition on an integer column: its value is one of `one_of`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOf {
    /// The column (int32 or int64).
    pub field: String,
    /// The values that pass.
    pub one_of: Vec<i64>,
}

/// The request fields of an incremental sync's window on an arrival-time cursor: the
/// window runs from the last sync (minus the pipeline's lookback) to now, in the slicing's
/// time format, whatever months the rows belong to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorSpec {
    /// Body field of the window start (`upload_from`).
    pub begin_field: String,
    /// Body field of the window end, inclusive (`upload_to`).
    pub end_field: String,
}

/// How a request writes an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Epoch milliseconds as a JSON number.
    EpochMs,
    /// Epoch milliseconds as a JSON string of digits (`"1572794607000"`).
    EpochMsString,
    /// Epoch seconds as a JSON number; a range end keeps its whole last second.
    EpochS,
    /// The calendar day in the source zone, `yyyy-MM-dd` (`beginLogDay`, iSales
    /// `beginTime`): a range of whole days writes its first and its last day.
    Date,
    /// `yyyy-MM-dd HH:mm:ss` in UTC, whatever the source zone (CMS `queryMissedCalls`).
    UtcDatetime,
}

impl TimeFormat {
    /// The instant `ms` (epoch milliseconds) as this format writes it, days in `zone`;
    /// seconds are rounded down, so that an inclusive end `...999` covers its whole second.
    ///
    /// ```
    /// # use cecsync::catalog::pipeline::TimeFormat;
    /// let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    /// assert_eq!(TimeFormat::EpochMs.write(1572794607999, zone), serde_json::json!(1572794607999_i64));
    /// assert_eq!(TimeFormat::EpochMsString.write(1572794607000, zone), serde_json::json!("1572794607000"));
    /// assert_eq!(TimeFormat::EpochS.write(1572794607999, zone), serde_json::json!(1572794607));
    /// // 2019-11-03T15:23:27.999Z is 23:23 on the 3rd at +08:00, and the 4th from 16:00 UTC.
    /// assert_eq!(TimeFormat::Date.write(1572794607999, zone), serde_json::json!("2019-11-03"));
    /// assert_eq!(TimeFormat::Date.write(1572796800000, zone), serde_json::json!("2019-11-04"));
    /// assert_eq!(TimeFormat::UtcDatetime.write(1572794607999, zone), serde_json::json!("2019-11-03 15:23:27"));
    /// ```
    pub fn write(self, ms: i64, zone: chrono::FixedOffset) -> serde_json::Value {
        let instant = || chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Self::EpochMs => ms.into(),
            Self::EpochMsString => ms.to_string().into(),
            Self::EpochS => ms.div_euclid(1000).into(),
            Self::Date => instant().with_timezone(&zone).format("%Y-%m-%d").to_string().into(),
            Self::UtcDatetime => instant().format("%Y-%m-%d %H:%M:%S").to_string().into(),
        }
    }
}

/// Where the records of a response are and what identifies them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsSpec {
    /// Path of the record array in the response (`rbtRecognitions`), or of nested arrays
    /// (`data[].calls[]`): see [`RecordsPath`]; for a fan-out dataset, a table of labelled
    /// arrays of the detail object instead (see [`RecordsPaths`]).
    pub path: RecordsPaths,
    /// With labelled arrays: the column that receives each record's label.
    #[serde(default)]
    pub label_field: Option<String>,
    /// Fields of the enclosing objects of a nested path copied into each record
    /// (`call_group_id`); a field the record has itself is kept as the record sends it.
    #[serde(default)]
    pub parent_fields: Vec<String>,
    /// Columns filled from the request each record answers, over whatever the record
    /// sends: column -> request body field (`log_day = "beginLogDay"`: the day asked for,
    /// where the echo of the response cannot be trusted). The value is copied as it was
    /// sent, inside a body wrapper or not.
    #[serde(default)]
    pub from_request: BTreeMap<String, String>,
    /// Fields that identify a record; a later version replaces an earlier one.
    pub primary_key: Vec<String>,
    /// Field that orders versions of a record (newest wins); optional.
    #[serde(default)]
    pub update_time: Option<String>,
    /// Field whose month, in the source zone, is the record's partition. Required but for
    /// snapshot datasets, whose rows need none.
    #[serde(default)]
    pub event_time: Option<String>,
    /// When records can still change after they are first read (a call in progress): the
    /// condition that says a record is still open. The oldest event time of the open
    /// records is kept in the pipeline's checkpoint, and the next incremental sync starts no
    /// later than it, so that open records are read again until they close.
    #[serde(default)]
    pub open_while: Option<OpenWhile>,
    /// Text columns that only some versions of a record carry (one source sends a field
    /// another does not): a newer version that leaves one null keeps the older value
    /// instead. For datasets without `update_time` (the later version always wins).
    #[serde(default)]
    pub keep_when_missing: Vec<String>,
}

/// A record is open while its numeric `field` is below `below` (`state` < 3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWhile {
    /// The numeric field (a schema column).
    pub field: String,
    /// The first value at which a record is closed.
    pub below: i64,
}

/// Where the records are: a dotted path to an array of the response, then, for nested
/// records, the dotted path of an array inside each element, and so on. Levels are
/// separated by `[].`: with `data[].calls[]` every element of `data` is a group holding an
/// array `calls`, and every element of every `calls` is a record. A trailing `[]` is
/// optional. A flat path may name alternatives, `resultDesc | resultDatas`: the records are
/// the first of those that the response holds as an array (missing, `null` and other
/// values such as a message string are passed over).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RecordsPath {
    levels: Vec<String>,
    /// Further names of the (flat) array, tried in order when the first is absent.
    fallbacks: Vec<String>,
}

impl RecordsPath {
    /// The dotted paths of the arrays, outermost first.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// The dotted paths where the outermost array may be, in the order they are tried.
    pub fn outer_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.levels[0].as_str()).chain(self.fallbacks.iter().map(String::as_str))
    }

    /// Whether records are nested in groups.
    pub fn is_nested(&self) -> bool {
        self.levels.len() > 1
    }
}

impl TryFrom<String> for RecordsPath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.contains('|') {
            let names: Vec<String> = text.split('|').map(|n| n.trim().to_string()).collect();
            let mut alternatives = Vec::with_capacity(names.len());
            for name in names {
                let path =
                    Self::try_from(name).map_err(|e| format!("records path '{text}': {e}"))?;
                if path.is_nested() {
                    return Err(format!(
                        "records path '{text}': alternatives ('a | b') are for flat arrays only"
                    ));
                }
                alternatives.extend(path.levels);
            }
            let fallbacks = alternatives.split_off(1);
            return Ok(Self { levels: alternatives, fallbacks });
        }
        let trimmed = text.strip_suffix("[]").unwrap_or(&text);
        let levels: Vec<String> = trimmed.split("[].").map(String::from).collect();
        let bad = levels.iter().any(|l| {
            l.is_empty() || l.contains('[') || l.contains(']') || l.split('.').any(str::is_empty)
        });
        if bad {
            return Err(format!(
                "records path '{text}' is not of the form a.b or a[].b[] (dotted names, levels \
                 separated by '[].')"
            ));
        }
        Ok(Self { levels, fallbacks: Vec::new() })
    }
}

impl std::fmt::Display for RecordsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.levels.join("[]."))?;
        for fallback in &self.fallbacks {
            write!(f, " | {fallback}")?;
        }
        if self.is_nested() {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

/// The records path of a pipeline: one array (possibly nested), or, for a fan-out
/// dataset, several arrays of the response object, each with a label that its records
/// carry in `records.label_field`:
///
/// ```toml
/// path = { left = "left_emotions[]", right = "right_emotions[]" }
/// label_field = "channel"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPaths")]
pub enum RecordsPaths {
    /// One array.
    One(RecordsPath),
    /// Arrays by label.
    Labelled(BTreeMap<String, RecordsPath>),
}

/// The TOML forms of [`RecordsPaths`].
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPaths {
    One(String),
    Labelled(BTreeMap<String, String>),
}

impl TryFrom<RawPaths> for RecordsPaths {
    type Error = String;

    fn try_from(raw: RawPaths) -> Result<Self, String> {
        match raw {
            RawPaths::One(text) => RecordsPath::try_from(text).map(Self::One),
            RawPaths::Labelled(table) if table.is_empty() => {
                Err("the table of labelled records paths is empty".into())
            }
            RawPaths::Labelled(table) => table
                .into_iter()
                .map(|(label, text)| Ok((label, RecordsPath::try_from(text)?)))
                .collect::<Result<_, String>>()
                .map(Self::Labelled),
        }
    }
}

impl RecordsPaths {
    /// The single array of a paged pipeline; None for labelled arrays.
    pub fn single(&self) -> Option<&RecordsPath> {
        match self {
            Self::One(path) => Some(path),
            Self::Labelled(_) => None,
        }
    }

    /// Every array with its label (None for a single array).
    pub fn arrays(&self) -> Vec<(Option<&str>, &RecordsPath)> {
        match self {
            Self::One(path) => vec![(None, path)],
            Self::Labelled(paths) => paths.iter().map(|(l, p)| (Some(l.as_str()), p)).collect(),
        }
    }
}

impl std::fmt::Display for RecordsPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(path) => path.fmt(f),
            Self::Labelled(paths) => {
                let parts: Vec<String> = paths.iter().map(|(l, p)| format!("{l} = {p}")).collect();
                write!(f, "{{ {} }}", parts.join(", "))
            }
        }
    }
}

/// How an API error is recognised inside a response body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSpec {
    /// Fields that carry a result code, when present.
    #[serde(default)]
    pub code_fields: Vec<String>,
    /// Code values that mean success (compared as text: `0` and `"0"` are the same).
    #[serde(default = "default_success")]
    pub success_codes: Vec<String>,
    /// Fields that carry the error message.
    #[serde(default)]
    pub message_fields: Vec<String>,
    /// Code values that mean "no data": the page is empty and the total is 0, whatever the
    /// rest of the body says (`retCode` "1" of the CC-Management interfaces). Any code that
    /// is neither a success nor listed here is an error.
    #[serde(default)]
    pub empty_codes: Vec<String>,
}

impl Default for EnvelopeSpec {
    fn default() -> Self {
        Self {
            code_fields: Vec::new(),
            success_codes: default_success(),
            message_fields: Vec::new(),
            empty_codes: Vec::new(),
        }
    }
}

fn default_success() -> Vec<String> {
    vec!["0".into()]
}

/// Why a pipeline file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file is not a valid pipeline TOML.
    #[error("pipeline {file}: {source}")]
    Parse { file: String, source: Box<toml::de::Error> },
    /// The file is valid TOML but inconsistent.
    #[error("pipeline {file}: {key}: {problem}")]
    Invalid { file: String, key: &'static str, problem: String },
}

impl PipelineSpec {
    /// Parses and checks a pipeline file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, PipelineError> {
        let spec: PipelineSpec = toml::from_str(text)
            .map_err(|e| PipelineError::Parse { file: file.to_string(), source: Box::new(e) })?;
        let invalid =
            |key, problem: String| PipelineError::Invalid { file: file.into(), key, problem };
        if spec.records.primary_key.is_empty() {
            return Err(invalid("records.primary_key", "name at least one field".into()));
        }
        if !spec.records.keep_when_missing.is_empty() && spec.records.update_time.is_some() {
            return Err(invalid(
                "records.keep_when_missing",
                "needs a dataset whose later version wins: remove update_time or this key".into(),
            ));
        }
        if spec.request.method == RequestMethod::Get && spec.request.wrap_in.is_some() {
            return Err(invalid(
                "request.wrap_in",
                "a GET request has no body to wrap: remove wrap_in, or use POST".into(),
            ));
        }
        if let AuthSpec::AkskSignature { signed_headers, .. } = &spec.auth {
            if let Some(name) =
                signed_headers.iter().find(|h| !SIGNABLE_HEADERS.contains(&h.as_str()))
            {
                return Err(invalid(
                    "auth.signed_headers",
                    format!(
                        "'{name}' cannot be signed; use lowercase names among {}",
                        SIGNABLE_HEADERS.join(", ")
                    ),
                ));
            }
            if !signed_headers.iter().any(|h| h == "host") {
                return Err(invalid("auth.signed_headers", "must include host".into()));
            }
        }
        if spec.paging.page_size() == 0 {
            return Err(invalid("paging.page_size", "must be at least 1".into()));
        }
        if let SlicingSpec::CalendarMonth { max_window_days: Some(0), .. } = &spec.slicing {
            return Err(invalid("slicing.max_window_days", "must be at least 1 day".into()));
        }
        match (&spec.records.event_time, spec.is_snapshot()) {
            (None, false) => {
                return Err(invalid(
                    "records.event_time",
                    "name the field whose month is the record's partition (only snapshot \
                     datasets go without)"
                        .into(),
                ))
            }
            (None, true) if spec.records.open_while.is_some() => {
                return Err(invalid(
                    "records.open_while",
                    "needs records.event_time, the time of the open records to read again".into(),
                ))
            }
            _ => {}
        }
        if let SlicingSpec::CalendarMonth { end_exclusive: true, cursor: Some(_), .. } =
            &spec.slicing
        {
            return Err(invalid(
                "slicing.end_exclusive",
                "is for month slices; a cursor window always sends its last instant".into(),
            ));
        }
        if matches!(&spec.slicing, SlicingSpec::CalendarMonth {
            month_table_zones, time_format: TimeFormat::Date, ..
        } if !month_table_zones.is_empty())
        {
            return Err(invalid(
                "slicing.month_table_zones",
                "needs an instant time_format: days are asked from the source zone's \
                 midnight; remove month_table_zones"
                    .into(),
            ));
        }
        if let Some(open) = &spec.records.open_while {
            if spec.records.primary_key.contains(&open.field) {
                return Err(invalid(
                    "records.open_while.field",
                    format!(
                        "'{}' is a key field; name the field that says a record is still open",
                        open.field
                    ),
                ));
            }
        }
        spec.check_fan_out().map_err(|(key, problem)| invalid(key, problem))?;
        if let Some(chunk) = &spec.request.chunk {
            if chunk.size == 0 {
                return Err(invalid("request.chunk.size", "must be at least 1".into()));
            }
            if let Some(reason) = spec.single_request() {
                let problem = format!("is for month slices and snapshots; {reason}");
                return Err(invalid("request.chunk", problem));
            }
        }
        let fan_out = spec.fan_out().is_some();
        let nested = spec.records.path.single().is_some_and(RecordsPath::is_nested);
        let either = matches!(
            &spec.paging,
            PagingSpec::PageNumber { total_counts: TotalCounts::Either, .. }
        );
        if either && !nested {
            return Err(invalid(
                "paging.total_counts",
                format!(
                    "'either' needs nested records (a path like a[].b[]), but records.path is \
                     '{}'",
                    spec.records.path
                ),
            ));
        }
        if !spec.records.parent_fields.is_empty() && !nested && !fan_out {
            return Err(invalid(
                "records.parent_fields",
                "needs nested records (a path like a[].b[]) to copy fields from".into(),
            ));
        }
        if !spec.request.for_each.is_empty() {
            if let Some(reason) = spec.single_request() {
                let problem = format!("is for month slices and snapshots; {reason}");
                return Err(invalid("request.for_each", problem));
            }
            if let Some(empty) = spec.request.for_each.iter().find(|k| k.trim().is_empty()) {
                return Err(invalid("request.for_each", format!("'{empty}' is not a key name")));
            }
        }
        // Placeholders named in request.for_each are filled by each entry.
        let per_entry: BTreeMap<String, String> =
            spec.request.for_each.iter().map(|k| (k.clone(), "entry".to_string())).collect();
        spec.request.resolve_path(&per_entry).map_err(|p| invalid("request.path", p))?;
        Ok(spec)
    }

    /// The fan-out of a dataset fed by a parent dataset, if it is one.
    pub fn fan_out(&self) -> Option<&FanOutSpec> {
        match &self.slicing {
            SlicingSpec::FanOut(fan_out) => Some(fan_out),
            SlicingSpec::CalendarMonth { .. } | SlicingSpec::Snapshot => None,
        }
    }

    /// Whether the dataset is a snapshot (`[slicing] style = "snapshot"`).
    pub fn is_snapshot(&self) -> bool {
        matches!(self.slicing, SlicingSpec::Snapshot)
    }

    /// Why the dataset sends a single request per range, so that it cannot send one per
    /// chunk or `for_each` entry: it is a fan-out dataset or reads a cursor window. None
    /// when it can.
    pub fn single_request(&self) -> Option<&'static str> {
        match &self.slicing {
            SlicingSpec::FanOut(_) => Some("a fan-out dataset sends one request per parent row"),
            SlicingSpec::CalendarMonth { cursor: Some(_), .. } => {
                Some("a cursor window sends one request")
            }
            SlicingSpec::CalendarMonth { cursor: None, .. } | SlicingSpec::Snapshot => None,
        }
    }

    /// The rules that tie fan-out slicing, the `none` paging and labelled records paths
    /// together; the failing key and the problem.
    fn check_fan_out(&self) -> Result<(), (&'static str, String)> {
        let labelled = self.records.path.single().is_none();
        match (self.fan_out(), &self.paging) {
            (Some(fan_out), PagingSpec::None) => {
                if fan_out.body_from_parent.is_empty() {
                    return Err((
                        "slicing.body_from_parent",
                        "name at least one body field and the parent column it comes from".into(),
                    ));
                }
                if self.records.open_while.is_some() {
                    return Err((
                        "records.open_while",
                        "a fan-out dataset is re-read when its parent row changes; set \
                         open_while on the parent"
                            .into(),
                    ));
                }
            }
            (Some(_), _) => {
                return Err((
                    "paging.style",
                    "a fan-out dataset gets one response per parent row; use style = \"none\""
                        .into(),
                ))
            }
            (None, _) if labelled => {
                return Err((
                    "records.path",
                    "labelled arrays are read from the response object of a fan-out dataset; \
                     name one array"
                        .into(),
                ))
            }
            (None, _) => {}
        }
        match (labelled, &self.records.label_field) {
            (true, None) => Err((
                "records.label_field",
                "labelled arrays need the column that receives the label".into(),
            )),
            (false, Some(_)) => Err((
                "records.label_field",
                "is only for labelled arrays (path = { label = \"array[]\", ... })".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Every field the pipeline reads from a record: keys, copied parent fields, update
    /// time, event time, the open condition's field, the label and the columns filled from
    /// the request.
    pub fn referenced_fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let keys = self.records.primary_key.iter().map(|k| ("records.primary_key", k.as_str()));
        let parents =
            self.records.parent_fields.iter().map(|p| ("records.parent_fields", p.as_str()));
        let update = self.records.update_time.iter().map(|u| ("records.update_time", u.as_str()));
        let open =
            self.records.open_while.iter().map(|o| ("records.open_while.field", o.field.as_str()));
        let label = self.records.label_field.iter().map(|l| ("records.label_field", l.as_str()));
        let event = self.records.event_time.iter().map(|e| ("records.event_time", e.as_str()));
        let requested =
            self.records.from_request.keys().map(|c| ("records.from_request", c.as_str()));
        let kept = self
            .records
            .keep_when_missing
            .iter()
            .map(|k| ("records.keep_when_missing", k.as_str()));
        keys.chain(parents)
            .chain(update)
            .chain(event)
            .chain(open)
            .chain(label)
            .chain(requested)
            .chain(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "d"
        description = "x"
        source = "oifde"
        [request]
        path = "/q"
        body = { tenantId = "{tenant_id}" }
        [auth]
        style = "body_token"
        field = "authToken"
        [paging]
        style = "page_number"
        page_field = "pageNum"
        size_field = "pageSize"
        page_size = 1000
        total_path = "total"
        [slicing]
        style = "calendar_month"
        begin_field = "beginTime"
        end_field = "endTime"
        time_format = "epoch_ms"
        [records]
        path = "items"
        primary_key = ["id"]
        event_time = "beginTime"
    "#;

    #[test]
    fn a_minimal_pipeline_parses_with_defaults() {
        let p = PipelineSpec::parse("d.toml", MINIMAL).unwrap();
        assert!(matches!(&p.slicing, SlicingSpec::CalendarMonth { cursor: None, .. }));
        let with_cursor = MINIMAL.replace(
            "time_format = \"epoch_ms\"",
            "time_format = \"epoch_s\"\ncursor = { begin_field = \"upload_from\", end_field = \"upload_to\" }",
        );
        let c = PipelineSpec::parse("d.toml", &with_cursor).unwrap();
        let SlicingSpec::CalendarMonth { cursor: Some(cursor), time_format, .. } = &c.slicing
        else {
            panic!("the cursor is read")
        };
        assert_eq!(
            (cursor.begin_field.as_str(), *time_format),
            ("upload_from", TimeFormat::EpochS)
        );
        let PagingSpec::PageNumber { first_page, .. } = p.paging else { panic!("{:?}", p.paging) };
        assert_eq!(first_page, 1);
        assert!(p.envelope.empty_codes.is_empty() && p.records.open_while.is_none());
        assert_eq!(p.envelope.success_codes, ["0"]);
        let fields: Vec<_> = p.referenced_fields().map(|(_, f)| f).collect();
        assert_eq!(fields, ["id", "beginTime"]);
    }

    /// The C2 style has its defaults, and refuses headers the client cannot sign exactly.
    #[test]
    fn the_aksk_signature_style_has_defaults_and_checks_its_headers() {
        let aksk = |extra: &str| {
            let text = MINIMAL
                .replace("\"body_token\"", "\"aksk_signature\"")
                .replace("field = \"authToken\"", extra);
            PipelineSpec::parse("d.toml", &text)
        };
        let AuthSpec::AkskSignature { signed_headers, timestamp_precision } =
            aksk("").unwrap().auth
        else {
            panic!("not the C2 style")
        };
        assert_eq!(signed_headers, ["content-length", "content-type", "host"]);
        assert_eq!(timestamp_precision, TimestampPrecision::Milliseconds);
        let spec = aksk("signed_headers = [\"host\"]\ntimestamp_precision = \"seconds\"").unwrap();
        assert!(matches!(
            spec.auth,
            AuthSpec::AkskSignature { ref signed_headers, timestamp_precision: TimestampPrecision::Seconds }
                if signed_headers == &["host"]
        ));
        for (extra, want) in [
            ("signed_headers = [\"content-type\"]", "must include host"),
            ("signed_headers = [\"host\", \"x-date\"]", "'x-date' cannot be signed"),
            ("signed_headers = [\"Host\"]", "'Host' cannot be signed"),
            ("timestamp_precision = \"minutes\"", "minutes"),
        ] {
            let err = aksk(extra).unwrap_err().to_string();
            assert!(err.contains("d.toml") && err.contains(want), "{extra}: {err}");
        }
    }

    /// `method` is POST by default, GET in any letter case, nothing else; a GET has no
    /// body to wrap. The gateway style takes no options.
    #[test]
    fn methods_and_the_gateway_style_parse() {
        assert_eq!(
            PipelineSpec::parse("d.toml", MINIMAL).unwrap().request.method,
            RequestMethod::Post
        );
        let with = |line: &str| {
            let text = MINIMAL.replacen("[request]", &format!("[request]\n{line}"), 1);
            PipelineSpec::parse("d.toml", &text).map_err(|e| e.to_string())
        };
        for get in ["method = \"GET\"", "method = \"get\""] {
            assert_eq!(with(get).unwrap().request.method, RequestMethod::Get, "{get}");
        }
        let err = with("method = \"PUT\"").unwrap_err();
        assert!(err.contains("d.toml") && err.contains("use POST or GET"), "{err}");
        let err = with("method = \"GET\"\nwrap_in = \"queryParam\"").unwrap_err();
        assert!(err.contains("request.wrap_in") && err.contains("GET"), "{err}");
        let gateway = MINIMAL
            .replace("\"body_token\"", "\"gateway_guid\"")
            .replace("field = \"authToken\"", "");
        let spec = PipelineSpec::parse("d.toml", &gateway).unwrap();
        assert!(matches!(spec.auth, AuthSpec::GatewayGuid), "{:?}", spec.auth);
    }

    #[test]
    fn unknown_styles_and_keys_are_refused() {
        let bad = MINIMAL.replace("style = \"body_token\"", "style = \"cookie\"");
        let err = PipelineSpec::parse("d.toml", &bad).unwrap_err().to_string();
        assert!(err.contains("d.toml") && err.contains("cookie"), "{err}");
        let extra = MINIMAL.replace("[records]", "[records]\nbogus = 1");
        assert!(PipelineSpec::parse("d.toml", &extra).unwrap_err().to_string().contains("bogus"));
        let no_key = MINIMAL.replace("primary_key = [\"id\"]", "primary_key = []");
        assert!(matches!(
            PipelineSpec::parse("d.toml", &no_key),
            Err(PipelineError::Invalid { .. })
        ));
    }

    /// Nested record paths split into levels; malformed ones are refused with the path.
    #[test]
    fn records_paths_split_into_levels() {
        let nested = RecordsPath::try_from("data[].calls[]".to_string()).unwrap();
        assert_eq!(nested.levels(), ["data", "calls"]);
        assert!(nested.is_nested());
        assert_eq!(nested.to_string(), "data[].calls[]");
        let flat = RecordsPath::try_from("result.data".to_string()).unwrap();
        assert_eq!((flat.levels(), flat.is_nested()), (&["result.data".to_string()][..], false));
        let either = RecordsPath::try_from("resultDesc | resultDatas".to_string()).unwrap();
        assert_eq!(either.outer_names().collect::<Vec<_>>(), ["resultDesc", "resultDatas"]);
        assert_eq!(either.to_string(), "resultDesc | resultDatas");
        let err = RecordsPath::try_from("a | b[].c".to_string()).unwrap_err();
        assert!(err.contains("flat arrays only"), "{err}");
        for bad in ["", "data[]calls", "a..b", "data[].[]", "x[0]", "a | "] {
            let err = RecordsPath::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    /// A chunked list field needs a size of at least 1 and month slices.
    #[test]
    fn chunks_are_checked() {
        let chunked = |chunk: &str, extra: &str| {
            let text = MINIMAL
                .replace(
                    "body = { tenantId = \"{tenant_id}\" }",
                    &format!("body = {{ tenantId = \"{{tenant_id}}\" }}\nchunk = {chunk}"),
                )
                .replace(
                    "time_format = \"epoch_ms\"",
                    &format!("time_format = \"epoch_ms\"\n{extra}"),
                );
            PipelineSpec::parse("d.toml", &text).map_err(|e| e.to_string())
        };
        let ok = chunked("{ field = \"calleeNos\", size = 1000 }", "").unwrap();
        assert_eq!(ok.request.chunk, Some(ChunkSpec { field: "calleeNos".into(), size: 1000 }));
        let zero = chunked("{ field = \"calleeNos\", size = 0 }", "").unwrap_err();
        assert!(zero.contains("request.chunk.size"), "{zero}");
        let cursor = "cursor = { begin_field = \"a\", end_field = \"b\" }";
        let err = chunked("{ field = \"calleeNos\", size = 9 }", cursor).unwrap_err();
        assert!(err.contains("request.chunk") && err.contains("cursor"), "{err}");
    }

    /// A fan-out dataset: `none` paging, its parent's columns, labelled arrays with their
    /// label column; each rule that ties them is checked with the key to fix.
    #[test]
    fn fan_out_datasets_are_checked() {
        const FAN_OUT: &str = r#"
            name = "emotions"
            description = "x"
            source = "fabric"
            [request]
            path = "/detail"
            [auth]
            style = "fabric_token"
            [paging]
            style = "none"
            [slicing]
            style = "fan_out"
            parent = "calls"
            body_from_parent = { call_uuid = "call_uuid" }
            when = { field = "status", one_of = [2] }
            changed = ["status", "review_status"]
            [records]
            path = { left = "left_emotions[]", right = "right_emotions[]" }
            label_field = "channel"
            parent_fields = ["call_uuid", "call_time"]
            primary_key = ["call_uuid", "channel", "type"]
            event_time = "call_time"
        "#;
        let p = PipelineSpec::parse("e.toml", FAN_OUT).unwrap();
        let fan_out = p.fan_out().expect("a fan-out dataset");
        assert_eq!(fan_out.parent, "calls");
        assert_eq!(fan_out.when, Some(OneOf { field: "status".into(), one_of: vec![2] }));
        let labels: Vec<_> = p.records.path.arrays().into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, [Some("left"), Some("right")]);
        assert!(p.referenced_fields().any(|(k, f)| k == "records.label_field" && f == "channel"));
        assert_eq!(p.paging.page_fields(0, 1).1, Vec::new());
        let err = |from: &str, to: &str| {
            PipelineSpec::parse("e.toml", &FAN_OUT.replace(from, to)).unwrap_err().to_string()
        };
        let paged = err("style = \"none\"", "style = \"offset_limit\"\noffset_field = \"o\"\nlimit_field = \"l\"\npage_size = 9\ntotal_path = \"t\"");
        assert!(paged.contains("paging.style") && paged.contains("\"none\""), "{paged}");
        let no_label = err("label_field = \"channel\"", "");
        assert!(no_label.contains("records.label_field"), "{no_label}");
        let no_body =
            err("body_from_parent = { call_uuid = \"call_uuid\" }", "body_from_parent = {}");
        assert!(no_body.contains("slicing.body_from_parent"), "{no_body}");
        let labelled_paged = MINIMAL.replace("path = \"items\"", "path = { a = \"x[]\" }");
        let e = PipelineSpec::parse("d.toml", &labelled_paged).unwrap_err().to_string();
        assert!(e.contains("records.path") && e.contains("labelled"), "{e}");
        let single = err(
            "path = { left = \"left_emotions[]\", right = \"right_emotions[]\" }",
            "path = \"segments[]\"",
        );
        assert!(single.contains("label_field"), "{single}");
    }

    /// `total_counts = "either"` and `parent_fields` need a nested path; placeholders need
    /// a default; the time formats write ms or whole seconds.
    #[test]
    fn nested_options_and_placeholders_are_checked() {
        let nested = MINIMAL
            .replace("path = \"items\"", "path = \"data[].calls[]\"\nparent_fields = [\"g\"]")
            .replace("total_path = \"total\"", "total_path = \"total\"\ntotal_counts = \"either\"")
            .replace("path = \"/q\"", "path = \"/{svc}/q\"\npath_params = { svc = \"A\" }");
        let p = PipelineSpec::parse("d.toml", &nested).unwrap();
        assert_eq!(p.records.parent_fields, ["g"]);
        let fields: Vec<_> = p.referenced_fields().map(|(_, f)| f).collect();
        assert_eq!(fields, ["id", "g", "beginTime"]);
        assert_eq!(p.request.resolve_path(&BTreeMap::new()).unwrap(), "/A/q");

        let flat_either = MINIMAL
            .replace("total_path = \"total\"", "total_path = \"total\"\ntotal_counts = \"either\"");
        let err = PipelineSpec::parse("d.toml", &flat_either).unwrap_err().to_string();
        assert!(err.contains("paging.total_counts"), "{err}");
        let flat_parents = MINIMAL.replace("[records]", "[records]\nparent_fields = [\"g\"]");
        let err = PipelineSpec::parse("d.toml", &flat_parents).unwrap_err().to_string();
        assert!(err.contains("records.parent_fields"), "{err}");
        let no_default = MINIMAL.replace("path = \"/q\"", "path = \"/{svc}/q\"");
        let err = PipelineSpec::parse("d.toml", &no_default).unwrap_err().to_string();
        assert!(err.contains("request.path") && err.contains("{svc}"), "{err}");
        let bad_value = BTreeMap::from([("svc".to_string(), "a/b".to_string())]);
        assert!(p.request.resolve_path(&bad_value).unwrap_err().contains("a/b"));
    }
    /// A snapshot dataset needs no event time (every other does), cannot keep open records
    /// without one, and cannot feed a fan-out; `for_each` keys fill placeholders at parse
    /// time, and neither a cursor nor a fan-out dataset takes them.
    #[test]
    fn snapshots_and_for_each_are_checked() {
        let snapshot = MINIMAL
            .replace(
                "style = \"calendar_month\"\n        begin_field = \"beginTime\"\n        end_field = \"endTime\"\n        time_format = \"epoch_ms\"",
                "style = \"snapshot\"",
            )
            .replace("event_time = \"beginTime\"", "");
        let p = PipelineSpec::parse("d.toml", &snapshot).unwrap();
        assert!(p.is_snapshot() && p.records.event_time.is_none() && p.fan_out().is_none());
        let fields: Vec<_> = p.referenced_fields().map(|(_, f)| f).collect();
        assert_eq!(fields, ["id"]);
        let err = |text: &str| PipelineSpec::parse("d.toml", text).unwrap_err().to_string();
        let no_time = err(&MINIMAL.replace("event_time = \"beginTime\"", ""));
        assert!(no_time.contains("records.event_time"), "{no_time}");
        let open =
            err(&snapshot
                .replace("[records]", "[records]\nopen_while = { field = \"s\", below = 3 }"));
        assert!(open.contains("records.open_while") && open.contains("event_time"), "{open}");

        let per_entry = snapshot
            .replace("path = \"/q\"", "path = \"/v/{vdnId}/q\"\nfor_each = [\"vdnId\", \"ccId\"]");
        let p = PipelineSpec::parse("d.toml", &per_entry).unwrap();
        assert_eq!((p.request.for_each.len(), p.request.placeholders()), (2, vec!["vdnId"]));
        let cursor = MINIMAL.replace(
            "time_format = \"epoch_ms\"",
            "time_format = \"epoch_ms\"\ncursor = { begin_field = \"a\", end_field = \"b\" }",
        );
        let with_cursor =
            err(&cursor.replace("path = \"/q\"", "path = \"/q\"\nfor_each = [\"vdn\"]"));
        assert!(
            with_cursor.contains("request.for_each") && with_cursor.contains("cursor"),
            "{with_cursor}"
        );
        assert!(p.single_request().is_none());
    }

    /// The offset_limit style, the window and time options and the open condition parse;
    /// offsets step by the rows a page holds and are strings when asked; wrong values are
    /// refused naming their key.
    #[test]
    fn offset_paging_windows_and_open_records() {
        let text = MINIMAL
            .replace(
                "style = \"page_number\"\n        page_field = \"pageNum\"\n        size_field = \"pageSize\"",
                "style = \"offset_limit\"\noffset_field = \"offset\"\nlimit_field = \"limit\"\nas_strings = true",
            )
            .replace("time_format = \"epoch_ms\"", "time_format = \"epoch_ms_string\"\nmax_window_days = 7")
            .replace("event_time = \"beginTime\"", "event_time = \"beginTime\"\nopen_while = { field = \"state\", below = 3 }");
        let p = PipelineSpec::parse("d.toml", &text).unwrap();
        let (number, fields) = p.paging.page_fields(2, 400);
        assert_eq!(number, 3);
        assert_eq!(fields, [("offset", "800".into()), ("limit", "1000".into())]);
        let SlicingSpec::CalendarMonth { time_format, max_window_days, .. } = p.slicing else {
            panic!("a calendar_month pipeline")
        };
        assert_eq!((time_format, max_window_days), (TimeFormat::EpochMsString, Some(7)));
        assert_eq!(p.records.open_while, Some(OpenWhile { field: "state".into(), below: 3 }));
        assert_eq!(p.referenced_fields().last(), Some(("records.open_while.field", "state")));

        let numbers = text.replace("as_strings = true", "");
        let p = PipelineSpec::parse("d.toml", &numbers).unwrap();
        assert_eq!(p.paging.page_fields(0, 1000).1, [("offset", 0.into()), ("limit", 1000.into())]);
        let pages = PipelineSpec::parse("d.toml", MINIMAL).unwrap();
        assert_eq!(
            pages.paging.page_fields(2, 400),
            (3, vec![("pageNum", 3.into()), ("pageSize", 1000.into())])
        );

        for (bad, key) in [
            (text.replace("max_window_days = 7", "max_window_days = 0"), "slicing.max_window_days"),
            (text.replace("field = \"state\"", "field = \"id\""), "records.open_while.field"),
        ] {
            let err = PipelineSpec::parse("d.toml", &bad).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    /// Month-table zones parse as the configuration writes zones; a zone that is not one,
    /// or the key with day ranges, is refused naming the key.
    #[test]
    fn month_table_zones_are_zones_of_instant_ranges() {
        let with = |zones: &str| {
            MINIMAL.replace(
                "time_format = \"epoch_ms\"",
                &format!("time_format = \"epoch_ms\"\nmonth_table_zones = {zones}"),
            )
        };
        let p = PipelineSpec::parse("d.toml", &with(r#"["UTC", "-05:30"]"#)).unwrap();
        let SlicingSpec::CalendarMonth { month_table_zones, .. } = p.slicing else {
            panic!("a calendar_month pipeline")
        };
        let offsets: Vec<i32> = month_table_zones.iter().map(|z| z.local_minus_utc()).collect();
        assert_eq!(offsets, [0, -(5 * 3600 + 1800)]);
        let none = PipelineSpec::parse("d.toml", MINIMAL).unwrap();
        assert!(matches!(none.slicing, SlicingSpec::CalendarMonth { month_table_zones, .. }
            if month_table_zones.is_empty()));

        let bad_zone = PipelineSpec::parse("d.toml", &with(r#"["Beijing"]"#)).unwrap_err();
        let bad_zone = bad_zone.to_string();
        assert!(
            bad_zone.contains("month_table_zones") && bad_zone.contains("+08:00"),
            "{bad_zone}"
        );
        let days =
            with(r#"["UTC"]"#).replace("time_format = \"epoch_ms\"", "time_format = \"date\"");
        let days = PipelineSpec::parse("d.toml", &days).unwrap_err().to_string();
        assert!(days.contains("slicing.month_table_zones") && days.contains("instant"), "{days}");
    }
}
