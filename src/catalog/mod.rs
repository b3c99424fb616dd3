//! The datasets cecsync knows: pipeline specs joined with their schemas.
//!
//! The built-in datasets are embedded from the repository's `pipelines/` and `schemas/`;
//! a `catalog_dir` in the configuration adds (or overrides) datasets from files.

pub mod pipeline;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use pipeline::PipelineSpec;
pub use schema::DatasetSchema;

use pipeline::{PagingSpec, SlicingSpec};
use schema::FieldKind;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_catalog.rs"));
}

/// Why the catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A pipeline file is invalid.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    /// A schema file is invalid.
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    /// A pipeline has no schema file.
    #[error("pipeline {pipeline}: no schema file schemas/{pipeline}.json")]
    MissingSchema { pipeline: String },
    /// A pipeline names a field that its schema does not declare.
    #[error("pipeline {pipeline}: {key} names field '{field}', which schemas/{pipeline}.json does not declare")]
    UnknownField { pipeline: String, key: &'static str, field: String },
    /// A pipeline names a field whose type does not fit its role.
    #[error("pipeline {pipeline}: {key} names field '{field}', which schemas/{pipeline}.json declares as {kind:?}; {need}")]
    FieldType {
        pipeline: String,
        key: &'static str,
        field: String,
        kind: schema::FieldKind,
        need: &'static str,
    },
    /// A fan-out dataset does not fit its parent.
    #[error("pipeline {pipeline}: {key}: {problem}")]
    FanOut { pipeline: String, key: &'static str, problem: String },
    /// A pipeline's `extends` names no pipeline, or one that extends another.
    #[error("{file}: extends = '{parent}': {problem}")]
    Extends { file: String, parent: String, problem: String },
    /// A catalog folder could not be read.
    #[error("catalog folder {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One dataset: how to extract it and what its rows look like.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// How to extract it.
    pub spec: Arc<PipelineSpec>,
    /// Its columns.
    pub schema: Arc<DatasetSchema>,
}

/// All known datasets, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    datasets: BTreeMap<String, Dataset>,
    /// Every schema, those of datasets without a pipeline (written by push ingestion) too.
    schemas: BTreeMap<String, Arc<DatasetSchema>>,
}

impl Catalog {
    /// The built-in datasets.
    pub fn builtin() -> Result<Self, CatalogError> {
        let pipelines = builtin::PIPELINES.iter().map(|(f, t)| (f.to_string(), t.to_string()));
        let schemas = builtin::SCHEMAS.iter().map(|(f, t)| (f.to_string(), t.to_string()));
        Self::from_files(pipelines.collect(), schemas.collect())
    }

    /// The built-in datasets plus those in `dir/pipelines` and `dir/schemas`, which win on
    /// a name clash.
    pub fn with_dir(dir: &Path) -> Result<Self, CatalogError> {
        let mut pipelines: Vec<(String, String)> =
            builtin::PIPELINES.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        let mut schemas: Vec<(String, String)> =
            builtin::SCHEMAS.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        pipelines.extend(read_dir(&dir.join("pipelines"), "toml")?);
        schemas.extend(read_dir(&dir.join("schemas"), "json")?);
        Self::from_files(pipelines, schemas)
    }

    fn from_files(
        pipelines: Vec<(String, String)>,
        schemas: Vec<(String, String)>,
    ) -> Result<Self, CatalogError> {
        let mut parsed_schemas = BTreeMap::new();
        for (file, text) in schemas {
            let schema = DatasetSchema::parse(&file, &text)?;
            parsed_schemas.insert(schema.dataset().to_string(), Arc::new(schema));
        }
        let mut datasets = BTreeMap::new();
        for (file, text) in with_extensions(pipelines)? {
            let spec = PipelineSpec::parse(&file, &text)?;
            let schema = parsed_schemas
                .get(&spec.name)
                .cloned()
                .ok_or_else(|| CatalogError::MissingSchema { pipeline: spec.name.clone() })?;
            for (key, field) in spec.referenced_fields() {
                if schema.field(field).is_none() {
                    return Err(CatalogError::UnknownField {
                        pipeline: spec.name.clone(),
                        key,
                        field: field.to_string(),
                    });
                }
            }
            if let Some(open) = &spec.records.open_while {
                let kind = schema.field(&open.field).map(|f| f.kind);
                if let Some(kind @ (FieldKind::Utf8 | FieldKind::Boolean | FieldKind::Float64)) =
                    kind
                {
                    return Err(CatalogError::FieldType {
                        pipeline: spec.name.clone(),
                        key: "records.open_while.field",
                        field: open.field.clone(),
                        kind,
                        need: "declare it as int32 or int64",
                    });
                }
            }
            for field in &spec.records.keep_when_missing {
                let kind = schema.field(field).map(|f| f.kind);
                if let Some(kind) = kind.filter(|k| *k != FieldKind::Utf8) {
                    return Err(CatalogError::FieldType {
                        pipeline: spec.name.clone(),
                        key: "records.keep_when_missing",
                        field: field.clone(),
                        kind,
                        need: "declare it as utf8",
                    });
                }
            }
            check_event_time(&spec, &schema)?;
            datasets.insert(spec.name.clone(), Dataset { spec: Arc::new(spec), schema });
        }
        for dataset in datasets.values() {
            check_fan_out(dataset, &datasets)?;
        }
        Ok(Self { datasets, schemas: parsed_schemas })
    }

    /// The schema of dataset `name`, whether a pipeline or push ingestion writes it.
    pub fn schema(&self, name: &str) -> Option<&Arc<DatasetSchema>> {
        self.schemas.get(name)
    }

    /// Sets the number of the first page of dataset `name`, which pages by page number (a
    /// deployment whose server counts pages from another base); false when it does not
    /// page by number.
    pub fn set_first_page(&mut self, name: &str, first: u64) -> bool {
        let Some(dataset) = self.datasets.get_mut(name) else { return false };
        match &mut Arc::make_mut(&mut dataset.spec).paging {
            PagingSpec::PageNumber { first_page, .. } => {
                *first_page = first;
                true
            }
            _ => false,
        }
    }

    /// The dataset called `name`.
    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.get(name)
    }

    /// Every dataset, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Dataset)> {
        self.datasets.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The dataset names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.datasets.keys().map(String::as_str).collect()
    }
}

/// A fan-out dataset's parent exists and runs on its own, the columns the fan-out reads
/// are the parent's, and the parent's key columns are sent under their own names (so that
/// every answer's rows carry them) and declared with the same types (to match rows to
/// their parent row).
/// The event time must be a time column; rows that a cursor routes by it to their months
/// need an instant, not a day (a fan-out parent's too: see [`check_fan_out`]).
fn check_event_time(spec: &PipelineSpec, schema: &DatasetSchema) -> Result<(), CatalogError> {
    let Some(field) = &spec.records.event_time else { return Ok(()) };
    let Some(kind) = schema.field(field).map(|f| f.kind) else { return Ok(()) };
    let error = |need| CatalogError::FieldType {
        pipeline: spec.name.clone(),
        key: "records.event_time",
        field: field.clone(),
        kind,
        need,
    };
    if !kind.is_time() {
        return Err(error("declare it as a timestamp, datetime or date kind"));
    }
    let cursor = matches!(&spec.slicing, SlicingSpec::CalendarMonth { cursor: Some(_), .. });
    if kind == FieldKind::Date && cursor {
        return Err(error("a cursor routes rows by an instant: use a timestamp or datetime kind"));
    }
    Ok(())
}

fn check_fan_out(
    dataset: &Dataset,
    datasets: &BTreeMap<String, Dataset>,
) -> Result<(), CatalogError> {
    let Some(fan_out) = dataset.spec.fan_out() else { return Ok(()) };
    let pipeline = &dataset.spec.name;
    let bad =
        |key, problem: String| CatalogError::FanOut { pipeline: pipeline.clone(), key, problem };
    let parent = datasets.get(&fan_out.parent).ok_or_else(|| {
        bad("slicing.parent", format!("'{}' is not a known dataset", fan_out.parent))
    })?;
    if parent.spec.fan_out().is_some() {
        return Err(bad(
            "slicing.parent",
            format!(
                "'{}' is itself a fan-out dataset; name a dataset with its own slicing",
                fan_out.parent
            ),
        ));
    }
    if parent.spec.is_snapshot() {
        return Err(bad(
            "slicing.parent",
            format!(
                "'{}' is a snapshot dataset; name a dataset with calendar_month slicing",
                fan_out.parent
            ),
        ));
    }
    let parent_event =
        parent.spec.records.event_time.as_deref().and_then(|e| parent.schema.field(e));
    let parent_event = parent_event.map(|f| f.kind);
    if parent_event == Some(FieldKind::Date) {
        return Err(bad(
            "slicing.parent",
            format!(
                "'{}' has a date as its event time; a parent's rows are routed by an instant",
                fan_out.parent
            ),
        ));
    }
    let parent_columns = fan_out
        .body_from_parent
        .values()
        .map(|c| ("slicing.body_from_parent", c))
        .chain(fan_out.when.iter().map(|w| ("slicing.when.field", &w.field)))
        .chain(fan_out.changed.iter().map(|c| ("slicing.changed", c)));
    for (key, column) in parent_columns {
        if parent.schema.field(column).is_none() {
            return Err(bad(key, format!("'{column}' is not a column of {}", fan_out.parent)));
        }
    }
    if let Some(when) = &fan_out.when {
        let kind = parent.schema.field(&when.field).map(|f| f.kind);
        if !matches!(kind, Some(FieldKind::Int32 | FieldKind::Int64)) {
            return Err(bad(
                "slicing.when.field",
                format!("'{}' must be an int32 or int64 column of {}", when.field, fan_out.parent),
            ));
        }
    }
    for key in &parent.spec.records.primary_key {
        if fan_out.body_from_parent.get(key) != Some(key) {
            return Err(bad(
                "slicing.body_from_parent",
                format!(
                    "must send the parent's key column '{key}' as body field '{key}' \
                     ({key} = \"{key}\"): its value is copied into every row"
                ),
            ));
        }
        let (theirs, ours) = (parent.schema.field(key), dataset.schema.field(key));
        if ours.map(|f| f.kind) != theirs.map(|f| f.kind) {
            return Err(bad(
                "records.primary_key",
                format!(
                    "the rows must carry the parent's key column '{key}' with its type ({:?}), \
                     to be matched to their parent row",
                    theirs.map(|f| f.kind)
                ),
            ));
        }
    }
    Ok(())
}

/// Resolves `extends = "PARENT"` in pipeline files: the file is the parent pipeline's
/// table with the file's own keys laid over it, table by table (a key the file sets wins,
/// the rest is the parent's). A parent is named by its `name`; it may not extend another.
fn with_extensions(
    pipelines: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, CatalogError> {
    let parse = |file: &str, text: &str| {
        toml::from_str::<toml::Table>(text).map_err(|e| {
            CatalogError::Pipeline(pipeline::PipelineError::Parse {
                file: file.to_string(),
                source: Box::new(e),
            })
        })
    };
    let mut tables = Vec::with_capacity(pipelines.len());
    for (file, text) in &pipelines {
        tables.push(parse(file, text)?);
    }
    let by_name: BTreeMap<&str, &toml::Table> =
        tables.iter().filter_map(|t| Some((t.get("name")?.as_str()?, t))).collect();
    let mut out = Vec::with_capacity(pipelines.len());
    for ((file, text), table) in pipelines.iter().zip(&tables) {
        let Some(parent) = table.get("extends") else {
            out.push((file.clone(), text.clone()));
            continue;
        };
        let error = |parent: &str, problem: &str| CatalogError::Extends {
            file: file.clone(),
            parent: parent.to_string(),
            problem: problem.to_string(),
        };
        let parent =
            parent.as_str().ok_or_else(|| error("?", "write the parent's name as text"))?;
        let base = by_name.get(parent).ok_or_else(|| error(parent, "no pipeline has this name"))?;
        if base.contains_key("extends") {
            return Err(error(parent, "the parent extends another pipeline; extend that one"));
        }
        let mut merged = (*base).clone();
        let mut own = table.clone();
        own.remove("extends");
        overlay(&mut merged, own);
        let text = toml::to_string(&merged).map_err(|e| error(parent, &e.to_string()))?;
        out.push((file.clone(), text));
    }
    Ok(out)
}

/// Lays `top` over `base`: tables are merged key by key, any other value replaces.
fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => overlay(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn read_dir(dir: &Path, ext: &str) -> Result<Vec<(String, String)>, CatalogError> {
    let io = |source| CatalogError::Io { path: dir.display().to_string(), source };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            out.push((path.display().to_string(), text));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded datasets load and every field a pipeline names is in its schema.
    #[test]
    fn builtin_catalog_is_consistent() {
        let c = Catalog::builtin().unwrap();
        let rbt = c.get("rbt_recognition").expect("rbt_recognition is built in");
        assert_eq!(rbt.spec.records.primary_key, ["rbtRecognitionId"]);
        assert_eq!(rbt.schema.dataset(), "rbt_recognition");
    }

    /// A pipeline that extends another reads as the parent with its own keys laid over
    /// it; a missing parent or a chain of extensions is refused naming the file.
    #[test]
    fn extends_lays_a_pipeline_over_its_parent() {
        let c = Catalog::builtin().unwrap();
        let (parent, child) =
            (c.get("campaign_call_results").unwrap(), c.get("outbound_results").unwrap());
        assert_eq!(child.spec.request.path, parent.spec.request.path);
        assert_eq!(child.spec.paging.page_size(), parent.spec.paging.page_size());
        assert_eq!(child.spec.records.primary_key, ["callId"]);
        assert!(child.spec.sync.always_merge && !parent.spec.sync.always_merge);
        assert_ne!(child.spec.description, parent.spec.description);
        assert_eq!(child.schema.dataset(), "outbound_results");
        assert!(c.get("privatenumber_cdrs").is_none(), "push datasets have no pipeline");
        assert!(c.schema("privatenumber_cdrs").is_some());

        let file = |name: &str, text: &str| (format!("{name}.toml"), text.to_string());
        let missing = with_extensions(vec![file("a", "name = \"a\"\nextends = \"zz\"")]);
        let message = missing.unwrap_err().to_string();
        assert!(message.contains("a.toml") && message.contains("no pipeline"), "{message}");
        let chain = with_extensions(vec![
            file("a", "name = \"a\"\nextends = \"b\""),
            file("b", "name = \"b\"\nextends = \"c\""),
            file("c", "name = \"c\""),
        ]);
        assert!(chain.unwrap_err().to_string().contains("extend that one"));
    }

    /// The call records pipeline is built in, keyed and timed as the reference says, and
    /// an open condition on a text field is refused naming the field and the fix.
    #[test]
    fn call_detail_records_is_built_in_and_open_fields_are_numeric() {
        let c = Catalog::builtin().unwrap();
        let cdr = c.get("call_detail_records").expect("call_detail_records is built in");
        assert_eq!(cdr.spec.records.primary_key, ["callSerialNo"]);
        assert_eq!(cdr.spec.records.event_time.as_deref(), Some("startTime"));
        assert_eq!(cdr.schema.field("state").map(|f| f.kind), Some(FieldKind::Int32));
        let pipelines = builtin::PIPELINES
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .filter(|(f, _)| f.starts_with("call_detail_records"))
            .collect::<Vec<_>>();
        let schemas = builtin::SCHEMAS
            .iter()
            .filter(|(f, _)| f.starts_with("call_detail_records"))
            .map(|(f, t)| {
                let text = t.replacen(
                    r#""name": "state",
      "type": "int32""#,
                    r#""name": "state",
      "type": "utf8""#,
                    1,
                );
                (f.to_string(), text)
            })
            .collect();
        let err = Catalog::from_files(pipelines, schemas).unwrap_err().to_string();
        assert!(
            err.contains("records.open_while.field") && err.contains("int32 or int64"),
            "{err}"
        );
    }

    /// The detail datasets are fan-outs of appraise_calls; a fan-out that reads a column its
    /// parent lacks, names an unknown parent, or lacks the parent's key is refused with the
    /// key to fix.
    #[test]
    fn fan_out_datasets_fit_their_parent() {
        let c = Catalog::builtin().unwrap();
        for child in ["appraise_segments", "appraise_emotions"] {
            let fan_out = c.get(child).unwrap().spec.fan_out().cloned();
            assert_eq!(fan_out.map(|f| f.parent), Some("appraise_calls".to_string()), "{child}");
        }
        let files = |edit: &dyn Fn(&str) -> String| {
            let pick = |list: &[(&str, &str)], edit: &dyn Fn(&str) -> String| {
                list.iter()
                    .filter(|(f, _)| f.starts_with("appraise_"))
                    .map(|(f, t)| {
                        let text = if f.starts_with("appraise_segments") {
                            edit(t)
                        } else {
                            t.to_string()
                        };
                        (f.to_string(), text)
                    })
                    .collect::<Vec<_>>()
            };
            Catalog::from_files(
                pick(builtin::PIPELINES, edit),
                pick(builtin::SCHEMAS, &|t| t.to_string()),
            )
        };
        assert!(files(&|t| t.to_string()).is_ok());
        let err = |from: &'static str, to: &'static str| {
            files(&move |t: &str| t.replacen(from, to, 1)).unwrap_err().to_string()
        };
        let e = err(r#"changed = ["status""#, r#"changed = ["no_such_column""#);
        assert!(e.contains("slicing.changed") && e.contains("no_such_column"), "{e}");
        let e = err(r#"parent = "appraise_calls""#, r#"parent = "appraise_call""#);
        assert!(e.contains("slicing.parent") && e.contains("appraise_call"), "{e}");
        let e = err(r#"parent = "appraise_calls""#, r#"parent = "appraise_emotions""#);
        assert!(e.contains("itself a fan-out"), "{e}");
        let e = err(r#"{ call_uuid = "call_uuid" }"#, r#"{ uuid = "call_uuid" }"#);
        assert!(e.contains("slicing.body_from_parent") && e.contains("call_uuid"), "{e}");
        let e = err(r#"field = "status""#, r#"field = "staff_id""#);
        assert!(e.contains("slicing.when.field") && e.contains("int32 or int64"), "{e}");
    }
}
