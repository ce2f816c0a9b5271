//! `pneumoscope view RUN_DIR`: the dashboard on a finished or interrupted run, without training — class balance,
//! curves, confusion, ROC, compare and predict (with that run's checkpoints, on its test split).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use crate::error::{exit, ConfigError, Result};
use crate::train::runs;

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// A run folder (runs/<start time>/, as `pneumoscope runs` lists them).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
}

pub fn run(args: &ViewArgs) -> Result<i32> {
    if args.runs.len() > 1 {
        return Err(ConfigError::new(
            "view opens one run at a time; several runs side by side are not supported yet (compare them with \
             `pneumoscope runs`)",
        )
        .into());
    }
    let dir = &args.runs[0];
    let replay = runs::load(dir)?;
    if !std::io::stdout().is_terminal() {
        return Err(ConfigError::new(format!(
            "view needs a terminal; without one, read {} or list runs with `pneumoscope runs`",
            dir.join("report.md").display()
        ))
        .into());
    }
    let models = replay.info.models.clone();
    // The predict pane browses the run's test split, rebuilt from its configuration as training built it.
    let data_cfg = replay.config.as_ref().map(|c| c.data.clone()).unwrap_or_default();
    let test_items = match crate::data::layout::Layout::scan(&replay.info.data_root) {
        Ok(layout) => {
            let plan = crate::data::split::plan(&layout, &data_cfg);
            plan.test.iter().map(|s| (s.path.clone(), s.label)).collect()
        }
        Err(e) => {
            errln!("note: the run's data folder cannot be read ({e:#}); the predict pane is empty");
            Vec::new()
        }
    };
    // What would go to stderr while the dashboard holds the terminal; the run folder is left as it is.
    let log_file = std::env::temp_dir().join(format!("pneumoscope-view-{}.log", std::process::id()));
    let handle = replay.into_handle();
    let signals = crate::signals::forward_stop_signals(handle.commands.clone())?;
    crate::tui::run(handle, &models, test_items, data_cfg.max_image_side, &log_file, &signals)?;
    Ok(exit::OK)
}
