//! Grad-CAM (Selvaraju et al. 2017): which regions of an image drove a class's score. The last convolutional
//! stage's activations A (C×h×w) are weighted by the spatial mean of the class score's gradient with respect to
//! them, summed over channels, passed through ReLU and scaled to [0, 1]. Must not depend on anything but burn.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::Model;

/// One image's class-activation map: `h`×`w` values in [0, 1] (row-major), at the feature map's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f32>,
}

impl Heatmap {
    /// The map resampled (bilinear, pixel centres aligned) to `width`×`height`.
    pub fn resized(&self, width: usize, height: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(width * height);
        let at = |y: usize, x: usize| self.values[y * self.w + x];
        for j in 0..height {
            let fy = ((j as f32 + 0.5) * self.h as f32 / height as f32 - 0.5).clamp(0.0, (self.h - 1) as f32);
            let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
            let y1 = (y0 + 1).min(self.h - 1);
            for i in 0..width {
                let fx = ((i as f32 + 0.5) * self.w as f32 / width as f32 - 0.5).clamp(0.0, (self.w - 1) as f32);
                let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
                let x1 = (x0 + 1).min(self.w - 1);
                let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
                let bottom = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
                out.push(top * (1.0 - ty) + bottom * ty);
            }
        }
        out
    }
}

/// Grad-CAM maps of `class` (0 NORMAL, 1 PNEUMONIA) for a batch of N×3×S×S images, one per image.
/// The features are computed in inference mode (BatchNorm running statistics); the head is differentiated on
/// the autodiff backend with dropout off, so the map does not depend on chance.
pub fn grad_cam<B: AutodiffBackend<InnerBackend: crate::model::Kernels> + crate::model::Kernels>(
    model: &Model<B>,
    images: Tensor<B::InnerBackend, 4>,
    class: usize,
) -> Vec<Heatmap> {
    use burn::module::AutodiffModule;
    let [n, _, _, _] = images.dims();
    let inference = model.valid();
    let feats = Tensor::<B, 4>::from_inner(inference.features(images)).require_grad();
    let head = model.clone().without_dropout();
    let logits = head.head(feats.clone());
    let score = logits.narrow(1, class, 1).sum();
    let grads = score.backward();
    let [_, _, h, w] = feats.dims();
    let Some(g) = feats.grad(&grads) else {
        return (0..n).map(|_| Heatmap { h, w, values: vec![0.0; h * w] }).collect();
    };
    let weights = g.mean_dim(3).mean_dim(2); // N×C×1×1
    let cam = (feats.inner() * weights).sum_dim(1).reshape([n, h * w]); // N×(h·w)
    let cam = burn::tensor::activation::relu(cam);
    let values: Vec<f32> = cam.into_data().convert::<f32>().to_vec().unwrap_or_default();
    values
        .chunks(h * w)
        .map(|v| {
            let max = v.iter().copied().fold(0.0f32, f32::max);
            let values = if max > 0.0 { v.iter().map(|x| x / max).collect() } else { vec![0.0; h * w] };
            Heatmap { h, w, values }
        })
        .collect()
}
