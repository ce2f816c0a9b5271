//! What the dashboard knows about one model: its status, curves, figures and checkpoint, as the engine's events
//! reported them.

use std::path::PathBuf;

use crate::metrics::Metrics;
use crate::model::{Init, ModelKind};
use crate::train::events::ModelStatus;

/// What the dashboard knows about one model.
#[derive(Debug, Clone)]
pub struct ModelView {
    pub kind: ModelKind,
    pub status: ModelStatus,
    pub params: usize,
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps_per_epoch: usize,
    /// (x in epochs, value) per batch.
    pub batch_loss: Vec<(f64, f64)>,
    pub batch_acc: Vec<(f64, f64)>,
    /// (epoch, value) per epoch.
    pub train_loss: Vec<(f64, f64)>,
    pub train_acc: Vec<(f64, f64)>,
    pub val_loss: Vec<(f64, f64)>,
    pub val_acc: Vec<(f64, f64)>,
    pub last_val: Option<Metrics>,
    pub test: Option<Metrics>,
    /// Operating point, CIs, calibration and curves once the model is tested.
    pub evaluation: Option<crate::analysis::Evaluation>,
    pub best_val_loss: Option<f64>,
    pub best_val_acc: Option<f64>,
    pub lr: f64,
    pub images_per_sec: f64,
    pub eta_secs: f64,
    pub seconds: f64,
    pub best_checkpoint: Option<PathBuf>,
    pub error: Option<String>,
    pub init: Init,
    /// Which run the model belongs to when several are shown side by side (`view A B`): 0, 1, ….
    pub run: usize,
    /// That run's short label ("r1"), shown after the model's name; None with a single run.
    pub run_label: Option<String>,
    /// P(pneumonia) of each test image and the operating point, for paired differences across runs.
    pub test_scores: Option<(Vec<f32>, f32)>,
}

impl ModelView {
    pub fn new(kind: ModelKind) -> Self {
        Self {
            kind,
            status: ModelStatus::Queued,
            params: 0,
            epoch: 0,
            epochs: 0,
            step: 0,
            steps_per_epoch: 0,
            batch_loss: Vec::new(),
            batch_acc: Vec::new(),
            train_loss: Vec::new(),
            train_acc: Vec::new(),
            val_loss: Vec::new(),
            val_acc: Vec::new(),
            last_val: None,
            test: None,
            evaluation: None,
            best_val_loss: None,
            best_val_acc: None,
            lr: 0.0,
            images_per_sec: 0.0,
            eta_secs: 0.0,
            seconds: 0.0,
            best_checkpoint: None,
            error: None,
            init: if kind.is_network() { Init::Scratch } else { Init::Mean(Vec::new()) },
            run: 0,
            run_label: None,
            test_scores: None,
        }
    }

    /// The same model of run `run`, labelled `label`.
    pub fn of_run(kind: ModelKind, run: usize, label: &str) -> Self {
        Self { run, run_label: Some(label.to_string()), ..Self::new(kind) }
    }

    /// The model's short name, with its run's label when several runs are shown ("regularized·r2").
    pub fn name(&self) -> String {
        match &self.run_label {
            Some(r) => format!("{}·{r}", self.kind.name()),
            None => self.kind.name().to_string(),
        }
    }

    /// The model's title, with its run's label when several runs are shown ("Regularized CNN · r2").
    pub fn title(&self) -> String {
        match &self.run_label {
            Some(r) => format!("{} · {r}", self.kind.title()),
            None => self.kind.title().to_string(),
        }
    }
}
