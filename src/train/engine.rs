//! The training engine: on a background thread it scans and caches the data, trains the queued models one
//! after another (Adam, one-cycle LR per batch, weight decay, gradient clipping), validates each epoch, keeps
//! best/last checkpoints, tests, and writes the run folder. It talks only through events and commands.

use std::time::Instant;

use anyhow::Context;
use crossbeam_channel::{unbounded, Receiver, Sender};

use super::backend::Resolved;
use super::checkpoint;
use super::events::{Command, ModelStatus, RunInfo, TrainEvent};
use super::fit::{Fit, TrainOutcome};
use super::journal::{read_history, Emitter};
use super::report::{ModelResult, RunReport};
pub use super::setup::RunSetup;
use crate::data::prepare::{loss_weights, prepare};
use crate::error::Result;
use crate::model::ModelKind;
use pneumoscope_kernels::adam::AdamKernel;

/// The front-end's side of a running engine.
pub struct EngineHandle {
    pub events: Receiver<TrainEvent>,
    pub commands: Sender<Command>,
    pub thread: std::thread::JoinHandle<Result<RunReport>>,
}

/// Starts the engine on its own thread.
pub fn spawn(setup: RunSetup) -> EngineHandle {
    let (ev_tx, ev_rx) = unbounded();
    let (cmd_tx, cmd_rx) = unbounded();
    let thread = std::thread::Builder::new()
        .name("pneumoscope-engine".into())
        .spawn(move || {
            // A resumed run's history is read before new lines are appended.
            let history = if setup.resume { read_history(&setup.run_dir) } else { Vec::new() };
            let emit = Emitter::new(ev_tx, &setup.run_dir);
            if !history.is_empty() {
                emit.replay(TrainEvent::History { events: history });
            }
            let result = match setup.device {
                Resolved::Cpu => run::<super::backend::Cpu>(&setup, Default::default(), &emit, &cmd_rx),
                #[cfg(feature = "cuda")]
                Resolved::Cuda(n) => {
                    run::<super::backend::Gpu>(&setup, burn::backend::cuda::CudaDevice::new(n), &emit, &cmd_rx)
                }
                #[cfg(not(feature = "cuda"))]
                Resolved::Cuda(_) => Err(anyhow::anyhow!("this binary was built without CUDA support")),
            };
            if let Err(e) = &result {
                emit.send(TrainEvent::Failed { message: crate::error::format_error(e) });
            }
            result
        })
        .expect("spawning the engine thread");
    EngineHandle { events: ev_rx, commands: cmd_tx, thread }
}
/// The run, on the engine's thread: the data prepared, then each queued model trained (or resumed, or kept from
/// the earlier part of the run), tested and reported, then the ensemble.
fn run<B: crate::model::Kernels + AdamKernel>(
    setup: &RunSetup,
    device: B::Device,
    emit: &Emitter,
    cmds: &Receiver<Command>,
) -> Result<RunReport> {
    let cfg = &setup.config;
    // Read before anything below rewrites it.
    // (A run killed before its first report has none: its checkpoints, if any, still count.)
    let previous: Option<RunReport> = if setup.resume {
        std::fs::read_to_string(setup.run_dir.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    } else {
        None
    };

    std::fs::create_dir_all(&setup.run_dir).with_context(|| format!("cannot create {}", setup.run_dir.display()))?;
    checkpoint::write_atomic(&setup.run_dir.join("config.toml"), toml::to_string_pretty(cfg)?.as_bytes())?;
    let models: Vec<ModelKind> = cfg.training.models.clone();
    let info = RunInfo {
        run_dir: setup.run_dir.clone(),
        data_root: setup.data_root.clone(),
        source: setup.source,
        models: models.clone(),
        device: setup.device.describe(),
        image_size: cfg.data.image_size,
        batch_size: cfg.training.batch_size,
        epochs: cfg.training.epochs,
        threads: cfg.threads(),
        task: cfg.data.task,
    };
    emit.send(TrainEvent::RunStarted { info: info.clone() });
    let data = prepare(cfg, &setup.data_root, &|e| emit.send(e.into()))?;
    let weights = loss_weights(cfg, &data);
    let mut report = RunReport {
        info,
        counts: data.counts,
        test_source: data.test_source,
        skipped_files: data.skipped,
        models: models.iter().map(|&m| ModelResult::new(m)).collect(),
        stopped: false,
        test_truth: data.test.truth(),
        validation_truth: data.val.truth(),
        test_targets: match cfg.data.task {
            crate::data::Task::ThreeClass => data.test.targets(cfg.data.task),
            crate::data::Task::Pneumonia => Vec::new(),
        },
        validation_targets: match cfg.data.task {
            crate::data::Task::ThreeClass => data.val.targets(cfg.data.task),
            crate::data::Task::Pneumonia => Vec::new(),
        },
        differences: Vec::new(),
    };
    super::report_files::write(&report, &setup.run_dir)?;
    let fit: Fit<'_, B> = Fit { setup, device: &device, data: &data, weights: &weights, emit, cmds };
    for (index, &kind) in models.iter().enumerate() {
        let prev = previous.as_ref().and_then(|p| p.models.iter().find(|m| m.model == kind));
        if let Some(p) = prev.filter(|p| p.status == ModelStatus::Done) {
            report.models[index] = p.clone();
            super::report_files::write(&report, &setup.run_dir)?;
            continue;
        }
        // A resumable `last` checkpoint (saved at the end of each epoch) continues that model.
        // (report.json records it only when a model ends; after a SIGKILL the file is the witness.)
        let last = setup.run_dir.join("checkpoints").join(format!("{kind}-last.ckpt"));
        let mut resume_from = None;
        let mut earlier_secs = 0.0;
        if setup.resume && last.is_file() {
            match checkpoint::verify_resumable(&last) {
                Ok(state) => {
                    // The report's figure, or the checkpoint's own when the run was killed mid-model.
                    earlier_secs = prev.map(|p| p.train_seconds).unwrap_or(0.0).max(state.train_seconds);
                    resume_from = Some(last.clone());
                }
                Err(e) if setup.restart_damaged => {
                    let kept = last.with_extension("ckpt.damaged");
                    let _ = std::fs::rename(&last, &kept);
                    emit.send(TrainEvent::Notice {
                        message: format!(
                            "{kind}: its last checkpoint cannot be resumed ({}); training {kind} again from scratch \
                             (the damaged file is kept as {})",
                            crate::error::format_error(&e).replace('\n', " "),
                            kept.display()
                        ),
                    });
                }
                Err(e) => {
                    let mut failed = prev.cloned().unwrap_or_else(|| ModelResult::new(kind));
                    failed.status = ModelStatus::Failed;
                    failed.error = Some(format!(
                        "cannot resume {kind}: {} — to train {kind} again from scratch, run `pneumoscope train \
                         --resume {} --restart-damaged` (its best checkpoint stays until a better one is saved)",
                        crate::error::format_error(&e).replace('\n', " "),
                        setup.run_dir.display()
                    ));
                    emit.send(TrainEvent::ModelFinished {
                        model: kind,
                        status: ModelStatus::Failed,
                        seconds: failed.train_seconds,
                        error: failed.error.clone(),
                    });
                    report.models[index] = failed;
                    super::report_files::write(&report, &setup.run_dir)?;
                    continue;
                }
            }
        }
        let started = Instant::now();
        let mut result = ModelResult::new(kind);
        result.status = ModelStatus::Training;
        let outcome = fit.train_model(kind, index, &mut result, resume_from.as_deref());
        result.train_seconds = earlier_secs + started.elapsed().as_secs_f64();
        let stop = match outcome {
            Ok(TrainOutcome::Completed) if !result.unsaved.is_empty() => {
                // Trained, but what it would report is not all on disk: not done.
                result.status = ModelStatus::Failed;
                result.error = Some(result.unsaved.join("; "));
                false
            }
            Ok(TrainOutcome::Completed) => {
                result.status = ModelStatus::Done;
                false
            }
            Ok(TrainOutcome::Skipped) => {
                result.status = ModelStatus::Stopped;
                false
            }
            Ok(TrainOutcome::Stopped) => {
                result.status = ModelStatus::Stopped;
                true
            }
            Err(e) => {
                result.status = ModelStatus::Failed;
                result.error = Some(crate::error::format_error(&e));
                false
            }
        };
        // Test the best weights of every model that completed an epoch (not after a stop: exit promptly).
        if !stop && result.best_checkpoint.is_some() && !data.test.is_empty() {
            super::assess::test_best(&fit, kind, index, &mut result, &mut report);
        }
        emit.send(TrainEvent::ModelFinished {
            model: kind,
            status: result.status,
            seconds: result.train_seconds,
            error: result.error.clone(),
        });
        report.models[index] = result;
        report.stopped = stop;
        super::report_files::write(&report, &setup.run_dir)?;
        if stop {
            break;
        }
    }
    if !report.stopped {
        super::assess::add_ensemble(&mut report, cfg, &setup.run_dir, emit)?;
    }
    emit.send(TrainEvent::Finished { run_dir: setup.run_dir.clone(), stopped: report.stopped });
    Ok(report)
}
