//! Several runs in one dashboard (`view A B …`): each run's replayed events applied to its own models, told
//! apart by (run, kind) and labelled r1, r2, …; the first run's data, header and predict pane stand for the
//! dashboard; and the compare pane's mark (`m`) that pairs two chosen models.

use super::app::App;
use super::model_view::ModelView;
use crate::train::events::{RunScores, RunTag, TrainEvent};

impl App {
    /// Applies one run's events to that run's models.
    pub(super) fn on_replayed(&mut self, tag: RunTag, scores: RunScores, events: Vec<TrainEvent>) {
        let index = tag.index;
        self.run_tests.set(index, scores.split_key.clone(), scores.truth.clone());
        if self.runs.len() <= index {
            self.runs.resize(index + 1, tag.clone());
        }
        self.runs[index] = tag.clone();
        let selected = self.selected;
        self.active_run = index;
        for ev in events {
            match ev {
                TrainEvent::RunStarted { info } => {
                    let mine = info.models.iter().map(|&k| ModelView::of_run(k, index, &tag.label));
                    if index == 0 {
                        self.models = mine.collect();
                        self.predict.three_classes = info.task == crate::data::Task::ThreeClass;
                        self.info = Some(info);
                    } else {
                        self.models.retain(|m| m.run != index);
                        self.models.extend(mine);
                    }
                }
                // The first run's data stands for the dashboard's; the others' are in their legend.
                TrainEvent::DataReady { .. } | TrainEvent::DataProgress { .. } if index > 0 => {}
                TrainEvent::Warning { message } => {
                    self.on_event(TrainEvent::Warning { message: format!("{}: {message}", tag.label) })
                }
                // Differences within a run name models by kind only: across runs the mark (m) pairs models.
                TrainEvent::Analysed { model, evaluation, .. } => {
                    self.on_event(TrainEvent::Analysed { model, evaluation, differences: Vec::new() })
                }
                other => self.on_event(other),
            }
        }
        for s in scores.models {
            if let Some(m) = self.model_mut(s.model) {
                m.test_scores = Some((s.scores, s.threshold));
            }
        }
        self.active_run = 0;
        self.selected = selected.min(self.models.len().saturating_sub(1));
        // The predict pane browses the first run's test films.
        self.predict.foreign_runs = (1..self.runs.len()).filter(|&r| !self.run_tests.same_images(0, r)).collect();
    }

    /// `m`: marks the selected model (or clears the mark when it is already marked).
    pub(super) fn toggle_mark(&mut self) {
        if self.marked == Some(self.selected) {
            self.marked = None;
            self.pair = None;
        } else {
            self.marked = Some(self.selected);
            self.refresh_pair();
        }
    }

    /// Compares the selected model with the marked one (paired, on the same test images, or why not).
    pub(super) fn refresh_pair(&mut self) {
        self.pair = match self.marked {
            Some(b) if b != self.selected => {
                Some(super::pairing::compare(&self.models, &self.run_tests, self.selected, b, 1))
            }
            _ => None,
        };
    }
}
