//! The run configuration: serde structs with their defaults, loading from TOML and validation.
//! Must not depend on data, train or any front-end, and on `model` only for the names of the architectures
//! (`ModelKind`); everything else reads these structs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};
use crate::model::ModelKind;

mod validate;

/// The whole configuration, as in `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub demo: DemoConfig,
    pub evaluation: EvaluationConfig,
    pub training: TrainingConfig,
    pub output: OutputConfig,
}

/// How the training data is split into train and validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMode {
    /// All images of one patient (`personNNN_`, `IM-NNNN-`) land on the same side.
    Patient,
    /// Images are shuffled one by one (the original notebook; leaks patients across the split).
    Image,
}

/// Where the dataset comes from and how images are prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Folder holding `train/` and `test/` (the Kaggle `chest_xray/` folder) or its parent.
    /// When it does not exist, the synthetic demo data set is generated and used instead.
    pub root: PathBuf,
    /// Side of the square images fed to the models, in pixels.
    pub image_size: usize,
    /// `patient` (default, no patient on both sides) or `image` (the original notebook).
    pub split: SplitMode,
    /// Share of the merged train+val images held out for validation.
    pub val_fraction: f64,
    /// Share of train/ held out by patient as the test split when the data folder has no `test/`.
    pub test_fraction: f64,
    /// Seed of the split, the shuffling and the augmentation.
    pub seed: u64,
    /// Per-channel normalisation mean (RGB); ImageNet's by default.
    pub mean: [f32; 3],
    /// Per-channel normalisation standard deviation (RGB); ImageNet's by default.
    pub std: [f32; 3],
    /// Random rotation of training images, uniformly in ±this many degrees (0 disables it).
    pub rotation_degrees: f32,
    /// Random zoom of training images by a factor in [1 − scale, 1 + scale] (0 disables it).
    pub scale: f32,
    /// Random shift of training images by up to this share of the side, each way (0 disables it).
    pub translate: f32,
    /// Random brightness factor in [1 − brightness, 1 + brightness] (0 disables it).
    pub brightness: f32,
    /// Random contrast factor in [1 − contrast, 1 + contrast], about the image's mean (0 disables it).
    pub contrast: f32,
    /// Largest image side accepted from disk; bigger files are reported and skipped.
    pub max_image_side: u32,
    /// `pneumonia` (NORMAL vs PNEUMONIA, default) or `three-class` (NORMAL / BACTERIAL / VIRAL, from the
    /// Kaggle file names).
    pub task: Task,
}

/// What the models are trained to tell apart: NORMAL vs PNEUMONIA (the default), or Kermany et al.'s second
/// task, NORMAL / BACTERIAL / VIRAL (`data.task = "three-class"`). In both, P(pneumonia) is 1 − P(NORMAL), so
/// the two-class figures, thresholds and ensemble apply to either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    #[default]
    Pneumonia,
    ThreeClass,
}

impl Task {
    /// The two-class task's classes (the Kaggle folder names; `data::Class::NAMES`).
    pub const TWO_CLASS_NAMES: [&'static str; 2] = ["NORMAL", "PNEUMONIA"];
    pub const THREE_CLASS_NAMES: [&'static str; 3] = ["NORMAL", "BACTERIAL", "VIRAL"];

    /// The class names in the order of the model's logits (also what checkpoints record).
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            Task::Pneumonia => &Self::TWO_CLASS_NAMES,
            Task::ThreeClass => &Self::THREE_CLASS_NAMES,
        }
    }
    pub fn classes(self) -> usize {
        self.class_names().len()
    }
    /// The task whose class names these are (a checkpoint's header), or None.
    pub fn of_class_names<S: AsRef<str>>(names: &[S]) -> Option<Task> {
        [Task::Pneumonia, Task::ThreeClass]
            .into_iter()
            .find(|t| t.classes() == names.len() && t.class_names().iter().zip(names).all(|(a, b)| *a == b.as_ref()))
    }
    /// From its name (`pneumonia`, `three-class`), for the command line.
    pub fn parse(s: &str) -> std::result::Result<Task, String> {
        match s {
            "pneumonia" => Ok(Task::Pneumonia),
            "three-class" => Ok(Task::ThreeClass),
            _ => Err(format!("`{s}` (allowed: pneumonia, three-class)")),
        }
    }

    /// As the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Pneumonia => "pneumonia",
            Task::ThreeClass => "three-class",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which built-in data set `pneumoscope` trains on when the default data folder does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoSource {
    /// The small real subset of the Kaggle training radiographs built into the binary.
    Real,
    /// The SYNTHETIC generator (`train_images`, `test_images`, `seed`).
    Synthetic,
}

/// The data set used when `data.root` is the default and does not exist, and the smaller training profile
/// that trains all three models on it in minutes on a laptop CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// `real` (the built-in subset of Kaggle training films) or `synthetic`.
    pub source: DemoSource,
    /// Number of synthetic training images (train/ + val/ together).
    pub train_images: usize,
    /// Number of synthetic test images.
    pub test_images: usize,
    /// Seed of the generator: the same seed gives byte-identical files.
    pub seed: u64,
    /// Image size used for the demo data (replaces `data.image_size` unless given on the command line).
    pub image_size: usize,
    /// Epochs used for the demo data (replaces `training.epochs` unless given on the command line).
    pub epochs: usize,
}

/// Optimiser and schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
}

/// How the loss weighs the classes. Written `"none"`, `"balanced"`, or one weight per class of the task:
/// `[normal, pneumonia]` or `[normal, bacterial, viral]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ClassWeightsText", into = "ClassWeightsText")]
pub enum ClassWeights {
    /// Equal weights.
    None,
    /// Inverse class frequency in the training split.
    Balanced,
    /// Explicit weights, one per class of `data.task`.
    Explicit(Vec<f32>),
}

/// `ClassWeights` as TOML writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum ClassWeightsText {
    Named(String),
    Explicit(Vec<f32>),
}

impl TryFrom<ClassWeightsText> for ClassWeights {
    type Error = String;
    fn try_from(t: ClassWeightsText) -> std::result::Result<Self, String> {
        match t {
            ClassWeightsText::Named(n) if n == "none" => Ok(Self::None),
            ClassWeightsText::Named(n) if n == "balanced" => Ok(Self::Balanced),
            ClassWeightsText::Named(n) => {
                Err(format!("`{n}` (allowed: \"none\", \"balanced\" or one weight per class: [w_normal, w_pneumonia])"))
            }
            ClassWeightsText::Explicit(w) => Ok(Self::Explicit(w)),
        }
    }
}

impl From<ClassWeights> for ClassWeightsText {
    fn from(w: ClassWeights) -> Self {
        match w {
            ClassWeights::None => Self::Named("none".into()),
            ClassWeights::Balanced => Self::Named("balanced".into()),
            ClassWeights::Explicit(w) => Self::Explicit(w),
        }
    }
}

/// How gradients are clipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipMode {
    /// Clamp every gradient element to ±`grad_clip` (PyTorch's `clip_grad_value_`, the original recipe).
    Value,
    /// Rescale each parameter's gradient so its L2 norm is at most `grad_clip`.
    Norm,
}

/// How the decision threshold is chosen on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatingPoint {
    /// Youden's J: maximise sensitivity + specificity − 1.
    Youden,
    /// The best specificity whose sensitivity reaches `target_sensitivity`.
    Sensitivity,
    /// Keep 0.5.
    Fixed,
}

/// How batches are drawn from the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Every image once per epoch, shuffled.
    Shuffle,
    /// Each class drawn equally often (with replacement), as many draws per epoch as images.
    Balanced,
}

/// Test-time evaluation: operating point, confidence intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    pub operating_point: OperatingPoint,
    pub target_sensitivity: f64,
    /// Test-time augmentation: P(pneumonia) averaged over this many fixed views of each image (the image, then
    /// ±5 % zoom and ±4 % shifts); 1 = the image alone.
    pub tta: usize,
    /// Bootstrap resamples for the 95 % confidence intervals.
    pub bootstrap_resamples: usize,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self { operating_point: OperatingPoint::Youden, target_sensitivity: 0.95, tta: 1, bootstrap_resamples: 1000 }
    }
}

/// Training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Models to train, in order: any of `simple`, `regularized`, `resnet34`.
    #[serde(deserialize_with = "model_names")]
    pub models: Vec<ModelKind>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate of the one-cycle schedule.
    pub max_lr: f64,
    /// Share of the steps spent warming up to `max_lr`.
    pub warmup_fraction: f64,
    /// L2 weight decay added to the gradient (as PyTorch's `Adam(weight_decay=…)`).
    pub weight_decay: f64,
    /// Gradient clipping threshold (0 disables clipping).
    pub grad_clip: f64,
    pub grad_clip_mode: ClipMode,
    /// `"none"`, `"balanced"` or `[normal, pneumonia]`.
    pub class_weights: ClassWeights,
    /// `shuffle` (every image once per epoch) or `balanced` (classes drawn equally often).
    pub sampler: Sampler,
    /// Label smoothing ε of the training loss (0: none).
    pub label_smoothing: f64,
    /// Dropout probability before the classifier head.
    pub dropout: f64,
    /// torchvision's ImageNet ResNet-34 weights (`.pth` or `.safetensors`); empty: ResNet-34 from scratch.
    pub pretrained: PathBuf,
    /// With pretrained weights: epochs that train only the new head before the backbone is unfrozen.
    pub freeze_epochs: usize,
    /// With pretrained weights: the backbone's learning rate as a fraction of the head's, once unfrozen.
    pub backbone_lr_factor: f64,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when built with it and a GPU answers, else CPU).
    pub device: DeviceChoice,
    /// Worker threads for the CPU backend and the data pipeline (0: one per core).
    pub threads: usize,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Each training run writes `runs_dir/<timestamp>/`.
    pub runs_dir: PathBuf,
    /// Where generated data sets live (empty: `$XDG_CACHE_HOME/pneumoscope` or `~/.cache/pneumoscope`).
    pub cache_dir: PathBuf,
}

/// The architectures' names, for messages: "simple, regularized, resnet34".
pub fn model_names_list() -> String {
    ModelKind::ALL.map(|k| k.name()).join(", ")
}

/// A model named in `training.models` or `--models`: one of the three architectures.
pub fn parse_model(name: &str) -> std::result::Result<ModelKind, String> {
    ModelKind::parse(name.trim())
        .ok_or_else(|| format!("`{}` is not a model (allowed: {})", name.trim(), model_names_list()))
}

fn model_names<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<ModelKind>, D::Error> {
    Vec::<String>::deserialize(d)?.iter().map(|n| parse_model(n).map_err(serde::de::Error::custom)).collect()
}
/// More worker threads than this is a typo, not a machine (and rayon would try to start them all).
pub const MAX_THREADS: usize = 1024;
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("chest_xray"),
            image_size: 128,
            split: SplitMode::Patient,
            val_fraction: 0.2,
            test_fraction: 0.15,
            seed: 42,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            rotation_degrees: 10.0,
            scale: 0.1,
            translate: 0.05,
            brightness: 0.2,
            contrast: 0.2,
            max_image_side: 12_000,
            task: Task::Pneumonia,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { source: DemoSource::Real, train_images: 1000, test_images: 250, seed: 2018, image_size: 64, epochs: 6 }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            models: ModelKind::ALL.to_vec(),
            epochs: 5,
            batch_size: 16,
            optimizer: OptimizerKind::Adam,
            max_lr: 1e-3,
            warmup_fraction: 0.3,
            weight_decay: 1e-4,
            grad_clip: 0.1,
            grad_clip_mode: ClipMode::Value,
            class_weights: ClassWeights::None,
            sampler: Sampler::Shuffle,
            label_smoothing: 0.0,
            dropout: 0.5,
            pretrained: PathBuf::new(),
            freeze_epochs: 1,
            backbone_lr_factor: 0.1,
            device: DeviceChoice::Cpu,
            threads: 0,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { runs_dir: PathBuf::from("runs"), cache_dir: PathBuf::new() }
    }
}

/// The device a run asks for (`training.device`, `--device`): written `cpu`, `cuda`, `cuda:N` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
    Auto,
}

impl DeviceChoice {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!("`{s}` is not a device; allowed: cpu, cuda, cuda:N, auto")),
            },
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl Config {
    /// Reads and validates a TOML file. Unknown keys and invalid values are errors naming the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError::new(format!("{}: {}", path.display(), e.message)).into())
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> std::result::Result<Self, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::new(validate::describe_toml_error(&e, text)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The cache folder for generated data.
    pub fn cache_dir(&self) -> PathBuf {
        if !self.output.cache_dir.as_os_str().is_empty() {
            return self.output.cache_dir.clone();
        }
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("pneumoscope");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h).join(".cache").join("pneumoscope");
        }
        PathBuf::from(".cache").join("pneumoscope")
    }

    /// The ImageNet weights file for ResNet-34, when one is configured.
    pub fn pretrained(&self) -> Option<&Path> {
        let p = self.training.pretrained.as_path();
        (!p.as_os_str().is_empty()).then_some(p)
    }

    /// Number of worker threads to use (resolves 0 to the number of cores).
    pub fn threads(&self) -> usize {
        if self.training.threads > 0 {
            self.training.threads
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests;
