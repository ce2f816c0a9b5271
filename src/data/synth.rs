//! The deterministic SYNTHETIC chest X-ray generator: the Kaggle folder layout filled with procedurally drawn
//! radiographs (body, lungs, ribs, spine, heart) with pneumonia-like opacities. Must not depend on model/train/UI.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Class;
use crate::error::Result;

/// The marker file written at the root of every synthetic data set; its presence labels the data SYNTHETIC.
pub const MARKER: &str = "SYNTHETIC-pneumoscope.json";
/// Bumped whenever the drawing changes, so cached demo sets are regenerated.
pub const GENERATOR_VERSION: u32 = 1;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSpec {
    /// Images in train/ and val/ together (val/ gets a token 8/8-like share, as in the Kaggle set).
    pub train: usize,
    pub test: usize,
    pub seed: u64,
    /// Range of the longer image side, in pixels.
    pub min_side: u32,
    pub max_side: u32,
}

impl SynthSpec {
    pub fn new(train: usize, test: usize, seed: u64) -> Self {
        Self { train, test, seed, min_side: 320, max_side: 640 }
    }
}

/// One file to draw.
#[derive(Debug, Clone)]
struct Plan {
    rel_path: PathBuf,
    class: Class,
    patient: u32,
    /// Global image number: seeds the image's own random stream.
    index: u64,
    rgb: bool,
    width: u32,
    height: u32,
}

/// What was written, per split and class.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SynthSummary {
    pub files: usize,
    pub train: [usize; 2],
    pub val: [usize; 2],
    pub test: [usize; 2],
    pub patients: usize,
    pub rgb_files: usize,
}

/// NORMAL : PNEUMONIA shares of the Kaggle data: train 1,341 : 3,875 (1 : 2.89), test 234 : 390 (1 : 1.67).
const TRAIN_NORMAL_SHARE: f64 = 1341.0 / 5216.0;
const TEST_NORMAL_SHARE: f64 = 234.0 / 624.0;

fn plan(spec: &SynthSpec) -> Vec<Plan> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let val_per_class = (spec.train / 40).clamp(1, 8);
    let train_total = spec.train.saturating_sub(2 * val_per_class);
    let train_normal = (train_total as f64 * TRAIN_NORMAL_SHARE).round() as usize;
    let test_normal = (spec.test as f64 * TEST_NORMAL_SHARE).round() as usize;
    let quotas = [
        ("train", [train_normal, train_total - train_normal]),
        ("val", [val_per_class, val_per_class]),
        ("test", [test_normal, spec.test - test_normal]),
    ];
    let mut plans = Vec::new();
    let mut patient = 0u32;
    let mut index = 0u64;
    for (split, counts) in quotas {
        for class in Class::ALL {
            let mut left = counts[class.index()];
            while left > 0 {
                patient += 1;
                // Several images per patient, as in the real data (1–4, mostly 1–2).
                let n = [1, 1, 2, 2, 3, 4][rng.random_range(0..6)].min(left);
                let kind = if rng.random_bool(0.65) { "bacteria" } else { "virus" };
                let normal2 = rng.random_bool(0.3);
                for shot in 0..n as u32 {
                    index += 1;
                    let name = match class {
                        Class::Pneumonia => format!("person{patient}_{kind}_{index}.jpeg"),
                        Class::Normal if normal2 => {
                            format!("NORMAL2-IM-{patient:04}-{:04}.jpeg", shot + 1)
                        }
                        Class::Normal => format!("IM-{patient:04}-{:04}.jpeg", shot + 1),
                    };
                    let long = rng.random_range(spec.min_side..=spec.max_side.max(spec.min_side));
                    let aspect = rng.random_range(0.72..1.0f64);
                    let short = ((long as f64 * aspect).round() as u32).max(16);
                    // Most radiographs are wider than tall in this data set; some are portrait.
                    let (width, height) = if rng.random_bool(0.7) { (long, short) } else { (short, long) };
                    plans.push(Plan {
                        rel_path: Path::new(split).join(class.folder()).join(name),
                        class,
                        patient,
                        index,
                        rgb: rng.random_bool(0.25),
                        width,
                        height,
                    });
                }
                left -= n;
            }
        }
    }
    plans
}

/// Writes a synthetic data set under `out` (`out/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`) plus the marker
/// file. `progress(done, total)` is called as files are written. The same spec gives byte-identical files.
pub fn generate(out: &Path, spec: &SynthSpec, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<SynthSummary> {
    if spec.train < 4 || spec.test < 2 {
        anyhow::bail!("a synthetic data set needs at least 4 training and 2 test images");
    }
    let plans = plan(spec);
    for split in ["train", "val", "test"] {
        for class in Class::ALL {
            let dir = out.join(split).join(class.folder());
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = plans.len();
    plans.par_iter().try_for_each(|p| -> Result<()> {
        let bytes = render_jpeg(p, spec.seed)?;
        let path = out.join(&p.rel_path);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n, total);
        Ok(())
    })?;
    let mut summary = SynthSummary { files: total, ..Default::default() };
    let mut patients = std::collections::BTreeSet::new();
    for p in &plans {
        let slot = match p.rel_path.components().next().and_then(|c| c.as_os_str().to_str()) {
            Some("train") => &mut summary.train,
            Some("val") => &mut summary.val,
            _ => &mut summary.test,
        };
        slot[p.class.index()] += 1;
        patients.insert(p.patient);
        summary.rgb_files += p.rgb as usize;
    }
    summary.patients = patients.len();
    let marker = serde_json::json!({
        "synthetic": true,
        "generator": "pneumoscope",
        "generator_version": GENERATOR_VERSION,
        "note": "SYNTHETIC chest X-rays drawn by a program. Not real patients, not medical data.",
        "spec": spec,
        "summary": summary,
    });
    let mut f = std::fs::File::create(out.join(MARKER)).with_context(|| format!("cannot write {}", out.display()))?;
    f.write_all(serde_json::to_string_pretty(&marker)?.as_bytes())?;
    std::fs::write(
        out.join("README.txt"),
        "SYNTHETIC chest X-ray data set generated by `pneumoscope data synth`.\n\
         The images are drawn by a program (body outline, lungs, ribs, spine, heart; PNEUMONIA adds opacities).\n\
         They are not radiographs of real people and must not be used for any medical purpose.\n",
    )?;
    Ok(summary)
}

/// True when `root` (a data folder or its parent) holds a synthetic data set.
pub fn is_synthetic(root: &Path) -> bool {
    [root.to_path_buf(), root.join("chest_xray")].iter().any(|r| r.join(MARKER).is_file())
}

fn render_jpeg(p: &Plan, seed: u64) -> Result<Vec<u8>> {
    let gray = render(p, seed);
    let mut bytes = Vec::new();
    let enc = JpegEncoder::new_with_quality(&mut bytes, 90);
    if p.rgb {
        let rgb: Vec<u8> = gray.iter().flat_map(|&v| [v, v, v]).collect();
        enc.write_image(&rgb, p.width, p.height, ExtendedColorType::Rgb8)?;
    } else {
        enc.write_image(&gray, p.width, p.height, ExtendedColorType::L8)?;
    }
    Ok(bytes)
}

/// Anatomy shared by all images of one patient.
struct Patient {
    cx: f32,
    body_w: f32,
    lung_dx: f32,
    lung_a: f32,
    lung_b: f32,
    lung_top: f32,
    heart_a: f32,
    heart_b: f32,
    rib_gap: f32,
    rib_curve: f32,
    density: f32,
}

/// A pneumonia-like opacity inside the lungs.
enum Opacity {
    /// A Gaussian patch (centre, radius, strength).
    Patch { x: f32, y: f32, r: f32, s: f32 },
    /// A lobe-sized consolidation filling one lung below `y_cut` (side -1 left, +1 right on the image).
    Lobar { side: f32, y_cut: f32, s: f32 },
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Smooth value noise in [0, 1] at integer lattice `cell` units.
fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let xi = x.floor();
    let yi = y.floor();
    let fx = x - xi;
    let fy = y - yi;
    let h = |i: i64, j: i64| -> f32 {
        let k =
            splitmix(seed ^ (i as u64).wrapping_mul(0x1000_0000_01B3) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
        (k >> 40) as f32 / (1u64 << 24) as f32
    };
    let (i, j) = (xi as i64, yi as i64);
    let sx = fx * fx * (3.0 - 2.0 * fx);
    let sy = fy * fy * (3.0 - 2.0 * fy);
    let top = h(i, j) * (1.0 - sx) + h(i + 1, j) * sx;
    let bot = h(i, j + 1) * (1.0 - sx) + h(i + 1, j + 1) * sx;
    top * (1.0 - sy) + bot * sy
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn render(p: &Plan, seed: u64) -> Vec<u8> {
    // The patient's anatomy comes from the patient id; the shot's variation from the image index.
    let mut prng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ 0xA11CE) ^ p.patient as u64);
    let pat = Patient {
        cx: prng.random_range(0.47..0.53),
        body_w: prng.random_range(0.36..0.46),
        lung_dx: prng.random_range(0.16..0.2),
        lung_a: prng.random_range(0.125..0.16),
        lung_b: prng.random_range(0.27..0.33),
        lung_top: prng.random_range(0.14..0.2),
        heart_a: prng.random_range(0.13..0.17),
        heart_b: prng.random_range(0.10..0.13),
        rib_gap: prng.random_range(0.055..0.07),
        rib_curve: prng.random_range(0.9..1.4),
        density: prng.random_range(0.85..1.15),
    };
    // Disease severity is a patient trait too; each shot shows it a bit differently.
    let severity: f32 = prng.random_range(0.25..1.0);
    let lobar_patient = prng.random_bool(0.4);

    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ p.index.wrapping_mul(0x2545_F491_4F6C_DD1D)));
    let shift_x: f32 = rng.random_range(-0.03..0.03);
    let shift_y: f32 = rng.random_range(-0.03..0.03);
    let zoom: f32 = rng.random_range(0.94..1.06);
    let gain: f32 = rng.random_range(0.8..1.2);
    let offset: f32 = rng.random_range(-0.06..0.08);
    let gamma: f32 = rng.random_range(0.8..1.25);
    let noise_sigma: f32 = rng.random_range(0.008..0.035);
    let noise_seed = rng.random::<u64>();
    let texture_seed = rng.random::<u64>() ^ p.patient as u64;

    let mut opacities = Vec::new();
    if p.class == Class::Pneumonia {
        let s_base = severity * rng.random_range(0.7..1.0);
        if lobar_patient && rng.random_bool(0.8) {
            let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            let y_cut = rng.random_range(0.35..0.6);
            opacities.push(Opacity::Lobar { side, y_cut, s: 0.42 * s_base });
        }
        let patches = rng.random_range(2..=7);
        for _ in 0..patches {
            let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            let x = pat.cx + side * pat.lung_dx + rng.random_range(-0.7..0.7) * pat.lung_a;
            let y = pat.lung_top + pat.lung_b * rng.random_range(0.4..1.7);
            opacities.push(Opacity::Patch {
                x,
                y,
                r: rng.random_range(0.035..0.1),
                s: 0.5 * s_base * rng.random_range(0.4..1.0),
            });
        }
    }

    let (w, h) = (p.width as usize, p.height as usize);
    let aspect = w as f32 / h as f32;
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            // Normalised coordinates with the shot's shift and zoom; u stretched so anatomy keeps its shape.
            let mut u = ((x as f32 + 0.5) / w as f32 - 0.5) / zoom + 0.5 - shift_x;
            let v = ((y as f32 + 0.5) / h as f32 - 0.5) / zoom + 0.5 - shift_y;
            if aspect > 1.0 {
                u = (u - 0.5) * aspect + 0.5;
            }
            let val = attenuation(&pat, &opacities, u, v, texture_seed);
            let mut i = (offset + gain * val).clamp(0.0, 1.0).powf(gamma);
            // Acquisition noise: fine grain plus a little structured (quantum-mottle-like) noise.
            let n1 = value_noise(noise_seed, x as f32 * 0.9, y as f32 * 0.9) - 0.5;
            let n2 = (splitmix(noise_seed ^ ((y * w + x) as u64)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            i += noise_sigma * (1.2 * n1 + 1.6 * n2);
            out[y * w + x] = (i.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
    }
    out
}

/// X-ray attenuation (bright = dense) at normalised position (u, v).
fn attenuation(p: &Patient, ops: &[Opacity], u: f32, v: f32, tex_seed: u64) -> f32 {
    let air = 0.05;
    // Torso: a rounded trapezoid widening from the neck to the shoulders.
    let half_w = if v < 0.12 { p.body_w * (0.35 + 0.65 * smoothstep(0.0, 0.12, v)) } else { p.body_w };
    let body = 1.0 - smoothstep(half_w - 0.03, half_w + 0.01, (u - p.cx).abs());
    // Soft tissue is thinner at the edges of the body: a little darker there.
    let tissue = 0.42 + 0.08 * (1.0 - ((u - p.cx).abs() / half_w).powi(2)).max(0.0);
    let mut a = air + body * (tissue - air) * p.density;

    for side in [-1.0f32, 1.0] {
        let lung = lung_mask(p, side, u, v);
        if lung > 0.0 {
            // Lungs are air-filled: much darker, with faint vascular texture.
            let tex =
                value_noise(tex_seed, u * 40.0, v * 40.0) * 0.6 + value_noise(tex_seed ^ 7, u * 90.0, v * 90.0) * 0.4;
            let hilum = (1.0 - ((u - (p.cx + side * 0.07)).powi(2) + (v - 0.45).powi(2)).sqrt() / 0.25).max(0.0);
            a -= lung * (0.30 - 0.05 * tex - 0.08 * hilum);
            for op in ops {
                a += lung * opacity_at(p, op, side, u, v, tex_seed);
            }
        }
    }

    // Ribs: posterior arcs descending laterally on both sides.
    let lateral = (u - p.cx).abs();
    if lateral > 0.03 && lateral < half_w - 0.02 && v > p.lung_top - 0.05 && v < 0.85 {
        for k in 0..10 {
            let y0 = p.lung_top - 0.02 + k as f32 * p.rib_gap;
            let curve = y0 + p.rib_curve * (lateral - 0.04).max(0.0).powi(2) - 0.03 * (lateral / half_w);
            let d = (v - curve).abs();
            let thick = 0.012 + 0.002 * k as f32;
            if d < thick * 1.5 {
                a += 0.07 * (1.0 - smoothstep(thick * 0.6, thick * 1.5, d)) * body;
            }
        }
    }
    // Clavicles.
    for side in [-1.0f32, 1.0] {
        let t = (u - p.cx) * side;
        if t > 0.02 && t < 0.3 {
            let cy = 0.13 - 0.12 * t + 0.5 * t * t;
            let d = (v - cy).abs();
            a += 0.12 * (1.0 - smoothstep(0.008, 0.02, d));
        }
    }
    // Spine: a bright column with vertebral segmentation.
    let spine = 1.0 - smoothstep(0.025, 0.04, (u - p.cx).abs());
    if spine > 0.0 && v > 0.02 {
        let seg = 0.85 + 0.15 * ((v * 38.0).sin() * 0.5 + 0.5);
        a += 0.14 * spine * seg;
    }
    // Heart shadow, lower centre, bulging to the image's right (the patient's left).
    let hx = (u - (p.cx + 0.045)) / p.heart_a;
    let hy = (v - (p.lung_top + p.lung_b * 1.45)) / p.heart_b;
    let heart = 1.0 - smoothstep(0.7, 1.15, (hx * hx + hy * hy).sqrt());
    a += 0.16 * heart;
    // Diaphragm and abdomen below the lungs.
    let dia = smoothstep(0.0, 0.04, v - (p.lung_top + 2.0 * p.lung_b + 0.02 - 0.05 * ((u - p.cx).abs() * 6.0).cos()));
    a += 0.1 * dia * body;
    a
}

fn lung_mask(p: &Patient, side: f32, u: f32, v: f32) -> f32 {
    let lx = p.cx + side * p.lung_dx;
    let ly = p.lung_top + p.lung_b;
    // Lungs are taller than wide, narrower at the apex, wider at the base.
    let widen = 0.75 + 0.35 * ((v - p.lung_top) / (2.0 * p.lung_b)).clamp(0.0, 1.0);
    let dx = (u - lx) / (p.lung_a * widen);
    let dy = (v - ly) / p.lung_b;
    let r = (dx * dx + dy * dy).sqrt();
    let mut m = 1.0 - smoothstep(0.85, 1.05, r);
    // The heart hides part of the left lung (image right).
    if side > 0.0 {
        let hx = (u - (p.cx + 0.045)) / (p.heart_a * 1.05);
        let hy = (v - (p.lung_top + p.lung_b * 1.45)) / (p.heart_b * 1.05);
        m *= smoothstep(0.8, 1.1, (hx * hx + hy * hy).sqrt());
    }
    m
}

fn opacity_at(p: &Patient, op: &Opacity, side: f32, u: f32, v: f32, tex_seed: u64) -> f32 {
    match *op {
        Opacity::Patch { x, y, r, s } => {
            let d2 = ((u - x).powi(2) + (v - y).powi(2)) / (r * r);
            if d2 > 9.0 {
                return 0.0;
            }
            // Patchy: the Gaussian is broken up by noise, like alveolar filling.
            let mottle = 0.55 + 0.45 * value_noise(tex_seed ^ 0xBEEF, u * 60.0, v * 60.0);
            s * (-0.5 * d2).exp() * mottle
        }
        Opacity::Lobar { side: s_side, y_cut, s } => {
            if (side - s_side).abs() > 0.5 {
                return 0.0;
            }
            let cut = p.lung_top + 2.0 * p.lung_b * y_cut;
            let fill = smoothstep(cut - 0.03, cut + 0.05, v);
            let mottle = 0.7 + 0.3 * value_noise(tex_seed ^ 0xF00D, u * 30.0, v * 30.0);
            s * fill * mottle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_mirrors_kaggle_class_ratios() {
        let plans = plan(&SynthSpec::new(1200, 400, 1));
        let count = |split: &str, class: Class| {
            plans.iter().filter(|p| p.rel_path.starts_with(split) && p.class == class).count()
        };
        let (tn, tp) = (count("train", Class::Normal), count("train", Class::Pneumonia));
        let ratio = tp as f64 / tn as f64;
        assert!((2.7..3.1).contains(&ratio), "train ratio {ratio}");
        let ratio = count("test", Class::Pneumonia) as f64 / count("test", Class::Normal) as f64;
        assert!((1.55..1.8).contains(&ratio), "test ratio {ratio}");
        assert_eq!(count("val", Class::Normal), count("val", Class::Pneumonia));
        assert_eq!(tn + tp + 2 * count("val", Class::Normal), 1200);
        // several images per patient, some RGB, varying sizes
        let patients: std::collections::BTreeSet<_> = plans.iter().map(|p| p.patient).collect();
        assert!(patients.len() < plans.len() * 3 / 4, "patients should have several images");
        let rgb = plans.iter().filter(|p| p.rgb).count();
        assert!(rgb > plans.len() / 8 && rgb < plans.len() / 2);
        let widths: std::collections::BTreeSet<_> = plans.iter().map(|p| p.width).collect();
        assert!(widths.len() > 50);
    }

    #[test]
    fn pneumonia_adds_density_inside_the_lungs() {
        // Same patient and shot drawn as NORMAL and as PNEUMONIA: the lungs get brighter on average.
        let base = Plan {
            rel_path: PathBuf::from("x.jpeg"),
            class: Class::Normal,
            patient: 5,
            index: 11,
            rgb: false,
            width: 160,
            height: 128,
        };
        let n = render(&base, 3);
        let p = render(&Plan { class: Class::Pneumonia, ..base.clone() }, 3);
        let mean = |v: &[u8]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean(&p) > mean(&n), "pneumonia {} normal {}", mean(&p), mean(&n));
    }
}
