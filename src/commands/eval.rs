//! `pneumoscope eval`: a checkpoint's figures on a data folder's test split — at the checkpoint's operating point
//! with bootstrap intervals, at 0.5, calibration and the confusion matrix (text or JSON).

use std::path::PathBuf;

use clap::Args;

use super::load_config;
use crate::data;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `pneumoscope train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data folder whose test/ split is evaluated (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (for data.root and data.max_image_side).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Test-time augmentation views (1–5) instead of the checkpoint's own (the threshold stays the checkpoint's).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub tta: Option<u8>,
    /// The question asked: `pneumonia` (NORMAL vs PNEUMONIA) or `three-class` (NORMAL / BACTERIAL / VIRAL;
    /// needs a three-class checkpoint). Default: the checkpoint's own task.
    #[arg(long, value_parser = data::Task::parse)]
    pub task: Option<data::Task>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The test images `eval` uses: the folder's test/ split, or, when it has none, the split held out from train/
/// exactly as the checkpoint's run held it out (its recorded seed and fractions).
fn test_split(
    layout: &data::layout::Layout,
    data_cfg: &crate::config::DataConfig,
    recorded: Option<&data::split::SplitSettings>,
    checkpoint: &std::path::Path,
) -> Result<(Vec<data::Sample>, data::split::TestSource)> {
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
pub fn run(args: &EvalArgs) -> Result<i32> {
    use crate::train::backend::Cpu;
    let mut cfg = load_config(args.config.as_deref())?;
    if let Some(d) = &args.data {
        cfg.data.root = d.clone();
    }
    super::init_threads(cfg.threads());
    let device = Default::default();
    let predictor = crate::train::predictor::Predictor::<Cpu>::load(&args.checkpoint, &device)?;
    let meta = predictor.meta();
    let threshold = predictor.threshold;
    // The task asked for: --task, else a config that sets three-class, else the checkpoint's own.
    let task = args
        .task
        .or((cfg.data.task == data::Task::ThreeClass).then_some(data::Task::ThreeClass))
        .unwrap_or(meta.task());
    for (m, _) in &predictor.members {
        m.check_task(task, &args.checkpoint)?;
    }
    let layout = data::layout::Layout::scan(&cfg.data.root)?;
    let (test, test_source) = test_split(&layout, &cfg.data, meta.split.as_ref(), &args.checkpoint)?;
    data::prepare::check_causes(&test, task, &layout.root)?;
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
        task,
    };
    let truth = ds.truth();
    let tta = args.tta.map(usize::from).unwrap_or_else(|| predictor.tta());
    let targets = ds.targets(task);
    let (scores, probs, loss) = predictor.scores_and_probabilities(std::sync::Arc::new(ds), &spec, tta, &device);
    let m = crate::metrics::Metrics::from_scores(&scores, &truth, loss, threshold);
    // The checkpoint's operating point (chosen on validation when it was trained), with 95 % CIs; and 0.5.
    let at_half = crate::metrics::Metrics::from_scores(&scores, &truth, m.loss, 0.5);
    let resamples = cfg.evaluation.bootstrap_resamples;
    let ci = crate::analysis::bootstrap(&scores, &truth, threshold, resamples, cfg.data.seed);
    let ece = crate::analysis::calibration(&scores, &truth, 10).ece;
    let synthetic = data::synth::is_synthetic(&layout.root);
    let three_class = (task == data::Task::ThreeClass)
        .then(|| crate::analysis::three_class::evaluate(&probs, &targets, threshold, resamples, cfg.data.seed));
    if args.json {
        let out = serde_json::json!({
            "checkpoint": args.checkpoint, "model": predictor.kind, "members": predictor.members.iter().map(|(m, _)| m.model).collect::<Vec<_>>(), "data": layout.root, "synthetic_data": synthetic,
            "test_source": test_source, "tta": tta,
            "skipped": skipped.len(), "metrics": m, "ci95": ci, "metrics_at_0_5": at_half, "ece": ece,
            "task": task,
        });
        let mut out = out;
        if let Some(e) = &three_class {
            out["three_class"] = serde_json::to_value(e)?;
        }
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
        if let Some(e) = &three_class {
            outln!("\n{}", e.text());
        } else if predictor.task() == data::Task::ThreeClass {
            outln!("\n(a three-class model asked the two-class question: P(pneumonia) = P(BACTERIAL) + P(VIRAL))");
        }
    }
    Ok(crate::error::exit::OK)
}
