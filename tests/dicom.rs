//! DICOM films (tests/fixtures/dicom/, written by scripts/make_dicom_fixtures.py from pydicom-data's RG1_UNCR, a
//! real chest CR film, MONOCHROME1, 15 bits stored): the display pneumoscope computes against the one computed
//! with pydicom (modality LUT, the file's window or a percentile window, MONOCHROME1 inverted), the same film in
//! other encodings, refusals that name what the file holds, the patient-level split reading PatientID without
//! showing it, and the commands on DICOM files.

mod common;

use std::path::{Path, PathBuf};

use common::{run_in, text};
use pneumoscope::data::image::{decode, ImageError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

fn gray(name: &str) -> image::GrayImage {
    let (img, _) = decode(&fixture(name), 10_000).unwrap_or_else(|e| panic!("{name}: {e}"));
    img.to_luma8()
}

/// Mean and largest absolute difference of two 8-bit images of one size.
fn diff(a: &image::GrayImage, b: &image::GrayImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let d: Vec<u8> = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).collect();
    (d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64, *d.iter().max().unwrap())
}

#[test]
fn a_monochrome1_film_is_windowed_and_inverted_as_pydicom_shows_it() {
    let ours = gray("cr-m1.dcm");
    assert_eq!(ours.dimensions(), (184, 195));
    let reference = image::open(fixture("cr-m1-ref.png")).unwrap().to_luma8();
    let (mean, max) = diff(&ours, &reference);
    assert!(mean < 0.6 && max <= 1, "against pydicom's display: mean {mean:.2}, max {max}");
    let (_, info) = decode(&fixture("cr-m1.dcm"), 10_000).unwrap();
    assert_eq!(info.bits, 15);
}

#[test]
fn without_a_window_the_percentiles_window_the_film() {
    let ours = gray("cr-nowindow.dcm");
    let reference = image::open(fixture("cr-nowindow-ref.png")).unwrap().to_luma8();
    let (mean, max) = diff(&ours, &reference);
    assert!(mean < 0.6 && max <= 1, "against the percentile window: mean {mean:.2}, max {max}");
    let (mean, _) = diff(&ours, &gray("cr-m1.dcm"));
    assert!(mean > 5.0, "the percentile window is not the file's window (mean difference {mean:.1})");
}

#[test]
fn the_same_film_reads_the_same_in_other_encodings() {
    let m1 = gray("cr-m1.dcm");
    assert_eq!(gray("cr-m1-rle.dcm"), m1, "RLE Lossless");
    assert_eq!(gray("cr-m1-j2k.dcm"), m1, "JPEG 2000 lossless");
    // MONOCHROME2 with rescale slope 2: the modality LUT and the window undo the encoding (±1 from rounding).
    let (mean, max) = diff(&gray("cr-m2-rescaled.dcm"), &m1);
    assert!(mean < 0.6 && max <= 1, "MONOCHROME2, rescaled: mean {mean:.2}, max {max}");
    // 8 bits stored (the display itself, with an identity window).
    let (mean, max) = diff(&gray("cr-8bit.dcm"), &image::open(fixture("cr-m1-ref.png")).unwrap().to_luma8());
    assert!(mean < 0.6 && max <= 1, "8-bit: mean {mean:.2}, max {max}");
    // JPEG baseline (lossy, quality 95) of that display: close, not identical.
    let (mean, max) = diff(&gray("cr-jpeg-baseline.dcm"), &image::open(fixture("cr-m1-ref.png")).unwrap().to_luma8());
    assert!(mean < 1.0 && max <= 8, "JPEG baseline: mean {mean:.2}, max {max}");
}

#[test]
fn multi_frame_pixel_less_and_undecodable_objects_are_refused_saying_what_they_hold() {
    let err = |name: &str| decode(&fixture(name), 10_000).unwrap_err().to_string();
    let e = err("multiframe.dcm");
    assert!(e.contains("multi-frame") && e.contains("2 frames"), "{e}");
    let e = err("no-pixels.dcm");
    assert!(e.contains("no pixel data"), "{e}");
    let e = err("jpeg-ls.dcm");
    assert!(e.contains("JPEG-LS") && e.contains("1.2.840.10008.1.2.4.80"), "{e}");
    // Too large: refused from the header, before the pixel data is decoded.
    assert!(matches!(decode(&fixture("cr-m1.dcm"), 100), Err(ImageError::TooLarge { width: 184, height: 195, .. })));
}

#[test]
fn the_patient_split_reads_patient_id_and_never_shows_it() {
    use pneumoscope::data::layout::patient_key;
    let (a1, a2, b) = (
        patient_key(&fixture("pat-a-1.dcm")),
        patient_key(&fixture("pat-a-2.dcm")),
        patient_key(&fixture("pat-b-1.dcm")),
    );
    assert_eq!(a1, a2, "two films of one patient");
    assert_ne!(a1, b);
    for k in [&a1, &b] {
        assert!(!k.contains("PAT") && !k.contains("0001") && !k.contains("0002"), "the identifier shows: {k}");
    }
    assert_eq!(patient_key(&fixture("cr-nowindow.dcm")), "cr-nowindow", "no PatientID: the file name");
}

#[test]
fn stats_and_predict_read_dicom_folders() {
    let dir = tempfile::tempdir().unwrap();
    for (class, files) in [
        ("NORMAL", ["pat-a-1.dcm", "pat-a-2.dcm", "cr-m1.dcm"]),
        ("PNEUMONIA", ["pat-b-1.dcm", "cr-m1-rle.dcm", "jpeg-ls.dcm"]),
    ] {
        let d = dir.path().join("data/train").join(class);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::copy(fixture(f), d.join(f)).unwrap();
        }
    }
    let o = run_in(dir.path(), &["data", "stats", "--data", "data"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("DICOM CR MONOCHROME1") && out.contains("15-bit"), "{out}");
    assert!(out.contains("jpeg-ls.dcm") && out.contains("JPEG-LS"), "the unreadable film named: {out}");
    assert!(!out.contains("PAT-A"), "{out}");

    // predict on a DICOM film with a (fresh) checkpoint.
    use pneumoscope::model::{Model, ModelKind};
    use pneumoscope::train::checkpoint;
    type B = burn::backend::Flex;
    let kind = ModelKind::Simple;
    let meta = common::checkpoint_meta(kind);
    let ckpt = dir.path().join("simple.ckpt");
    checkpoint::save(&ckpt, &meta, &Model::<B>::new(kind, 0.5, &Default::default())).unwrap();
    let film = fixture("cr-m1-rle.dcm");
    let o = run_in(dir.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), film.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("P(pneumonia)="), "{}", text(&o));
    let o = run_in(
        dir.path(),
        &["predict", "--checkpoint", ckpt.to_str().unwrap(), fixture("multiframe.dcm").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("multiframe.dcm") && text(&o).contains("multi-frame"), "{}", text(&o));
}
