//! Why an image file could not be used (every decoder's error: JPEG/PNG in image.rs, DICOM in dicom.rs).

/// Why a file could not be used; the message is shown next to the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("cannot open: {0}")]
    Io(String),
    #[error("not a JPEG, PNG or DICOM image")]
    UnknownFormat,
    #[error("image is {width}×{height}, larger than the {limit}-pixel limit (data.max_image_side)")]
    TooLarge { width: u32, height: u32, limit: u32 },
    #[error("cannot decode: {0}")]
    Decode(String),
}
