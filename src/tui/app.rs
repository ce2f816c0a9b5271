//! The dashboard's state, updated from engine events and keys (through the key map, keymap.rs). No terminal I/O
//! here: rendering is a pure function of `App`.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};

use crate::data::{Class, SplitCounts};
use crate::model::ModelKind;
use crate::train::events::{CheckpointKind, ModelStatus, RunInfo, TrainEvent};

use super::keymap::{action_for, Action, Pane};
pub use super::model_view::ModelView;
use super::predict::{PredictResult, PredictState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Validation,
    Test,
}

/// A request the event loop must carry out (the App itself does no I/O).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(crate::train::Command),
    Predict { path: PathBuf, checkpoint: PathBuf, model: ModelKind, truth: Class, heatmap: bool },
}

/// The dashboard state.
#[derive(Debug, Clone)]
pub struct App {
    pub info: Option<RunInfo>,
    pub counts: Option<SplitCounts>,
    pub data_progress: (usize, usize),
    pub skipped: usize,
    /// The test/ folder, or a split held out from train/.
    pub test_source: crate::data::split::TestSource,
    pub models: Vec<ModelView>,
    pub selected: usize,
    pub pane: Pane,
    pub help: bool,
    pub confirm_quit: bool,
    pub paused: bool,
    pub stopping: bool,
    pub finished: bool,
    pub failed: Option<String>,
    /// EMA smoothing factor of the per-batch curves (0 = raw, 0.99 = very smooth), as TensorBoard.
    pub smoothing: f64,
    pub per_epoch: bool,
    pub split: Split,
    pub predict: PredictState,
    pub log: Vec<String>,
    pub should_quit: bool,
    /// The terminal went away: nothing is drawn any more.
    pub hung_up: bool,
    /// Terminal and device facts for the status line (device name, memory) when known.
    pub device_note: Option<String>,
    /// Paired bootstrap differences between the tested models.
    pub differences: Vec<crate::train::events::PairDifference>,
    /// Several runs side by side (`view A B …`): each run's tag, by index (empty for one run or a training).
    pub runs: Vec<crate::train::events::RunTag>,
    /// The run whose events are being applied (models are told apart by (run, kind)).
    pub(super) active_run: usize,
    /// Each run's test images, for paired differences across runs.
    pub run_tests: super::pairing::RunTests,
    /// The model marked with `m` in the compare pane; the selected one is compared with it.
    pub marked: Option<usize>,
    pub pair: Option<super::pairing::Pair>,
}

impl App {
    pub fn new(models: &[ModelKind]) -> Self {
        Self {
            info: None,
            counts: None,
            data_progress: (0, 0),
            skipped: 0,
            test_source: Default::default(),
            models: models.iter().map(|&k| ModelView::new(k)).collect(),
            selected: 0,
            pane: Pane::Charts,
            help: false,
            confirm_quit: false,
            paused: false,
            stopping: false,
            finished: false,
            failed: None,
            smoothing: 0.6,
            per_epoch: false,
            split: Split::Test,
            predict: PredictState::default(),
            log: Vec::new(),
            should_quit: false,
            hung_up: false,
            device_note: None,
            differences: Vec::new(),
            runs: Vec::new(),
            active_run: 0,
            run_tests: Default::default(),
            marked: None,
            pair: None,
        }
    }

    pub fn training(&self) -> bool {
        !self.finished && self.failed.is_none()
    }

    pub fn current(&self) -> &ModelView {
        &self.models[self.selected.min(self.models.len().saturating_sub(1))]
    }

    /// The view of `kind` in the run being applied; the ensemble's row is added when the engine first reports it
    /// (after the models).
    pub(super) fn model_mut(&mut self, kind: ModelKind) -> Option<&mut ModelView> {
        let run = self.active_run;
        if kind == ModelKind::Ensemble && !self.models.iter().any(|m| m.kind == kind && m.run == run) {
            let view = match self.runs.get(run) {
                Some(tag) => ModelView::of_run(kind, run, &tag.label),
                None => ModelView::new(kind),
            };
            // After the run's last model, so each run's rows stay together.
            let at = self.models.iter().rposition(|m| m.run == run).map_or(self.models.len(), |i| i + 1);
            self.models.insert(at, view);
        }
        self.models.iter_mut().find(|m| m.kind == kind && m.run == run)
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
        if self.log.len() > 200 {
            self.log.remove(0);
        }
    }

    /// Applies one engine event.
    pub fn on_event(&mut self, ev: TrainEvent) {
        match ev {
            TrainEvent::RunStarted { info } => {
                let networks = self.models.iter().map(|m| m.kind).filter(|k| k.is_network());
                if self.models.is_empty() || networks.ne(info.models.iter().copied()) {
                    self.models = info.models.iter().map(|&k| ModelView::new(k)).collect();
                }
                self.predict.three_classes = info.task == crate::data::Task::ThreeClass;
                self.info = Some(info);
            }
            TrainEvent::DataProgress { done, total } => self.data_progress = (done, total),
            TrainEvent::DataReady { counts, skipped, test_source, .. } => {
                self.counts = Some(counts);
                self.test_source = test_source;
                self.skipped = skipped;
            }
            TrainEvent::Skipped { path, error } => self.note(format!("skipped {}: {error}", path.display())),
            TrainEvent::Warning { message } => self.note(format!("warning: {message}")),
            TrainEvent::Notice { message } => self.note(message),
            TrainEvent::ModelStarted { model, index, params, steps_per_epoch, epochs, init } => {
                self.selected = index.min(self.models.len().saturating_sub(1));
                if let Some(m) = self.model_mut(model) {
                    m.status = ModelStatus::Training;
                    m.init = init;
                    m.params = params;
                    m.steps_per_epoch = steps_per_epoch;
                    m.epochs = epochs;
                }
            }
            TrainEvent::Batch(b) => {
                if let Some(m) = self.model_mut(b.model) {
                    let x = (b.epoch - 1) as f64 + b.step as f64 / b.steps_per_epoch.max(1) as f64;
                    m.epoch = b.epoch;
                    m.step = b.step;
                    m.batch_loss.push((x, b.loss));
                    m.batch_acc.push((x, b.accuracy));
                    m.lr = b.lr;
                    m.images_per_sec = b.images_per_sec;
                    m.eta_secs = b.eta_secs;
                }
            }
            TrainEvent::EpochEnded { model, epoch, train_loss, train_accuracy, validation, .. } => {
                if let Some(m) = self.model_mut(model) {
                    let x = epoch as f64;
                    m.train_loss.push((x, train_loss));
                    m.train_acc.push((x, train_accuracy));
                    m.val_loss.push((x, validation.loss));
                    m.val_acc.push((x, validation.task_accuracy()));
                    if m.best_val_loss.is_none_or(|b| validation.loss < b) {
                        m.best_val_loss = Some(validation.loss);
                        m.best_val_acc = Some(validation.task_accuracy());
                    }
                    m.last_val = Some(validation);
                }
            }
            TrainEvent::CheckpointSaved { model, path, kind } => {
                if matches!(kind, CheckpointKind::Best | CheckpointKind::Ensemble) {
                    if let Some(m) = self.model_mut(model) {
                        m.best_checkpoint = Some(path);
                    }
                }
            }
            TrainEvent::Evaluated { model, metrics, .. } => {
                if let Some(m) = self.model_mut(model) {
                    m.test = Some(metrics);
                }
            }
            TrainEvent::Analysed { model, evaluation, differences } => {
                for d in &differences {
                    self.note(crate::analysis::describe_difference(d));
                }
                self.differences.retain(|d| d.a != model && d.b != model);
                self.differences.extend(differences);
                if let Some(m) = self.model_mut(model) {
                    m.evaluation = Some(*evaluation);
                }
            }
            TrainEvent::ModelFinished { model, status, seconds, error } => {
                if let Some(m) = self.model_mut(model) {
                    m.status = status;
                    m.seconds = seconds;
                    if let Some(e) = &error {
                        m.error = Some(e.clone());
                    }
                }
                if let Some(e) = error {
                    self.note(format!("{model} failed: {e}"));
                }
            }
            TrainEvent::History { events } => {
                for e in events {
                    self.on_event(e);
                }
            }
            TrainEvent::Replayed { run, scores, events } => self.on_replayed(run, scores, events),
            TrainEvent::Paused => self.paused = true,
            TrainEvent::Resumed => self.paused = false,
            TrainEvent::Finished { stopped, .. } => {
                self.finished = true;
                self.paused = false;
                if stopped {
                    self.stopping = true;
                }
                if self.confirm_quit {
                    self.confirm_quit = false;
                }
                for m in &mut self.models {
                    if m.status == ModelStatus::Queued || m.status == ModelStatus::Training {
                        m.status = ModelStatus::Stopped;
                    }
                }
            }
            TrainEvent::Failed { message } => {
                self.note(format!("error: {message}"));
                self.failed = Some(message);
            }
        }
    }

    /// Applies a key; returns what the event loop must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.confirm_quit {
            match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                    self.confirm_quit = false;
                    self.should_quit = true;
                    if self.training() {
                        self.stopping = true;
                        fx.push(Effect::Send(crate::train::Command::Stop));
                    }
                }
                _ => self.confirm_quit = false,
            }
            return fx;
        }
        let Some(action) = action_for(&key) else {
            return fx;
        };
        if self.help && !matches!(action, Action::Help | Action::Close | Action::Quit) {
            self.help = false;
        }
        match action {
            Action::NextPane => self.pane = Pane::ALL[(self.pane.index() + 1) % Pane::ALL.len()],
            Action::PrevPane => self.pane = Pane::ALL[(self.pane.index() + Pane::ALL.len() - 1) % Pane::ALL.len()],
            Action::GoTo(p) => self.pane = p,
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-10),
            Action::PageDown => self.move_selection(10),
            Action::NextModel if !self.models.is_empty() => {
                self.selected = (self.selected + 1) % self.models.len();
                self.refresh_pair();
            }
            Action::PrevModel if !self.models.is_empty() => {
                self.selected = (self.selected + self.models.len() - 1) % self.models.len();
                self.refresh_pair();
            }
            Action::Mark => self.toggle_mark(),
            Action::NextModel | Action::PrevModel => {}
            Action::Select => {
                if self.pane == Pane::Predict {
                    if let Some(e) = self.classify_selected() {
                        fx.push(e);
                    }
                }
            }
            Action::PauseResume if self.training() && !self.stopping => {
                self.paused = !self.paused;
                fx.push(Effect::Send(if self.paused {
                    crate::train::Command::Pause
                } else {
                    crate::train::Command::Resume
                }));
            }
            Action::SkipModel if self.training() && !self.stopping => {
                fx.push(Effect::Send(crate::train::Command::SkipModel))
            }
            Action::Stop if self.training() && !self.stopping => {
                self.stopping = true;
                fx.push(Effect::Send(crate::train::Command::Stop));
            }
            Action::PauseResume | Action::SkipModel | Action::Stop => {}
            Action::Quit => {
                self.help = false;
                if self.training() {
                    self.confirm_quit = true;
                } else {
                    self.should_quit = true;
                }
            }
            Action::Help => self.help = !self.help,
            Action::Close => self.help = false,
            Action::SmoothMore => self.smoothing = (self.smoothing + 0.1).min(0.95),
            Action::SmoothLess => self.smoothing = (self.smoothing - 0.1).max(0.0),
            Action::ToggleChartScale => self.per_epoch = !self.per_epoch,
            Action::ToggleSplit => {
                self.split = if self.split == Split::Validation { Split::Test } else { Split::Validation }
            }
            Action::ToggleHeatmap => {
                self.predict.heatmap = !self.predict.heatmap;
                // Turned on over a shown verdict without a map: compute it.
                let needs_map = self.predict.result.as_ref().is_some_and(|r| {
                    r.overlay.is_none()
                        && r.outcome.is_ok()
                        && self.predict.items.get(self.predict.selected).map(|i| &i.0) == Some(&r.path)
                });
                if self.pane == Pane::Predict && self.predict.heatmap && needs_map {
                    fx.extend(self.classify_selected());
                }
            }
        }
        fx
    }

    fn move_selection(&mut self, delta: isize) {
        if self.pane != Pane::Predict || self.predict.items.is_empty() {
            return;
        }
        let n = self.predict.items.len() as isize;
        self.predict.selected = (self.predict.selected as isize + delta).clamp(0, n - 1) as usize;
    }

    /// Asks for a prediction of the selected image with the shown model, if it has a checkpoint.
    fn classify_selected(&mut self) -> Option<Effect> {
        let (path, truth) = self.predict.items.get(self.predict.selected)?.clone();
        let m = self.current();
        let Some(ckpt) = m.best_checkpoint.clone() else {
            let model = m.kind;
            self.predict.result = Some(PredictResult {
                path,
                model,
                truth,
                outcome: Err(format!("{} has no checkpoint yet (one is saved after its first epoch)", model.title())),
                threshold: 0.5,
                class_probabilities: Vec::new(),
                overlay: None,
            });
            return None;
        };
        let model = m.kind;
        self.predict.pending = Some(path.clone());
        Some(Effect::Predict { path, checkpoint: ckpt, model, truth, heatmap: self.predict.heatmap })
    }

    /// Applies a prediction computed by the worker.
    pub fn on_prediction(&mut self, result: PredictResult) {
        if self.predict.pending.as_ref() == Some(&result.path) {
            self.predict.pending = None;
        }
        self.predict.result = Some(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyModifiers;

    #[test]
    fn quitting_while_training_asks_first_and_stops_cleanly() {
        let mut app = App::new(&[ModelKind::Simple]);
        let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert!(app.on_key(key(KeyCode::Char('q'))).is_empty());
        assert!(app.confirm_quit && !app.should_quit);
        assert!(app.on_key(key(KeyCode::Char('n'))).is_empty(), "any other key cancels");
        assert!(!app.confirm_quit && !app.should_quit);
        app.on_key(key(KeyCode::Char('q')));
        let fx = app.on_key(key(KeyCode::Char('y')));
        assert_eq!(fx, vec![Effect::Send(crate::train::Command::Stop)]);
        assert!(app.should_quit);

        let mut done = App::new(&[ModelKind::Simple]);
        done.finished = true;
        done.on_key(key(KeyCode::Char('q')));
        assert!(done.should_quit && !done.confirm_quit, "no question once training is over");
    }

    #[test]
    fn pause_skip_and_stop_send_commands() {
        use crate::train::Command;
        let mut app = App::new(&[ModelKind::Simple, ModelKind::Regularized]);
        let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), vec![Effect::Send(Command::Pause)]);
        assert!(app.paused);
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), vec![Effect::Send(Command::Resume)]);
        assert_eq!(app.on_key(key(KeyCode::Char('n'))), vec![Effect::Send(Command::SkipModel)]);
        assert_eq!(app.on_key(key(KeyCode::Char('s'))), vec![Effect::Send(Command::Stop)]);
        assert!(app.on_key(key(KeyCode::Char('s'))).is_empty(), "stop is sent once");
        app.on_key(key(KeyCode::Right));
        assert_eq!(app.selected, 1);
        app.on_key(key(KeyCode::Right));
        assert_eq!(app.selected, 0, "model selection wraps");
    }
}
