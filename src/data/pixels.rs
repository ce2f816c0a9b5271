//! What a decoded file's pixels need before they are resized: the EXIF orientation a camera or scanner wrote
//! (the film is shown upright, as a viewer shows it), and windowing of 16-bit films to 8 bits.

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};

/// The orientation in a raw EXIF chunk (as JPEG's APP1 segment holds it); none or unreadable: as stored.
pub fn exif_orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms)
}

/// Interleaved 8-bit pixels (`channels` 1 or 3, `w`×`h`) turned as `orientation` says; returns the pixels and
/// the new width and height. Through `image`'s own `apply_orientation`.
pub fn orient(pixels: &[u8], w: usize, h: usize, channels: usize, orientation: Orientation) -> (Vec<u8>, usize, usize) {
    let mut img = match channels {
        1 => DynamicImage::ImageLuma8(
            GrayImage::from_raw(w as u32, h as u32, pixels.to_vec()).expect("w × h gray pixels"),
        ),
        _ => {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w as u32, h as u32, pixels.to_vec()).expect("w × h RGB pixels"))
        }
    };
    img.apply_orientation(orientation);
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = match img {
        DynamicImage::ImageLuma8(g) => g.into_raw(),
        other => other.into_rgb8().into_raw(),
    };
    (raw, w, h)
}

/// Share of the pixels clipped at each end when a 16-bit film is windowed.
pub const WINDOW_CLIP: f64 = 0.005;

/// 16-bit luminance windowed to 8 bits: the 0.5th to 99.5th percentile of the film's values map linearly onto
/// 0–255 (a robust min–max, as a viewer's automatic window), so a 12-bit film stored in 16 bits (values up to
/// 4095) keeps its contrast instead of landing in the darkest 16 levels. A flat film has no window and keeps
/// its level's top 8 bits (all 65535 stays white).
pub fn window16(values: &[u16]) -> Vec<u8> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut histogram = vec![0u32; 1 << 16];
    for &v in values {
        histogram[v as usize] += 1;
    }
    let n = values.len() as f64;
    let at = |q: f64| {
        let target = (q * n).floor() as u64;
        let mut seen = 0u64;
        for (v, &c) in histogram.iter().enumerate() {
            seen += c as u64;
            if seen > target {
                return v as f64;
            }
        }
        65535.0
    };
    let (mut lo, mut hi) = (at(WINDOW_CLIP), at(1.0 - WINDOW_CLIP));
    if hi <= lo {
        // Most of the film is one value: fall back to the full range of what is there.
        lo = *values.iter().min().unwrap() as f64;
        hi = *values.iter().max().unwrap() as f64;
    }
    if hi <= lo {
        return values.iter().map(|&v| (v >> 8) as u8).collect();
    }
    let scale = 255.0 / (hi - lo);
    values.iter().map(|&v| ((v as f64 - lo) * scale).round().clamp(0.0, 255.0) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_12_bit_film_in_16_bits_keeps_its_contrast() {
        // A ramp over 0..4095 with a few outliers at the top: the window spans the ramp, not the outliers.
        let mut v: Vec<u16> = (0..4096).collect();
        v.extend([65535; 10]);
        let out = window16(&v);
        assert_eq!(out[0], 0);
        assert!(out[4095] >= 250, "{}", out[4095]);
        assert!((out[2048] as i32 - 128).abs() <= 3, "{}", out[2048]);
        assert_eq!(out[4096], 255, "outliers clip");
        // image's own 16 → 8 conversion would have left the ramp in the darkest levels.
        assert_eq!(
            DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(4106, 1, v).unwrap()).to_luma8()[(4095, 0)][0],
            16
        );
    }

    #[test]
    fn flat_and_nearly_flat_films_do_not_divide_by_zero() {
        assert_eq!(window16(&[700; 50]), vec![2; 50]);
        assert_eq!(window16(&[65535; 50]), vec![255; 50], "a flat white film stays white");
        let mut v = vec![100u16; 1000];
        v[0] = 50;
        v[1] = 300;
        let out = window16(&v);
        assert_eq!((out[0], out[1], out[2]), (0, 255, 51));
        assert!(window16(&[]).is_empty());
    }

    #[test]
    fn orientation_turns_the_pixels_as_exif_says() {
        // 3 wide, 2 tall: rows [1 2 3] [4 5 6].
        let px = [1, 2, 3, 4, 5, 6];
        let (r, w, h) = orient(&px, 3, 2, 1, Orientation::Rotate90);
        assert_eq!((w, h), (2, 3));
        assert_eq!(r, vec![4, 1, 5, 2, 6, 3]);
        let (r, w, h) = orient(&px, 3, 2, 1, Orientation::FlipHorizontal);
        assert_eq!((w, h, r), (3, 2, vec![3, 2, 1, 6, 5, 4]));
        let rgb: Vec<u8> = (0..18).collect();
        let (r, w, h) = orient(&rgb, 3, 2, 3, Orientation::Rotate180);
        assert_eq!((w, h), (3, 2));
        assert_eq!(&r[..3], &[15, 16, 17]);
        assert_eq!(exif_orientation(None), Orientation::NoTransforms);
        assert_eq!(exif_orientation(Some(b"garbage")), Orientation::NoTransforms);
    }

    /// A raw EXIF chunk (little-endian TIFF) holding only an orientation tag.
    fn exif_with_orientation(o: u16) -> Vec<u8> {
        let mut e = b"II*\0".to_vec();
        e.extend(8u32.to_le_bytes()); // first IFD
        e.extend(1u16.to_le_bytes()); // one entry
        e.extend(0x0112u16.to_le_bytes()); // Orientation
        e.extend(3u16.to_le_bytes()); // SHORT
        e.extend(1u32.to_le_bytes());
        e.extend([o as u8, 0, 0, 0]);
        e.extend(0u32.to_le_bytes()); // no next IFD
        e
    }

    /// 40 wide, 20 tall: the left half white, the right half black.
    fn half_white() -> GrayImage {
        GrayImage::from_fn(40, 20, |x, _| image::Luma([if x < 20 { 255 } else { 0 }]))
    }

    #[test]
    fn a_jpeg_with_exif_orientation_is_read_upright() {
        use image::ImageEncoder;
        let img = half_white();
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 95)
            .write_image(img.as_raw(), 40, 20, image::ExtendedColorType::L8)
            .unwrap();
        let mut turned = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut turned, 95);
        enc.set_exif_metadata(exif_with_orientation(6)).unwrap(); // 6: rotate 90° clockwise to view
        enc.write_image(img.as_raw(), 40, 20, image::ExtendedColorType::L8).unwrap();
        let mean = |p: &[u8]| p.iter().map(|&v| v as f64).sum::<f64>() / p.len() as f64;
        let (p, info) = super::super::image::prepare_bytes(&plain, 16, 1000).unwrap();
        assert_eq!((info.width, info.height), (40, 20));
        assert!(mean(&p.pixels[..8]) > 200.0 && mean(&p.pixels[8..16]) < 50.0, "as stored: left white");
        let (p, _) = super::super::image::prepare_bytes(&turned, 16, 1000).unwrap();
        // Rotated 90° clockwise, the left half is on top.
        assert!(mean(&p.pixels[..16 * 7]) > 200.0, "top white: {:?}", &p.pixels[..16]);
        assert!(mean(&p.pixels[16 * 9..]) < 50.0, "bottom black");
        // The same through the general decoder (what `data stats` and the other formats use).
        let (img, _) = super::super::image::decode_bytes(&turned, 1000).unwrap();
        assert_eq!((img.width(), img.height()), (20, 40));
    }

    #[test]
    fn a_16_bit_png_is_windowed_not_truncated() {
        // A 12-bit film stored in 16 bits: a horizontal ramp 0..4095.
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(64, 8, |x, _| image::Luma([(x * 65) as u16]));
        let mut png = Vec::new();
        DynamicImage::ImageLuma16(img).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let (p, info) = super::super::image::prepare_bytes(&png, 16, 1000).unwrap();
        assert_eq!(info.bits, 16);
        let row = &p.pixels[..16];
        assert!(row[0] < 10 && row[15] > 245, "the ramp spans the 8-bit range: {row:?}");
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "and stays a ramp: {row:?}");
    }
}
