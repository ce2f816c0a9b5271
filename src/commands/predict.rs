//! `pneumoscope predict`: P(pneumonia) and a label per image file (text or JSON lines), with Grad-CAM overlays
//! on request. Unreadable files are reported and the rest predicted; the exit status says whether all were.

use std::path::PathBuf;

use clap::Args;

use super::load_config;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint written by `pneumoscope train` (runs/<run>/checkpoints/<model>-best.ckpt).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a Grad-CAM overlay per image (<name>-gradcam.png: where the model saw pneumonia) into this folder.
    #[arg(long, value_name = "OUT_DIR")]
    pub heatmap: Option<PathBuf>,
    /// Images (.jpeg, .jpg, .png, .dcm) or folders holding them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// `pneumoscope predict`: one line (or JSON object) per image; unreadable files are reported, the rest predicted.
pub fn run(args: &PredictArgs) -> Result<i32> {
    use crate::train::backend::Cpu;
    let cfg = load_config(None)?;
    let device = Default::default();
    if let Some(out) = args.heatmap.as_ref().filter(|p| p.exists() && !p.is_dir()) {
        return Err(crate::error::ConfigError::new(format!(
            "invalid value for `--heatmap`: {} is a file; give a folder for the overlays",
            out.display()
        ))
        .into());
    }
    let predictor = crate::train::predictor::Predictor::<Cpu>::load(&args.checkpoint, &device)?;
    if args.heatmap.is_some() && predictor.kind == crate::model::ModelKind::Ensemble {
        return Err(crate::error::ConfigError::new(
            "`--heatmap` needs one model's checkpoint: Grad-CAM explains a single network, not an ensemble",
        )
        .into());
    }
    let meta = predictor.meta();
    let (files, problems) = crate::train::infer::collect_images(&args.inputs);
    let results = predictor.predict_files(&files, cfg.data.max_image_side, &device);
    let mut failures = problems.len();
    for (path, why) in &problems {
        errln!("warning: {}: {why}", path.display());
    }
    for r in results {
        match r {
            Ok(p) if args.json => {
                // A file name that is not UTF-8 is written lossily (JSON strings are UTF-8) and said so.
                let name = p.path.to_string_lossy();
                let lossy = p.path.to_str().is_none();
                if lossy {
                    errln!("warning: {name}: the file name is not UTF-8; written lossily in the JSON");
                }
                let mut v = serde_json::json!({
                    "path": name, "label": p.label, "p_pneumonia": p.p_pneumonia, "threshold": p.threshold,
                });
                if !p.class_probabilities.is_empty() {
                    v["probabilities"] = p
                        .class_probabilities
                        .iter()
                        .map(|(c, q)| (c.clone(), (*q).into()))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                if lossy {
                    v["path_lossy"] = true.into();
                }
                outln!("{v}");
            }
            Ok(p) => {
                let per_class: String =
                    p.class_probabilities.iter().map(|(c, q)| format!("\tP({})={q:.4}", c.to_lowercase())).collect();
                outln!("{}\t{}\tP(pneumonia)={:.4}{per_class}", p.path.display(), p.label, p.p_pneumonia)
            }
            Err((path, e)) => {
                failures += 1;
                if args.json {
                    outln!("{}", serde_json::json!({"path": path.to_string_lossy(), "error": e}));
                } else {
                    errln!("error: cannot predict {}: {e}", path.display());
                }
            }
        }
    }
    if files.is_empty() {
        anyhow::bail!(
            "no image files found in {}",
            args.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(out) = &args.heatmap {
        failures += write_heatmaps(args, &files, out, cfg.data.max_image_side)?;
    }
    if meta.synthetic_data && !args.json {
        errln!("note: this checkpoint was trained on SYNTHETIC data");
    } else if meta.data_source == crate::data::demo::DataSource::RealSubset && !args.json {
        errln!("note: this checkpoint was trained on the small real demo subset, not the full data set");
    }
    Ok(if failures > 0 { crate::error::exit::RUNTIME } else { crate::error::exit::OK })
}

/// `predict --heatmap OUT_DIR`: one Grad-CAM overlay PNG per readable image; returns the number of failures.
fn write_heatmaps(
    args: &PredictArgs,
    files: &[std::path::PathBuf],
    out: &std::path::Path,
    max_side: u32,
) -> Result<usize> {
    type Ad = burn::backend::Autodiff<crate::train::backend::Cpu>;
    std::fs::create_dir_all(out).map_err(|e| {
        crate::error::ConfigError::new(format!("`--heatmap`: cannot create folder {}: {e}", out.display()))
    })?;
    let device = Default::default();
    let (meta, model) = crate::train::checkpoint::load::<Ad>(&args.checkpoint, &device)?;
    let mut failures = 0;
    let mut used = std::collections::HashSet::new();
    for path in files {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        // Two inputs with one name (NORMAL/x.jpeg, PNEUMONIA/x.jpeg) get distinct outputs.
        let mut name = format!("{stem}-gradcam.png");
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{stem}-{k}-gradcam.png");
            k += 1;
        }
        let dest = out.join(&name);
        let written = crate::train::explain::explain_file(&model, &meta, path, max_side, &device).and_then(|e| {
            let mut png = Vec::new();
            e.overlay.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
            crate::train::checkpoint::write_atomic(&dest, &png)
        });
        match written {
            Ok(()) if !args.json => errln!("heatmap {}", dest.display()),
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                errln!("error: no heatmap for {}: {}", path.display(), crate::error::format_error(&e));
            }
        }
    }
    Ok(failures)
}
