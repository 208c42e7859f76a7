//! What every handler can reach.

use std::sync::Arc;

use harden_commands::Harden;
use harden_projections::directory::Directory;
use harden_projections::ReadModels;

#[derive(Clone)]
pub struct AppState {
    pub harden: Arc<Harden>,
    pub directory: Directory,
    pub read_models: ReadModels,
}
