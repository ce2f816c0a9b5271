//! What a run is given: the resolved configuration, the data folder, the run folder and the device — all decided
//! by the front-end before the engine starts.

use std::path::PathBuf;

use super::backend::Resolved;
use crate::config::Config;
use crate::data::demo::DataSource;

/// Everything a run needs, resolved by the front-end.
#[derive(Debug, Clone)]
pub struct RunSetup {
    pub config: Config,
    /// The data folder (the user's, or the generated synthetic one).
    pub data_root: PathBuf,
    /// What the data folder holds (a user's folder, the built-in real subset, SYNTHETIC pictures).
    pub source: DataSource,
    /// The run folder to fill (created by the engine if missing).
    pub run_dir: PathBuf,
    pub device: Resolved,
    /// Continue the run already in `run_dir` (its report.json, checkpoints and metrics.jsonl).
    pub resume: bool,
    /// On resume, train a model whose `last` checkpoint is damaged again from scratch instead of failing it.
    pub restart_damaged: bool,
}
