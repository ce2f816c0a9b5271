//! What happens to a prepared (decoded, resized, 8-bit luminance) image on its way into a batch: an affine warp
//! about its centre, as torchvision's `RandomAffine` (augmentation and test-time views), and normalisation into
//! the model's 3-channel float input.

use super::image::Prepared;

/// Rotates a prepared image by `degrees` about its centre (bilinear, black fill), as torchvision's
/// `RandomAffine(degrees)` does with its default fill.
pub fn rotate(img: &Prepared, degrees: f32) -> Prepared {
    warp(img, degrees, 1.0, 0.0, 0.0)
}

/// An affine warp about the image centre (bilinear, black fill), as torchvision's `RandomAffine`: rotated by
/// `degrees`, scaled by `scale`, then shifted by (`tx`, `ty`) pixels. The identity returns a copy.
pub fn warp(img: &Prepared, degrees: f32, scale: f32, tx: f32, ty: f32) -> Prepared {
    if degrees == 0.0 && scale == 1.0 && tx == 0.0 && ty == 0.0 {
        return img.clone();
    }
    let n = img.size;
    let (sin, cos) = degrees.to_radians().sin_cos();
    let inv = 1.0 / scale;
    let mid = (n as f32 - 1.0) / 2.0;
    let mut out = vec![0u8; n * n];
    for y in 0..n {
        let dy = (y as f32 - mid - ty) * inv;
        for x in 0..n {
            let dx = (x as f32 - mid - tx) * inv;
            // Inverse mapping: where in the source does this output pixel come from?
            let sx = cos * dx + sin * dy + mid;
            let sy = -sin * dx + cos * dy + mid;
            if sx < -0.5 || sy < -0.5 || sx > n as f32 - 0.5 || sy > n as f32 - 0.5 {
                continue;
            }
            let x0 = sx.floor();
            let y0 = sy.floor();
            let fx = sx - x0;
            let fy = sy - y0;
            let at = |xx: f32, yy: f32| -> f32 {
                if xx < 0.0 || yy < 0.0 || xx >= n as f32 || yy >= n as f32 {
                    0.0
                } else {
                    img.pixels[yy as usize * n + xx as usize] as f32
                }
            };
            let v = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1.0, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1.0) * (1.0 - fx) * fy
                + at(x0 + 1.0, y0 + 1.0) * fx * fy;
            out[y * n + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Prepared { size: n, pixels: out }
}

/// Writes the normalised CHW float tensor of one image (its luminance repeated in 3 channels, each with its
/// own mean and std) into `out` (length 3 × size × size).
pub fn normalize_into(img: &Prepared, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = img.size * img.size;
    debug_assert_eq!(out.len(), 3 * plane);
    for ch in 0..3 {
        let scale = 1.0 / (255.0 * std[ch]);
        let shift = mean[ch] / std[ch];
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for (d, &v) in dst.iter_mut().zip(&img.pixels) {
            *d = v as f32 * scale - shift;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(size: usize, f: impl Fn(usize, usize) -> u8) -> Prepared {
        let mut pixels = vec![0; size * size];
        for y in 0..size {
            for x in 0..size {
                pixels[y * size + x] = f(x, y);
            }
        }
        Prepared { size, pixels }
    }

    #[test]
    fn gray_becomes_three_equal_channels() {
        let img = gray(4, |x, y| (x * 40 + y) as u8);
        let mut out = vec![0.0; 3 * 16];
        normalize_into(&img, [0.0; 3], [1.0; 3], &mut out);
        for i in 0..16 {
            assert_eq!(out[i], out[16 + i]);
            assert_eq!(out[i], out[32 + i]);
            assert!((out[i] - img.pixels[i] as f32 / 255.0).abs() < 1e-6);
        }
    }

    #[test]
    fn normalization_uses_mean_and_std_per_channel() {
        let img = Prepared { size: 1, pixels: vec![255] };
        let mut out = vec![0.0; 3];
        normalize_into(&img, [0.5, 0.5, 0.2], [0.5, 0.25, 0.1], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] - 2.0).abs() < 1e-6);
        assert!((out[2] - 8.0).abs() < 1e-5);
    }

    #[test]
    fn warp_scales_and_shifts_about_the_centre() {
        // A bright square in the middle of a 33-pixel image.
        let img = gray(33, |x, y| if (12..=20).contains(&x) && (12..=20).contains(&y) { 255 } else { 0 });
        assert_eq!(warp(&img, 0.0, 1.0, 0.0, 0.0), img);
        // Scaled 2×: the square's edge moves from 12 to 8 pixels from the left (16 − 2·(16 − 12)).
        let big = warp(&img, 0.0, 2.0, 0.0, 0.0);
        assert!(big.pixels[16 * 33 + 8] > 200 && big.pixels[16 * 33 + 6] < 50, "{:?}", &big.pixels[16 * 33..17 * 33]);
        // Shifted 5 pixels right and 3 down.
        let moved = warp(&img, 0.0, 1.0, 5.0, 3.0);
        assert_eq!(moved.pixels[(12 + 3) * 33 + 12 + 5], 255);
        assert_eq!(moved.pixels[(12 + 3) * 33 + 11 + 5], 0);
        // Rotation through warp is the same as rotate.
        assert_eq!(warp(&img, 30.0, 1.0, 0.0, 0.0), rotate(&img, 30.0));
    }

    #[test]
    fn corners_are_filled_black_after_rotation() {
        let img = gray(32, |_, _| 200);
        let r = rotate(&img, 45.0);
        assert_eq!(r.pixels[0], 0);
        assert!(r.pixels[16 * 32 + 16] == 200);
    }

    #[test]
    fn rotation_by_zero_is_identity_and_by_90_moves_pixels() {
        let img = gray(9, |x, y| if x == 8 && y == 4 { 255 } else { 0 });
        assert_eq!(rotate(&img, 0.0), img);
        let r = rotate(&img, 90.0);
        // The bright pixel at the right-middle moves to the top- or bottom-middle.
        let top = r.pixels[4];
        let bottom = r.pixels[8 * 9 + 4];
        assert!(top.max(bottom) > 200, "top {top} bottom {bottom}");
        assert!(r.pixels[4 * 9 + 8] < 20);
        // 360° comes back (within interpolation rounding).
        let full = rotate(&img, 360.0);
        assert!(full.pixels[4 * 9 + 8] > 200);
    }
}
