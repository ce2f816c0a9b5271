//! pneumoscope: train, compare and run chest X-ray pneumonia classifiers from the terminal.
//! Layers: data → model → train (an engine that emits events) → front-ends (tui, headless, cli).

/// `outln!` that ignores a closed or broken stdout (a terminal that went away) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `errln!` that ignores a closed or broken stderr instead of panicking.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod headless;
pub mod metrics;
pub mod model;
pub mod signals;
pub mod train;
pub mod tui;

/// `pneumoscope train`: resolve the plan, prepare the data, start the engine and attach a front-end.
pub fn run_train(args: &cli::TrainArgs) -> error::Result<i32> {
    let plan = args.resolve()?;
    let cfg = plan.config;
    init_threads(cfg.threads());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cfg.threads() > cores {
        errln!(
            "warning: training.threads = {} is more than this machine's {cores} cores: training will be slower, \
             not faster (0 = one per core)",
            cfg.threads()
        );
    }
    let say = |m: &str| errln!("{m}");
    let data_root = match &plan.resume {
        Some((_, root)) => root.clone(),
        None if plan.demo_default => data::demo::ensure(&cfg, &say)?,
        None => cfg.data.root.clone(),
    };
    // Fail early, before any folder is created, on a data folder that cannot be used.
    data::layout::resolve_root(&data_root)?;
    let data_root = std::fs::canonicalize(&data_root).unwrap_or(data_root);
    let source = data::demo::DataSource::of(&data_root);
    // The saved config names the folder actually used (the generated one for the demo), so --resume finds it.
    let mut cfg = cfg;
    cfg.data.root = data_root.clone();
    if let (Some(path), None) = (cfg.pretrained(), &plan.resume) {
        if cfg.training.models.iter().any(|m| m == "resnet34") {
            // Refuse a wrong file now rather than after the other models have trained.
            let summary = model::pretrained::check_resnet34(path)
                .map_err(|e| error::ConfigError::new(format!("`--pretrained` / `training.pretrained`: {e}")))?;
            say(&format!(
                "ResNet-34 starts from ImageNet weights {} ({} tensors; the 1000-class head is replaced)",
                path.display(),
                summary.loaded
            ));
        } else {
            say("note: pretrained weights are for resnet34, which is not in the models to train; ignored");
        }
    }
    let device = train::backend::resolve(cfg.device())?;
    let run_dir = match &plan.resume {
        Some((dir, _)) => dir.clone(),
        None => new_run_dir(&cfg.output.runs_dir)?,
    };
    let data_root_for_tui = data_root.clone();
    let cfg_for_tui = cfg.data.clone();
    let setup = train::engine::RunSetup {
        config: cfg,
        data_root,
        source,
        run_dir,
        device,
        resume: plan.resume.is_some(),
        restart_damaged: plan.restart_damaged,
    };
    let models: Vec<model::ModelKind> =
        setup.config.training.models.iter().filter_map(|m| model::ModelKind::parse(m)).collect();
    let log_file = setup.run_dir.join("pneumoscope.log");
    // A new run that fails before any model saved a checkpoint (a data check, say) leaves no folder behind.
    let (new_run, run_path) = (!setup.resume, setup.run_dir.clone());
    let forget = |e: anyhow::Error| {
        if new_run && !run_path.join("checkpoints").exists() {
            let _ = std::fs::remove_dir_all(&run_path);
        }
        e
    };
    let handle = train::engine::spawn(setup);
    let stop_signals = signals::forward_stop_signals(handle.commands.clone())?;
    let report = if plan.no_tui {
        headless::run(handle).map_err(forget)?
    } else {
        // The predict pane browses the run's test split (the test/ folder or the split held out from train/).
        let layout = data::layout::Layout::scan(&data_root_for_tui)?;
        let plan = data::split::plan(&layout, &cfg_for_tui);
        let test_items = plan.test.iter().map(|s| (s.path.clone(), s.label)).collect();
        let outcome = tui::run(handle, &models, test_items, cfg_for_tui.max_image_side, &log_file, &stop_signals)?;
        match outcome.report {
            Some(r) => {
                let r = r.map_err(forget)?;
                outln!("{}", r.table());
                if let Some(caveat) = r.data_caveat() {
                    outln!("{caveat}");
                }
                outln!("results in {}", r.info.run_dir.display());
                if outcome.quit_early && !stop_signals.fired() && !outcome.hung_up {
                    return Ok(error::exit::OK);
                }
                r
            }
            None if outcome.hung_up => {
                return Err(error::Interrupted("the terminal went away; stopped, work saved".into()).into())
            }
            None => return Ok(error::exit::OK),
        }
    };
    if report.stopped || stop_signals.fired() {
        let dir = report.info.run_dir.display();
        return Err(error::Interrupted(format!(
            "stopped; work saved in {dir} (continue with `pneumoscope train --resume {dir}`)"
        ))
        .into());
    }
    let unsaved: Vec<String> = report
        .models
        .iter()
        .filter(|m| !m.unsaved.is_empty())
        .map(|m| format!("{}: {}", m.model, m.unsaved.join("; ")))
        .collect();
    if !unsaved.is_empty() {
        anyhow::bail!(
            "not everything could be saved in {} — {}; report.json describes only what is on disk",
            report.info.run_dir.display(),
            unsaved.join("; ")
        );
    }
    if report.models.iter().all(|m| m.status == train::ModelStatus::Failed) {
        anyhow::bail!("every model failed (see above)");
    }
    Ok(error::exit::OK)
}

/// Sizes rayon's global pool (used by the CPU backend and the data pipeline) once.
pub fn init_threads(n: usize) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
}

/// `runs_dir/<YYYYmmdd-HHMMSS>` (with a suffix when two runs start in the same second).
pub fn new_run_dir(runs_dir: &std::path::Path) -> error::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(runs_dir)
        .with_context(|| format!("cannot create the runs folder {}", runs_dir.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    for i in 1..1000 {
        let name = if i == 1 { stamp.clone() } else { format!("{stamp}-{i}") };
        let dir = runs_dir.join(name);
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    anyhow::bail!("cannot create a run folder under {}", runs_dir.display())
}

/// `pneumoscope predict`: one line (or JSON object) per image; unreadable files are reported, the rest predicted.
pub fn run_predict(args: &cli::PredictArgs) -> error::Result<i32> {
    use train::backend::Cpu;
    let cfg = cli::load_config(None)?;
    let device = Default::default();
    if let Some(out) = args.heatmap.as_ref().filter(|p| p.exists() && !p.is_dir()) {
        return Err(error::ConfigError::new(format!(
            "invalid value for `--heatmap`: {} is a file; give a folder for the overlays",
            out.display()
        ))
        .into());
    }
    let predictor = train::predictor::Predictor::<Cpu>::load(&args.checkpoint, &device)?;
    if args.heatmap.is_some() && predictor.kind == model::ModelKind::Ensemble {
        return Err(error::ConfigError::new(
            "`--heatmap` needs one model's checkpoint: Grad-CAM explains a single network, not an ensemble",
        )
        .into());
    }
    let meta = predictor.meta();
    let (files, problems) = train::infer::collect_images(&args.inputs);
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
                if lossy {
                    v["path_lossy"] = true.into();
                }
                outln!("{v}");
            }
            Ok(p) => outln!("{}\t{}\tP(pneumonia)={:.4}", p.path.display(), p.label, p.p_pneumonia),
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
    } else if meta.data_source == data::demo::DataSource::RealSubset && !args.json {
        errln!("note: this checkpoint was trained on the small real demo subset, not the full data set");
    }
    Ok(if failures > 0 { error::exit::RUNTIME } else { error::exit::OK })
}

/// `predict --heatmap OUT_DIR`: one Grad-CAM overlay PNG per readable image; returns the number of failures.
fn write_heatmaps(
    args: &cli::PredictArgs,
    files: &[std::path::PathBuf],
    out: &std::path::Path,
    max_side: u32,
) -> error::Result<usize> {
    type Ad = burn::backend::Autodiff<train::backend::Cpu>;
    std::fs::create_dir_all(out)
        .map_err(|e| error::ConfigError::new(format!("`--heatmap`: cannot create folder {}: {e}", out.display())))?;
    let device = Default::default();
    let (meta, model) = train::checkpoint::load::<Ad>(&args.checkpoint, &device)?;
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
        let written = train::explain::explain_file(&model, &meta, path, max_side, &device).and_then(|e| {
            let mut png = Vec::new();
            e.overlay.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
            train::checkpoint::write_atomic(&dest, &png)
        });
        match written {
            Ok(()) if !args.json => errln!("heatmap {}", dest.display()),
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                errln!("error: no heatmap for {}: {}", path.display(), error::format_error(&e));
            }
        }
    }
    Ok(failures)
}

/// The test images `eval` uses: the folder's test/ split, or, when it has none, the split held out from train/
/// exactly as the checkpoint's run held it out (its recorded seed and fractions).
fn test_split(
    layout: &data::layout::Layout,
    data_cfg: &config::DataConfig,
    recorded: Option<&data::split::SplitSettings>,
    checkpoint: &std::path::Path,
) -> error::Result<(Vec<data::Sample>, data::split::TestSource)> {
    use data::split::TestSource;
    if !layout.test.is_empty() {
        return Ok((layout.test.clone(), TestSource::Folder));
    }
    match recorded {
        Some(s) if matches!(s.test_source, TestSource::HeldOut { .. }) => {
            let plan = data::split::plan(layout, &s.apply(data_cfg));
            Ok((plan.test, plan.test_source))
        }
        _ => anyhow::bail!(
            "no test images under {}, and checkpoint {} was not trained with a test split held out from this \
             folder's train/: evaluating on train/ would test on images the model learnt from",
            layout.root.join("test").display(),
            checkpoint.display()
        ),
    }
}

/// `pneumoscope eval`: the checkpoint's metrics on a data folder's test split.
pub fn run_eval(args: &cli::EvalArgs) -> error::Result<i32> {
    use train::backend::Cpu;
    let mut cfg = cli::load_config(args.config.as_deref())?;
    if let Some(d) = &args.data {
        cfg.data.root = d.clone();
    }
    init_threads(cfg.threads());
    let device = Default::default();
    let predictor = train::predictor::Predictor::<Cpu>::load(&args.checkpoint, &device)?;
    let meta = predictor.meta();
    let threshold = predictor.threshold;
    let layout = data::layout::Layout::scan(&cfg.data.root)?;
    let (test, test_source) = test_split(&layout, &cfg.data, meta.split.as_ref(), &args.checkpoint)?;
    let (ds, skipped) = data::loader::preload(&test, meta.image_size, cfg.data.max_image_side, &|_, _| {});
    for s in &skipped {
        errln!("warning: skipped {}: {}", s.path.display(), s.error);
    }
    let spec = data::loader::BatchSpec {
        batch_size: 32,
        shuffle: false,
        augment: Default::default(),
        seed: 0,
        mean: meta.mean,
        std: meta.std,
        drop_single: false,
        prefetch: 2,
        balanced: false,
    };
    let truth = ds.truth();
    let tta = args.tta.map(usize::from).unwrap_or_else(|| predictor.tta());
    let (scores, loss) = predictor.scores(std::sync::Arc::new(ds), &spec, tta, &device);
    let m = metrics::Metrics::from_scores(&scores, &truth, loss, threshold);
    // The checkpoint's operating point (chosen on validation when it was trained), with 95 % CIs; and 0.5.
    let at_half = metrics::Metrics::from_scores(&scores, &truth, m.loss, 0.5);
    let resamples = cfg.evaluation.bootstrap_resamples;
    let ci = analysis::bootstrap(&scores, &truth, threshold, resamples, cfg.data.seed);
    let ece = analysis::calibration(&scores, &truth, 10).ece;
    let synthetic = data::synth::is_synthetic(&layout.root);
    if args.json {
        let out = serde_json::json!({
            "checkpoint": args.checkpoint, "model": predictor.kind, "members": predictor.members.iter().map(|(m, _)| m.model).collect::<Vec<_>>(), "data": layout.root, "synthetic_data": synthetic,
            "test_source": test_source, "tta": tta,
            "skipped": skipped.len(), "metrics": m, "ci95": ci, "metrics_at_0_5": at_half, "ece": ece,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let c = m.confusion;
        outln!(
            "{} on {} ({}){} (threshold {:.2})",
            predictor.describe(),
            layout.root.display(),
            test_source.describe(),
            if synthetic { " — SYNTHETIC data" } else { "" },
            m.threshold
        );
        outln!(
            "accuracy {:.1} %  sensitivity {:.1} %  specificity {:.1} %  precision {:.1} %  F1 {:.3}  ROC-AUC {}",
            100.0 * m.accuracy,
            100.0 * m.sensitivity,
            100.0 * m.specificity,
            100.0 * m.precision,
            m.f1,
            m.auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into())
        );
        outln!(
            "95 % CIs ({resamples} bootstrap resamples): accuracy [{:.1}, {:.1}]  sensitivity [{:.1}, {:.1}]  \
             specificity [{:.1}, {:.1}]  AUC {}",
            100.0 * ci.accuracy.lo,
            100.0 * ci.accuracy.hi,
            100.0 * ci.sensitivity.lo,
            100.0 * ci.sensitivity.hi,
            100.0 * ci.specificity.lo,
            100.0 * ci.specificity.hi,
            ci.auc.map(|i| format!("[{:.3}, {:.3}]", i.lo, i.hi)).unwrap_or_else(|| "-".into())
        );
        outln!(
            "at threshold 0.50: accuracy {:.1} %  sensitivity {:.1} %  specificity {:.1} %   ECE {ece:.3}",
            100.0 * at_half.accuracy,
            100.0 * at_half.sensitivity,
            100.0 * at_half.specificity
        );
        outln!("loss {:.4} over {} images ({} skipped)", m.loss, c.total(), skipped.len());
        outln!("\n{:>18} {:>10} {:>10}", "true \\ predicted", "NORMAL", "PNEUMONIA");
        outln!("{:>18} {:>10} {:>10}", "NORMAL", c.tn, c.fp);
        outln!("{:>18} {:>10} {:>10}", "PNEUMONIA", c.fn_, c.tp);
    }
    Ok(error::exit::OK)
}
