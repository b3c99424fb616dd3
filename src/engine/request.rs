//! The requests of a slice: the pipeline's fixed body under the configuration's
//! `request_body`, one target per `for_each` entry (its path placeholders filled, its other
//! keys in the body), the range fields of each window, and the chunks of a chunked list
//! field. Each request is paged and reconciled on its own.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::EngineError;
use super::pipeline::PipelineRun;
use crate::catalog::pipeline::{PipelineSpec, TimeFormat};

/// One target of a pipeline's requests: an entry of its `for_each`, or the pipeline
/// itself when it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEntry {
    /// The request path, its placeholders filled in.
    pub path: String,
    /// The body fields of the entry (its keys that fill no path placeholder), which win
    /// over the pipeline's and the configuration's.
    pub body: Map<String, Value>,
    /// The entry's values of the path placeholders, as written in the configuration, for
    /// `records.from_request`.
    pub path_values: Map<String, Value>,
}

/// The request targets of a pipeline: one per entry of `for_each`, or one without; the
/// path placeholders are filled from the entry, then from the source's `path_params`,
/// then from the pipeline's defaults. The problem, for an entry that does not fit.
pub fn request_entries(
    spec: &PipelineSpec,
    for_each: &[BTreeMap<String, toml::Value>],
    path_params: &BTreeMap<String, String>,
    tenant_id: &str,
) -> Result<Vec<RequestEntry>, String> {
    if for_each.is_empty() {
        let path = spec.request.resolve_path(path_params)?;
        return Ok(vec![RequestEntry { path, body: Map::new(), path_values: Map::new() }]);
    }
    let mut entries = Vec::with_capacity(for_each.len());
    for (n, entry) in for_each.iter().enumerate() {
        let at = |problem: String| format!("for_each[{n}]: {problem}");
        let (mut values, body) = spec.request.split_entry(entry).map_err(at)?;
        let path_values = values.keys().map(|k| (k.clone(), toml_to_json(&entry[k], tenant_id)));
        let path_values = path_values.collect();
        for (name, value) in path_params {
            values.entry(name.clone()).or_insert_with(|| value.clone());
        }
        let path = spec.request.resolve_path(&values).map_err(at)?;
        let body = body.into_iter().map(|(k, v)| (k.to_string(), toml_to_json(v, tenant_id)));
        entries.push(RequestEntry { path, body: body.collect(), path_values });
    }
    Ok(entries)
}

/// One request of a slice: its target (path) and its body, before paging.
pub(super) type SliceRequest<'r> = (&'r RequestEntry, Map<String, Value>);

/// The requests of one slice: for each request target, each of `bases` (the bodies of the
/// slice's windows, or the fixed body alone) with the target's fields over it, each chunk.
pub(super) fn slice_requests<'r>(
    run: &'r PipelineRun<'_>,
    bases: &[Map<String, Value>],
) -> Result<Vec<SliceRequest<'r>>, EngineError> {
    let mut requests = Vec::new();
    for entry in &run.entries {
        for base in bases {
            let mut body = base.clone();
            body.extend(entry.body.clone());
            check_required(run, &body)?;
            requests.extend(chunked(run, body)?.into_iter().map(|b| (entry, b)));
        }
    }
    Ok(requests)
}

/// The request body of a range: the fixed fields plus `begin_ms..=end_ms` in the given
/// fields and time format.
pub(super) fn range_body(
    run: &PipelineRun<'_>,
    (begin_field, end_field): (&str, &str),
    time_format: TimeFormat,
    begin_ms: i64,
    end_ms: i64,
) -> Map<String, Value> {
    let mut body = fixed_body(run);
    body.insert(begin_field.to_string(), time_format.write(begin_ms, run.zone));
    body.insert(end_field.to_string(), time_format.write(end_ms, run.zone));
    body
}

/// The fixed body fields of the pipeline's request, then those of the configuration's
/// `request_body` (which win), `{tenant_id}` filled in.
pub(super) fn fixed_body(run: &PipelineRun<'_>) -> Map<String, Value> {
    let body = run.dataset.spec.request.body.iter().chain(&run.settings.request_body);
    body.map(|(k, v)| (k.clone(), toml_to_json(v, &run.tenant_id))).collect()
}

/// Refuses a body without one of the pipeline's required fields (`[request] required`).
fn check_required(run: &PipelineRun<'_>, body: &Map<String, Value>) -> Result<(), EngineError> {
    let required = &run.dataset.spec.request.required;
    match required.iter().find(|f| body.get(*f).is_none_or(Value::is_null)) {
        Some(field) => Err(EngineError::RequestBody {
            pipeline: run.dataset_name().to_string(),
            problem: format!(
                "body field '{field}' is required: set [pipelines.{}] request_body = {{ {field} = ... }} \
                 in the configuration",
                run.dataset_name()
            ),
        }),
        None => Ok(()),
    }
}

/// The bodies of one request range: `body` itself, or, when the pipeline chunks a list
/// field (`[request] chunk`), one body per run of at most `size` of its values.
fn chunked(
    run: &PipelineRun<'_>,
    body: Map<String, Value>,
) -> Result<Vec<Map<String, Value>>, EngineError> {
    let Some(chunk) = &run.dataset.spec.request.chunk else { return Ok(vec![body]) };
    let bad = |problem: String| EngineError::RequestBody {
        pipeline: run.dataset_name().to_string(),
        problem,
    };
    let values = match body.get(&chunk.field) {
        Some(Value::Array(values)) if !values.is_empty() => values.clone(),
        _ => {
            return Err(bad(format!(
                "body field '{}' must be a non-empty list: set [pipelines.{}] request_body = \
                 {{ {} = [...] }} in the configuration",
                chunk.field,
                run.dataset_name(),
                chunk.field
            )))
        }
    };
    Ok(values
        .chunks(chunk.size.max(1))
        .map(|part| {
            let mut b = body.clone();
            b.insert(chunk.field.clone(), Value::Array(part.to_vec()));
            b
        })
        .collect())
}

/// A TOML body value as JSON, `{tenant_id}` filled in.
fn toml_to_json(v: &toml::Value, tenant_id: &str) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.replace("{tenant_id}", tenant_id)),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => {
            Value::Array(a.iter().map(|x| toml_to_json(x, tenant_id)).collect())
        }
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, x)| (k.clone(), toml_to_json(x, tenant_id))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, for_each: &str) -> PipelineSpec {
        let text = format!(
            r#"
            name = "d"
            description = "x"
            source = "s"
            [request]
            path = "{path}"
            path_params = {{ svc = "D" }}
            for_each = {for_each}
            [auth]
            style = "aksk_signature"
            [paging]
            style = "none"
            [slicing]
            style = "snapshot"
            [records]
            path = "rows"
            primary_key = ["id"]
        "#
        );
        PipelineSpec::parse("d.toml", &text).unwrap()
    }

    fn entries(text: &str) -> Vec<BTreeMap<String, toml::Value>> {
        #[derive(serde::Deserialize)]
        struct List {
            for_each: Vec<BTreeMap<String, toml::Value>>,
        }
        toml::from_str::<List>(text).unwrap().for_each
    }

    /// Each entry fills the path's placeholders (before the source's `path_params`) and
    /// sends its other keys in the body; without entries there is one target.
    #[test]
    fn entries_fill_the_path_and_the_body() {
        let s = spec("/c/{vdnId}/r/{campaignId}/{svc}", "[\"vdnId\", \"campaignId\"]");
        let params = BTreeMap::from([("svc".to_string(), "S".to_string())]);
        let list = entries(
            "for_each = [{ vdnId = 170, campaignId = \"7\", showDetail = 0 }, \
             { vdnId = 171, campaignId = \"8\", svc = \"T\" }]",
        );
        let got = request_entries(&s, &list, &params, "t").unwrap();
        assert_eq!(got[0].path, "/c/170/r/7/S");
        assert_eq!(Value::Object(got[0].body.clone()), serde_json::json!({"showDetail": 0}));
        let values = Value::Object(got[0].path_values.clone());
        assert_eq!(values, serde_json::json!({"vdnId": 170, "campaignId": "7"}));
        assert_eq!((got[1].path.as_str(), got[1].body.len()), ("/c/171/r/8/T", 0));
        let err = request_entries(&s, &entries("for_each = [{ vdnId = 1 }]"), &params, "t");
        assert!(err.unwrap_err().starts_with("for_each[0]: has no 'campaignId'"));
        let plain = spec("/q", "[]");
        let one = request_entries(&plain, &[], &params, "t").unwrap();
        assert_eq!(
            one,
            [RequestEntry { path: "/q".into(), body: Map::new(), path_values: Map::new() }]
        );
        let bodies = entries("for_each = [{ ccId = 1, vdn = 170 }, { ccId = 1, vdn = 171 }]");
        let two = request_entries(&plain, &bodies, &params, "t").unwrap();
        assert_eq!(two[1].body["vdn"], 171);
        let bad = entries("for_each = [{ vdnId = 1.5, campaignId = 2 }]");
        assert!(request_entries(&s, &bad, &params, "t").unwrap_err().contains("vdnId"));
    }
}
