//! `pneumoscope runs`: the runs under a runs folder — when each started, its data, models, status and each
//! model's best figures — as a table or JSON; `pneumoscope view RUN_DIR` opens one in the dashboard.

use std::path::PathBuf;

use clap::Args;

use super::load_config;
use crate::error::{exit, ConfigError, Result};
use crate::train::runs::{self, RunStatus, RunSummary};

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Folder holding the runs (default: output.runs_dir from the config, `runs`).
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Config file (default: ./config.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON (one array of runs) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}", 100.0 * v))
}

/// The table: one line per run, then one per model.
pub fn table(list: &[RunSummary]) -> String {
    let mut s = String::new();
    for r in list {
        let name = r.dir.file_name().map_or_else(|| r.dir.display().to_string(), |n| n.to_string_lossy().into());
        let status = match r.status {
            RunStatus::Finished => "finished",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Unreadable => "unreadable",
        };
        let what = match &r.info {
            Some(i) => {
                let data = i
                    .data_root
                    .file_name()
                    .map_or_else(|| i.data_root.display().to_string(), |n| n.to_string_lossy().into());
                let label = i.source.label();
                let data = if label.is_empty() { data } else { format!("{data}: {label}") };
                let task = match i.task {
                    crate::data::Task::ThreeClass => ", three classes",
                    crate::data::Task::Pneumonia => "",
                };
                format!("{} px, {} epochs{task}, {data}", i.image_size, i.epochs)
            }
            None => String::new(),
        };
        s.push_str(&format!("{name}  {status:<11} {what}\n"));
        if let Some(p) = &r.problem {
            s.push_str(&format!("    {p}\n"));
        }
        for m in &r.models {
            s.push_str(&format!(
                "    {:<16} {:<12} epochs {:>3}  val acc {:>5}  test acc {:>5}  AUC {}\n",
                m.model.name(),
                m.status,
                m.epochs_done,
                pct(m.best_val_accuracy),
                pct(m.test_accuracy),
                m.test_auc.map_or("-".into(), |a| format!("{a:.3}")),
            ));
        }
    }
    s
}

pub fn run(args: &RunsArgs) -> Result<i32> {
    let dir = match &args.runs_dir {
        Some(d) => d.clone(),
        None => load_config(args.config.as_deref())?.output.runs_dir,
    };
    if !dir.is_dir() {
        return Err(ConfigError::new(format!("runs folder {} does not exist (`--runs-dir`)", dir.display())).into());
    }
    let list = runs::list(&dir)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        outln!("no runs in {}", dir.display());
    } else {
        outln!("runs in {} (test accuracy at each model's operating point; validation: best epoch)", dir.display());
        outln!("{}", table(&list).trim_end());
    }
    Ok(exit::OK)
}
