//! One image from file to model input: guarded decoding, 1→3 channels, square resize, seeded rotation
//! augmentation and normalisation. Must not depend on model, train or front-ends.

use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};
use serde::{Deserialize, Serialize};

pub use super::image_error::ImageError;

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
///
/// Radiographs carry no colour, so every file is read as its luminance (one byte per pixel): gray files as
/// they are, colour files (X-rays saved as RGB, as some Kaggle files are) through their luma (JPEG's Y plane,
/// ITU-R BT.601). The model's three input channels repeat it ([`normalize_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub size: usize,
    /// Row-major luminance: size × size bytes.
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
    if super::dicom::is_dicom(bytes) {
        let (img, d) = super::dicom::decode(bytes, max_side)?;
        let info = ImageInfo {
            width: img.width(),
            height: img.height(),
            channels: img.color().channel_count(),
            bits: d.bits_stored.min(255) as u8,
        };
        return Ok((img, info));
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
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge { width, height, limit: max_side },
        other => ImageError::Decode(other.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(failed)?;
    // Shown upright, as a viewer shows it (EXIF orientation; a file without one is as stored).
    let orientation =
        image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(failed)?;
    img.apply_orientation(orientation);
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
    let bytes = std::fs::read(path).map_err(|e| ImageError::Io(e.to_string()))?;
    prepare_bytes(&bytes, size, max_side)
}

/// Decodes an in-memory file and prepares it at `size`×`size` (see [`load_prepared`]).
pub fn prepare_bytes(bytes: &[u8], size: usize, max_side: u32) -> Result<(Prepared, ImageInfo), ImageError> {
    with_pixels(bytes, max_side, |pixels, w, h, channels| prepare_pixels(pixels, w, h, channels, size))
}

/// Decodes an in-memory file to 8-bit gray (1 channel) or RGB (3) pixels and hands them to `f` with the
/// width, height and channel count.
///
/// JPEGs (nearly every X-ray) go straight to zune-jpeg, the decoder `image` itself uses, with one header parse,
/// no copy of the file and a per-thread output buffer reused from file to file instead of a zeroed
/// multi-megabyte allocation per image. Colour (YCbCr) JPEGs decode their Y plane only: the decoder skips the
/// chroma's inverse DCT, upsampling and colour conversion. Other formats go through [`decode_bytes`]. Both
/// paths refuse the same files with the same [`ImageError`]s.
pub fn with_pixels<T>(
    bytes: &[u8],
    max_side: u32,
    f: impl FnOnce(&[u8], usize, usize, usize) -> T,
) -> Result<(T, ImageInfo), ImageError> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = match super::dicom::is_dicom(bytes) {
        true => None,
        false => Some(image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat)?),
    };
    if format != Some(image::ImageFormat::Jpeg) {
        let (img, info) = decode_bytes(bytes, max_side)?;
        return Ok((with_image_pixels(&img, f), info));
    }
    if !has_jpeg_end_marker(bytes) {
        return Err(ImageError::Decode("truncated JPEG (no end-of-image marker)".into()));
    }
    let jpeg_error = |e: zune_jpeg::errors::DecodeErrors| ImageError::Decode(format!("JPEG: {e}"));
    // Lenient like `image` (and browsers) about recoverable stream errors; sizes are checked below.
    let options = DecoderOptions::default().set_strict_mode(false).set_max_width(usize::MAX).set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let (width, height) = decoder.dimensions().map(|(w, h)| (w as u32, h as u32)).unwrap_or((0, 0));
    if width > max_side || height > max_side {
        return Err(ImageError::TooLarge { width, height, limit: max_side });
    }
    // Gray and YCbCr files decode to their luma plane; CMYK and YCCK to RGB (converted after resizing).
    let out = match decoder.input_colorspace() {
        Some(ColorSpace::Luma | ColorSpace::YCbCr) => ColorSpace::Luma,
        _ => ColorSpace::RGB,
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    let channels = out.num_components();
    let len = decoder.output_buffer_size().ok_or_else(|| ImageError::Decode("JPEG: no image size".into()))?;
    let info = ImageInfo { width, height, channels: channels as u8, bits: 8 };
    let orientation = super::pixels::exif_orientation(decoder.exif().map(Vec::as_slice));
    let run = |buf: &mut [u8]| -> Result<T, ImageError> {
        decoder.decode_into(buf).map_err(jpeg_error)?;
        if orientation == image::metadata::Orientation::NoTransforms {
            return Ok(f(buf, width as usize, height as usize, channels));
        }
        // A film turned by its EXIF orientation (rare in radiographs): shown upright, as a viewer shows it.
        let (turned, w, h) = super::pixels::orient(buf, width as usize, height as usize, channels, orientation);
        Ok(f(&turned, w, h, channels))
    };
    let out = if len <= REUSED_BUFFER_MAX {
        DECODE_BUFFER.with_borrow_mut(|buf| {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            run(&mut buf[..len])
        })
    } else {
        run(&mut vec![0; len])
    }?;
    Ok((out, info))
}

/// Decoded images up to this many bytes (an 8-megapixel RGB film) reuse a per-thread buffer; larger ones
/// get their own, so that one huge file does not pin its memory for the rest of the run.
const REUSED_BUFFER_MAX: usize = 24 << 20;

thread_local! {
    static DECODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hands a decoded image's pixels to `f` as 8-bit gray (1 channel) or RGB (3), converting only images that
/// are neither (16-bit, alpha, CMYK): the common gray and RGB files are read in place. 16-bit films are
/// windowed to 8 bits on their luminance ([`super::pixels::window16`]), not cut to their top 8 bits.
fn with_image_pixels<T>(img: &DynamicImage, f: impl FnOnce(&[u8], usize, usize, usize) -> T) -> T {
    use image::ColorType::*;
    let (w, h) = (img.width() as usize, img.height() as usize);
    match img {
        DynamicImage::ImageLuma8(luma) => f(luma.as_raw(), w, h, 1),
        DynamicImage::ImageRgb8(rgb) => f(rgb.as_raw(), w, h, 3),
        _ if matches!(img.color(), L16 | La16 | Rgb16 | Rgba16) => {
            f(&super::pixels::window16(img.to_luma16().as_raw()), w, h, 1)
        }
        _ if img.color() == La8 => f(img.to_luma8().as_raw(), w, h, 1),
        _ => f(img.to_rgb8().as_raw(), w, h, 3),
    }
}

/// Resizes 8-bit gray (`channels` 1) or interleaved RGB (3) pixels to a square of luminance. RGB is resized
/// first and converted on the small image (BT.601 luma, the weights of JPEG's Y).
pub fn prepare_pixels(pixels: &[u8], w: usize, h: usize, channels: usize, size: usize) -> Prepared {
    let small = resize_plane(pixels, w, h, channels, size);
    if channels == 1 {
        return Prepared { size, pixels: small };
    }
    Prepared { size, pixels: rgb_to_luma(&small) }
}

/// Interleaved RGB to one byte of BT.601 luma per pixel.
pub fn rgb_to_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()
}

/// ITU-R BT.601 luma in 8-bit fixed point: (0.299 R + 0.587 G + 0.114 B), rounded.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19_595 * r as u32 + 38_470 * g as u32 + 7_471 * b as u32 + 32_768) >> 16) as u8
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel, 1 or 3) to `size`×`size`.
///
/// `fast_image_resize`'s antialiased bilinear convolution (Pillow's `resize(..., BILINEAR)`: the filter's
/// support widens with the reduction, so a 2000 px film averages every source pixel into the 256 px input),
/// with its SIMD kernels chosen at run time (AVX2 / SSE4.1 / NEON).
pub fn resize_plane(src: &[u8], w: usize, h: usize, channels: usize, size: usize) -> Vec<u8> {
    use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions};
    let pixel_type = if channels == 3 { PixelType::U8x3 } else { PixelType::U8 };
    debug_assert!(channels == 1 || channels == 3, "resize_plane takes 1 or 3 channels");
    if w == 0 || h == 0 {
        return vec![0; size * size * channels];
    }
    let (w32, h32, n) = (w as u32, h as u32, size as u32);
    let src = ImageRef::new(w32, h32, src, pixel_type).expect("buffer holds w × h pixels");
    let mut dst = Image::new(n, n, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER.with_borrow_mut(|r| r.resize(&src, &mut dst, &options)).expect("pixel types match");
    dst.into_vec()
}

thread_local! {
    // A resizer keeps its scratch buffers between calls; one per (rayon) thread.
    static RESIZER: std::cell::RefCell<fast_image_resize::Resizer> =
        std::cell::RefCell::new(fast_image_resize::Resizer::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts a decoded image to luminance at `size`×`size`, as the non-JPEG path does.
    fn prepare(img: &DynamicImage, size: usize) -> Prepared {
        with_image_pixels(img, |pixels, w, h, channels| prepare_pixels(pixels, w, h, channels, size))
    }

    #[test]
    fn prepare_converts_gray_rgb_rgba_and_16_bit() {
        let luma = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(40, 30, image::Luma([100])));
        let p = prepare(&luma, 16);
        assert_eq!((p.size, p.pixels.len()), (16, 256));
        assert!(p.pixels.iter().all(|&v| v == 100));

        // Colour becomes BT.601 luma: 0.299 R + 0.587 G + 0.114 B.
        let grayish_rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([90, 91, 90])));
        assert!(prepare(&grayish_rgb, 8).pixels.iter().all(|&v| v == 91));
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([200, 10, 10])));
        let p = prepare(&rgb, 8);
        assert_eq!(p.pixels.len(), 64);
        assert!(p.pixels.iter().all(|&v| v == 67), "{:?}", &p.pixels[..4]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(20, 20, image::Rgba([10, 200, 10, 255])));
        assert!(prepare(&rgba, 8).pixels.iter().all(|&v| v == 122));

        let l16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(20, 20, image::Luma([65535u16])));
        let p = prepare(&l16, 8);
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
}

#[cfg(test)]
mod file_tests {
    use super::*;

    /// Converts a decoded image to luminance at `size`×`size`, as the non-JPEG path does.
    fn prepare(img: &DynamicImage, size: usize) -> Prepared {
        with_image_pixels(img, |pixels, w, h, channels| prepare_pixels(pixels, w, h, channels, size))
    }

    #[test]
    fn cmyk_jpeg_is_converted() {
        // A 64×48 CMYK JPEG written by Pillow (tests/fixtures/cmyk.jpg), gray ramp in the K channel.
        let bytes = include_bytes!("../../tests/fixtures/cmyk.jpg");
        let (img, info) = decode_bytes(bytes, 1000).expect("CMYK JPEG decodes");
        assert_eq!((info.width, info.height), (64, 48));
        let p = prepare(&img, 16);
        assert!(p.pixels.iter().max() > p.pixels.iter().min(), "the ramp survives");
        // The direct decoder path reads CMYK through RGB too and lands on the same image.
        let (fast, fast_info) = prepare_bytes(bytes, 16, 1000).expect("CMYK JPEG prepares");
        assert_eq!((fast_info.width, fast_info.height), (64, 48));
        assert_eq!(fast, p);
    }

    fn jpeg(img: &DynamicImage) -> Vec<u8> {
        let mut bytes = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(img).unwrap();
        bytes
    }

    fn film(w: u32, h: u32) -> image::RgbImage {
        // A smooth gradient with a bright disc: content the resize must keep in place.
        image::RgbImage::from_fn(w, h, |x, y| {
            let d = ((x as f32 - w as f32 * 0.3).powi(2) + (y as f32 - h as f32 * 0.6).powi(2)).sqrt();
            let v = if d < h as f32 * 0.15 { 230 } else { (40 + 120 * x / w + 60 * y / h) as u8 };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn direct_jpeg_path_matches_the_image_crate_path() {
        // Gray JPEG: the same decoder underneath, so the prepared images are identical.
        let gray = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(film(300, 220)).to_luma8());
        let bytes = jpeg(&gray);
        let (fast, info) = prepare_bytes(&bytes, 64, 1000).unwrap();
        assert_eq!((info.width, info.height, info.channels), (300, 220, 1));
        let (img, _) = decode_bytes(&bytes, 1000).unwrap();
        assert_eq!(fast, prepare(&img, 64));

        // Colour JPEG: the Y plane against RGB decoded then converted; equal up to JPEG's rounding.
        let bytes = jpeg(&DynamicImage::ImageRgb8(film(300, 220)));
        let (fast, _) = prepare_bytes(&bytes, 64, 1000).unwrap();
        let (img, info) = decode_bytes(&bytes, 1000).unwrap();
        assert_eq!(info.channels, 3);
        let slow = prepare(&img, 64);
        let worst = fast.pixels.iter().zip(&slow.pixels).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 2, "largest difference {worst}");
        // The disc stays where it was: bright at (0.3, 0.6) of the frame, darker far from it.
        assert!(fast.pixels[38 * 64 + 19] > 200 && fast.pixels[5 * 64 + 60] < 200);
    }

    #[test]
    fn direct_jpeg_path_refuses_what_decode_refuses() {
        let bytes = jpeg(&DynamicImage::ImageRgb8(film(120, 90)));
        assert_eq!(
            prepare_bytes(&bytes, 32, 100).unwrap_err(),
            ImageError::TooLarge { width: 120, height: 90, limit: 100 }
        );
        assert!(matches!(prepare_bytes(&bytes[..bytes.len() / 2], 32, 1000), Err(ImageError::Decode(_))));
        let mut corrupt = bytes.clone();
        corrupt[4..60].fill(0x00); // headers destroyed after the signature, end marker kept
        assert!(matches!(prepare_bytes(&corrupt, 32, 1000), Err(ImageError::Decode(_))), "corrupt header");
        assert_eq!(prepare_bytes(b"", 32, 1000).unwrap_err(), ImageError::Empty);
        assert_eq!(prepare_bytes(b"not an image at all", 32, 1000).unwrap_err(), ImageError::UnknownFormat);
    }

    #[test]
    fn empty_and_unknown_bytes_are_refused() {
        assert_eq!(decode_bytes(b"", 100).unwrap_err(), ImageError::Empty);
        assert_eq!(decode_bytes(b"hello world, not an image", 100).unwrap_err(), ImageError::UnknownFormat);
    }
}
