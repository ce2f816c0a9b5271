//! Grad-CAM overlays for files: the PNEUMONIA heatmap of a checkpoint's model over the original radiograph,
//! as an RGB image (`predict --heatmap`, the predict pane).

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use std::borrow::Cow;

use image::{GrayImage, ImageBuffer, Luma, RgbImage};

use super::checkpoint::CheckpointMeta;
use crate::data::image::{prepare_pixels, rgb_to_luma, with_pixels, ImageError};
use crate::data::warp::normalize_into;
use crate::data::Class;
use crate::model::gradcam::{grad_cam, Heatmap};
use crate::model::Model;

/// Longest side of an overlay image.
pub const OVERLAY_MAX_SIDE: u32 = 768;

/// A blue → cyan → green → yellow → red ramp for a value in [0, 1].
pub fn heat_color(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let stops: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 0.55]),
        (0.25, [0.0, 0.6, 1.0]),
        (0.5, [0.1, 0.85, 0.2]),
        (0.75, [1.0, 0.85, 0.0]),
        (1.0, [0.9, 0.0, 0.0]),
    ];
    let i = stops.iter().rposition(|(p, _)| *p <= v).unwrap_or(0).min(stops.len() - 2);
    let (p0, c0) = stops[i];
    let (p1, c1) = stops[i + 1];
    let t = (v - p0) / (p1 - p0);
    [0, 1, 2].map(|k| ((c0[k] + (c1[k] - c0[k]) * t) * 255.0 + 0.5) as u8)
}

/// The image in gray with the heatmap blended over it (more heat, more colour); the map is stretched back from
/// the model's square input to the image's aspect.
pub fn overlay(gray: &image::GrayImage, heat: &Heatmap) -> RgbImage {
    let (w, h) = gray.dimensions();
    let up = heat.resized(w as usize, h as usize);
    RgbImage::from_fn(w, h, |x, y| {
        let g = gray.get_pixel(x, y)[0] as f32;
        let v = up[(y * w + x) as usize];
        let c = heat_color(v);
        let a = 0.6 * v.sqrt();
        image::Rgb([0, 1, 2].map(|k| (g * (1.0 - a) + c[k] as f32 * a).round().clamp(0.0, 255.0) as u8))
    })
}

/// What explaining one file gives: P(pneumonia), the map, and the overlay.
pub struct Explained {
    pub p_pneumonia: f32,
    pub heatmap: Heatmap,
    pub overlay: RgbImage,
}

/// Grad-CAM of the PNEUMONIA class for one image file with `model` (autodiff backend, from the checkpoint).
pub fn explain_file<B: AutodiffBackend<InnerBackend: crate::model::Kernels> + crate::model::Kernels>(
    model: &Model<B>,
    meta: &CheckpointMeta,
    path: &Path,
    max_side: u32,
    device: &B::Device,
) -> crate::error::Result<Explained> {
    use burn::module::AutodiffModule;
    let failed = |e: ImageError| anyhow::anyhow!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| failed(ImageError::Io(e.to_string())))?;
    let s = meta.image_size;
    // One decode gives both the model input, exactly as training and `predict` prepare it, and the
    // overlay's gray background at the image's own aspect.
    let ((prepared, gray), _) = with_pixels(&bytes, max_side, |pixels, w, h, channels| {
        (prepare_pixels(pixels, w, h, channels, s), overlay_background(pixels, w, h, channels))
    })
    .map_err(failed)?;
    let mut buf = vec![0.0; 3 * s * s];
    normalize_into(&prepared, meta.mean, meta.std, &mut buf);
    let x = Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(buf, [1, 3, s, s]), device);
    let p = super::infer::probabilities(model.valid().forward(x.clone()))[0];
    let heatmap = grad_cam(model, x, Class::Pneumonia.index()).remove(0);
    let overlay = overlay(&gray, &heatmap);
    Ok(Explained { p_pneumonia: p, heatmap, overlay })
}

/// The decoded image's luminance, shrunk (aspect kept) so that its longer side is at most `OVERLAY_MAX_SIDE`.
fn overlay_background(pixels: &[u8], w: usize, h: usize, channels: usize) -> GrayImage {
    let gray: Cow<[u8]> = if channels == 1 { pixels.into() } else { rgb_to_luma(pixels).into() };
    let (w, h) = (w as u32, h as u32);
    if w.max(h) <= OVERLAY_MAX_SIDE {
        return GrayImage::from_raw(w, h, gray.into_owned()).expect("w × h gray pixels");
    }
    let view = ImageBuffer::<Luma<u8>, &[u8]>::from_raw(w, h, &gray).expect("w × h gray pixels");
    let scale = OVERLAY_MAX_SIDE as f64 / w.max(h) as f64;
    let (nw, nh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    image::imageops::resize(&view, nw, nh, image::imageops::FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colder_is_bluer_and_hotter_is_redder() {
        assert_eq!(heat_color(0.0), [0, 0, 140]);
        assert_eq!(heat_color(1.0), [230, 0, 0]);
        let mid = heat_color(0.5);
        assert!(mid[1] > mid[0] && mid[1] > mid[2]);
    }

    #[test]
    fn the_overlay_keeps_cold_pixels_gray_and_colours_hot_ones() {
        let gray = image::GrayImage::from_pixel(8, 4, image::Luma([100]));
        // Hot on the right half only.
        let heat = Heatmap { h: 1, w: 2, values: vec![0.0, 1.0] };
        let o = overlay(&gray, &heat);
        assert_eq!(o.dimensions(), (8, 4));
        assert_eq!(o.get_pixel(0, 0).0, [100, 100, 100]);
        let hot = o.get_pixel(7, 0).0;
        assert!(hot[0] > 150 && hot[2] < 60, "{hot:?}");
    }
}
