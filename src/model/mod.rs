//! The three classifiers (one file each) behind one `Model` enum, and the names that identify them.
//! Must not depend on data loading, train or front-ends; inputs are N×3×S×S tensors, outputs N×2 logits.

pub mod export;
pub mod gradcam;
pub mod pretrained;
pub mod regularized_cnn;
pub mod resnet34;
pub mod simple_cnn;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// What the models need of a backend: the project's kernels (kernels/), with every backend's own operations as
/// defaults.
pub use pneumoscope_kernels::Kernels;

pub use regularized_cnn::RegularizedCnn;
pub use resnet34::ResNet34;
pub use simple_cnn::SimpleCnn;

/// Which architecture — or the ensemble of a run's trained models (mean P(pneumonia)), which has no network of
/// its own: it is compared, evaluated and used for prediction beside them, never built or trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Simple,
    Regularized,
    Resnet34,
    Ensemble,
}

impl ModelKind {
    /// The three architectures (what `parse` accepts and `Model::new` builds).
    pub const ALL: [ModelKind; 3] = [ModelKind::Simple, ModelKind::Regularized, ModelKind::Resnet34];

    /// True for the three architectures, false for the ensemble.
    pub fn is_network(self) -> bool {
        self != Self::Ensemble
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "simple" => Some(Self::Simple),
            "regularized" => Some(Self::Regularized),
            "resnet34" => Some(Self::Resnet34),
            _ => None,
        }
    }
    /// The config/CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Regularized => "regularized",
            Self::Resnet34 => "resnet34",
            Self::Ensemble => "ensemble",
        }
    }
    /// A display title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Simple => "Simple CNN",
            Self::Regularized => "Regularized CNN",
            Self::Resnet34 => "ResNet-34",
            Self::Ensemble => "Ensemble",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a model's weights started. Written as text in checkpoints, reports and events ("scratch",
/// "imagenet (resnet34-b627a593.pth)", "mean of simple + regularized"), read back through [`Init::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Init {
    /// Freshly initialised weights.
    Scratch,
    /// torchvision's ImageNet weights, from the file of this name.
    ImageNet(String),
    /// The ensemble: no weights of its own, the mean of these models' P(pneumonia) (none named: not yet known).
    Mean(Vec<ModelKind>),
}

impl Init {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if s == "scratch" {
            return Ok(Self::Scratch);
        }
        if let Some(file) = s.strip_prefix("imagenet (").and_then(|r| r.strip_suffix(')')) {
            return Ok(Self::ImageNet(file.to_string()));
        }
        if s == "mean of the models" {
            return Ok(Self::Mean(Vec::new()));
        }
        if let Some(names) = s.strip_prefix("mean of ") {
            let members: Option<Vec<ModelKind>> = names.split(" + ").map(ModelKind::parse).collect();
            if let Some(m) = members.filter(|m| !m.is_empty()) {
                return Ok(Self::Mean(m));
            }
        }
        Err(format!("`{s}` is not a weight source (scratch, imagenet (FILE), mean of MODEL + MODEL…)"))
    }

    /// A short label for narrow tables: "scratch", "ImageNet", "mean".
    pub fn short(&self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::ImageNet(_) => "ImageNet",
            Self::Mean(_) => "mean",
        }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scratch => f.write_str("scratch"),
            Self::ImageNet(file) => write!(f, "imagenet ({file})"),
            Self::Mean(m) if m.is_empty() => f.write_str("mean of the models"),
            Self::Mean(m) => {
                write!(f, "mean of {}", m.iter().map(|k| k.name()).collect::<Vec<_>>().join(" + "))
            }
        }
    }
}

impl From<Init> for String {
    fn from(i: Init) -> String {
        i.to_string()
    }
}

impl TryFrom<String> for Init {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Init::parse(&s)
    }
}

/// Any of the three classifiers.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Model<B: Backend> {
    Simple(SimpleCnn<B>),
    Regularized(RegularizedCnn<B>),
    Resnet34(ResNet34<B>),
}

impl<B: Backend> Model<B> {
    /// A freshly initialised model (`dropout` is used by the regularized CNN and ResNet-34 heads). `kind` is one
    /// of [`ModelKind::ALL`]: names are parsed by [`ModelKind::parse`] and checkpoint headers checked before
    /// they get here.
    pub fn new(kind: ModelKind, dropout: f64, device: &B::Device) -> Self {
        Self::with_classes(kind, 2, dropout, device)
    }

    /// The same with a head of `classes` outputs (3 for the three-class task).
    pub fn with_classes(kind: ModelKind, classes: usize, dropout: f64, device: &B::Device) -> Self {
        let model = match kind {
            ModelKind::Simple => Model::Simple(SimpleCnn::new(classes, device)),
            ModelKind::Regularized => Model::Regularized(RegularizedCnn::new(classes, dropout, device)),
            ModelKind::Resnet34 => Model::Resnet34(ResNet34::new(classes, dropout, device)),
            ModelKind::Ensemble => unreachable!("the ensemble has no network of its own"),
        };
        materialize(&model);
        model
    }

    /// Outputs of the classifier head (2 or 3).
    pub fn classes(&self) -> usize {
        let fc = match self {
            Model::Simple(m) => &m.fc,
            Model::Regularized(m) => &m.fc2,
            Model::Resnet34(m) => &m.fc,
        };
        fc.weight.dims()[1]
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Model::Simple(_) => ModelKind::Simple,
            Model::Regularized(_) => ModelKind::Regularized,
            Model::Resnet34(_) => ModelKind::Resnet34,
        }
    }

    /// The parameters of the classifier head (the layer a pretrained backbone's new head is).
    pub fn head_param_ids(&self) -> Vec<burn::module::ParamId> {
        let fc = match self {
            Model::Simple(m) => &m.fc,
            Model::Regularized(m) => &m.fc2,
            Model::Resnet34(m) => &m.fc,
        };
        std::iter::once(fc.weight.id).chain(fc.bias.as_ref().map(|b| b.id)).collect()
    }

    /// The same model with its dropout switched off (for gradients through the head at inference, Grad-CAM).
    pub fn without_dropout(self) -> Self {
        let off = || burn::nn::DropoutConfig::new(0.0).init();
        match self {
            Model::Simple(m) => Model::Simple(m),
            Model::Regularized(m) => Model::Regularized(RegularizedCnn { dropout: off(), ..m }),
            Model::Resnet34(m) => Model::Resnet34(ResNet34 { dropout: off(), ..m }),
        }
    }
}

/// The passes through the convolutional layers: BatchNorm in training mode needs [`Kernels`].
impl<B: Kernels> Model<B> {
    /// Features → logits.
    pub fn head(&self, features: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Model::Simple(m) => m.head(features),
            Model::Regularized(m) => m.head(features),
            Model::Resnet34(m) => m.head(features),
        }
    }

    /// The last convolutional stage's activations (the layer Grad-CAM explains).
    pub fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Model::Simple(m) => m.features(images),
            Model::Regularized(m) => m.features(images),
            Model::Resnet34(m) => m.features(images),
        }
    }

    /// N×3×S×S images → N×K logits in the order of the task's classes (NORMAL, PNEUMONIA or NORMAL,
    /// BACTERIAL, VIRAL).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Model::Simple(m) => m.forward(images),
            Model::Regularized(m) => m.forward(images),
            Model::Resnet34(m) => m.forward(images),
        }
    }
}

/// Smallest input side each model accepts (five or more halvings need at least this much).
pub const MIN_IMAGE_SIZE: usize = 16;

/// Every float tensor of a module with its dotted path (`layer1.0.conv1.weight`) and shape, in visit order.
/// BatchNorm running statistics are included (they are state, not trainable parameters).
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    struct Names {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Names {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.out.push((self.path.join("."), param.val().dims().to_vec()));
        }
    }
    let mut v = Names { path: Vec::new(), out: Vec::new() };
    module.visit(&mut v);
    v.out
}

/// Initialises every lazily initialised parameter now. burn creates weights on first use, and a clone made
/// before that would draw its own random weights; after this, clones share the same values.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// True for BatchNorm running statistics (not trained by the optimiser).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Number of trainable parameters (burn's `num_params` also counts BatchNorm running statistics).
pub fn trainable_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    named_tensors::<B, M>(module)
        .iter()
        .filter(|(n, _)| !is_running_stat(n))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    #[test]
    fn forward_shapes_and_parameter_counts() {
        let device = Default::default();
        // torchvision's resnet34 has 21,797,672 parameters with its 1000-class fc (512·1000 + 1000);
        // with a 2-class head: 21,797,672 − 513,000 + 1,026 = 21,285,698.
        let expected =
            [(ModelKind::Simple, None), (ModelKind::Regularized, None), (ModelKind::Resnet34, Some(21_285_698))];
        for (kind, count) in expected {
            let m = Model::<B>::new(kind, 0.5, &device);
            let x = Tensor::<B, 4>::zeros([2, 3, 32, 32], &device);
            assert_eq!(m.forward(x).dims(), [2, 2], "{kind}");
            let n = trainable_params::<B, _>(&m);
            if let Some(c) = count {
                assert_eq!(n, c, "{kind} parameter count");
            }
            assert!(n > 10_000, "{kind} has {n} parameters");
            // The three-class head: one more output, the rest unchanged.
            let m3 = Model::<B>::with_classes(kind, 3, 0.5, &device);
            assert_eq!(m3.forward(Tensor::<B, 4>::zeros([2, 3, 32, 32], &device)).dims(), [2, 3], "{kind}");
            assert_eq!(m3.classes(), 3);
            let head_in = trainable_params::<B, _>(&m3) - n - 1;
            assert!(head_in >= 128, "{kind}: the extra output adds one input row ({head_in}) and a bias");
        }
        // The simple CNN: 7 conv + 1 linear weight layers, small head (no giant flatten layer).
        let names = named_tensors::<B, _>(&Model::<B>::new(ModelKind::Simple, 0.5, &device));
        let weights = names.iter().filter(|(n, _)| n.ends_with("weight")).count();
        assert_eq!(weights, 8);
        assert!(trainable_params::<B, _>(&Model::<B>::new(ModelKind::Simple, 0.5, &device)) < 1_000_000);
        // The regularized CNN: BatchNorm after each conv, more layers than the simple one.
        let names = named_tensors::<B, _>(&Model::<B>::new(ModelKind::Regularized, 0.5, &device));
        assert_eq!(names.iter().filter(|(n, _)| n.ends_with("running_mean")).count(), 9);
    }

    #[test]
    fn weight_sources_read_back_what_they_write() {
        let all = [
            Init::Scratch,
            Init::ImageNet("resnet34-b627a593.pth".into()),
            Init::Mean(vec![ModelKind::Simple, ModelKind::Regularized, ModelKind::Resnet34]),
            Init::Mean(Vec::new()),
        ];
        for init in all {
            let text = init.to_string();
            assert_eq!(Init::parse(&text), Ok(init.clone()), "{text}");
            let json = serde_json::to_string(&init).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Init>(&json).unwrap(), init);
        }
        // What checkpoints and reports have always held.
        assert_eq!(
            Init::parse("mean of simple + regularized"),
            Ok(Init::Mean(vec![ModelKind::Simple, ModelKind::Regularized]))
        );
        for bad in ["", "imagenet", "mean of vgg", "mean of ", "Scratch"] {
            assert!(Init::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn resnet34_names_mirror_torchvision() {
        let device = Default::default();
        let names: Vec<String> =
            named_tensors::<B, _>(&ResNet34::<B>::new(2, 0.5, &device)).into_iter().map(|(n, _)| n).collect();
        for expected in [
            "conv1.weight",
            "bn1.gamma",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer1.2.bn2.beta",
            "layer2.0.downsample.conv.weight",
            "layer2.0.downsample.bn.running_mean",
            "layer3.5.conv2.weight",
            "layer4.2.bn2.gamma",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected}; have e.g. {:?}", &names[..6]);
        }
        assert!(!names.iter().any(|n| n.starts_with("layer1.0.downsample")), "layer1 keeps the shape: no downsample");
        assert_eq!(names.iter().filter(|n| n.contains("downsample.conv.weight")).count(), 3);
    }
}
