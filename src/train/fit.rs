//! One model's epochs: the model built (ImageNet weights loaded when asked), the optimiser set up or restored
//! from a `last` checkpoint, every batch stepped and reported, each epoch validated, the best and last
//! checkpoints written — and what could not be written said, never claimed.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::Backend;
use crossbeam_channel::Receiver;

use super::checkpoint::{self, CheckpointMeta, TrainState, FORMAT_VERSION};
use super::control::{poll, Control};
use super::events::{BatchProgress, CheckpointKind, Command, TrainEvent};
use super::infer::{evaluate, LossSpec};
use super::journal::Emitter;
use super::report::ModelResult;
use super::schedule::OneCycle;
use super::setup::RunSetup;
use super::step::{eval_spec, init_optimizer, train_spec, train_step, StepLr};
use crate::data::loader::{batches, epoch_batches};
use crate::data::prepare::RunData;
use crate::data::split::{self, TestSource};
use crate::error::{self, Result};
use crate::model::{Init, Model, ModelKind};
use pneumoscope_kernels::adam::AdamKernel;

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

/// A warning for a checkpoint that could not be written (`retry`: another epoch follows, which tries again).
pub(crate) fn save_failed(e: &anyhow::Error, retry: bool) -> String {
    let what = error::format_error(e).replace('\n', " ");
    if retry {
        format!("{what} — training goes on; the save is retried at the next epoch")
    } else {
        format!("{what} — not saved")
    }
}

/// How one model's training ended.
pub(crate) enum TrainOutcome {
    Completed,
    Skipped,
    Stopped,
}

fn meta_for(
    setup: &RunSetup,
    test_source: TestSource,
    kind: ModelKind,
    epoch: usize,
    val: Option<(f64, f64)>,
    train_state: Option<TrainState>,
    init: &Init,
) -> CheckpointMeta {
    let cfg = &setup.config;
    CheckpointMeta {
        format: FORMAT_VERSION,
        model: kind,
        image_size: cfg.data.image_size,
        mean: cfg.data.mean,
        std: cfg.data.std,
        class_names: cfg.data.task.class_names().iter().map(|n| n.to_string()).collect(),
        threshold: 0.5,
        dropout: cfg.training.dropout,
        epoch,
        val_loss: val.map(|v| v.0),
        val_accuracy: val.map(|v| v.1),
        synthetic_data: setup.source.is_synthetic(),
        data_source: setup.source,
        init: init.clone(),
        pneumoscope_version: env!("CARGO_PKG_VERSION").into(),
        created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        train_state,
        tta: 1,
        split: Some(split::SplitSettings::of(&cfg.data, test_source)),
    }
}

/// What every model of a run trains with.
pub(crate) struct Fit<'a, B: Backend> {
    pub setup: &'a RunSetup,
    pub device: &'a B::Device,
    pub data: &'a RunData,
    /// The loss's class weights.
    pub weights: &'a [f32],
    pub emit: &'a Emitter,
    pub cmds: &'a Receiver<Command>,
}

impl<B: crate::model::Kernels + AdamKernel> Fit<'_, B> {
    /// Trains one model for the configured epochs (or from its `last` checkpoint on): validates each epoch, keeps
    /// the best and last checkpoints, and fills `result` with what is on disk.
    pub(crate) fn train_model(
        &self,
        kind: ModelKind,
        index: usize,
        result: &mut ModelResult,
        resume_from: Option<&Path>,
    ) -> Result<TrainOutcome> {
        let Fit { setup, device, data, weights, emit, cmds } = *self;
        type AD<B> = Autodiff<B>;
        let cfg = &setup.config;
        let t = &cfg.training;
        let spec = train_spec(cfg);
        let vspec = eval_spec(cfg);
        AD::<B>::seed(device, cfg.data.seed.wrapping_add(index as u64 * 1000 + 1));
        let mut model: Model<AD<B>> = Model::with_classes(kind, cfg.data.task.classes(), t.dropout, device);
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
            Some(path) if pretrained => Init::ImageNet(
                path.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string()),
            ),
            _ => Init::Scratch,
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
            let state = meta.train_state.ok_or_else(|| {
                anyhow::anyhow!("checkpoint {} holds no training state to resume from", path.display())
            })?;
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
                let loss = LossSpec { weights: weights.to_vec(), smoothing: t.label_smoothing as f32 };
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
                emit.send(TrainEvent::Batch(BatchProgress {
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
                }));
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
                    ..position(
                        global_step,
                        result.best_val_loss.unwrap_or(f64::INFINITY),
                        result,
                        images_seen,
                        train_secs,
                    )
                };
                let meta = meta_for(setup, data.test_source, kind, epoch - 1, None, Some(state), &result.init);
                checkpoint::save_resumable(&last_path, &meta, &model.valid(), optim.to_record())?;
                result.last_checkpoint = Some(last_path.clone());
                emit.send(TrainEvent::CheckpointSaved {
                    model: kind,
                    path: last_path.clone(),
                    kind: CheckpointKind::Last,
                });
                result.epochs_done = epoch - 1;
                return Ok(if matches!(control, Control::Stop) {
                    TrainOutcome::Stopped
                } else {
                    TrainOutcome::Skipped
                });
            }
            let valid = model.valid();
            let vm = evaluate(&valid, data.val.clone(), &vspec, weights, 0.5, device).metrics;
            let is_best = vm.loss < best_loss;
            let meta =
                meta_for(setup, data.test_source, kind, epoch, Some((vm.loss, vm.task_accuracy())), None, &result.init);
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
    emit.send(TrainEvent::CheckpointSaved { model: meta.model, path: path.to_path_buf(), kind: CheckpointKind::Best });
    Ok(())
}
