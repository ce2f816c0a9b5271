//! `pneumoscope train` (also what `pneumoscope` alone runs): the flags merged over the config, the data folder
//! resolved, the engine started and a front-end attached — the dashboard, or progress lines with `--no-tui`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use super::load_config;
use crate::config::{parse_model, Config, DataConfig, DeviceChoice, IMAGENET_MEAN, IMAGENET_STD};
use crate::error::{ConfigError, Result};
use crate::model::ModelKind;

#[derive(Debug, Args, Default, Clone)]
pub struct TrainArgs {
    /// Print progress lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Config file (default: ./config.toml when present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data folder: the Kaggle chest_xray/ folder or its parent (overrides data.root).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Comma-separated models to train, in order: simple, regularized, resnet34.
    #[arg(long, value_delimiter = ',', value_parser = parse_model)]
    pub models: Option<Vec<ModelKind>>,
    /// Epochs per model.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Square input size in pixels.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// What the models tell apart: pneumonia (NORMAL vs PNEUMONIA) or three-class (NORMAL / BACTERIAL / VIRAL,
    /// from the Kaggle file names). Overrides data.task.
    #[arg(long, value_parser = crate::data::Task::parse)]
    pub task: Option<crate::data::Task>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, value_parser = DeviceChoice::parse)]
    pub device: Option<DeviceChoice>,
    /// Seed of the split, shuffling, augmentation and weight initialisation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate of the one-cycle schedule.
    #[arg(long)]
    pub max_lr: Option<f64>,
    /// Folder that receives the run folder (overrides output.runs_dir).
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// torchvision's ImageNet ResNet-34 weights (resnet34-b627a593.pth or a .safetensors export) to fine-tune
    /// from (overrides training.pretrained; also sets ImageNet normalisation).
    #[arg(long, value_name = "PATH")]
    pub pretrained: Option<PathBuf>,
    /// Continue an interrupted run (runs/<timestamp>) with its own settings: finished models are kept, the
    /// others go on from their last checkpoint (weights, optimiser state, schedule position, history).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: a model whose last checkpoint is damaged (truncated, corrupt) trains again from scratch
    /// instead of failing (the damaged file is kept beside it).
    #[arg(long, requires = "resume")]
    pub restart_damaged: bool,
}

/// What a training run will use after the config file and the command line are merged.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub config: Config,
    /// True when the default data folder is missing and the built-in demo data is used.
    pub demo_default: bool,
    pub no_tui: bool,
    /// The run folder to continue, with the data folder it used.
    pub resume: Option<(PathBuf, PathBuf)>,
    /// With `resume`: retrain models whose last checkpoint is damaged.
    pub restart_damaged: bool,
}

impl TrainArgs {
    /// Applies the flags over the config and validates the result.
    pub fn resolve(&self) -> Result<TrainPlan> {
        if let Some(run) = &self.resume {
            return self.resolve_resume(run);
        }
        let mut cfg = load_config(self.config.as_deref())?;
        if let Some(d) = &self.data {
            cfg.data.root = d.clone();
        }
        if let Some(m) = &self.models {
            cfg.training.models = m.clone();
        }
        if let Some(v) = self.epochs {
            cfg.training.epochs = v;
        }
        if let Some(v) = self.image_size {
            cfg.data.image_size = v;
        }
        if let Some(v) = self.batch_size {
            cfg.training.batch_size = v;
        }
        if let Some(v) = self.task {
            cfg.data.task = v;
        }
        if let Some(v) = self.device {
            cfg.training.device = v;
        }
        if let Some(v) = self.seed {
            cfg.data.seed = v;
        }
        if let Some(v) = self.max_lr {
            cfg.training.max_lr = v;
        }
        if let Some(v) = &self.runs_dir {
            cfg.output.runs_dir = v.clone();
        }
        if let Some(v) = &self.pretrained {
            cfg.training.pretrained = v.clone();
        }
        // The built-in demo data (and its small profile, unless the flags say otherwise) replaces the default data
        // folder when that does not exist; a folder the user named must exist.
        let demo_default =
            self.data.is_none() && cfg.data.root == DataConfig::default().root && !cfg.data.root.exists();
        if !demo_default && !cfg.data.root.exists() {
            let key = if self.data.is_some() { "`--data`" } else { "`data.root`" };
            return Err(ConfigError::new(format!(
                "invalid value for {key}: data folder {} does not exist",
                cfg.data.root.display()
            ))
            .into());
        }
        if demo_default {
            if self.image_size.is_none() {
                cfg.data.image_size = cfg.demo.image_size;
            }
            if self.epochs.is_none() {
                cfg.training.epochs = cfg.demo.epochs;
            }
        }
        cfg.validate().map_err(|e| {
            // Name the flag when a flag set the bad value.
            let msg = e.message.replace("`training.epochs`", "`--epochs` / `training.epochs`");
            let msg = msg.replace("`data.image_size`", "`--image-size` / `data.image_size`");
            let msg = msg.replace("`training.batch_size`", "`--batch-size` / `training.batch_size`");
            let msg = msg.replace("`training.max_lr`", "`--max-lr` / `training.max_lr`");
            let msg = msg.replace("`training.models`", "`--models` / `training.models`");
            ConfigError::new(msg)
        })?;
        if let Some(p) = cfg.pretrained() {
            if !p.is_file() {
                return Err(ConfigError::new(format!(
                    "invalid value for `--pretrained` / `training.pretrained`: {} is not a file",
                    p.display()
                ))
                .into());
            }
            // The ImageNet backbone expects ImageNet's normalisation.
            if cfg.data.mean != IMAGENET_MEAN || cfg.data.std != IMAGENET_STD {
                errln!("note: pretrained weights given: data.mean/std set to ImageNet's statistics");
                cfg.data.mean = IMAGENET_MEAN;
                cfg.data.std = IMAGENET_STD;
            }
        }
        let no_tui = self.no_tui || !std::io::stdout().is_terminal();
        Ok(TrainPlan { config: cfg, demo_default, no_tui, resume: None, restart_damaged: false })
    }

    /// `--resume RUN_DIR`: the run's saved config and data folder; other settings cannot change mid-run.
    fn resolve_resume(&self, run: &Path) -> Result<TrainPlan> {
        let given: Vec<&str> = [
            ("--config", self.config.is_some()),
            ("--data", self.data.is_some()),
            ("--models", self.models.is_some()),
            ("--epochs", self.epochs.is_some()),
            ("--image-size", self.image_size.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--task", self.task.is_some()),
            ("--seed", self.seed.is_some()),
            ("--max-lr", self.max_lr.is_some()),
            ("--runs-dir", self.runs_dir.is_some()),
            ("--pretrained", self.pretrained.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if !given.is_empty() {
            return Err(ConfigError::new(format!(
                "`--resume` continues a run with its own settings; drop {}",
                given.join(", ")
            ))
            .into());
        }
        let cfg_path = run.join("config.toml");
        if !cfg_path.is_file() {
            return Err(ConfigError::new(format!(
                "invalid value for `--resume`: {} is not a pneumoscope run folder (no config.toml)",
                run.display()
            ))
            .into());
        }
        let mut cfg = Config::load(&cfg_path)?;
        if let Some(d) = self.device {
            cfg.training.device = d;
        }
        let data_root = cfg.data.root.clone();
        let no_tui = self.no_tui || !std::io::stdout().is_terminal();
        Ok(TrainPlan {
            config: cfg,
            demo_default: false,
            no_tui,
            resume: Some((run.to_path_buf(), data_root)),
            restart_damaged: self.restart_damaged,
        })
    }
}

/// `pneumoscope train`: resolve the plan, prepare the data, start the engine and attach a front-end.
pub fn run(args: &TrainArgs) -> Result<i32> {
    let plan = args.resolve()?;
    let cfg = plan.config;
    super::init_threads(cfg.threads());
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
        None if plan.demo_default => crate::data::demo::ensure(&cfg, &say)?,
        None => cfg.data.root.clone(),
    };
    // Fail early, before any folder is created, on a data folder that cannot be used.
    crate::data::layout::resolve_root(&data_root)?;
    let data_root = std::fs::canonicalize(&data_root).unwrap_or(data_root);
    let source = crate::data::demo::DataSource::of(&data_root);
    // The saved config names the folder actually used (the generated one for the demo), so --resume finds it.
    let mut cfg = cfg;
    cfg.data.root = data_root.clone();
    if let (Some(path), None) = (cfg.pretrained(), &plan.resume) {
        if cfg.training.models.contains(&crate::model::ModelKind::Resnet34) {
            // Refuse a wrong file now rather than after the other models have trained.
            let summary = crate::model::pretrained::check_resnet34(path)
                .map_err(|e| crate::error::ConfigError::new(format!("`--pretrained` / `training.pretrained`: {e}")))?;
            say(&format!(
                "ResNet-34 starts from ImageNet weights {} ({} tensors; the 1000-class head is replaced)",
                path.display(),
                summary.loaded
            ));
        } else {
            say("note: pretrained weights are for resnet34, which is not in the models to train; ignored");
        }
    }
    let device = crate::train::backend::resolve(cfg.training.device)?;
    let run_dir = match &plan.resume {
        Some((dir, _)) => dir.clone(),
        None => new_run_dir(&cfg.output.runs_dir)?,
    };
    let data_root_for_tui = data_root.clone();
    let cfg_for_tui = cfg.data.clone();
    let setup = crate::train::engine::RunSetup {
        config: cfg,
        data_root,
        source,
        run_dir,
        device,
        resume: plan.resume.is_some(),
        restart_damaged: plan.restart_damaged,
    };
    let models = setup.config.training.models.clone();
    let log_file = setup.run_dir.join("pneumoscope.log");
    // A new run that fails before any model saved a checkpoint (a data check, say) leaves no folder behind.
    let (new_run, run_path) = (!setup.resume, setup.run_dir.clone());
    let forget = |e: anyhow::Error| {
        if new_run && !run_path.join("checkpoints").exists() {
            let _ = std::fs::remove_dir_all(&run_path);
        }
        e
    };
    let handle = crate::train::engine::spawn(setup);
    let stop_signals = crate::signals::forward_stop_signals(handle.commands.clone())?;
    let report = if plan.no_tui {
        crate::headless::run(handle).map_err(forget)?
    } else {
        // The predict pane browses the run's test split (the test/ folder or the split held out from train/).
        let layout = crate::data::layout::Layout::scan(&data_root_for_tui)?;
        let plan = crate::data::split::plan(&layout, &cfg_for_tui);
        let test_items = plan.test.iter().map(|s| (s.path.clone(), s.label)).collect();
        let outcome =
            crate::tui::run(handle, &models, test_items, cfg_for_tui.max_image_side, &log_file, &stop_signals)?;
        match outcome.report {
            Some(r) => {
                let r = r.map_err(forget)?;
                outln!("{}", r.table());
                if let Some(caveat) = r.data_caveat() {
                    outln!("{caveat}");
                }
                outln!("results in {}", r.info.run_dir.display());
                if outcome.quit_early && !stop_signals.fired() && !outcome.hung_up {
                    return Ok(crate::error::exit::OK);
                }
                r
            }
            None if outcome.hung_up => {
                return Err(crate::error::Interrupted("the terminal went away; stopped, work saved".into()).into())
            }
            None => return Ok(crate::error::exit::OK),
        }
    };
    if report.stopped || stop_signals.fired() {
        let dir = report.info.run_dir.display();
        return Err(crate::error::Interrupted(format!(
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
    if report.models.iter().all(|m| m.status == crate::train::ModelStatus::Failed) {
        anyhow::bail!("every model failed (see above)");
    }
    Ok(crate::error::exit::OK)
}

/// `runs_dir/<YYYYmmdd-HHMMSS>` (with a suffix when two runs start in the same second).
pub fn new_run_dir(runs_dir: &std::path::Path) -> Result<std::path::PathBuf> {
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
