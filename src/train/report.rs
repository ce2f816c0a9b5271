//! The run's results: one entry per model (status, best validation, test metrics, time, checkpoints),
//! written as report.json and a human report.md with the models side by side.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::write_atomic;
use super::events::{ModelStatus, RunInfo};
use crate::data::SplitCounts;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::ModelKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    pub model: ModelKind,
    pub status: ModelStatus,
    pub params: usize,
    pub epochs_done: usize,
    pub best_epoch: Option<usize>,
    pub best_val_loss: Option<f64>,
    pub best_val_accuracy: Option<f64>,
    pub test: Option<Metrics>,
    pub train_seconds: f64,
    pub images_per_sec: f64,
    pub best_checkpoint: Option<PathBuf>,
    pub last_checkpoint: Option<PathBuf>,
    pub init: String,
    pub error: Option<String>,
}

impl ModelResult {
    pub fn new(model: ModelKind) -> Self {
        Self {
            model,
            status: ModelStatus::Queued,
            params: 0,
            epochs_done: 0,
            best_epoch: None,
            best_val_loss: None,
            best_val_accuracy: None,
            test: None,
            train_seconds: 0.0,
            images_per_sec: 0.0,
            best_checkpoint: None,
            last_checkpoint: None,
            init: "scratch".into(),
            error: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub info: RunInfo,
    pub counts: SplitCounts,
    pub skipped_files: usize,
    pub models: Vec<ModelResult>,
    pub stopped: bool,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

impl RunReport {
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join("report.json"), serde_json::to_string_pretty(self)?.as_bytes())?;
        write_atomic(&dir.join("report.md"), self.markdown().as_bytes())
    }

    /// The comparison table (percentages; fits 80 columns), as printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<16} {:<8} {:>8} {:>7} {:>8} {:>6} {:>6} {:>5} {:>6}\n",
            "model", "status", "val loss", "val acc", "test acc", "sens", "spec", "AUC", "time"
        );
        for m in &self.models {
            let t = m.test.as_ref();
            let f = |v: Option<f64>| v.map(|x| format!("{:.1}", 100.0 * x)).unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "{:<16} {:<8} {:>8} {:>7} {:>8} {:>6} {:>6} {:>5} {:>5.0}s\n",
                m.model.title(),
                m.status.label(),
                m.best_val_loss.map(crate::metrics::fmt_loss).unwrap_or_else(|| "-".into()),
                f(m.best_val_accuracy),
                f(t.map(|t| t.accuracy)),
                f(t.map(|t| t.sensitivity)),
                f(t.map(|t| t.specificity)),
                t.and_then(|t| t.auc).map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into()),
                m.train_seconds
            ));
        }
        s
    }

    pub fn markdown(&self) -> String {
        let i = &self.info;
        let mut s = String::from("# pneumoscope run report\n\n");
        if i.synthetic {
            s.push_str(
                "> **SYNTHETIC data.** These models were trained and tested on procedurally drawn chest X-rays, \
                        not real radiographs. The figures say nothing about performance on patients.\n\n",
            );
        }
        s.push_str(&format!(
            "- data: `{}`{}\n- device: {} · image size {} px · batch {} · {} epochs\n- run folder: `{}`\n",
            i.data_root.display(),
            if i.synthetic { " (SYNTHETIC)" } else { "" },
            i.device,
            i.image_size,
            i.batch_size,
            i.epochs,
            i.run_dir.display()
        ));
        let c = &self.counts;
        s.push_str("\n## Data\n\n| split | NORMAL | PNEUMONIA | total |\n|---|---:|---:|---:|\n");
        for (name, cc) in [("train", c.train), ("validation", c.validation), ("test", c.test)] {
            s.push_str(&format!("| {name} | {} | {} | {} |\n", cc.normal, cc.pneumonia, cc.total()));
        }
        if self.skipped_files > 0 {
            s.push_str(&format!("\n{} unreadable files were skipped (see metrics.jsonl).\n", self.skipped_files));
        }
        s.push_str("\n## Models on the test split (threshold 0.5)\n\n");
        s.push_str("| | ");
        s.push_str(&self.models.iter().map(|m| m.model.title()).collect::<Vec<_>>().join(" | "));
        s.push_str(" |\n|---|");
        s.push_str(&"---:|".repeat(self.models.len()));
        s.push('\n');
        let row = |label: &str, f: &dyn Fn(&ModelResult) -> String| {
            let mut r = format!("| {label} |");
            for m in &self.models {
                r.push_str(&format!(" {} |", f(m)));
            }
            r.push('\n');
            r
        };
        let tm = |f: fn(&Metrics) -> f64| {
            move |m: &ModelResult| m.test.as_ref().map(|t| pct(f(t))).unwrap_or_else(|| "-".into())
        };
        s.push_str(&row("status", &|m| m.status.label().to_string()));
        s.push_str(&row("initialisation", &|m| m.init.clone()));
        s.push_str(&row("parameters", &|m| format!("{:.2} M", m.params as f64 / 1e6)));
        s.push_str(&row("epochs", &|m| m.epochs_done.to_string()));
        s.push_str(&row("best val loss", &|m| {
            m.best_val_loss.map(crate::metrics::fmt_loss).unwrap_or_else(|| "-".into())
        }));
        s.push_str(&row("best val accuracy", &|m| m.best_val_accuracy.map(pct).unwrap_or_else(|| "-".into())));
        s.push_str(&row("test accuracy", &tm(|t| t.accuracy)));
        s.push_str(&row("sensitivity", &tm(|t| t.sensitivity)));
        s.push_str(&row("specificity", &tm(|t| t.specificity)));
        s.push_str(&row("precision", &tm(|t| t.precision)));
        s.push_str(&row("F1", &tm(|t| t.f1)));
        s.push_str(&row("ROC-AUC", &|m| {
            m.test.and_then(|t| t.auc).map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into())
        }));
        s.push_str(&row("training time", &|m| format!("{:.0} s", m.train_seconds)));
        s.push_str(&row("throughput", &|m| format!("{:.1} img/s", m.images_per_sec)));
        s.push_str("\n## Confusion matrices (test)\n\nRows: true class; columns: predicted.\n\n");
        for m in &self.models {
            let Some(t) = m.test else { continue };
            let cm = t.confusion;
            s.push_str(&format!(
                "### {}\n\n| true \\ predicted | NORMAL | PNEUMONIA |\n|---|---:|---:|\n| NORMAL | {} | {} |\n| PNEUMONIA | {} | {} |\n\n",
                m.model.title(),
                cm.tn,
                cm.fp,
                cm.fn_,
                cm.tp
            ));
        }
        for m in &self.models {
            if let Some(e) = &m.error {
                s.push_str(&format!("**{} failed:** {e}\n\n", m.model.title()));
            }
        }
        s
    }
}
