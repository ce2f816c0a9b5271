//! How a checkpoint's test ROC-AUC holds up when the test films' intensities shift (as between hospitals or
//! acquisition settings): the checkpoint's own test split (the test/ folder, or the split held out from train/ as
//! its run held it out) scored as it is and with global contrast and brightness changes. A measurement aid for
//! docs/evaluation.md, not a test:
//! `cargo run --release --example shift_stress -- DATA CHECKPOINT...` (one line per checkpoint).
use std::sync::Arc;

use pneumoscope::data::augment::Draw;
use pneumoscope::data::layout::Layout;
use pneumoscope::data::loader::{preload, BatchSpec};
use pneumoscope::train::backend::Cpu;
use pneumoscope::train::predictor::Predictor;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (data, ckpts) = args.split_first().ok_or_else(|| anyhow::anyhow!("usage: shift_stress DATA CHECKPOINT..."))?;
    let device = Default::default();
    let views = [
        ("as is", Draw::IDENTITY),
        ("contrast 0.7", Draw { contrast: 0.7, ..Draw::IDENTITY }),
        ("contrast 1.3", Draw { contrast: 1.3, ..Draw::IDENTITY }),
        ("brightness 0.8", Draw { brightness: 0.8, ..Draw::IDENTITY }),
        ("brightness 1.2", Draw { brightness: 1.2, ..Draw::IDENTITY }),
    ];
    println!("checkpoint\t{}", views.iter().map(|v| v.0).collect::<Vec<_>>().join("\t"));
    for ckpt in ckpts {
        let predictor = Predictor::<Cpu>::load(ckpt.as_ref(), &device)?;
        let meta = predictor.meta().clone();
        let layout = Layout::scan(data.as_ref())?;
        let settings = meta.split.ok_or_else(|| anyhow::anyhow!("{ckpt} records no split"))?;
        let plan = pneumoscope::data::split::plan(&layout, &settings.apply(&Default::default()));
        let test = if layout.test.is_empty() { plan.test } else { layout.test.clone() };
        let (ds, _) = preload(&test, meta.image_size, 30_000, &|_, _| {});
        let truth = ds.truth();
        let spec = BatchSpec {
            batch_size: 32,
            shuffle: false,
            augment: Default::default(),
            seed: 0,
            mean: meta.mean,
            std: meta.std,
            drop_single: false,
            prefetch: 2,
            balanced: false,
            task: Default::default(),
        };
        let aucs: Vec<String> = views
            .iter()
            .map(|(_, v)| {
                let (scores, _) = predictor.scores(Arc::new(ds.viewed(v)), &spec, 1, &device);
                format!("{:.4}", pneumoscope::metrics::roc_auc(&scores, &truth).unwrap_or(f64::NAN))
            })
            .collect();
        println!("{ckpt}\t{}", aucs.join("\t"));
    }
    Ok(())
}
