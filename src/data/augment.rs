//! Training-time augmentation: the ranges (rotation, scale, shift, brightness, contrast), the seeded draw of one
//! image's parameters in one epoch, and applying them on the way to the model's input. Test-time augmentation
//! reuses the same warp with fixed views. Must not depend on model, train or front-ends.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::image::Prepared;
use super::warp::{normalize_into, warp};

/// The augmentation ranges (each 0 turns its part off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Augment {
    /// Rotation uniformly in ±this many degrees.
    pub rotation_degrees: f32,
    /// Zoom by a factor uniformly in [1 − scale, 1 + scale].
    pub scale: f32,
    /// Shift each way by up to this share of the side.
    pub translate: f32,
    /// Multiply intensities by a factor uniformly in [1 − brightness, 1 + brightness].
    pub brightness: f32,
    /// Stretch intensities about the image's mean by a factor uniformly in [1 − contrast, 1 + contrast].
    pub contrast: f32,
}

/// One image's augmentation in one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub degrees: f32,
    pub scale: f32,
    /// Shift in pixels.
    pub tx: f32,
    pub ty: f32,
    pub brightness: f32,
    pub contrast: f32,
}

impl Draw {
    pub const IDENTITY: Draw = Draw { degrees: 0.0, scale: 1.0, tx: 0.0, ty: 0.0, brightness: 1.0, contrast: 1.0 };

    fn is_geometric(&self) -> bool {
        self.degrees != 0.0 || self.scale != 1.0 || self.tx != 0.0 || self.ty != 0.0
    }
}

impl Augment {
    /// The training augmentation `[data]` configures.
    pub fn of(d: &crate::config::DataConfig) -> Self {
        Self {
            rotation_degrees: d.rotation_degrees,
            scale: d.scale,
            translate: d.translate,
            brightness: d.brightness,
            contrast: d.contrast,
        }
    }

    pub fn is_off(&self) -> bool {
        *self == Augment::default()
    }

    /// The draw for dataset position `index` in `epoch`, deterministic in seed, epoch and index. The rotation is
    /// drawn first, so a rotation-only setting gives the same angles whatever the other ranges.
    pub fn draw(&self, seed: u64, epoch: usize, index: usize, size: usize) -> Draw {
        if self.is_off() {
            return Draw::IDENTITY;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
                ^ (index as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7),
        );
        let mut within = |r: f32| if r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
        let degrees = within(self.rotation_degrees);
        let scale = 1.0 + within(self.scale);
        let shift = self.translate * size as f32;
        let tx = within(shift);
        let ty = within(shift);
        let brightness = 1.0 + within(self.brightness);
        let contrast = 1.0 + within(self.contrast);
        Draw { degrees, scale, tx, ty, brightness, contrast }
    }
}

/// Writes `img` with the draw applied, normalised, into `out` (3 × size × size; see [`normalize_into`]).
pub fn apply_into(img: &Prepared, d: &Draw, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    normalize_into(&view(img, d), mean, std, out)
}

/// `img` with the draw applied: the warp, then contrast about the image's mean and brightness, clamped to the
/// 8-bit range (torchvision's ColorJitter). Borrowed unchanged for the identity.
pub fn view<'a>(img: &'a Prepared, d: &Draw) -> std::borrow::Cow<'a, Prepared> {
    use std::borrow::Cow;
    let img = if d.is_geometric() { Cow::Owned(warp(img, d.degrees, d.scale, d.tx, d.ty)) } else { Cow::Borrowed(img) };
    if d.brightness == 1.0 && d.contrast == 1.0 {
        return img;
    }
    let m = img.pixels.iter().map(|&v| v as f32).sum::<f32>() / img.pixels.len().max(1) as f32;
    let pixels = img
        .pixels
        .iter()
        .map(|&v| (((v as f32 - m) * d.contrast + m) * d.brightness).round().clamp(0.0, 255.0) as u8)
        .collect();
    Cow::Owned(Prepared { size: img.size, pixels })
}

/// Fixed views for test-time augmentation: the image itself, then small zooms and shifts (no rotation or
/// intensity change), `n` in all (at most 5).
pub fn tta_views(n: usize, size: usize) -> Vec<Draw> {
    let s = size as f32 * 0.04;
    let views = [
        Draw::IDENTITY,
        Draw { scale: 1.05, ..Draw::IDENTITY },
        Draw { scale: 0.95, ..Draw::IDENTITY },
        Draw { tx: s, ty: s, ..Draw::IDENTITY },
        Draw { tx: -s, ty: -s, ..Draw::IDENTITY },
    ];
    views[..n.clamp(1, views.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot(r: f32) -> Augment {
        Augment { rotation_degrees: r, ..Default::default() }
    }

    #[test]
    fn draws_are_seeded_per_epoch_and_image_and_stay_in_range() {
        let a = Augment { rotation_degrees: 10.0, scale: 0.1, translate: 0.05, brightness: 0.2, contrast: 0.2 };
        let d = a.draw(5, 2, 7, 100);
        assert_eq!(d, a.draw(5, 2, 7, 100));
        assert_ne!(d, a.draw(5, 3, 7, 100));
        assert_ne!(d, a.draw(5, 2, 8, 100));
        for i in 0..200 {
            let d = a.draw(1, 0, i, 100);
            assert!(d.degrees.abs() <= 10.0 && (0.9..=1.1).contains(&d.scale));
            assert!(d.tx.abs() <= 5.0 && d.ty.abs() <= 5.0);
            assert!((0.8..=1.2).contains(&d.brightness) && (0.8..=1.2).contains(&d.contrast));
        }
        // The angle does not depend on the other ranges (rotation-only runs keep their angles).
        assert_eq!(a.draw(5, 2, 7, 100).degrees, rot(10.0).draw(5, 2, 7, 100).degrees);
        assert_eq!(Augment::default().draw(5, 2, 7, 100), Draw::IDENTITY);
        assert_eq!(rot(0.0).draw(5, 2, 7, 100), Draw::IDENTITY);
    }

    #[test]
    fn intensity_changes_keep_the_mean_for_contrast_and_scale_for_brightness() {
        let img = Prepared { size: 2, pixels: vec![100, 100, 140, 140] };
        let (mean, std) = ([0.0; 3], [1.0 / 255.0; 3]);
        let mut out = vec![0.0; 12];
        apply_into(&img, &Draw { contrast: 1.5, ..Draw::IDENTITY }, mean, std, &mut out);
        assert_eq!(&out[..4], &[90.0, 90.0, 150.0, 150.0]);
        apply_into(&img, &Draw { brightness: 0.5, ..Draw::IDENTITY }, mean, std, &mut out);
        assert_eq!(&out[..4], &[50.0, 50.0, 70.0, 70.0]);
        // Clamped to 0..255.
        apply_into(&img, &Draw { brightness: 2.0, ..Draw::IDENTITY }, mean, std, &mut out);
        assert_eq!(&out[..4], &[200.0, 200.0, 255.0, 255.0]);
        apply_into(&img, &Draw::IDENTITY, mean, std, &mut out);
        assert_eq!(&out[8..], &[100.0, 100.0, 140.0, 140.0]);
    }

    #[test]
    fn tta_starts_with_the_image_itself() {
        assert_eq!(tta_views(1, 64), vec![Draw::IDENTITY]);
        assert_eq!(tta_views(9, 64).len(), 5);
        assert!(tta_views(3, 64)[1..].iter().all(|d| d.degrees == 0.0 && d.brightness == 1.0));
    }
}
