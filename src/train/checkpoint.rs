//! Checkpoint files: a JSON header (model kind, image size, normalisation, class names, threshold, epoch), the
//! burn record of the weights and optionally the optimiser state, each section framed by its length and CRC-32,
//! written atomically; every header field is checked before a model is built from it. Must not depend on
//! front-ends.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::data::Task;
use crate::error::Result;
use crate::model::{Init, Model, ModelKind};

/// Checksummed layout: every section framed by its length and CRC-32.
const MAGIC: &[u8; 17] = b"PNEUMOSCOPE-CKP2\n";
/// The layout before checksums (still read).
const MAGIC_V1: &[u8; 17] = b"PNEUMOSCOPE-CKPT\n";
pub const FORMAT_VERSION: u32 = 1;

/// Everything predict and eval need besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub model: ModelKind,
    pub image_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The classes of the head's outputs, in order: NORMAL, PNEUMONIA or NORMAL, BACTERIAL, VIRAL (the task).
    pub class_names: Vec<String>,
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
    /// Where the weights started: from scratch or the pretrained weights file.
    pub init: Init,
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

impl CheckpointMeta {
    /// The task the model was trained for, from its class names (checked when the header is read).
    pub fn task(&self) -> Task {
        Task::of_class_names(&self.class_names).unwrap_or_default()
    }

    /// Refuses a model trained for another task than `wanted`, saying what each is. A three-class model may be
    /// used for the two-class question (P(pneumonia) = 1 − P(NORMAL)); a two-class one cannot answer three.
    pub fn check_task(&self, wanted: Task, path: &Path) -> Result<()> {
        if wanted == Task::ThreeClass && self.task() != Task::ThreeClass {
            bail!(
                "checkpoint {} was trained for the two-class task ({}): it cannot tell BACTERIAL from VIRAL, so it \
                 cannot be evaluated for data.task = \"three-class\"; train one with --task three-class",
                path.display(),
                self.class_names.join(", ")
            );
        }
        Ok(())
    }
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
        if let Some(spec) = crate::error::failpoint("write") {
            // `write:<text>` fails every write to a path containing <text>; `write:<text>#N` from the Nth on.
            let (part, from) = match spec.split_once('#') {
                Some((p, n)) => (p.to_string(), n.parse::<usize>().unwrap_or(1)),
                None => (spec, 1),
            };
            static MATCHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            if path.to_string_lossy().contains(part.as_str())
                && MATCHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= from
            {
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
    let sections: Vec<&[u8]> = [Some(&header[..]), Some(&record[..]), optim.as_deref()].into_iter().flatten().collect();
    let frames: Vec<[u8; 12]> = sections.iter().map(|s| frame(s)).collect();
    let mut parts: Vec<&[u8]> = vec![MAGIC];
    for (f, s) in frames.iter().zip(&sections) {
        parts.push(f);
        parts.push(s);
    }
    write_atomic_parts(path, &parts)
}

/// A section's frame: its length (u64) and the CRC-32 of its bytes (u32), little-endian.
fn frame(section: &[u8]) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[..8].copy_from_slice(&(section.len() as u64).to_le_bytes());
    f[8..].copy_from_slice(&crc32fast::hash(section).to_le_bytes());
    f
}

/// Replaces a checkpoint's header (e.g. to record the operating point) and keeps its weights and optimiser
/// sections byte for byte, streaming them into the new file (atomically: temporary file, fsync, rename).
pub fn rewrite_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    let (mut src, _, layout) = open_header(path)?;
    let header = serde_json::to_vec(meta)?;
    write_atomic_with(path, |out| {
        match layout {
            Layout::Checksummed => {
                out.write_all(MAGIC)?;
                out.write_all(&frame(&header))?;
            }
            Layout::Plain => {
                out.write_all(MAGIC_V1)?;
                out.write_all(&(header.len() as u64).to_le_bytes())?;
            }
        }
        out.write_all(&header)?;
        std::io::copy(&mut src, out).map(|_| ())
    })
}

/// How a checkpoint file's sections are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Written before checksums (magic `PNEUMOSCOPE-CKPT`): length-prefixed sections, no integrity check.
    Plain,
    /// Each section framed by its length and CRC-32 (magic `PNEUMOSCOPE-CKP2`).
    Checksummed,
}

/// The longest header accepted (a real one is about 1 KB).
const MAX_HEADER: u64 = 1 << 20;

/// Reads `len` bytes of the section called `what`, refusing lengths beyond the file's end before allocating.
fn read_section(f: &mut std::fs::File, path: &Path, what: &str, len: u64, left: u64) -> Result<Vec<u8>> {
    if len > left {
        bail!("checkpoint {} is truncated ({} of {len} {what} bytes)", path.display(), left);
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).with_context(|| format!("checkpoint {} is truncated ({what})", path.display()))?;
    Ok(buf)
}

/// Reads a frame (length, CRC-32), or None at the end of the file.
fn read_frame(f: &mut std::fs::File, path: &Path, what: &str) -> Result<Option<(u64, u32)>> {
    let mut fr = [0u8; 12];
    let mut got = 0;
    while got < fr.len() {
        match f.read(&mut fr[got..]).with_context(|| format!("cannot read checkpoint {}", path.display()))? {
            0 if got == 0 => return Ok(None),
            0 => bail!("checkpoint {} is truncated ({what} section)", path.display()),
            n => got += n,
        }
    }
    let len = u64::from_le_bytes(fr[..8].try_into().unwrap_or_default());
    Ok(Some((len, u32::from_le_bytes(fr[8..].try_into().unwrap_or_default()))))
}

fn check_crc(path: &Path, what: &str, bytes: &[u8], crc: u32) -> Result<()> {
    if crc32fast::hash(bytes) != crc {
        bail!(
            "checkpoint {} is corrupt: its {what} section fails its checksum (the file was damaged after it was \
             written; use another checkpoint, e.g. the run's other best/last file)",
            path.display()
        );
    }
    Ok(())
}

/// Opens a checkpoint and reads and checks its header; the file is left at the start of the weights section.
fn open_header(path: &Path) -> Result<(std::fs::File, CheckpointMeta, Layout)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 17];
    let layout = match f.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => Layout::Checksummed,
        Ok(()) if &magic == MAGIC_V1 => Layout::Plain,
        _ => bail!("{} is not a pneumoscope checkpoint (wrong or missing header)", path.display()),
    };
    let header = match layout {
        Layout::Checksummed => {
            let (len, crc) = read_frame(&mut f, path, "header")?
                .ok_or_else(|| anyhow::anyhow!("checkpoint {} is truncated (no header)", path.display()))?;
            if len > MAX_HEADER {
                bail!("checkpoint {} has a corrupt header length", path.display());
            }
            let header = read_section(&mut f, path, "header", len, size.saturating_sub(17 + 12))?;
            check_crc(path, "header", &header, crc)?;
            header
        }
        Layout::Plain => {
            let mut len = [0u8; 8];
            f.read_exact(&mut len).with_context(|| format!("checkpoint {} is truncated", path.display()))?;
            let hlen = u64::from_le_bytes(len);
            if hlen > MAX_HEADER {
                bail!("checkpoint {} has a corrupt header length", path.display());
            }
            read_section(&mut f, path, "header", hlen, size.saturating_sub(17 + 8))?
        }
    };
    let meta: CheckpointMeta = serde_json::from_slice(&header)
        .with_context(|| format!("checkpoint {} has an unreadable header", path.display()))?;
    if meta.format > FORMAT_VERSION {
        bail!(
            "checkpoint {} has format {} (this pneumoscope reads up to {FORMAT_VERSION}); upgrade pneumoscope",
            path.display(),
            meta.format
        );
    }
    validate(&meta).map_err(|why| anyhow::anyhow!("checkpoint {} has an invalid header: {why}", path.display()))?;
    Ok((f, meta, layout))
}

/// Checks every header field a model is built from, before anything is allocated for it.
fn validate(m: &CheckpointMeta) -> std::result::Result<(), String> {
    if !m.model.is_network() {
        return Err(format!("model `{}` is not a network", m.model));
    }
    if !(16..=1024).contains(&m.image_size) {
        return Err(format!("image_size {} (allowed: 16 to 1024)", m.image_size));
    }
    if !(m.threshold.is_finite() && (0.0..=1.0).contains(&m.threshold)) {
        return Err(format!("threshold {} (allowed: 0 to 1)", m.threshold));
    }
    if m.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || m.mean.iter().any(|v| !v.is_finite()) {
        return Err(format!("normalisation mean {:?} std {:?} (finite, std positive)", m.mean, m.std));
    }
    if !(m.dropout.is_finite() && (0.0..1.0).contains(&m.dropout)) {
        return Err(format!("dropout {} (allowed: 0 to less than 1)", m.dropout));
    }
    if !(1..=5).contains(&m.tta) {
        return Err(format!("tta {} (allowed: 1 to 5)", m.tta));
    }
    if Task::of_class_names(&m.class_names).is_none() {
        return Err(format!("classes {:?} (expected NORMAL, PNEUMONIA or NORMAL, BACTERIAL, VIRAL)", m.class_names));
    }
    Ok(())
}

fn read_parts(path: &Path, with_record: bool) -> Result<(CheckpointMeta, Vec<u8>, Vec<u8>)> {
    let (mut f, meta, layout) = open_header(path)?;
    if !with_record {
        return Ok((meta, Vec::new(), Vec::new()));
    }
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let left = |f: &mut std::fs::File| size.saturating_sub(f.stream_position().unwrap_or(size));
    match layout {
        Layout::Checksummed => {
            let (rlen, rcrc) = read_frame(&mut f, path, "weights")?
                .ok_or_else(|| anyhow::anyhow!("checkpoint {} is truncated (no weights)", path.display()))?;
            let l = left(&mut f);
            let record = read_section(&mut f, path, "weight", rlen, l)?;
            check_crc(path, "weights", &record, rcrc)?;
            let optim = match read_frame(&mut f, path, "optimiser")? {
                None => Vec::new(),
                Some((olen, ocrc)) => {
                    let l = left(&mut f);
                    if olen != l {
                        bail!("checkpoint {} has a truncated optimiser section ({l} of {olen} bytes)", path.display());
                    }
                    let optim = read_section(&mut f, path, "optimiser", olen, l)?;
                    check_crc(path, "optimiser", &optim, ocrc)?;
                    optim
                }
            };
            Ok((meta, record, optim))
        }
        Layout::Plain => {
            let mut len = [0u8; 8];
            f.read_exact(&mut len).with_context(|| format!("checkpoint {} is truncated", path.display()))?;
            let rlen = u64::from_le_bytes(len);
            let l = left(&mut f);
            let record = read_section(&mut f, path, "weight", rlen, l)?;
            let mut optim = Vec::new();
            f.read_to_end(&mut optim)?;
            if !optim.is_empty() {
                // An optional third section: the optimiser state, length-prefixed.
                let olen = optim.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0);
                if optim.len() as u64 != 8 + olen {
                    bail!("checkpoint {} has a truncated optimiser section", path.display());
                }
                optim.drain(..8);
            }
            Ok((meta, record, optim))
        }
    }
}

/// Reads and checks a whole resumable checkpoint (header, weights, optimiser state) and returns its training
/// position; an error says what is damaged.
pub fn verify_resumable(path: &Path) -> Result<TrainState> {
    let (meta, _, optim) = read_parts(path, true)?;
    if optim.is_empty() {
        bail!("checkpoint {} holds no optimiser state to resume from", path.display());
    }
    meta.train_state.ok_or_else(|| anyhow::anyhow!("checkpoint {} holds no training state", path.display()))
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
    let r = crate::error::quietly(|| NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(optim, device))
        .map_err(|_| anyhow::anyhow!("checkpoint {} has an optimiser state that does not fit", path.display()))?
        .map_err(|e| anyhow::anyhow!("checkpoint {} has an unreadable optimiser state: {e}", path.display()))?;
    Ok(Some(r))
}

/// Loads a checkpoint onto `device`.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<(CheckpointMeta, Model<B>)> {
    let (meta, record, _) = read_parts(path, true)?;
    let model = Model::<B>::with_classes(meta.model, meta.task().classes(), meta.dropout, device);
    let record = crate::error::quietly(|| NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(record, device))
        .map_err(|_| {
            anyhow::anyhow!("checkpoint {} holds weights that do not fit a {} model", path.display(), meta.model)
        })?
        .map_err(|e| anyhow::anyhow!("checkpoint {} has unreadable weights: {e}", path.display()))?;
    let model = crate::error::quietly(|| model.load_record(record)).map_err(|_| {
        anyhow::anyhow!("checkpoint {} holds weights that do not fit a {} model", path.display(), meta.model)
    })?;
    Ok((meta, model))
}
