//! Shared pieces of the service's unit tests.

use std::path::Path;
use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Engine;

/// An engine on a local lake at `lake` whose only source is never reached.
pub(crate) fn engine_on(lake: &Path) -> Arc<Engine> {
    let text = format!(
        "tenant_id = \"t\"\n[destination]\nurl = \"file://{}\"\n\
         [sources.oifde]\nbase_url = \"http://127.0.0.1:9\"\nauth_token = \"x\"\n",
        lake.display()
    );
    let settings = Settings::parse(Path::new("c.toml"), &text, &|_| None).unwrap();
    Arc::new(Engine::open(settings).unwrap())
}
