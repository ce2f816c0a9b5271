//! DICOM films, through dicom-rs (`dicom-object` reads the object, `dicom-pixeldata` decodes the pixel data):
//! the modality LUT (rescale slope and intercept) applied, then the file's VOI LUT or window (the first given),
//! or, when it has none, a robust window from the 0.5th to the 99.5th percentile of the modality values;
//! MONOCHROME1 inverted so that dense tissue is bright. 8-, 12- and 16-bit stored values; the transfer syntaxes
//! dicom-rs decodes in pure Rust (native, deflate, RLE, JPEG baseline, extended and lossless, JPEG 2000 through
//! the openjp2 port). Multi-frame objects,
//! objects without pixel data and other transfer syntaxes are refused with a message naming what they hold.
//! The patient identifier, when present, keys the patient-level split, hashed: it is never shown.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{BitDepthOption, ConvertOptions, PixelDecoder, VoiLutOption, WindowLevel};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::image_error::ImageError;
use super::pixels::WINDOW_CLIP;

/// A DICOM file begins with a 128-byte preamble and the magic `DICM`.
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// Whether a file is named as DICOM (`.dcm`, `.dicom`); what it holds is checked when it is read.
pub fn has_dicom_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
}

/// What a film's header says, for `data stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DicomInfo {
    pub modality: String,
    pub photometric: String,
    pub bits_stored: u16,
    pub transfer_syntax: String,
}

fn text(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<String> {
    let v = obj.get(tag)?.to_str().ok()?;
    let v = v.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!v.is_empty()).then(|| v.to_string())
}

fn transfer_syntax_name(uid: &str) -> String {
    let uid = uid.trim_end_matches('\0');
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) => format!("{} ({uid})", ts.name()),
        None => format!("unknown ({uid})"),
    }
}

fn header(obj: &DefaultDicomObject) -> DicomInfo {
    DicomInfo {
        modality: text(obj, tags::MODALITY).unwrap_or_else(|| "-".into()),
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "-".into()),
        bits_stored: obj.get(tags::BITS_STORED).and_then(|e| e.to_int::<u16>().ok()).unwrap_or(0),
        transfer_syntax: transfer_syntax_name(obj.meta().transfer_syntax()),
    }
}

fn read(bytes: &[u8], header_only: bool) -> Result<DefaultDicomObject, ImageError> {
    let options = OpenFileOptions::new();
    let options = if header_only { options.read_until(tags::PIXEL_DATA) } else { options };
    options.from_reader(&bytes[128..]).map_err(|e| ImageError::Decode(format!("DICOM: {e}")))
}

/// A DICOM film's width and height from its header (`None` when it has none or cannot be read).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let head = read(bytes, true).ok()?;
    let dim = |t| head.get(t).and_then(|e| e.to_int::<u32>().ok());
    Some((dim(tags::COLUMNS)?, dim(tags::ROWS)?))
}

/// The header of a DICOM file, without its pixel data.
pub fn info(path: &Path) -> Result<DicomInfo, ImageError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| ImageError::Decode(format!("DICOM: {e}")))?;
    Ok(header(&obj))
}

/// The patient-level split's key for a DICOM file: a hash of its PatientID (never the identifier itself), or
/// `None` when the file has none or cannot be read (the file name is used then).
pub fn patient_key(path: &Path) -> Option<String> {
    use sha2::Digest;
    let obj = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).ok()?;
    let id = text(&obj, tags::PATIENT_ID)?;
    let digest = sha2::Sha256::digest(id.as_bytes());
    Some(format!("dicom-patient-{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Decodes a DICOM file to an 8-bit image for display and training (gray, or RGB for colour objects), refusing
/// a film whose side exceeds `max_side` before its pixel data is decoded.
pub fn decode(bytes: &[u8], max_side: u32) -> Result<(DynamicImage, DicomInfo), ImageError> {
    let head = read(bytes, true)?;
    let info = header(&head);
    let dim = |t| head.get(t).and_then(|e| e.to_int::<u32>().ok());
    let (Some(height), Some(width)) = (dim(tags::ROWS), dim(tags::COLUMNS)) else {
        let sop = text(&head, tags::SOP_CLASS_UID).unwrap_or_else(|| "-".into());
        return Err(ImageError::Decode(format!(
            "DICOM object holds no image (no rows/columns; modality {}, SOP class {sop})",
            info.modality
        )));
    };
    if width > max_side || height > max_side {
        return Err(ImageError::TooLarge { width, height, limit: max_side });
    }
    let frames = head.get(tags::NUMBER_OF_FRAMES).and_then(|e| e.to_int::<u32>().ok()).unwrap_or(1);
    if frames > 1 {
        return Err(ImageError::Decode(format!(
            "multi-frame DICOM ({frames} frames): one film per file is read (modality {})",
            info.modality
        )));
    }
    let obj = read(bytes, false)?;
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(ImageError::Decode(format!("DICOM object has no pixel data (modality {})", info.modality)));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let why = e.to_string();
        if why.contains("Unsupported TransferSyntax")
            || why.contains("Unknown transfer syntax")
            || why.contains("decode")
        {
            ImageError::Decode(format!(
                "DICOM transfer syntax {} cannot be decoded here (read: uncompressed, deflate, RLE, JPEG \
                 baseline/extended/lossless, JPEG 2000): {why}",
                info.transfer_syntax
            ))
        } else {
            ImageError::Decode(format!("DICOM pixel data ({}): {why}", info.transfer_syntax))
        }
    })?;
    let has_voi = decoded.window().ok().flatten().is_some_and(|w| !w.is_empty())
        || decoded.voi_lut_sequence().ok().flatten().is_some_and(|l| !l.is_empty());
    let voi = if has_voi || decoded.samples_per_pixel() != 1 {
        VoiLutOption::First
    } else {
        // No window in the file: the 0.5th to 99.5th percentile of the modality values, as a viewer's auto window.
        let mut v: Vec<f64> = decoded.to_vec::<f64>().map_err(|e| ImageError::Decode(format!("DICOM: {e}")))?;
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return Err(ImageError::Decode("DICOM pixel data is empty".into()));
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).floor() as usize).min(v.len() - 1)];
        let (mut lo, mut hi) = (at(WINDOW_CLIP), at(1.0 - WINDOW_CLIP));
        if hi <= lo {
            (lo, hi) = (v[0], v[v.len() - 1]);
        }
        // DICOM's linear window maps [c − 0.5 − (w − 1)/2, c − 0.5 + (w − 1)/2] onto the output range.
        VoiLutOption::Custom(WindowLevel { width: (hi - lo + 1.0).max(1.0), center: (lo + hi) / 2.0 + 0.5 })
    };
    let options = ConvertOptions::new().with_voi_lut(voi).with_bit_depth(BitDepthOption::Force8Bit);
    let img = decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| ImageError::Decode(format!("DICOM pixel data ({}): {e}", info.transfer_syntax)))?;
    let img = match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
        other if other.color().has_color() => DynamicImage::ImageRgb8(other.to_rgb8()),
        other => DynamicImage::ImageLuma8(other.to_luma8()),
    };
    Ok((img, info))
}
