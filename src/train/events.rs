//! The engine's vocabulary: events it emits (consumed alike by the dashboard and the headless reporter)
//! and commands it accepts. Plain serialisable data; must not depend on burn or any front-end.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::SplitCounts;
use crate::metrics::Metrics;
use crate::model::{Init, ModelKind};

/// Commands a front-end sends to the running engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Pause,
    Resume,
    /// Stop after the current batch: save a checkpoint and the reports, then finish.
    Stop,
    /// End the current model after the current batch (checkpoint saved, test evaluated) and go on.
    SkipModel,
}

/// Where a model is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Queued,
    Training,
    Done,
    /// Ended early by the user (skip or stop); its checkpoints are kept.
    Stopped,
    Failed,
}

impl ModelStatus {
    pub fn label(self) -> &'static str {
        match self {
            ModelStatus::Queued => "queued",
            ModelStatus::Training => "training",
            ModelStatus::Done => "done",
            ModelStatus::Stopped => "stopped",
            ModelStatus::Failed => "failed",
        }
    }
}

/// Facts about the run, sent once at the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_dir: PathBuf,
    pub data_root: PathBuf,
    /// What the data folder holds (labelled wherever the run is shown).
    #[serde(default)]
    pub source: crate::data::demo::DataSource,
    pub models: Vec<ModelKind>,
    pub device: String,
    pub image_size: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub threads: usize,
    /// What the models tell apart: NORMAL vs PNEUMONIA, or NORMAL / BACTERIAL / VIRAL.
    #[serde(default)]
    pub task: crate::data::Task,
}

/// What the engine reports, in order.
/// One training step's figures: the `Batch` event's payload (in the journal, ten of them are averaged into one
/// `batch_window` line).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchProgress {
    pub model: ModelKind,
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    pub steps_per_epoch: usize,
    /// 0-based global step across epochs.
    pub global_step: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    pub images_per_sec: f64,
    /// Seconds left for this model at the current pace.
    pub eta_secs: f64,
}

/// Which checkpoint was written: the latest epoch (for `--resume`), the best validation loss so far, or the
/// ensemble's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    Last,
    Best,
    Ensemble,
}

/// The split a model was evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    Validation,
    Test,
}

impl std::fmt::Display for EvalSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Validation => "validation",
            Self::Test => "test",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    RunStarted {
        info: RunInfo,
    },
    /// Decoding the images into the cache (once per run).
    DataProgress {
        done: usize,
        total: usize,
    },
    /// Split sizes per class, after unreadable files were dropped.
    DataReady {
        counts: SplitCounts,
        skipped: usize,
        seconds: f64,
        /// The test/ folder, or a split held out from train/ when there is none.
        #[serde(default)]
        test_source: crate::data::split::TestSource,
    },
    /// A file could not be used (skipped, the run goes on).
    Skipped {
        path: PathBuf,
        error: String,
    },
    Warning {
        message: String,
    },
    /// Something worth telling that is not a problem (resuming, a training phase starting).
    Notice {
        message: String,
    },
    ModelStarted {
        model: ModelKind,
        index: usize,
        params: usize,
        steps_per_epoch: usize,
        epochs: usize,
        /// Where the weights started.
        init: Init,
    },
    Batch(BatchProgress),
    EpochEnded {
        model: ModelKind,
        epoch: usize,
        train_loss: f64,
        train_accuracy: f64,
        validation: Metrics,
        /// True when this epoch gave the best validation loss so far (its checkpoint is `best`).
        best: bool,
        seconds: f64,
        images_per_sec: f64,
        /// Share of the epoch's time the trainer waited for the data loader.
        loader_wait: f64,
    },
    CheckpointSaved {
        model: ModelKind,
        path: PathBuf,
        kind: CheckpointKind,
    },
    Evaluated {
        model: ModelKind,
        split: EvalSplit,
        metrics: Metrics,
    },
    /// The full test evaluation of a model: operating point from validation, CIs, calibration, curves, and how
    /// it differs from the models tested before it.
    Analysed {
        model: ModelKind,
        evaluation: Box<crate::analysis::Evaluation>,
        differences: Vec<PairDifference>,
    },
    ModelFinished {
        model: ModelKind,
        status: ModelStatus,
        seconds: f64,
        error: Option<String>,
    },
    Paused,
    Resumed,
    /// The whole run ended; `stopped` when the user stopped it.
    Finished {
        run_dir: PathBuf,
        stopped: bool,
    },
    /// The run could not go on (bad data, I/O); `message` says what and where.
    Failed {
        message: String,
    },
    /// A resumed run's earlier events (from its metrics.jsonl), so front-ends show the whole history.
    History {
        events: Vec<TrainEvent>,
    },
    /// `view` with several runs: one past run's events, shown beside the others (its models told apart by
    /// `run.index`), with the test scores its models were analysed with.
    Replayed {
        run: RunTag,
        scores: RunScores,
        events: Vec<TrainEvent>,
    },
}

/// Which of several runs shown side by side an event belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTag {
    /// 0 for the first run named, 1 for the second, ….
    pub index: usize,
    /// Short, shown after model names: "r1", "r2", ….
    pub label: String,
    /// One line: start time, data, size, epochs, task, initialisation.
    pub legend: String,
}

/// A run's test scores, for paired differences between models of different runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunScores {
    /// Which test images these are: runs with equal keys (and equal truth) were tested on the same images.
    pub split_key: String,
    /// True for each PNEUMONIA test image, in evaluation order.
    pub truth: Vec<bool>,
    /// Each tested model's P(pneumonia) per test image and its operating point.
    pub models: Vec<ModelScores>,
}

/// One model's test scores and operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    pub model: ModelKind,
    pub scores: Vec<f32>,
    pub threshold: f32,
}

/// A duration in seconds as `1h05m` or `4m07s` (ETAs and training times in both front-ends).
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub use crate::analysis::PairDifference;

impl From<crate::data::prepare::Prepared> for TrainEvent {
    fn from(p: crate::data::prepare::Prepared) -> Self {
        use crate::data::prepare::Prepared;
        match p {
            Prepared::Warning(message) => TrainEvent::Warning { message },
            Prepared::Skipped { path, error } => TrainEvent::Skipped { path, error },
            Prepared::Progress { done, total } => TrainEvent::DataProgress { done, total },
            Prepared::Ready { counts, skipped, seconds, test_source } => {
                TrainEvent::DataReady { counts, skipped, seconds, test_source }
            }
        }
    }
}
