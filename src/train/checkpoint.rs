//! Checkpoint files: a JSON header (model kind, image size, normalisation, class names, threshold, epoch)
//! followed by the burn record of the weights, written atomically. Must not depend on front-ends.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Model, ModelKind};

const MAGIC: &[u8; 17] = b"PNEUMOSCOPE-CKPT\n";
pub const FORMAT_VERSION: u32 = 1;

/// Everything predict and eval need besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub model: ModelKind,
    pub image_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub class_names: [String; 2],
    /// P(pneumonia) at or above which an image is called PNEUMONIA.
    pub threshold: f32,
    pub dropout: f64,
    /// Epochs completed when this was saved.
    pub epoch: usize,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// True when the weights came from training on SYNTHETIC data.
    pub synthetic_data: bool,
    /// What the training data was (a user's folder, the built-in small real subset, SYNTHETIC pictures).
    #[serde(default)]
    pub data_source: crate::data::demo::DataSource,
    /// Where ResNet-34 started: "scratch" or the pretrained weights file.
    pub init: String,
    pub pneumoscope_version: String,
    pub created: String,
    /// Where training stood when this was saved (`last` checkpoints), for `train --resume`.
    #[serde(default)]
    pub train_state: Option<TrainState>,
    /// Test-time augmentation views its operating point was chosen with, used by eval and predict (1: none).
    #[serde(default = "one")]
    pub tta: usize,
    /// How the run split its data (None in checkpoints written before it was recorded).
    #[serde(default)]
    pub split: Option<crate::data::split::SplitSettings>,
}

fn one() -> usize {
    1
}

/// The training position saved with `last` checkpoints (with the optimiser state after the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs fully completed.
    pub epochs_done: usize,
    /// Optimiser steps taken (the one-cycle schedule's position).
    pub global_step: usize,
    pub best_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    pub best_val_accuracy: Option<f64>,
    pub images_seen: usize,
    pub train_seconds: f64,
    /// Batches already trained in the next epoch (a stop mid-epoch); resuming skips them.
    #[serde(default)]
    pub steps_in_epoch: usize,
}

/// Writes bytes to `path` atomically: a temporary file in the same folder, fsync, rename, fsync the folder.
/// A crash at any point leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// `write_atomic` of the concatenation of `parts`, without building it in memory (checkpoints are large).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<()> {
    write_atomic_with(path, |f| parts.iter().try_for_each(|p| f.write_all(p)))
}

/// Atomically replaces `path` with what `fill` writes (through a buffer) into the temporary file.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        if let Some(part) = crate::error::failpoint("write") {
            if path.to_string_lossy().contains(part.as_str()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (failpoint)",
                ));
            }
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
    }
    Ok(())
}

/// Saves a model with its metadata.
pub fn save<B: Backend>(path: &Path, meta: &CheckpointMeta, model: &Model<B>) -> Result<()> {
    save_parts::<B>(path, meta, model, None)
}

/// Saves a model, its metadata and the optimiser state (a resumable `last` checkpoint).
pub fn save_resumable<B: Backend, OB: Backend, R: Record<OB>>(
    path: &Path,
    meta: &CheckpointMeta,
    model: &Model<B>,
    optimizer: R,
) -> Result<()> {
    let optim = <NamedMpkBytesRecorder<FullPrecisionSettings> as Recorder<OB>>::record(
        &NamedMpkBytesRecorder::new(),
        optimizer,
        (),
    )
    .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser state of {}: {e}", meta.model))?;
    save_parts::<B>(path, meta, model, Some(optim))
}

fn save_parts<B: Backend>(path: &Path, meta: &CheckpointMeta, model: &Model<B>, optim: Option<Vec<u8>>) -> Result<()> {
    let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .record(model.clone().into_record(), ())
        .map_err(|e| anyhow::anyhow!("cannot serialise the {} weights: {e}", meta.model))?;
    let header = serde_json::to_vec(meta)?;
    let (hlen, rlen) = ((header.len() as u64).to_le_bytes(), (record.len() as u64).to_le_bytes());
    let olen = optim.as_ref().map(|o| (o.len() as u64).to_le_bytes());
    let mut parts: Vec<&[u8]> = vec![MAGIC, &hlen, &header, &rlen, &record];
    if let (Some(o), Some(l)) = (&optim, &olen) {
        parts.push(l);
        parts.push(o);
    }
    write_atomic_parts(path, &parts)
}

/// Replaces a checkpoint's header (e.g. to record the operating point) and keeps its weights and optimiser
/// sections byte for byte, streaming them into the new file (atomically: temporary file, fsync, rename).
pub fn rewrite_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    let (mut src, _) = open_header(path)?;
    let header = serde_json::to_vec(meta)?;
    write_atomic_with(path, |out| {
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        std::io::copy(&mut src, out).map(|_| ())
    })
}

/// Opens a checkpoint and reads its header; the file is left at the start of the weights section.
fn open_header(path: &Path) -> Result<(std::fs::File, CheckpointMeta)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    let mut magic = [0u8; 17];
    if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
        bail!("{} is not a pneumoscope checkpoint (wrong or missing header)", path.display());
    }
    let mut len = [0u8; 8];
    f.read_exact(&mut len).with_context(|| format!("checkpoint {} is truncated", path.display()))?;
    let hlen = u64::from_le_bytes(len);
    if hlen > 1 << 20 {
        bail!("checkpoint {} has a corrupt header length", path.display());
    }
    let mut header = vec![0u8; hlen as usize];
    f.read_exact(&mut header).with_context(|| format!("checkpoint {} is truncated", path.display()))?;
    let meta: CheckpointMeta = serde_json::from_slice(&header)
        .with_context(|| format!("checkpoint {} has an unreadable header", path.display()))?;
    if meta.format > FORMAT_VERSION {
        bail!(
            "checkpoint {} has format {} (this pneumoscope reads up to {FORMAT_VERSION}); upgrade pneumoscope",
            path.display(),
            meta.format
        );
    }
    Ok((f, meta))
}

fn read_parts(path: &Path, with_record: bool) -> Result<(CheckpointMeta, Vec<u8>, Vec<u8>)> {
    let (mut f, meta) = open_header(path)?;
    let mut record = Vec::new();
    let mut optim = Vec::new();
    if with_record {
        let mut len = [0u8; 8];
        f.read_exact(&mut len).with_context(|| format!("checkpoint {} is truncated", path.display()))?;
        let rlen = u64::from_le_bytes(len);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest)?;
        if (rest.len() as u64) < rlen {
            bail!("checkpoint {} is truncated ({} of {} weight bytes)", path.display(), rest.len(), rlen);
        }
        optim = rest.split_off(rlen as usize);
        record = rest;
        if !optim.is_empty() {
            // An optional third section: the optimiser state, length-prefixed.
            let olen = optim.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0);
            if optim.len() as u64 != 8 + olen {
                bail!("checkpoint {} has a truncated optimiser section", path.display());
            }
            optim.drain(..8);
        }
    }
    Ok((meta, record, optim))
}

/// Reads only the header.
pub fn load_meta(path: &Path) -> Result<CheckpointMeta> {
    Ok(read_parts(path, false)?.0)
}

/// Loads the optimiser state saved by [`save_resumable`] (None when the checkpoint has none).
pub fn load_optimizer<B: Backend, R: Record<B>>(path: &Path, device: &B::Device) -> Result<Option<R>> {
    let (_, _, optim) = read_parts(path, true)?;
    if optim.is_empty() {
        return Ok(None);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(optim, device)
    }))
    .map_err(|_| anyhow::anyhow!("checkpoint {} has an optimiser state that does not fit", path.display()))?
    .map_err(|e| anyhow::anyhow!("checkpoint {} has an unreadable optimiser state: {e}", path.display()))?;
    Ok(Some(r))
}

/// Loads a checkpoint onto `device`.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<(CheckpointMeta, Model<B>)> {
    let (meta, record, _) = read_parts(path, true)?;
    if !meta.model.is_network() {
        bail!("checkpoint {} names no network (model `{}`)", path.display(), meta.model);
    }
    let model = Model::<B>::new(meta.model, meta.dropout, device);
    let record = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(record, device)
    }))
    .map_err(|_| anyhow::anyhow!("checkpoint {} holds weights that do not fit a {} model", path.display(), meta.model))?
    .map_err(|e| anyhow::anyhow!("checkpoint {} has unreadable weights: {e}", path.display()))?;
    let model = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_record(record))).map_err(|_| {
        anyhow::anyhow!("checkpoint {} holds weights that do not fit a {} model", path.display(), meta.model)
    })?;
    Ok((meta, model))
}
