//! Makes the small real subset that `pneumoscope` trains on by default (assets/demo/): whole patients drawn at
//! random (seeded) from each class of a Kaggle "Chest X-Ray Images (Pneumonia)" training folder until each class
//! has its share of images, each image decoded, reduced to its luminance at SIZE × SIZE and saved as a grayscale
//! JPEG under the original file name. A maintenance tool, not a test:
//!
//! `cargo run --release --example make_demo_subset -- SRC_ROOT OUT_DIR [NORMAL PNEUMONIA SIZE QUALITY SEED]`
//! (defaults 480 960 128 85 2018). SRC_ROOT is the folder holding `train/` (or its parent); OUT_DIR receives
//! `chest_xray/train/{NORMAL,PNEUMONIA}/`. The same arguments give the same files.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pneumoscope::data::layout::Layout;
use pneumoscope::data::{Class, Sample};
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        anyhow::bail!("usage: make_demo_subset SRC_ROOT OUT_DIR [NORMAL PNEUMONIA SIZE QUALITY SEED]");
    }
    let num = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(match args.get(i) {
            Some(a) => a.parse()?,
            None => default,
        })
    };
    let (src, out) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let want = [num(2, 480)? as usize, num(3, 960)? as usize];
    let (size, quality, seed) = (num(4, 128)? as usize, num(5, 85)? as u8, num(6, 2018)?);
    let layout = Layout::scan(&src)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut picked: Vec<&Sample> = Vec::new();
    for class in Class::ALL {
        // Whole patients, in a seeded random order, until the class has its share.
        let mut patients: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
        for s in layout.train.iter().filter(|s| s.label == class) {
            patients.entry(s.patient.as_str()).or_default().push(s);
        }
        let mut groups: Vec<Vec<&Sample>> = patients.into_values().collect();
        groups.shuffle(&mut rng);
        let mut n = 0;
        for g in groups {
            if n >= want[class.index()] {
                break;
            }
            n += g.len();
            picked.extend(g);
        }
    }
    let mut bytes_total = 0;
    for s in &picked {
        let (prepared, _) = pneumoscope::data::image::load_prepared(&s.path, size, 30_000)
            .map_err(|e| anyhow::anyhow!("{}: {e}", s.path.display()))?;
        let dir = out.join("chest_xray").join("train").join(s.label.folder());
        std::fs::create_dir_all(&dir)?;
        let name = s.path.file_name().ok_or_else(|| anyhow::anyhow!("no file name"))?;
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality).encode(
            &prepared.pixels,
            size as u32,
            size as u32,
            image::ExtendedColorType::L8,
        )?;
        bytes_total += jpeg.len();
        std::fs::write(dir.join(name), &jpeg)?;
    }
    let count = |c: Class| picked.iter().filter(|s| s.label == c).count();
    let patients = |c: Class| {
        picked
            .iter()
            .filter(|s| s.label == c)
            .map(|s| s.patient.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    println!(
        "wrote {} images ({:.2} MB) to {}: NORMAL {} ({} patients), PNEUMONIA {} ({} patients), {size} px, quality {quality}, seed {seed}",
        picked.len(),
        bytes_total as f64 / 1e6,
        Path::new(&out).display(),
        count(Class::Normal),
        patients(Class::Normal),
        count(Class::Pneumonia),
        patients(Class::Pneumonia)
    );
    Ok(())
}
