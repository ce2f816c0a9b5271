//! The dashboard's helpers off the UI thread: the GPU's status from nvidia-smi, and the predictor that loads
//! checkpoints (through the same `Predictor` as `pneumoscope predict`) and classifies and explains images.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::app::Effect;
use super::predict::{Overlay, PredictResult};

/// Polls `nvidia-smi` for GPU `n` every 5 s (stops at the first silence: no tool, no such GPU).
pub(super) fn spawn_gpu_status(n: usize) -> Receiver<String> {
    let (tx, rx) = unbounded();
    let _ = std::thread::Builder::new().name("pneumoscope-gpu-status".into()).spawn(move || {
        while let Some(s) = crate::train::backend::gpu_status(n) {
            if tx.send(s).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    rx
}

/// Loads checkpoints and classifies images off the UI thread.
pub(super) fn spawn_predictor(max_side: u32) -> (Sender<Effect>, Receiver<PredictResult>) {
    let (req_tx, req_rx) = unbounded::<Effect>();
    let (res_tx, res_rx) = unbounded();
    let _ = std::thread::Builder::new().name("pneumoscope-predict".into()).spawn(move || {
        use crate::train::backend::Cpu;
        type Ad = burn::backend::Autodiff<Cpu>;
        let device = Default::default();
        let mut cache: Option<crate::train::predictor::Predictor<Cpu>> = None;
        let mut grad_cache: Option<(PathBuf, crate::model::Model<Ad>)> = None;
        for req in req_rx.iter() {
            let Effect::Predict { path, checkpoint, model, truth, heatmap } = req else {
                continue;
            };
            let mut class_probabilities = Vec::new();
            let outcome = (|| -> std::result::Result<(f32, f32), String> {
                if cache.as_ref().map(|c| &c.path) != Some(&checkpoint) {
                    let loaded = crate::train::predictor::Predictor::<Cpu>::load(&checkpoint, &device)
                        .map_err(|e| crate::error::format_error(&e))?;
                    cache = Some(loaded);
                }
                let predictor = cache.as_ref().ok_or("no model")?;
                let r = predictor.predict_files(std::slice::from_ref(&path), max_side, &device);
                match r.into_iter().next() {
                    Some(Ok(p)) => {
                        class_probabilities = p.class_probabilities;
                        Ok((p.p_pneumonia, p.threshold))
                    }
                    Some(Err((_, e))) => Err(e),
                    None => Err("no result".into()),
                }
            })();
            let (outcome, threshold) = match outcome {
                Ok((p, t)) => (Ok(p), t),
                Err(e) => (Err(e), 0.5),
            };
            // Grad-CAM needs the model on the autodiff backend: loaded once per checkpoint.
            // (An ensemble has no single network to explain: its pane says so.)
            let overlay = (heatmap && outcome.is_ok() && model.is_network())
                .then(|| -> Option<Overlay> {
                    if grad_cache.as_ref().map(|c| &c.0) != Some(&checkpoint) {
                        let (_, m) = crate::train::checkpoint::load::<Ad>(&checkpoint, &device).ok()?;
                        grad_cache = Some((checkpoint.clone(), m));
                    }
                    let (_, m) = grad_cache.as_ref()?;
                    let meta = cache.as_ref()?.meta();
                    let e = crate::train::explain::explain_file(m, meta, &path, max_side, &device).ok()?;
                    Some(Overlay(std::sync::Arc::new(e.overlay)))
                })
                .flatten();
            if res_tx
                .send(PredictResult { path, model, truth, outcome, threshold, class_probabilities, overlay })
                .is_err()
            {
                return;
            }
        }
    });
    (req_tx, res_rx)
}

/// Decodes an image for display, downscaled so terminal encoding stays cheap.
pub(super) fn load_picture(path: &std::path::Path, max_side: u32) -> Option<image::DynamicImage> {
    let (img, _) = crate::data::image::decode(path, max_side).ok()?;
    Some(img.resize(480, 480, image::imageops::FilterType::Triangle).grayscale())
}
