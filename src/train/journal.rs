//! The run's journal, metrics.jsonl: every event worth keeping, one JSON object per line with its time (batches
//! averaged in windows of ten), written as the events go to the front-end; and the reader that turns an earlier
//! part of a run back into events when it is resumed.

use std::io::Write;
use std::path::Path;

use crossbeam_channel::Sender;

use super::events::{BatchProgress, TrainEvent};
use crate::model::ModelKind;

/// Sends events and appends the ones worth keeping to metrics.jsonl.
pub(crate) struct Emitter {
    tx: Sender<TrainEvent>,
    log: std::sync::Mutex<Option<std::fs::File>>,
    window: std::sync::Mutex<Window>,
}

#[derive(Default)]
struct Window {
    n: usize,
    loss: f64,
    acc: f64,
}

/// Batches averaged into one `batch_window` line of metrics.jsonl.
const LOG_WINDOW: usize = 10;

impl Emitter {
    pub(crate) fn new(tx: Sender<TrainEvent>, run_dir: &Path) -> Self {
        let _ = std::fs::create_dir_all(run_dir);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("metrics.jsonl")).ok();
        Self { tx, log: std::sync::Mutex::new(log), window: Default::default() }
    }

    /// Sends an event to the front-end without writing it to the journal (the history of a resumed run, which
    /// the journal already holds).
    pub(crate) fn replay(&self, ev: TrainEvent) {
        let _ = self.tx.send(ev);
    }

    pub(crate) fn send(&self, ev: TrainEvent) {
        self.log(&ev);
        let _ = self.tx.send(ev); // a front-end that went away does not stop the work
    }

    fn write_line(&self, v: serde_json::Value) {
        if let Ok(mut guard) = self.log.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{v}");
                let _ = f.flush();
            }
        }
    }

    fn log(&self, ev: &TrainEvent) {
        let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match ev {
            TrainEvent::DataProgress { .. } | TrainEvent::Paused | TrainEvent::Resumed => {}
            TrainEvent::Batch(b) => {
                let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
                w.n += 1;
                w.loss += b.loss;
                w.acc += b.accuracy;
                if w.n == LOG_WINDOW || b.step == b.steps_per_epoch {
                    let line = serde_json::json!({
                        "event": "batch_window", "time": time, "model": b.model, "epoch": b.epoch, "step": b.step,
                        "steps_per_epoch": b.steps_per_epoch,
                        "global_step": b.global_step, "batches": w.n, "loss": w.loss / w.n as f64,
                        "accuracy": w.acc / w.n as f64, "lr": b.lr, "images_per_sec": b.images_per_sec,
                    });
                    *w = Window::default();
                    drop(w);
                    self.write_line(line);
                }
            }
            other => {
                if let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(other) {
                    map.insert("time".into(), time.into());
                    self.write_line(serde_json::Value::Object(map));
                }
            }
        }
    }
}

/// The events of an earlier part of a run, from its metrics.jsonl (batch windows become batch events).
pub(crate) fn read_history(run_dir: &Path) -> Vec<TrainEvent> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("metrics.jsonl")) else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue }; // a torn last line
        if v["event"] == "batch_window" {
            let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
            let Ok(model) = serde_json::from_value::<ModelKind>(v["model"].clone()) else { continue };
            out.push(TrainEvent::Batch(BatchProgress {
                model,
                epoch: f("epoch") as usize,
                step: f("step") as usize,
                steps_per_epoch: f("steps_per_epoch").max(f("step")) as usize,
                global_step: f("global_step") as usize,
                loss: f("loss"),
                accuracy: f("accuracy"),
                lr: f("lr"),
                images_per_sec: f("images_per_sec"),
                eta_secs: 0.0,
            }));
            continue;
        }
        if let Ok(
            ev @ (TrainEvent::ModelStarted { .. }
            | TrainEvent::EpochEnded { .. }
            | TrainEvent::CheckpointSaved { .. }
            | TrainEvent::Evaluated { .. }
            | TrainEvent::Analysed { .. }
            | TrainEvent::ModelFinished { .. }),
        ) = serde_json::from_value::<TrainEvent>(v)
        {
            out.push(ev);
        }
    }
    out
}
