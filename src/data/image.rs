//! One image from file to model input: guarded decoding, 1→3 channels, square resize, seeded rotation
//! augmentation and normalisation. Must not depend on model, train or front-ends.

use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};
use serde::{Deserialize, Serialize};

/// Why a file could not be used; the message is shown next to the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("cannot open: {0}")]
    Io(String),
    #[error("not a JPEG or PNG image")]
    UnknownFormat,
    #[error("image is {width}×{height}, larger than the {limit}-pixel limit (data.max_image_side)")]
    TooLarge { width: u32, height: u32, limit: u32 },
    #[error("cannot decode: {0}")]
    Decode(String),
}

/// Decoded image facts that `data stats` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// Channels stored in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA/CMYK).
    pub channels: u8,
    /// Bits per channel (8 or 16).
    pub bits: u8,
}

/// A decoded image resized to the model's square input, kept in memory between epochs.
/// Gray images (and colour files whose channels are equal, as X-rays saved as RGB are) keep one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub size: usize,
    pub channels: usize,
    /// Row-major, channel-interleaved (HWC) bytes: size × size × channels.
    pub pixels: Vec<u8>,
}

/// Reads and decodes a file, refusing images whose side exceeds `max_side` before allocating them.
pub fn decode(path: &Path, max_side: u32) -> Result<(DynamicImage, ImageInfo), ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::Io(e.to_string()))?;
    decode_bytes(&bytes, max_side)
}

/// Decodes an in-memory file (see [`decode`]).
pub fn decode_bytes(bytes: &[u8], max_side: u32) -> Result<(DynamicImage, ImageInfo), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    // The content decides the format, not the extension (a PNG saved as .jpeg still loads).
    let format = image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat)?;
    if format == image::ImageFormat::Jpeg && !has_jpeg_end_marker(bytes) {
        // The JPEG decoder fills a cut-off file with grey instead of failing; refuse it like Pillow does.
        return Err(ImageError::Decode("truncated JPEG (no end-of-image marker)".into()));
    }
    let open = || ImageReader::with_format(std::io::Cursor::new(bytes), format);
    // Header first: a decompression bomb is refused before any pixel buffer is allocated.
    let (width, height) = open().into_dimensions().map_err(|e| ImageError::Decode(e.to_string()))?;
    if width > max_side || height > max_side {
        return Err(ImageError::TooLarge { width, height, limit: max_side });
    }
    let mut reader = open();
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    // 16-bit RGBA at the largest allowed side, with room for the decoder's own buffers.
    limits.max_alloc = Some((max_side as u64 * max_side as u64 * 8).max(64 << 20));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge { width, height, limit: max_side },
        other => ImageError::Decode(other.to_string()),
    })?;
    let color = img.color();
    let info = ImageInfo {
        width: img.width(),
        height: img.height(),
        channels: color.channel_count(),
        bits: (color.bits_per_pixel() / color.channel_count() as u16) as u8,
    };
    Ok((img, info))
}

/// True when a JPEG file ends with its end-of-image marker (FF D9), allowing a little trailing padding.
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes a file and prepares it at `size`×`size`.
pub fn load_prepared(path: &Path, size: usize, max_side: u32) -> Result<(Prepared, ImageInfo), ImageError> {
    let (img, info) = decode(path, max_side)?;
    Ok((prepare(&img, size), info))
}

/// Converts to 8-bit gray or RGB (gray when all channels agree) and resizes to a square.
pub fn prepare(img: &DynamicImage, size: usize) -> Prepared {
    use image::ColorType::*;
    match img {
        // The common case (gray X-ray JPEGs): resize the decoded buffer in place, no conversion copy.
        DynamicImage::ImageLuma8(luma) => {
            let (w, h) = luma.dimensions();
            Prepared { size, channels: 1, pixels: resize_plane(luma.as_raw(), w as usize, h as usize, 1, size) }
        }
        _ if matches!(img.color(), L16 | La8 | La16) => {
            let luma = img.to_luma8();
            let (w, h) = luma.dimensions();
            Prepared { size, channels: 1, pixels: resize_plane(luma.as_raw(), w as usize, h as usize, 1, size) }
        }
        _ => {
            // Colour files: resize first, then decide on the small image whether the channels agree.
            let small = match img {
                DynamicImage::ImageRgb8(rgb) => {
                    let (w, h) = rgb.dimensions();
                    resize_plane(rgb.as_raw(), w as usize, h as usize, 3, size)
                }
                _ => {
                    let rgb = img.to_rgb8();
                    let (w, h) = rgb.dimensions();
                    resize_plane(rgb.as_raw(), w as usize, h as usize, 3, size)
                }
            };
            if is_effectively_gray(&small) {
                let pixels =
                    small.chunks_exact(3).map(|p| ((p[0] as u16 + p[1] as u16 + p[2] as u16 + 1) / 3) as u8).collect();
                Prepared { size, channels: 1, pixels }
            } else {
                Prepared { size, channels: 3, pixels: small }
            }
        }
    }
}

fn is_effectively_gray(rgb: &[u8]) -> bool {
    // JPEG chroma noise makes R, G, B differ by a level or two on gray X-rays saved as colour.
    rgb.chunks_exact(3).all(|p| p[0].abs_diff(p[1]) <= 3 && p[1].abs_diff(p[2]) <= 3 && p[0].abs_diff(p[2]) <= 3)
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel) to `size`×`size`.
///
/// Large reductions first average integer blocks (cheap and alias-free, as Pillow's `reducing_gap`),
/// then a separable triangle (bilinear, antialiased) filter brings the image to the exact size.
pub fn resize_plane(src: &[u8], w: usize, h: usize, channels: usize, size: usize) -> Vec<u8> {
    // Integer pre-reduction per axis so that the final filter reduces by less than 2× on each.
    let fx = (w / (2 * size)).max(1);
    let fy = (h / (2 * size)).max(1);
    let (src, w, h): (std::borrow::Cow<[u8]>, usize, usize) = if fx > 1 || fy > 1 {
        let (buf, nw, nh) = box_reduce(src, w, h, channels, fx, fy);
        (buf.into(), nw, nh)
    } else {
        (src.into(), w, h)
    };
    let horiz = resample_axis(&src, w, h, channels, size, true);
    resample_axis(&horiz, size, h, channels, size, false)
}

/// Averages `fx`×`fy` blocks. Rows are summed into a wide accumulator first (a simple loop the compiler
/// vectorises), then each block's columns.
fn box_reduce(src: &[u8], w: usize, h: usize, c: usize, fx: usize, fy: usize) -> (Vec<u8>, usize, usize) {
    let nw = w / fx;
    let nh = h / fy;
    let row_len = nw * fx * c;
    let mut out = vec![0u8; nw * nh * c];
    let area = (fx * fy) as u32;
    let mut acc = vec![0u32; row_len];
    for oy in 0..nh {
        acc.fill(0);
        for y in oy * fy..oy * fy + fy {
            let row = &src[y * w * c..y * w * c + row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as u32;
            }
        }
        let orow = &mut out[oy * nw * c..(oy + 1) * nw * c];
        if c == 1 {
            for (o, block) in orow.iter_mut().zip(acc.chunks_exact(fx)) {
                *o = ((block.iter().sum::<u32>() + area / 2) / area) as u8;
            }
        } else {
            for (o, block) in orow.chunks_exact_mut(c).zip(acc.chunks_exact(fx * c)) {
                for (ch, out) in o.iter_mut().enumerate() {
                    let mut sum = 0u32;
                    for px in block.chunks_exact(c) {
                        sum += px[ch];
                    }
                    *out = ((sum + area / 2) / area) as u8;
                }
            }
        }
    }
    (out, nw, nh)
}

/// Triangle-filter resampling along one axis. `horizontal` resizes width `w`→`n`, else height `h`→`n`.
fn resample_axis(src: &[u8], w: usize, h: usize, c: usize, n: usize, horizontal: bool) -> Vec<u8> {
    let len_in = if horizontal { w } else { h };
    let weights = filter_weights(len_in, n);
    let (ow, oh) = if horizontal { (n, h) } else { (w, n) };
    let mut out = vec![0u8; ow * oh * c];
    if horizontal {
        let mut tmp = vec![0.0f32; w];
        for y in 0..h {
            let row = &src[y * w * c..(y + 1) * w * c];
            let orow = &mut out[y * ow * c..(y + 1) * ow * c];
            for ch in 0..c {
                // One channel as floats, then a dot product per output pixel over its taps.
                if c == 1 {
                    for (t, px) in tmp.iter_mut().zip(row) {
                        *t = *px as f32;
                    }
                } else {
                    for (t, px) in tmp.iter_mut().zip(row.chunks_exact(c)) {
                        *t = px[ch] as f32;
                    }
                }
                for (ox, (start, ws)) in weights.iter().enumerate() {
                    let taps = &tmp[*start..*start + ws.len()];
                    let v: f32 = taps.iter().zip(ws).map(|(a, b)| a * b).sum();
                    orow[ox * c + ch] = (v + 0.5) as u8; // saturating cast: clamps to 0..=255
                }
            }
        }
    } else {
        let stride = w * c;
        let mut acc = vec![0.0f32; stride];
        for (oy, (start, ws)) in weights.iter().enumerate() {
            acc.fill(0.0);
            for (k, wt) in ws.iter().enumerate() {
                let row = &src[(start + k) * stride..(start + k + 1) * stride];
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += *v as f32 * wt;
                }
            }
            for (o, a) in out[oy * stride..(oy + 1) * stride].iter_mut().zip(&acc) {
                *o = (a + 0.5) as u8;
            }
        }
    }
    out
}

/// For each output index: first input index and normalised triangle weights (support widened when reducing).
fn filter_weights(len_in: usize, len_out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = len_in as f32 / len_out as f32;
    let support = scale.max(1.0);
    (0..len_out)
        .map(|o| {
            let center = (o as f32 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(len_in);
            let mut ws: Vec<f32> = (lo..hi)
                .map(|i| {
                    let d = ((i as f32 + 0.5) - center).abs() / support;
                    (1.0 - d).max(0.0)
                })
                .collect();
            let sum: f32 = ws.iter().sum();
            if sum > 0.0 {
                ws.iter_mut().for_each(|w| *w /= sum);
            } else {
                // Degenerate (should not happen): nearest neighbour.
                ws.iter_mut().for_each(|w| *w = 0.0);
                let nearest = (center as usize).clamp(lo, hi - 1);
                ws[nearest - lo] = 1.0;
            }
            (lo, ws)
        })
        .collect()
}

/// Rotates a prepared image by `degrees` about its centre (bilinear, black fill), as torchvision's
/// `RandomAffine(degrees)` does with its default fill.
pub fn rotate(img: &Prepared, degrees: f32) -> Prepared {
    if degrees == 0.0 {
        return img.clone();
    }
    let n = img.size;
    let c = img.channels;
    let (sin, cos) = degrees.to_radians().sin_cos();
    let mid = (n as f32 - 1.0) / 2.0;
    let mut out = vec![0u8; n * n * c];
    for y in 0..n {
        let dy = y as f32 - mid;
        for x in 0..n {
            let dx = x as f32 - mid;
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
            let at = |xx: f32, yy: f32, ch: usize| -> f32 {
                if xx < 0.0 || yy < 0.0 || xx >= n as f32 || yy >= n as f32 {
                    0.0
                } else {
                    img.pixels[(yy as usize * n + xx as usize) * c + ch] as f32
                }
            };
            for ch in 0..c {
                let v = at(x0, y0, ch) * (1.0 - fx) * (1.0 - fy)
                    + at(x0 + 1.0, y0, ch) * fx * (1.0 - fy)
                    + at(x0, y0 + 1.0, ch) * (1.0 - fx) * fy
                    + at(x0 + 1.0, y0 + 1.0, ch) * fx * fy;
                out[(y * n + x) * c + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Prepared { size: n, channels: c, pixels: out }
}

/// Writes the normalised CHW float tensor of one image (3 channels; gray is repeated) into `out`
/// (length 3 × size × size).
pub fn normalize_into(img: &Prepared, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = img.size * img.size;
    debug_assert_eq!(out.len(), 3 * plane);
    for ch in 0..3 {
        let scale = 1.0 / (255.0 * std[ch]);
        let shift = mean[ch] / std[ch];
        let src_ch = if img.channels == 1 { 0 } else { ch };
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for (i, d) in dst.iter_mut().enumerate() {
            *d = img.pixels[i * img.channels + src_ch] as f32 * scale - shift;
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
        Prepared { size, channels: 1, pixels }
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
        let img = Prepared { size: 1, channels: 3, pixels: vec![255, 0, 51] };
        let mut out = vec![0.0; 3];
        normalize_into(&img, [0.5, 0.5, 0.2], [0.5, 0.25, 0.1], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] + 2.0).abs() < 1e-6);
        assert!((out[2] - 0.0).abs() < 1e-5);
    }

    #[test]
    fn prepare_converts_gray_rgb_rgba_and_16_bit() {
        let luma = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(40, 30, image::Luma([100])));
        let p = prepare(&luma, 16);
        assert_eq!((p.size, p.channels, p.pixels.len()), (16, 1, 256));
        assert!(p.pixels.iter().all(|&v| v == 100));

        let grayish_rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([90, 91, 90])));
        assert_eq!(prepare(&grayish_rgb, 8).channels, 1, "near-equal RGB is stored as gray");

        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([200, 10, 10])));
        let p = prepare(&rgb, 8);
        assert_eq!(p.channels, 3);
        assert_eq!(&p.pixels[..3], &[200, 10, 10]);

        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(20, 20, image::Rgba([10, 200, 10, 255])));
        assert_eq!(prepare(&rgba, 8).channels, 3);

        let l16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(20, 20, image::Luma([65535u16])));
        let p = prepare(&l16, 8);
        assert_eq!(p.channels, 1);
        assert!(p.pixels.iter().all(|&v| v == 255));
    }

    #[test]
    fn resize_keeps_flat_images_flat_and_averages_detail() {
        let src = vec![77u8; 1000 * 800];
        let out = resize_plane(&src, 1000, 800, 1, 64);
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|&v| v == 77));
        // A fine checkerboard must average to mid-gray when reduced (no aliasing to black/white).
        let cb: Vec<u8> = (0..512 * 512).map(|i| if (i % 512 + i / 512) % 2 == 0 { 0 } else { 255 }).collect();
        let out = resize_plane(&cb, 512, 512, 1, 32);
        assert!(out.iter().all(|&v| (120..=135).contains(&v)), "{:?}", &out[..8]);
        // Upscaling works too and keeps a left/right edge ordered.
        let half: Vec<u8> = (0..8 * 8).map(|i| if i % 8 < 4 { 0 } else { 200 }).collect();
        let up = resize_plane(&half, 8, 8, 1, 32);
        assert!(up[0] < 10 && up[31] > 190);
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

    #[test]
    fn corners_are_filled_black_after_rotation() {
        let img = gray(32, |_, _| 200);
        let r = rotate(&img, 45.0);
        assert_eq!(r.pixels[0], 0);
        assert!(r.pixels[16 * 32 + 16] == 200);
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn cmyk_jpeg_is_converted() {
        // A 64×48 CMYK JPEG written by Pillow (tests/fixtures/cmyk.jpg), gray ramp in the K channel.
        let bytes = include_bytes!("../../tests/fixtures/cmyk.jpg");
        let (img, info) = decode_bytes(bytes, 1000).expect("CMYK JPEG decodes");
        assert_eq!((info.width, info.height), (64, 48));
        let p = prepare(&img, 16);
        assert_eq!(p.channels, 1, "a gray CMYK image ends up gray");
        assert!(p.pixels.iter().max() > p.pixels.iter().min(), "the ramp survives");
    }

    #[test]
    fn empty_and_unknown_bytes_are_refused() {
        assert_eq!(decode_bytes(b"", 100).unwrap_err(), ImageError::Empty);
        assert_eq!(decode_bytes(b"hello world, not an image", 100).unwrap_err(), ImageError::UnknownFormat);
    }
}
