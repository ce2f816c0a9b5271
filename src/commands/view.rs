//! `pneumoscope view RUN_DIR [RUN_DIR…]`: the dashboard on finished or interrupted runs, without training — class
//! balance, curves, confusion, ROC, compare and predict (with the runs' checkpoints, on the first run's test
//! split). Several runs are shown side by side: every model of every run, labelled r1, r2, …, in one list.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use crate::error::{exit, ConfigError, Result};
use crate::train::runs;

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Run folders (runs/<start time>/, as `pneumoscope runs` lists them); several are shown side by side.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
}

pub fn run(args: &ViewArgs) -> Result<i32> {
    let dir = &args.runs[0];
    let mut replays = Vec::with_capacity(args.runs.len());
    for d in &args.runs {
        replays.push(runs::load(d)?);
    }
    let replay = &replays[0];
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
    let handle = if replays.len() == 1 { replays.remove(0).into_handle() } else { runs::side_by_side(replays) };
    let signals = crate::signals::forward_stop_signals(handle.commands.clone())?;
    crate::tui::run(handle, &models, test_items, data_cfg.max_image_side, &log_file, &signals)?;
    Ok(exit::OK)
}
