//! The training engine: on a background thread it scans and caches the data, trains the queued models one
//! after another (Adam, one-cycle LR per batch, weight decay, gradient clipping), validates each epoch, keeps
//! best/last checkpoints, tests, and writes the run folder. It talks only through events and commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use super::adam::{AdamKernel, FusedAdam, Optim};
use super::backend::Resolved;
use super::checkpoint::{self, CheckpointMeta, TrainState, FORMAT_VERSION};
use super::events::{Command, ModelStatus, RunInfo, TrainEvent};
use super::infer::{evaluate, smoothed_cross_entropy, to_tensors, ElemF64, LossSpec};
use super::predictor::{over_views, probability_loss};
use super::report::{ModelResult, RunReport};
use super::schedule::OneCycle;
use crate::config::{ClassWeights, ClipMode, Config};
use crate::data::demo::DataSource;
use crate::data::layout::Layout;
use crate::data::loader::{balanced_weights, batches, epoch_batches, preload, BatchSpec, Dataset};
use crate::data::split::{self, TestSource};
use crate::data::{Class, SplitCounts};
use crate::error::{self, Result};
use crate::metrics::Metrics;
use crate::model::{Model, ModelKind};

/// Everything a run needs, resolved by the front-end.
#[derive(Debug, Clone)]
pub struct RunSetup {
    pub config: Config,
    /// The data folder (the user's, or the generated synthetic one).
    pub data_root: PathBuf,
    /// What the data folder holds (a user's folder, the built-in real subset, SYNTHETIC pictures).
    pub source: DataSource,
    /// The run folder to fill (created by the engine if missing).
    pub run_dir: PathBuf,
    pub device: Resolved,
    /// Continue the run already in `run_dir` (its report.json, checkpoints and metrics.jsonl).
    pub resume: bool,
    /// On resume, train a model whose `last` checkpoint is damaged again from scratch instead of failing it.
    pub restart_damaged: bool,
}

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
                let _ = emit.tx.send(TrainEvent::History { events: history });
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

/// Sends events and appends the ones worth keeping to metrics.jsonl.
struct Emitter {
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
    fn new(tx: Sender<TrainEvent>, run_dir: &Path) -> Self {
        let _ = std::fs::create_dir_all(run_dir);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("metrics.jsonl")).ok();
        Self { tx, log: std::sync::Mutex::new(log), window: Default::default() }
    }

    fn send(&self, ev: TrainEvent) {
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
            TrainEvent::Batch {
                model,
                epoch,
                step,
                steps_per_epoch,
                global_step,
                loss,
                accuracy,
                lr,
                images_per_sec,
                ..
            } => {
                let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
                w.n += 1;
                w.loss += loss;
                w.acc += accuracy;
                if w.n == LOG_WINDOW || step == steps_per_epoch {
                    let line = serde_json::json!({
                        "event": "batch_window", "time": time, "model": model, "epoch": epoch, "step": step,
                        "steps_per_epoch": steps_per_epoch,
                        "global_step": global_step, "batches": w.n, "loss": w.loss / w.n as f64,
                        "accuracy": w.acc / w.n as f64, "lr": lr, "images_per_sec": images_per_sec,
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
fn read_history(run_dir: &Path) -> Vec<TrainEvent> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("metrics.jsonl")) else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue }; // a torn last line
        if v["event"] == "batch_window" {
            let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
            let Ok(model) = serde_json::from_value::<ModelKind>(v["model"].clone()) else { continue };
            out.push(TrainEvent::Batch {
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
            });
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

/// What the user asked for while a model trains.
enum Control {
    Continue,
    Skip,
    Stop,
}

fn poll(cmds: &Receiver<Command>, emit: &Emitter) -> Control {
    loop {
        match cmds.try_recv() {
            Ok(Command::Stop) => return Control::Stop,
            Ok(Command::SkipModel) => return Control::Skip,
            Ok(Command::Resume) => {}
            Ok(Command::Pause) => {
                emit.send(TrainEvent::Paused);
                // Block until told to go on.
                loop {
                    match cmds.recv() {
                        Ok(Command::Resume) => {
                            emit.send(TrainEvent::Resumed);
                            break;
                        }
                        Ok(Command::Stop) | Err(_) => return Control::Stop,
                        Ok(Command::SkipModel) => {
                            emit.send(TrainEvent::Resumed);
                            return Control::Skip;
                        }
                        Ok(Command::Pause) => {}
                    }
                }
            }
            Err(TryRecvError::Empty) => return Control::Continue,
            // Every front-end is gone: stop cleanly rather than train unobserved.
            Err(TryRecvError::Disconnected) => return Control::Stop,
        }
    }
}

/// The data a run trains, validates and tests on, decoded once.
pub struct RunData {
    pub train: Arc<Dataset>,
    pub val: Arc<Dataset>,
    pub test: Arc<Dataset>,
    pub counts: SplitCounts,
    pub skipped: usize,
    pub test_source: TestSource,
}

/// Scans, splits and decodes the data, emitting progress.
pub fn prepare_data(cfg: &Config, root: &Path, emit: &(dyn Fn(TrainEvent) + Sync)) -> Result<RunData> {
    let started = Instant::now();
    let layout = Layout::scan(root)?;
    for w in &layout.warnings {
        emit(TrainEvent::Warning { message: w.clone() });
    }
    for ig in &layout.ignored {
        emit(TrainEvent::Skipped { path: ig.path.clone(), error: ig.reason.clone() });
    }
    let plan = split::plan(&layout, &cfg.data);
    let n_train_files = layout.train.len() + layout.val.len();
    let all: Vec<_> = [&plan.train, &plan.validation, &plan.test].into_iter().flatten().cloned().collect();
    let d = &cfg.data;
    let (cache, skipped) = preload(&all, d.image_size, d.max_image_side, &|done, total| {
        if done % 16 == 0 || done == total {
            emit(TrainEvent::DataProgress { done, total })
        }
    });
    for s in &skipped {
        emit(TrainEvent::Skipped { path: s.path.clone(), error: s.error.clone() });
    }
    // The decoded images of each planned split (unreadable files drop out of their split).
    let pos_of: std::collections::HashMap<&Path, usize> =
        cache.samples.iter().enumerate().map(|(i, s)| (s.path.as_path(), i)).collect();
    let pick = |v: &[crate::data::Sample]| -> Dataset {
        cache.subset(&v.iter().filter_map(|s| pos_of.get(s.path.as_path()).copied()).collect::<Vec<_>>())
    };
    let (train, val, test) = (pick(&plan.train), pick(&plan.validation), pick(&plan.test));
    let (tc, vc) = (train.counts(), val.counts());
    if tc.normal + vc.normal == 0 || tc.pneumonia + vc.pneumonia == 0 {
        anyhow::bail!(
            "the training data under {} has {} readable NORMAL and {} readable PNEUMONIA images \
             ({} files in train/ and val/): both classes are needed",
            layout.root.display(),
            tc.normal + vc.normal,
            tc.pneumonia + vc.pneumonia,
            n_train_files
        );
    }
    if val.is_empty() {
        anyhow::bail!("the validation split is empty: {} has too few images or patients", layout.root.display());
    }
    if test.is_empty() && plan.test_source != TestSource::Folder {
        anyhow::bail!(
            "the held-out test split is empty: {} has too few images or patients for data.test_fraction = {}",
            layout.root.display(),
            d.test_fraction
        );
    }
    let counts = SplitCounts { train: train.counts(), validation: val.counts(), test: test.counts() };
    emit(TrainEvent::DataReady {
        counts,
        skipped: skipped.len(),
        seconds: started.elapsed().as_secs_f64(),
        test_source: plan.test_source,
    });
    Ok(RunData {
        train: Arc::new(train),
        val: Arc::new(val),
        test: Arc::new(test),
        counts,
        skipped: skipped.len(),
        test_source: plan.test_source,
    })
}

/// Class weights for the loss, from the config and the training split.
pub fn loss_weights(cfg: &Config, data: &RunData) -> [f32; 2] {
    match &cfg.training.class_weights {
        ClassWeights::Named(n) if n == "balanced" => balanced_weights(data.counts.train),
        ClassWeights::Explicit(w) => *w,
        ClassWeights::Named(_) => [1.0, 1.0],
    }
}

fn run<B: crate::model::FusedBatchNorm + AdamKernel>(
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
    let models: Vec<ModelKind> = cfg.training.models.iter().filter_map(|m| ModelKind::parse(m)).collect();
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
    };
    emit.send(TrainEvent::RunStarted { info: info.clone() });
    let data = prepare_data(cfg, &setup.data_root, &|e| emit.send(e))?;
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
        differences: Vec::new(),
    };
    super::report_files::write(&report, &setup.run_dir)?;
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
        let outcome = train_model::<B>(
            setup,
            &device,
            &data,
            weights,
            kind,
            index,
            &mut result,
            emit,
            cmds,
            resume_from.as_deref(),
        );
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
            let path = result.best_checkpoint.clone().unwrap_or_default();
            match checkpoint::load::<B>(&path, &device) {
                Ok((meta, model)) => {
                    let spec = eval_spec(cfg);
                    // The operating point is chosen on the validation split, never on test (both seen through the
                    // same test-time views when evaluation.tta > 1).
                    let tta = cfg.evaluation.tta;
                    let (val_scores, m, scores) = if tta <= 1 {
                        let (_, val_scores) = evaluate(&model, data.val.clone(), &spec, weights, 0.5, &device);
                        let (m, scores) = evaluate(&model, data.test.clone(), &spec, weights, 0.5, &device);
                        (val_scores, m, scores)
                    } else {
                        let score = |ds: Arc<Dataset>| evaluate(&model, ds, &spec, weights, 0.5, &device).1;
                        let val_scores = over_views(&data.val, tta, score);
                        let scores = over_views(&data.test, tta, score);
                        let loss = probability_loss(&scores, &report.test_truth);
                        (val_scores, Metrics::from_scores(&scores, &report.test_truth, loss, 0.5), scores)
                    };
                    let ev = crate::analysis::evaluate(
                        (&val_scores, &data.val.truth()),
                        (&scores, &report.test_truth, m.loss),
                        crate::analysis::OperatingRule::of(&cfg.evaluation),
                        cfg.evaluation.bootstrap_resamples,
                        cfg.data.seed,
                    );
                    // Saved in the checkpoint: eval, predict and the predict pane decide with it.
                    let meta = CheckpointMeta { threshold: ev.threshold, tta, ..meta };
                    if let Err(e) = checkpoint::rewrite_meta(&path, &meta) {
                        emit.send(TrainEvent::Warning { message: save_failed(&e, false) });
                        result.unsaved.push(format!(
                            "the operating point {:.2} could not be written into {}: eval and predict would use {:.2}",
                            ev.threshold,
                            path.display(),
                            meta_threshold_on_disk(&path)
                        ));
                    }
                    result.test = Some(m);
                    result.test_scores = scores;
                    result.validation_scores = val_scores.clone();
                    result.evaluation = Some(ev.clone());
                    emit.send(TrainEvent::Evaluated { model: kind, split: "test".into(), metrics: m });
                    report.models[index] = result.clone();
                    report.compare_models(cfg.evaluation.bootstrap_resamples, cfg.data.seed);
                    let differences =
                        report.differences.iter().filter(|d| d.a == kind || d.b == kind).cloned().collect();
                    emit.send(TrainEvent::Analysed { model: kind, evaluation: Box::new(ev), differences });
                }
                Err(e) => emit.send(TrainEvent::Warning { message: format!("cannot test {kind}: {e}") }),
            }
            if result.status == ModelStatus::Done && !result.unsaved.is_empty() {
                result.status = ModelStatus::Failed;
                result.error = Some(result.unsaved.join("; "));
            }
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
        add_ensemble(&mut report, cfg, &setup.run_dir, emit)?;
    }
    emit.send(TrainEvent::Finished { run_dir: setup.run_dir.clone(), stopped: report.stopped });
    Ok(report)
}

/// Evaluates the ensemble of the run's tested models (their mean P(pneumonia); operating point chosen on
/// validation like theirs), writes its manifest beside their checkpoints and adds it to the report as a fourth
/// row. Needs two or more tested models.
fn add_ensemble(report: &mut RunReport, cfg: &Config, run_dir: &Path, emit: &Emitter) -> Result<()> {
    let Some((result, manifest)) = super::ensemble::evaluate(report, cfg) else { return Ok(()) };
    let path = run_dir.join("checkpoints").join(super::predictor::ENSEMBLE_FILE);
    match checkpoint::write_atomic(&path, serde_json::to_string_pretty(&manifest)?.as_bytes()) {
        Ok(()) => emit.send(TrainEvent::CheckpointSaved {
            model: ModelKind::Ensemble,
            path: path.clone(),
            kind: "ensemble".into(),
        }),
        Err(e) => emit.send(TrainEvent::Warning { message: format!("the ensemble is not saved: {e}") }),
    }
    let result = ModelResult { best_checkpoint: path.is_file().then_some(path), ..result };
    report.models.retain(|m| m.model != ModelKind::Ensemble);
    report.models.push(result.clone());
    report.compare_models(cfg.evaluation.bootstrap_resamples, cfg.data.seed);
    if let (Some(test), Some(ev)) = (result.test, result.evaluation.clone()) {
        emit.send(TrainEvent::Evaluated { model: ModelKind::Ensemble, split: "test".into(), metrics: test });
        let differences = report
            .differences
            .iter()
            .filter(|d| d.a == ModelKind::Ensemble || d.b == ModelKind::Ensemble)
            .cloned()
            .collect();
        emit.send(TrainEvent::Analysed { model: ModelKind::Ensemble, evaluation: Box::new(ev), differences });
    }
    emit.send(TrainEvent::ModelFinished {
        model: ModelKind::Ensemble,
        status: ModelStatus::Done,
        seconds: result.train_seconds,
        error: None,
    });
    super::report_files::write(report, run_dir)
}

/// The counters of a training state (the caller sets where in the epochs it stands).
fn position(global_step: usize, best_loss: f64, r: &ModelResult, images_seen: usize, secs: f64) -> TrainState {
    TrainState {
        epochs_done: 0,
        global_step,
        best_loss: best_loss.is_finite().then_some(best_loss),
        best_epoch: r.best_epoch,
        best_val_accuracy: r.best_val_accuracy,
        images_seen,
        train_seconds: secs,
        steps_in_epoch: 0,
    }
}

/// The decision threshold a checkpoint on disk holds (0.5 when it cannot be read).
fn meta_threshold_on_disk(path: &Path) -> f32 {
    checkpoint::load_meta(path).map(|m| m.threshold).unwrap_or(0.5)
}

/// A warning for a checkpoint that could not be written (`retry`: another epoch follows, which tries again).
fn save_failed(e: &anyhow::Error, retry: bool) -> String {
    let what = error::format_error(e).replace('\n', " ");
    if retry {
        format!("{what} — training goes on; the save is retried at the next epoch")
    } else {
        format!("{what} — not saved")
    }
}

/// The learning rates of one step: the classifier head's and the rest's (`None`: the rest is frozen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    pub head: f64,
    pub backbone: Option<f64>,
}

impl StepLr {
    /// One learning rate for every parameter.
    pub fn all(lr: f64) -> Self {
        Self { head: lr, backbone: Some(lr) }
    }

    /// Fine-tuning from pretrained weights: the head alone during the first `freeze_epochs` epochs, then the
    /// backbone too at `backbone_lr_factor` × the head's rate. Without pretrained weights: one rate.
    pub fn for_epoch(cfg: &Config, pretrained: bool, epoch: usize, lr: f64) -> Self {
        if !pretrained {
            Self::all(lr)
        } else if epoch <= cfg.training.freeze_epochs {
            Self { head: lr, backbone: None }
        } else {
            Self { head: lr, backbone: Some(lr * cfg.training.backbone_lr_factor) }
        }
    }
}

/// One optimiser step on a host batch: forward, weighted cross-entropy, backward, Adam with clipping.
/// Returns the updated model, the batch loss and the number of correct predictions.
pub fn train_step<B, O>(
    model: Model<B>,
    optim: &mut O,
    batch: &crate::data::loader::Batch,
    loss: impl Into<LossSpec>,
    lr: StepLr,
    device: &B::Device,
) -> (Model<B>, f64, usize)
where
    B: burn::tensor::backend::AutodiffBackend + crate::model::FusedBatchNorm,
    O: Optimizer<Model<B>, B>,
{
    let n = batch.len();
    let (x, y) = to_tensors::<B>(batch, device);
    let logits = model.forward(x);
    let loss = smoothed_cross_entropy(logits.clone(), y.clone(), loss.into());
    let hits = logits.argmax(1).reshape([n]).equal(y).int().sum();
    let mut grads = loss.backward();
    let model = if lr.backbone == Some(lr.head) {
        let grads = GradientsParams::from_grads(grads, &model);
        optim.step(lr.head, model, grads)
    } else {
        // Two groups, as PyTorch's per-parameter-group learning rates: the head, then the rest (if not frozen).
        // Adam keeps its moments per parameter, so stepping the groups one after the other is the same update.
        let head = GradientsParams::from_params(&mut grads, &model, &model.head_param_ids());
        let rest = GradientsParams::from_grads(grads, &model);
        let model = optim.step(lr.head, model, head);
        match lr.backbone {
            Some(blr) => optim.step(blr, model, rest),
            None => model,
        }
    };
    (model, loss.into_scalar().elem_f64(), hits.into_scalar().elem_f64() as usize)
}

enum TrainOutcome {
    Completed,
    Skipped,
    Stopped,
}

fn train_spec(cfg: &Config) -> BatchSpec {
    BatchSpec {
        batch_size: cfg.training.batch_size,
        shuffle: true,
        augment: crate::data::augment::Augment::of(&cfg.data),
        seed: cfg.data.seed,
        mean: cfg.data.mean,
        std: cfg.data.std,
        drop_single: true,
        prefetch: 4,
        balanced: cfg.training.sampler == crate::config::Sampler::Balanced,
    }
}

/// Evaluation batches: fixed order, no augmentation, larger batches.
pub fn eval_spec(cfg: &Config) -> BatchSpec {
    BatchSpec {
        batch_size: cfg.training.batch_size.max(32),
        shuffle: false,
        augment: Default::default(),
        drop_single: false,
        prefetch: 2,
        balanced: false,
        ..train_spec(cfg)
    }
}

/// burn's Adam with the config's settings (PyTorch's epsilon and betas; weight decay as L2 on the gradient;
/// clipping by value or per-parameter norm). Training runs [`init_optimizer`]'s fused version of it; this is the
/// reference the tests hold that one to.
pub fn optimizer_config(cfg: &Config) -> AdamConfig {
    let t = &cfg.training;
    let clip = (t.grad_clip > 0.0).then_some(match t.grad_clip_mode {
        ClipMode::Value => GradientClippingConfig::Value(t.grad_clip as f32),
        ClipMode::Norm => GradientClippingConfig::Norm(t.grad_clip as f32),
    });
    AdamConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay((t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32)))
        .with_grad_clipping(clip)
}

/// The optimiser pneumoscope trains with: Adam as [`optimizer_config`] describes it, run as one pass per
/// parameter ([`super::adam::FusedAdam`]), with its moments already allocated (zeros at time 0) for the parameters
/// that `only` names (all trainable ones when `None`). The first update is then bit for bit the lazy first step
/// (`β·0 + (1−β)·g` is `(1−β)·g`), but the moments take their memory before the first forward pass instead of the
/// memory the first batch's activations leave behind; created lazily, they pushed the second step's activations
/// onto fresh pages, and first-touch page faults made that step up to 1.6× a steady one (docs/benchmarks.md).
pub fn init_optimizer<B: AutodiffBackend<InnerBackend: AdamKernel>, M: AutodiffModule<B>>(
    cfg: &Config,
    model: &M,
    only: Option<&[burn::module::ParamId]>,
) -> Optim<M, B> {
    use burn::module::{ModuleVisitor, Param, ParamId};
    use burn::optim::record::AdaptorRecord;
    use burn::optim::{AdamState, AdaptiveMomentumState};
    use burn::tensor::Tensor;
    type Records<B> = Vec<(ParamId, AdaptorRecord<FusedAdam, B>)>;
    struct Zeros<'a, B: AutodiffBackend<InnerBackend: AdamKernel>> {
        only: Option<&'a [ParamId]>,
        records: Records<B>,
    }
    impl<B: AutodiffBackend<InnerBackend: AdamKernel>> ModuleVisitor<B> for Zeros<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if !value.is_require_grad() || self.only.is_some_and(|ids| !ids.contains(&param.id)) {
                return;
            }
            let inner = value.inner();
            let zeros = || inner.zeros_like();
            let state = AdamState::new(AdaptiveMomentumState::new(0, zeros(), zeros()));
            self.records.push((param.id, AdaptorRecord::from_state(state)));
        }
    }
    let mut zeros = Zeros { only, records: Records::<B>::new() };
    model.visit(&mut zeros);
    let t = &cfg.training;
    let clip = (t.grad_clip > 0.0).then_some(t.grad_clip as f32);
    let adam = FusedAdam {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: (t.weight_decay > 0.0).then_some(t.weight_decay as f32),
        clip_value: clip.filter(|_| t.grad_clip_mode == ClipMode::Value),
    };
    let optim: Optim<M, B> = super::adam::build(adam, clip.filter(|_| t.grad_clip_mode == ClipMode::Norm));
    let mut records = optim.to_record();
    records.extend(zeros.records);
    optim.load_record(records)
}

fn meta_for(
    setup: &RunSetup,
    test_source: TestSource,
    kind: ModelKind,
    epoch: usize,
    val: Option<(f64, f64)>,
    train_state: Option<TrainState>,
    init: &str,
) -> CheckpointMeta {
    let cfg = &setup.config;
    CheckpointMeta {
        format: FORMAT_VERSION,
        model: kind,
        image_size: cfg.data.image_size,
        mean: cfg.data.mean,
        std: cfg.data.std,
        class_names: [Class::Normal.folder().to_string(), Class::Pneumonia.folder().to_string()],
        threshold: 0.5,
        dropout: cfg.training.dropout,
        epoch,
        val_loss: val.map(|v| v.0),
        val_accuracy: val.map(|v| v.1),
        synthetic_data: setup.source.is_synthetic(),
        data_source: setup.source,
        init: init.to_string(),
        pneumoscope_version: env!("CARGO_PKG_VERSION").into(),
        created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        train_state,
        tta: 1,
        split: Some(split::SplitSettings::of(&cfg.data, test_source)),
    }
}

#[allow(clippy::too_many_arguments)]
fn train_model<B: crate::model::FusedBatchNorm + AdamKernel>(
    setup: &RunSetup,
    device: &B::Device,
    data: &RunData,
    weights: [f32; 2],
    kind: ModelKind,
    index: usize,
    result: &mut ModelResult,
    emit: &Emitter,
    cmds: &Receiver<Command>,
    resume_from: Option<&Path>,
) -> Result<TrainOutcome> {
    type AD<B> = Autodiff<B>;
    let cfg = &setup.config;
    let t = &cfg.training;
    let spec = train_spec(cfg);
    let vspec = eval_spec(cfg);
    AD::<B>::seed(device, cfg.data.seed.wrapping_add(index as u64 * 1000 + 1));
    let mut model: Model<AD<B>> = Model::new(kind, t.dropout, device);
    // ImageNet weights for ResNet-34's backbone (a resumed run gets them back from its checkpoint).
    let pretrained = match (&mut model, cfg.pretrained()) {
        (Model::Resnet34(net), Some(path)) => {
            if resume_from.is_none() {
                crate::model::pretrained::load_resnet34(net, path)?;
            }
            true
        }
        _ => false,
    };
    result.init = match cfg.pretrained() {
        Some(path) if pretrained => format!(
            "imagenet ({})",
            path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
        ),
        _ => "scratch".into(),
    };
    result.params = crate::model::trainable_params::<AD<B>, _>(&model);
    // The moments of what the first epoch trains (the head alone while a pretrained backbone is frozen).
    let head = model.head_param_ids();
    let first_trained = (pretrained && t.freeze_epochs > 0).then_some(head.as_slice());
    let mut optim = init_optimizer::<AD<B>, _>(cfg, &model, first_trained);
    let steps_per_epoch = epoch_batches(&data.train, &spec, 0).len().max(1);
    let total_steps = steps_per_epoch * t.epochs;
    let schedule = OneCycle::new(t.max_lr, total_steps, t.warmup_fraction);
    emit.send(TrainEvent::ModelStarted {
        model: kind,
        index,
        params: result.params,
        steps_per_epoch,
        epochs: t.epochs,
        init: result.init.clone(),
    });

    let ckpt_dir = setup.run_dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("cannot create {}", ckpt_dir.display()))?;
    let best_path = ckpt_dir.join(format!("{kind}-best.ckpt"));
    let last_path = ckpt_dir.join(format!("{kind}-last.ckpt"));
    let mut best_loss = f64::INFINITY;
    let mut global_step = 0usize;
    let mut images_seen = 0usize;
    let mut train_secs = 0.0f64;
    let mut first_epoch = 1;
    let mut skip_steps = 0;
    if let Some(path) = resume_from {
        // Continue where the last checkpoint left off: weights, optimiser moments, schedule position, counters.
        let (meta, loaded) = checkpoint::load::<AD<B>>(path, device)?;
        let state = meta
            .train_state
            .ok_or_else(|| anyhow::anyhow!("checkpoint {} holds no training state to resume from", path.display()))?;
        model = loaded;
        if let Some(rec) = checkpoint::load_optimizer::<AD<B>, _>(path, device)? {
            optim = optim.load_record(rec);
        }
        first_epoch = state.epochs_done + 1;
        skip_steps = state.steps_in_epoch;
        global_step = state.global_step;
        best_loss = state.best_loss.unwrap_or(f64::INFINITY);
        images_seen = state.images_seen;
        train_secs = state.train_seconds;
        result.epochs_done = state.epochs_done;
        result.best_epoch = state.best_epoch;
        result.best_val_loss = state.best_loss;
        result.best_val_accuracy = state.best_val_accuracy;
        result.last_checkpoint = Some(path.to_path_buf());
        if best_path.is_file() && state.best_epoch.is_some() {
            result.best_checkpoint = Some(best_path.clone());
        }
        emit.send(TrainEvent::Notice {
            message: format!(
                "{kind}: resuming after epoch {}{} (step {global_step})",
                state.epochs_done,
                if skip_steps > 0 { format!(" and {skip_steps} batches of the next") } else { String::new() }
            ),
        });
    }

    // The best weights not yet on disk (a failed write is retried at the next epoch and once more at the end).
    let mut pending_best: Option<(CheckpointMeta, Model<B>)> = None;
    let mut last_unsaved: Option<String> = None;
    for epoch in first_epoch..=t.epochs {
        let epoch_start = Instant::now();
        let mut loss_sum = 0.0;
        let mut correct = 0usize;
        let mut seen = 0usize;
        let mut it = batches(data.train.clone(), &spec, epoch);
        let mut step = 0;
        let mut control = Control::Continue;
        // Resuming mid-epoch: this epoch's order is the same as before, so its first batches are done.
        let skip = if epoch == first_epoch { std::mem::take(&mut skip_steps) } else { 0 };
        if pretrained && t.freeze_epochs > 0 {
            let message = if epoch <= t.freeze_epochs {
                format!("{kind}: epoch {epoch} trains the new head only (backbone frozen)")
            } else {
                format!(
                    "{kind}: backbone trains at {} × the head's learning rate from epoch {epoch}",
                    t.backbone_lr_factor
                )
            };
            if epoch <= t.freeze_epochs + 1 {
                emit.send(TrainEvent::Notice { message });
            }
        }
        for batch in it.by_ref() {
            step += 1;
            if step <= skip {
                continue;
            }
            let n = batch.len();
            let lr = schedule.lr(global_step);
            let lrs = StepLr::for_epoch(cfg, pretrained, epoch, lr);
            let loss = LossSpec { weights, smoothing: t.label_smoothing as f32 };
            let (m, mut loss_v, hits_v) = train_step(model, &mut optim, &batch, loss, lrs, device);
            model = m;
            if crate::error::failpoint("nan-loss").as_deref() == Some(&format!("{kind}:{global_step}")) {
                loss_v = f64::NAN;
            }
            if !loss_v.is_finite() {
                anyhow::bail!(
                    "the loss became {loss_v} at epoch {epoch}, step {step} (learning rate {lr:.2e}): \
                     training diverged; lower --max-lr / training.max_lr. The last good checkpoint is kept."
                );
            }
            global_step += 1;
            images_seen += n;
            loss_sum += loss_v * n as f64;
            correct += hits_v;
            seen += n;
            let elapsed = train_secs + epoch_start.elapsed().as_secs_f64();
            let ips = images_seen as f64 / elapsed.max(1e-9);
            let per_step = elapsed / global_step as f64;
            emit.send(TrainEvent::Batch {
                model: kind,
                epoch,
                step,
                steps_per_epoch,
                global_step: global_step - 1,
                loss: loss_v,
                accuracy: hits_v as f64 / n as f64,
                lr,
                images_per_sec: ips,
                eta_secs: per_step * (total_steps - global_step) as f64,
            });
            control = poll(cmds, emit);
            if !matches!(control, Control::Continue) {
                break;
            }
        }
        let waited = it.waited().as_secs_f64();
        drop(it);
        let epoch_secs = epoch_start.elapsed().as_secs_f64();
        train_secs += epoch_secs;
        result.images_per_sec = images_seen as f64 / train_secs.max(1e-9);
        if !matches!(control, Control::Continue) {
            // Ended mid-epoch by the user: keep the weights as they are.
            let state = TrainState {
                epochs_done: epoch - 1,
                steps_in_epoch: step,
                ..position(global_step, result.best_val_loss.unwrap_or(f64::INFINITY), result, images_seen, train_secs)
            };
            let meta = meta_for(setup, data.test_source, kind, epoch - 1, None, Some(state), &result.init);
            checkpoint::save_resumable(&last_path, &meta, &model.valid(), optim.to_record())?;
            result.last_checkpoint = Some(last_path.clone());
            emit.send(TrainEvent::CheckpointSaved { model: kind, path: last_path.clone(), kind: "last".into() });
            result.epochs_done = epoch - 1;
            return Ok(if matches!(control, Control::Stop) { TrainOutcome::Stopped } else { TrainOutcome::Skipped });
        }
        let valid = model.valid();
        let (vm, _) = evaluate(&valid, data.val.clone(), &vspec, weights, 0.5, device);
        let is_best = vm.loss < best_loss;
        let meta = meta_for(setup, data.test_source, kind, epoch, Some((vm.loss, vm.accuracy)), None, &result.init);
        if is_best {
            best_loss = vm.loss;
            pending_best = Some((meta.clone(), valid.clone()));
        }
        // A failed write (disk full, permissions) is reported and retried next epoch; training goes on. The
        // result describes the best checkpoint on disk, never weights that could not be saved.
        let more = epoch < t.epochs;
        if let Some((bmeta, bmodel)) = pending_best.take() {
            if let Err(e) = save_best(&best_path, &bmeta, &bmodel, result, emit) {
                emit.send(TrainEvent::Warning { message: save_failed(&e, more) });
                pending_best = Some((bmeta, bmodel));
            }
        }
        result.epochs_done = epoch;
        let state = TrainState {
            epochs_done: epoch,
            steps_in_epoch: 0,
            ..position(global_step, result.best_val_loss.unwrap_or(f64::INFINITY), result, images_seen, train_secs)
        };
        let meta = CheckpointMeta { train_state: Some(state), ..meta };
        match checkpoint::save_resumable(&last_path, &meta, &valid, optim.to_record()) {
            Ok(()) => {
                result.last_checkpoint = Some(last_path.clone());
                last_unsaved = None;
            }
            Err(e) => {
                emit.send(TrainEvent::Warning { message: save_failed(&e, more) });
                last_unsaved = Some(error::format_error(&e).replace('\n', " "));
            }
        }
        emit.send(TrainEvent::EpochEnded {
            model: kind,
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            validation: vm,
            best: is_best,
            seconds: epoch_secs,
            images_per_sec: seen as f64 / epoch_secs.max(1e-9),
            loader_wait: waited / epoch_secs.max(1e-9),
        });
    }
    // One more try for best weights that could not be written; what still is not on disk is said, not claimed.
    if let Some((bmeta, bmodel)) = pending_best.take() {
        if let Err(e) = save_best(&best_path, &bmeta, &bmodel, result, emit) {
            result.unsaved.push(format!(
                "the best weights (epoch {}) could not be saved: {}",
                bmeta.epoch,
                error::format_error(&e).replace('\n', " ")
            ));
        }
    }
    if let Some(e) = last_unsaved {
        result.unsaved.push(format!("the last checkpoint (for --resume) could not be saved: {e}"));
    }
    Ok(TrainOutcome::Completed)
}

/// Writes the best weights; on success the result describes them (epoch, validation loss and accuracy).
fn save_best<B: Backend>(
    path: &Path,
    meta: &CheckpointMeta,
    model: &Model<B>,
    result: &mut ModelResult,
    emit: &Emitter,
) -> Result<()> {
    checkpoint::save(path, meta, model)?;
    result.best_checkpoint = Some(path.to_path_buf());
    result.best_epoch = Some(meta.epoch);
    result.best_val_loss = meta.val_loss;
    result.best_val_accuracy = meta.val_accuracy;
    emit.send(TrainEvent::CheckpointSaved { model: meta.model, path: path.to_path_buf(), kind: "best".into() });
    Ok(())
}
