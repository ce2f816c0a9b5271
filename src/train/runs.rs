//! Runs you can come back to: what a run folder holds (its journal metrics.jsonl, report.json, checkpoints),
//! summarised for `pneumoscope runs`, and replayed as the events the engine sent, for `pneumoscope view` — the
//! dashboard on a finished or interrupted run, without training. A folder from an older format or a half-written
//! one gives a summary that says what is missing, never a panic.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use crossbeam_channel::unbounded;
use serde::Serialize;

use super::engine::EngineHandle;
use super::events::{ModelScores, RunInfo, RunScores, RunTag, TrainEvent};
use super::report::RunReport;
use crate::error::{ConfigError, Result};

/// Where a run stands, from what its folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// report.json written and the run was not stopped.
    Finished,
    /// report.json written after the user stopped the run.
    Stopped,
    /// No report: the run was interrupted (killed, crashed) or is still training.
    Interrupted,
    /// Not readable as a run (no journal, or no start in it).
    Unreadable,
}

/// One model's best figures in a run: test accuracy at its operating point (or at 0.5 when it has none) and AUC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFigures {
    pub model: crate::model::ModelKind,
    pub status: String,
    pub epochs_done: usize,
    pub best_val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_auc: Option<f64>,
    pub threshold: Option<f64>,
}

/// What `pneumoscope runs` lists for one folder.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub dir: PathBuf,
    /// When the run started (the journal's first line), as written there (UTC).
    pub started: Option<String>,
    pub status: RunStatus,
    pub info: Option<RunInfo>,
    pub models: Vec<ModelFigures>,
    /// What is missing or unreadable, when something is.
    pub problem: Option<String>,
}

fn journal(dir: &Path) -> PathBuf {
    dir.join("metrics.jsonl")
}

/// The report of a run, when it wrote one that this version reads.
fn read_report(dir: &Path) -> std::result::Result<Option<RunReport>, String> {
    let path = dir.join("report.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The run's start (info and time) from its journal; `None` when the journal has no readable start.
fn read_start(dir: &Path) -> Option<(RunInfo, Option<String>)> {
    let text = std::fs::read_to_string(journal(dir)).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["event"] != "run_started" {
            return None;
        }
        let info: RunInfo = serde_json::from_value(v["info"].clone()).ok()?;
        Some((info, v["time"].as_str().map(str::to_string)))
    })
}

/// Summarises one run folder.
pub fn summarize(dir: &Path) -> RunSummary {
    let mut s = RunSummary {
        dir: dir.to_path_buf(),
        started: None,
        status: RunStatus::Unreadable,
        info: None,
        models: vec![],
        problem: None,
    };
    if !journal(dir).is_file() {
        s.problem = Some("no metrics.jsonl: not a run folder, or written by a version before the journal".into());
        return s;
    }
    let Some((info, started)) = read_start(dir) else {
        s.problem = Some("metrics.jsonl has no readable run start (an older format, or cut off)".into());
        return s;
    };
    s.started = started;
    s.models = info
        .models
        .iter()
        .map(|&model| ModelFigures {
            model,
            status: "not started".into(),
            epochs_done: 0,
            best_val_accuracy: None,
            test_accuracy: None,
            test_auc: None,
            threshold: None,
        })
        .collect();
    s.info = Some(info);
    match read_report(dir) {
        Ok(Some(report)) => {
            s.status = if report.stopped { RunStatus::Stopped } else { RunStatus::Finished };
            for m in &report.models {
                let figures = ModelFigures {
                    model: m.model,
                    status: format!("{:?}", m.status).to_lowercase(),
                    epochs_done: m.epochs_done,
                    best_val_accuracy: m.best_val_accuracy,
                    test_accuracy: m
                        .evaluation
                        .as_ref()
                        .map(|e| e.test_at_threshold.accuracy)
                        .or(m.test.as_ref().map(|t| t.accuracy)),
                    test_auc: m.test.as_ref().and_then(|t| t.auc),
                    threshold: m.evaluation.as_ref().map(|e| e.threshold as f64),
                };
                match s.models.iter_mut().find(|f| f.model == m.model) {
                    Some(f) => *f = figures,
                    None => s.models.push(figures),
                }
            }
        }
        Ok(None) => {
            s.status = RunStatus::Interrupted;
            // What the journal says each model got to.
            for ev in super::journal::read_history(dir) {
                if let TrainEvent::EpochEnded { model, epoch, validation, .. } = ev {
                    if let Some(f) = s.models.iter_mut().find(|f| f.model == model) {
                        f.status = "interrupted".into();
                        f.epochs_done = f.epochs_done.max(epoch);
                        let acc = validation.task_accuracy();
                        f.best_val_accuracy = Some(f.best_val_accuracy.map_or(acc, |b: f64| b.max(acc)));
                    }
                }
            }
            s.problem = Some("no report.json: interrupted, or still training".into());
        }
        Err(e) => {
            s.status = RunStatus::Interrupted;
            s.problem = Some(format!("report unreadable ({e})"));
        }
    }
    s
}

/// Every run folder under `runs_dir`, oldest first (run folders are named by their start time).
pub fn list(runs_dir: &Path) -> Result<Vec<RunSummary>> {
    let entries = std::fs::read_dir(runs_dir).with_context(|| format!("cannot list runs in {}", runs_dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs.iter().map(|d| summarize(d)).collect())
}

/// A finished or interrupted run, ready to be shown as the dashboard shows a training run.
pub struct Replay {
    pub info: RunInfo,
    /// The run's resolved configuration (config.toml in the run folder), when readable.
    pub config: Option<crate::config::Config>,
    pub events: Vec<TrainEvent>,
    pub report: Option<RunReport>,
}

/// Reads a run folder for `view`: refuses, saying why, a folder that is not a run or cannot be read.
pub fn load(dir: &Path) -> Result<Replay> {
    if !dir.is_dir() {
        return Err(ConfigError::new(format!("run folder {} does not exist", dir.display())).into());
    }
    if !journal(dir).is_file() {
        return Err(ConfigError::new(format!(
            "{} is not a run folder: it has no metrics.jsonl (a run folder is runs/<start time>/, as `pneumoscope \
             runs` lists them)",
            dir.display()
        ))
        .into());
    }
    let Some((info, _)) = read_start(dir) else {
        bail!(
            "{} has no readable run start: an older format, or the run was cut off before it began",
            journal(dir).display()
        );
    };
    let report = read_report(dir).map_err(|e| anyhow::anyhow!("cannot read the run's report: {e}"))?;
    let config = crate::config::Config::load(&dir.join("config.toml")).ok();
    // The run's start and data, then what the journal kept of each model (as a resumed run replays it).
    let text =
        std::fs::read_to_string(journal(dir)).with_context(|| format!("cannot read {}", journal(dir).display()))?;
    let mut events = vec![TrainEvent::RunStarted { info: RunInfo { run_dir: dir.to_path_buf(), ..info.clone() } }];
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if matches!(v["event"].as_str(), Some("data_ready" | "warning")) {
            if let Ok(ev) = serde_json::from_value::<TrainEvent>(v) {
                events.push(ev);
            }
        }
    }
    events.extend(super::journal::read_history(dir));
    match &report {
        Some(r) => events.push(TrainEvent::Finished { run_dir: dir.to_path_buf(), stopped: r.stopped }),
        None => {
            // Interrupted: a model that started and never finished stopped where its journal ends.
            let started: Vec<_> = events
                .iter()
                .filter_map(|e| if let TrainEvent::ModelStarted { model, .. } = e { Some(*model) } else { None })
                .collect();
            for model in started {
                let finished =
                    events.iter().any(|e| matches!(e, TrainEvent::ModelFinished { model: m, .. } if *m == model));
                if !finished {
                    events.push(TrainEvent::ModelFinished {
                        model,
                        status: super::events::ModelStatus::Stopped,
                        seconds: 0.0,
                        error: Some("the run was interrupted here".into()),
                    });
                }
            }
            events.push(TrainEvent::Warning {
                message: format!("run {} was interrupted: no report, figures up to its last epoch", dir.display()),
            });
        }
    }
    Ok(Replay { info, config, events, report })
}

impl Replay {
    /// An engine handle that sends the run's events and ends, as an engine that has finished would: the
    /// dashboard runs on it unchanged. Commands (pause, stop) go nowhere; its result is the run's report, or an
    /// error saying the run has none.
    pub fn into_handle(self) -> EngineHandle {
        let (ev_tx, ev_rx) = unbounded();
        let (cmd_tx, _cmd_rx) = unbounded();
        for ev in self.events {
            let _ = ev_tx.send(ev);
        }
        drop(ev_tx);
        let run_dir = self.info.run_dir.clone();
        let report = self.report;
        let thread = std::thread::spawn(move || {
            report.ok_or_else(|| anyhow::anyhow!("run {} has no report (interrupted)", run_dir.display()))
        });
        EngineHandle { events: ev_rx, commands: cmd_tx, thread }
    }
}

impl Replay {
    /// Which test images the run was tested on: the data folder's test/ split, or the split held out from its
    /// train/ with the run's seed and fractions (runs with the same key were tested on the same images).
    pub fn split_key(&self) -> String {
        let root = std::fs::canonicalize(&self.info.data_root).unwrap_or_else(|_| self.info.data_root.clone());
        let source = self.report.as_ref().map(|r| r.test_source);
        match (source, &self.config) {
            (Some(crate::data::split::TestSource::Folder), _) => format!("the test/ folder of {}", root.display()),
            (Some(crate::data::split::TestSource::HeldOut { fraction }), Some(c)) => format!(
                "films held out from {}/train by patient ({:.0} %, seed {}, {:?} split)",
                root.display(),
                100.0 * fraction,
                c.data.seed,
                c.data.split
            ),
            _ => format!("the unrecorded test split of {}", self.info.run_dir.display()),
        }
    }

    /// One line for the run's legend: folder, data, size, epochs, task.
    pub fn legend(&self) -> String {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let i = &self.info;
        format!(
            "{} · {}{} · {} px · {} epochs · {}",
            name(&i.run_dir),
            name(&i.data_root),
            match i.source {
                crate::data::demo::DataSource::Folder => "",
                crate::data::demo::DataSource::RealSubset => " (real subset)",
                crate::data::demo::DataSource::Synthetic => " (SYNTHETIC)",
            },
            i.image_size,
            i.epochs,
            i.task
        )
    }

    /// What the run's tested models scored on each test image, at their operating points.
    pub fn scores(&self) -> RunScores {
        let Some(r) = &self.report else {
            return RunScores { split_key: self.split_key(), ..Default::default() };
        };
        let models = r
            .models
            .iter()
            .filter(|m| !m.test_scores.is_empty() && m.test_scores.len() == r.test_truth.len())
            .map(|m| ModelScores {
                model: m.model,
                scores: m.test_scores.clone(),
                threshold: m.evaluation.as_ref().map(|e| e.threshold).unwrap_or(0.5),
            })
            .collect();
        RunScores { split_key: self.split_key(), truth: r.test_truth.clone(), models }
    }
}

/// Several runs for `view A B …`: an engine handle that sends each run's events as one `Replayed` event (the run
/// tagged r1, r2, … in the order given), then ends. Its result is the first run's report.
pub fn side_by_side(replays: Vec<Replay>) -> EngineHandle {
    let (ev_tx, ev_rx) = unbounded();
    let (cmd_tx, _cmd_rx) = unbounded();
    let mut first_report = None;
    let first_dir = replays.first().map(|r| r.info.run_dir.clone()).unwrap_or_default();
    for (index, replay) in replays.into_iter().enumerate() {
        let run = RunTag { index, label: format!("r{}", index + 1), legend: replay.legend() };
        let scores = replay.scores();
        if index == 0 {
            first_report = replay.report.clone();
        }
        let _ = ev_tx.send(TrainEvent::Replayed { run, scores, events: replay.events });
    }
    drop(ev_tx);
    let thread = std::thread::spawn(move || {
        first_report.ok_or_else(|| anyhow::anyhow!("run {} has no report (interrupted)", first_dir.display()))
    });
    EngineHandle { events: ev_rx, commands: cmd_tx, thread }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(dir: &Path) {
        let info = r#"{"batch_size":16,"data_root":"/nowhere","device":"cpu","epochs":3,"image_size":64,"models":["simple"],"run_dir":"x","threads":2}"#;
        let lines = format!(
            "{{\"event\":\"run_started\",\"info\":{info},\"time\":\"2026-12-05T07:00:00Z\"}}\n{{\"event\":\"epoch_end"
        );
        std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
    }

    #[test]
    fn half_written_and_foreign_folders_are_summarised_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let (torn, bad_report, other) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
        for d in [&torn, &bad_report, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        // A journal cut off mid-line after its start: interrupted, the start still read.
        started(&torn);
        let s = summarize(&torn);
        assert_eq!(s.status, RunStatus::Interrupted);
        assert_eq!(s.started.as_deref(), Some("2026-12-05T07:00:00Z"));
        assert_eq!(s.models.len(), 1);
        // A report this version cannot read: said, not fatal; view refuses it with the file named.
        started(&bad_report);
        std::fs::write(bad_report.join("report.json"), "{\"models\": 3}").unwrap();
        let s = summarize(&bad_report);
        assert!(
            s.problem.as_deref().is_some_and(|p| p.contains("report unreadable") && p.contains("report.json")),
            "{s:?}"
        );
        let e = load(&bad_report).err().expect("refused").to_string();
        assert!(e.contains("report.json"), "{e}");
        // Not a run at all.
        std::fs::write(other.join("notes.txt"), "hello").unwrap();
        assert_eq!(summarize(&other).status, RunStatus::Unreadable);
        let e = load(&other).err().expect("refused").to_string();
        assert!(e.contains("not a run folder"), "{e}");
        let all = list(tmp.path()).unwrap();
        assert_eq!(all.len(), 3);
    }
}
