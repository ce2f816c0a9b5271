//! The run's results: one entry per model (status, best validation, test metrics, time, checkpoints),
//! written as report.json and a human report.md with the models side by side.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::events::{ModelStatus, RunInfo};
use crate::data::split::TestSource;
use crate::data::SplitCounts;
use crate::metrics::Metrics;
use crate::model::{Init, ModelKind};

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
    pub init: Init,
    pub error: Option<String>,
    /// Operating point, test figures at 0.5 and at it, confidence intervals, calibration, curves.
    #[serde(default)]
    pub evaluation: Option<crate::analysis::Evaluation>,
    /// P(pneumonia) of each test image (in the order of `RunReport::test_truth`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_scores: Vec<f32>,
    /// P(pneumonia) of each validation image (in the order of `RunReport::validation_truth`): what the
    /// ensemble's operating point is chosen on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_scores: Vec<f32>,
    /// The three-class task: each test image's NORMAL, BACTERIAL and VIRAL probabilities (row-major N × 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_probs: Vec<f32>,
    /// The same for the validation images (what the ensemble's validation loss and accuracy come from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_probs: Vec<f32>,
    /// Checkpoints or headers that could not be written (a full disk): the run does not claim them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsaved: Vec<String>,
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
            init: Init::Scratch,
            error: None,
            evaluation: None,
            test_scores: Vec::new(),
            validation_scores: Vec::new(),
            test_probs: Vec::new(),
            validation_probs: Vec::new(),
            unsaved: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub info: RunInfo,
    pub counts: SplitCounts,
    /// Where the test images came from: the test/ folder or a split held out from train/.
    #[serde(default)]
    pub test_source: TestSource,
    pub skipped_files: usize,
    pub models: Vec<ModelResult>,
    pub stopped: bool,
    /// True for each PNEUMONIA test image, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_truth: Vec<bool>,
    /// True for each PNEUMONIA validation image, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_truth: Vec<bool>,
    /// The three-class task: each test image's true class (0 NORMAL, 1 BACTERIAL, 2 VIRAL), in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_targets: Vec<usize>,
    /// The same for the validation images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_targets: Vec<usize>,
    /// Paired bootstrap differences between the tested models.
    #[serde(default)]
    pub differences: Vec<super::events::PairDifference>,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

impl RunReport {
    /// Paired bootstrap differences of every tested model against each model tested before it.
    pub fn compare_models(&mut self, resamples: usize, seed: u64) {
        let tested: Vec<&ModelResult> = self
            .models
            .iter()
            .filter(|m| m.evaluation.is_some() && m.test_scores.len() == self.test_truth.len())
            .collect();
        let mut out = Vec::new();
        for (j, b) in tested.iter().enumerate() {
            for a in &tested[j + 1..] {
                let (ta, tb) = (a.evaluation.as_ref().map(|e| e.threshold), b.evaluation.as_ref().map(|e| e.threshold));
                let (accuracy, auc) = crate::analysis::paired_differences(
                    (&a.test_scores, ta.unwrap_or(0.5)),
                    (&b.test_scores, tb.unwrap_or(0.5)),
                    &self.test_truth,
                    resamples,
                    seed,
                );
                out.push(super::events::PairDifference { a: a.model, b: b.model, accuracy, auc });
            }
        }
        self.differences = out;
    }

    /// A line to print under the comparison table when the figures come from the built-in data.
    pub fn data_caveat(&self) -> Option<String> {
        use crate::data::demo::DataSource;
        match self.info.source {
            DataSource::Folder => None,
            DataSource::Synthetic => {
                Some("(trained and tested on SYNTHETIC data: these figures say nothing about real radiographs)".into())
            }
            DataSource::RealSubset => Some(format!(
                "(trained and tested on the small REAL demo subset: {} test films, so wide intervals; train on the \
                 full data set for figures that mean something)",
                self.counts.test.total()
            )),
        }
    }

    pub fn markdown(&self) -> String {
        self.markdown_with(&[])
    }

    /// The comparison table (percentages; fits 80 columns), as printed at the end of a run: test figures at
    /// 0.5 and, on a second line, at the operating point chosen on validation.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<16} {:<8} {:>8} {:>7} {:>5} {:>8} {:>5} {:>5} {:>5} {:>6}\n",
            "model", "status", "val loss", "val acc", "thr", "test acc", "sens", "spec", "AUC", "time"
        );
        let f = |v: Option<f64>| v.map(|x| format!("{:.1}", 100.0 * x)).unwrap_or_else(|| "-".into());
        for m in &self.models {
            let t = m.test.as_ref();
            s.push_str(&format!(
                "{:<16} {:<8} {:>8} {:>7} {:>5} {:>8} {:>5} {:>5} {:>5} {:>5.0}s\n",
                m.model.title(),
                m.status.label(),
                m.best_val_loss.map(crate::metrics::fmt_loss).unwrap_or_else(|| "-".into()),
                f(m.best_val_accuracy),
                if t.is_some() { "0.50" } else { "-" },
                f(t.map(|t| t.accuracy)),
                f(t.map(|t| t.sensitivity)),
                f(t.map(|t| t.specificity)),
                t.and_then(|t| t.auc).map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into()),
                m.train_seconds
            ));
            if let Some(e) = &m.evaluation {
                let o = &e.test_at_threshold;
                s.push_str(&format!(
                    "{:<16} {:<8} {:>8} {:>7} {:>5.2} {:>8} {:>5} {:>5}\n",
                    "",
                    "",
                    "",
                    "",
                    e.threshold,
                    f(Some(o.accuracy)),
                    f(Some(o.sensitivity)),
                    f(Some(o.specificity)),
                ));
            }
        }
        if self.models.iter().any(|m| m.evaluation.is_some()) {
            s.push_str("(second line: each model's operating point, chosen on the validation split)\n");
        }
        s
    }

    /// report.md, embedding the given plots (paths relative to the run folder).
    pub fn markdown_with(&self, plots: &[PathBuf]) -> String {
        let i = &self.info;
        let mut s = String::from("# pneumoscope run report\n\n");
        match i.source {
            crate::data::demo::DataSource::Synthetic => s.push_str(
                "> **SYNTHETIC data.** These models were trained and tested on procedurally drawn chest X-rays, \
                        not real radiographs. The figures say nothing about performance on patients.\n\n",
            ),
            crate::data::demo::DataSource::RealSubset => s.push_str(
                "> **Small REAL demo subset.** These models were trained and tested on the small subset of the Kaggle \
                 training radiographs built into pneumoscope (downscaled to 128 px), not the full data set: the \
                 test split is small and held out from it, so the intervals are wide.\n\n",
            ),
            crate::data::demo::DataSource::Folder => {}
        }
        s.push_str(&format!(
            "- data: `{}`{}\n- device: {} · image size {} px · batch {} · {} epochs\n- run folder: `{}`\n",
            i.data_root.display(),
            match i.source.label() {
                "" => String::new(),
                label => format!(" ({label})"),
            },
            i.device,
            i.image_size,
            i.batch_size,
            i.epochs,
            i.run_dir.display()
        ));
        let c = &self.counts;
        if i.task == crate::data::Task::ThreeClass {
            s.push_str(
                "\nTask: **three classes**, NORMAL / BACTERIAL / VIRAL (the cause from the Kaggle file names); \
                 P(pneumonia) = P(BACTERIAL) + P(VIRAL) for the two-class figures.\n",
            );
            s.push_str("\n## Data\n\n| split | NORMAL | BACTERIAL | VIRAL | total |\n|---|---:|---:|---:|---:|\n");
            for (name, cc) in [("train", c.train), ("validation", c.validation), ("test", c.test)] {
                s.push_str(&format!("| {name} | {} | {} | {} | {} |\n", cc.normal, cc.bacterial, cc.viral, cc.total()));
            }
        } else {
            s.push_str("\n## Data\n\n| split | NORMAL | PNEUMONIA | total |\n|---|---:|---:|---:|\n");
            for (name, cc) in [("train", c.train), ("validation", c.validation), ("test", c.test)] {
                s.push_str(&format!("| {name} | {} | {} | {} |\n", cc.normal, cc.pneumonia, cc.total()));
            }
        }
        s.push_str(&format!("\nTest images: {}.\n", self.test_source.describe()));
        if self.skipped_files > 0 {
            s.push_str(&format!("\n{} unreadable files were skipped (see metrics.jsonl).\n", self.skipped_files));
        }
        if !plots.is_empty() {
            s.push_str("\n## Plots\n\n");
            for p in plots {
                let name = p.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                s.push_str(&format!("![{name}]({})\n\n", p.display()));
            }
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
        s.push_str(&row("initialisation", &|m| m.init.to_string()));
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
        self.push_operating_points(&mut s);
        s.push_str("\n## Confusion matrices (test, threshold 0.5)\n\nRows: true class; columns: predicted.\n\n");
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
            let Some(e) = &m.evaluation else { continue };
            let cm = e.test_at_threshold.confusion;
            s.push_str(&format!(
                "### {} at its operating point {:.2}\n\n| true \\ predicted | NORMAL | PNEUMONIA |\n|---|---:|---:|\n| NORMAL | {} | {} |\n| PNEUMONIA | {} | {} |\n\n",
                m.model.title(),
                e.threshold,
                cm.tn,
                cm.fp,
                cm.fn_,
                cm.tp
            ));
        }
        let three: Vec<_> = self
            .models
            .iter()
            .filter_map(|m| m.evaluation.as_ref().and_then(|e| e.three_class.as_ref()).map(|t| (m, t)))
            .collect();
        if !three.is_empty() {
            s.push_str("\n## Three classes (test)\n\n");
            for (m, t) in three {
                s.push_str(&format!("### {}\n\n{}\n", m.model.title(), t.markdown()));
            }
        }
        for m in &self.models {
            if let Some(e) = &m.error {
                s.push_str(&format!("**{} failed:** {e}\n\n", m.model.title()));
            }
        }
        s
    }
}

impl RunReport {
    /// Operating points, test figures with 95 % CIs at 0.5 and at them, differences and calibration.
    fn push_operating_points(&self, s: &mut String) {
        let evaluated: Vec<(&ModelResult, &crate::analysis::Evaluation)> =
            self.models.iter().filter_map(|m| m.evaluation.as_ref().map(|e| (m, e))).collect();
        if evaluated.is_empty() {
            return;
        }
        let resamples = evaluated[0].1.ci_at_threshold.resamples;
        s.push_str(&format!(
            "\n## Operating points and 95 % confidence intervals (test)\n\nEach model's decision threshold is chosen on \
             the validation split ({}), never on test, and saved in its checkpoint (eval and predict use it). \
             Intervals: percentile bootstrap, {resamples} resamples of the test images, seed `data.seed`.\n\n",
            evaluated[0].1.rule
        ));
        s.push_str("| model | threshold | accuracy | sensitivity | specificity | F1 | AUC | val AUC | ECE |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let ci = |v: f64, i: crate::analysis::Interval| crate::analysis::pct_ci(v, i);
        let num = |v: f64, i: crate::analysis::Interval| format!("{v:.3} [{:.3}, {:.3}]", i.lo, i.hi);
        for (m, e) in &evaluated {
            for (thr, t, c) in
                [(0.5, &e.test_at_half, &e.ci_at_half), (e.threshold, &e.test_at_threshold, &e.ci_at_threshold)]
            {
                s.push_str(&format!(
                    "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {:.3} |\n",
                    m.model.title(),
                    thr,
                    ci(t.accuracy, c.accuracy),
                    ci(t.sensitivity, c.sensitivity),
                    ci(t.specificity, c.specificity),
                    num(t.f1, c.f1),
                    match (t.auc, c.auc) {
                        (Some(a), Some(i)) => num(a, i),
                        _ => "-".into(),
                    },
                    e.validation_auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into()),
                    e.calibration.ece
                ));
            }
        }
        if !self.differences.is_empty() {
            s.push_str("\n### Differences between models (paired bootstrap on the same test images)\n\n");
            for d in &self.differences {
                s.push_str(&format!("- {}\n", crate::analysis::describe_difference(d)));
            }
        }
        s.push_str("\n### Calibration (test): share truly PNEUMONIA per band of predicted P(pneumonia)\n\n| band |");
        for (m, _) in &evaluated {
            s.push_str(&format!(" {} |", m.model.title()));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(evaluated.len()));
        s.push('\n');
        let bins = evaluated[0].1.calibration.bins.len();
        for b in 0..bins {
            let bin0 = &evaluated[0].1.calibration.bins[b];
            s.push_str(&format!("| {:.1}–{:.1} |", bin0.lo, bin0.hi));
            for (_, e) in &evaluated {
                let bin = &e.calibration.bins[b];
                if bin.count == 0 {
                    s.push_str(" - |");
                } else {
                    s.push_str(&format!(" {:.0} % of {} |", 100.0 * bin.fraction_positive, bin.count));
                }
            }
            s.push('\n');
        }
        s.push_str(
            "\nA well-calibrated model's share in each band lies inside the band. ECE: expected calibration error.\n",
        );
    }
}
