//! Everything one pipeline run needs, resolved once: the dataset, its settings, the
//! source's client and auth, the lake and its checkpoints.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::FixedOffset;
use object_store::ObjectStore;

use super::clock::Clock;
use super::request::RequestEntry;
use crate::catalog::Dataset;
use crate::config::PipelineSettings;
use crate::source::auth::Authenticator;
use crate::source::SourceClient;
use crate::state::StateStore;

/// The resolved context of one pipeline.
pub struct PipelineRun<'a> {
    /// The dataset.
    pub dataset: &'a Dataset,
    /// Its settings.
    pub settings: &'a PipelineSettings,
    /// The tenant.
    pub tenant_id: String,
    /// The source zone.
    pub zone: FixedOffset,
    /// The targets of its requests: one per `for_each` entry, or one without (at least
    /// one).
    pub entries: Vec<RequestEntry>,
    /// The object request bodies are sent in, if any (`[request] wrap_in`, unless the
    /// source sends flat bodies).
    pub body_wrapper: Option<String>,
    /// The source's client.
    pub client: &'a SourceClient,
    /// The pipeline's auth strategy on that source.
    pub auth: Authenticator,
    /// The lake.
    pub store: Arc<dyn ObjectStore>,
    /// The checkpoints.
    pub state: &'a StateStore,
    /// Local staging folder.
    pub spool_dir: PathBuf,
    /// The enabled fan-out datasets fed by this one, each with its own context.
    pub children: Vec<PipelineRun<'a>>,
    /// Where the run reads the time.
    pub clock: Clock,
}

impl PipelineRun<'_> {
    /// The dataset's name.
    pub fn dataset_name(&self) -> &str {
        &self.dataset.spec.name
    }

    /// The first request target: the only one of a dataset without `for_each`, as a
    /// fan-out dataset or one read through a cursor window is.
    pub fn first_entry(&self) -> &RequestEntry {
        &self.entries[0]
    }
}
