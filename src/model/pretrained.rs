//! Loading torchvision's ImageNet ResNet-34 weights (`resnet34-b627a593.pth`, or a `.safetensors` export of it)
//! into our `ResNet34`, through burn-store's PyTorch and safetensors readers.
//!
//! torchvision's names equal ours except `downsample.0`/`downsample.1` (ours: `downsample.conv`/`downsample.bn`);
//! BatchNorm `weight`/`bias` become burn's `gamma`/`beta` (burn-store's PyTorch adapter), `num_batches_tracked`
//! is ignored and the 1000-class `fc` is dropped: the new 2-class head keeps its fresh initialisation.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, PathFilter, PytorchStore, SafetensorsStore};

use super::ResNet34;

/// How many mismatches an error message lists.
const SHOWN: usize = 5;

/// What an import did, for logs and the run report.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// Tensors copied from the file into the backbone.
    pub loaded: usize,
    /// File tensors left out on purpose: the ImageNet head (`fc.*`) and `num_batches_tracked`.
    pub ignored: Vec<String>,
}

/// Why a weights file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error("pretrained weights {path}: {message}")]
    Read { path: String, message: String },
    #[error("pretrained weights {path} do not fit torchvision's ResNet-34 ({count} problem(s)); the first: {shown}")]
    Mismatch { path: String, count: usize, shown: String },
}

/// File tensors that are expected and not loaded.
fn ignored(name: &str) -> bool {
    name.starts_with("fc.") || name.ends_with("num_batches_tracked")
}

fn remapper() -> KeyRemapper {
    // `module.` is what nn.DataParallel prefixes; torchvision's file has no prefix.
    KeyRemapper::from_patterns(vec![
        (r"^module\.", ""),
        (r"\.downsample\.0\.", ".downsample.conv."),
        (r"\.downsample\.1\.", ".downsample.bn."),
    ])
    .expect("static patterns are valid regular expressions")
}

/// Everything but the classifier head is loaded.
fn backbone_only() -> PathFilter {
    PathFilter::new().with_predicate(|path, _container| !path.starts_with("fc."))
}

/// Loads the ImageNet backbone into `model` (which keeps its own `fc`). `.safetensors` files go through the
/// safetensors reader, anything else through the PyTorch reader (zip `.pth`/`.pt` and the legacy format).
/// A file whose names or shapes do not match is refused and `model` is left as it was.
pub fn load_resnet34<B: Backend>(model: &mut ResNet34<B>, path: &Path) -> Result<ImportSummary, PretrainedError> {
    let shown_path = path.display().to_string();
    let read_err = |message: String| PretrainedError::Read { path: shown_path.clone(), message };
    if !path.is_file() {
        return Err(read_err("no such file".into()));
    }
    let mut candidate = model.clone();
    let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let result: ApplyResult = if is_safetensors {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(burn_store::PyTorchToBurnAdapter)
            .remap(remapper())
            .filter(backbone_only())
            .validate(false)
            .allow_partial(true);
        candidate.load_from(&mut store).map_err(|e| read_err(one_line(&e.to_string())))?
    } else {
        let mut store = PytorchStore::from_file(path)
            .remap(remapper())
            .filter(backbone_only())
            .map_indices_contiguous(false)
            .validate(false)
            .allow_partial(true);
        candidate.load_from(&mut store).map_err(|e| read_err(one_line(&e.to_string())))?
    };
    // burn-store lists a BatchNorm `weight`/`bias` it applied as `gamma`/`beta` among the unused file tensors.
    let applied: std::collections::HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    let used_as_alias = |n: &str| {
        let alias = n.strip_suffix(".weight").map(|h| format!("{h}.gamma"));
        let alias = alias.or_else(|| n.strip_suffix(".bias").map(|h| format!("{h}.beta")));
        alias.is_some_and(|a| applied.contains(a.as_str()))
    };
    let unused: Vec<String> = result.unused.iter().filter(|n| !used_as_alias(n)).cloned().collect();
    let mut problems: Vec<String> = result.errors.iter().map(describe).collect();
    problems.extend(unused.iter().filter(|n| !ignored(n)).map(|n| format!("`{n}` is not a ResNet-34 tensor")));
    problems.extend(
        result
            .missing
            .iter()
            .filter(|(p, _)| !p.starts_with("fc."))
            .map(|(p, _)| format!("`{}` is missing", torchvision_name(p))),
    );
    if !problems.is_empty() {
        return Err(PretrainedError::Mismatch {
            path: shown_path,
            count: problems.len(),
            shown: problems.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "),
        });
    }
    if result.applied.is_empty() {
        return Err(read_err("the file holds no tensors".into()));
    }
    *model = candidate;
    let mut ignored = unused;
    ignored.extend(result.skipped.iter().cloned());
    Ok(ImportSummary { loaded: result.applied.len(), ignored })
}

/// The file's name for one of our tensor paths (messages speak the file's language).
fn torchvision_name(path: &str) -> String {
    let p = path.replace(".downsample.conv.", ".downsample.0.").replace(".downsample.bn.", ".downsample.1.");
    if let Some(h) = p.strip_suffix(".gamma") {
        format!("{h}.weight")
    } else if let Some(h) = p.strip_suffix(".beta") {
        format!("{h}.bias")
    } else {
        p
    }
}

fn describe(e: &ApplyError) -> String {
    match e {
        ApplyError::ShapeMismatch { path, expected, found } => {
            format!("`{}` has shape {:?}, expected {:?}", torchvision_name(path), found.as_slice(), expected.as_slice())
        }
        ApplyError::DTypeMismatch { path, expected, found } => {
            format!("`{}` has type {found:?}, expected {expected:?}", torchvision_name(path))
        }
        other => one_line(&other.to_string()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that `path` loads into ResNet-34 (on the CPU), without keeping the weights.
pub fn check_resnet34(path: &Path) -> Result<ImportSummary, PretrainedError> {
    type Cpu = burn::backend::Flex;
    let device = Default::default();
    let mut model = ResNet34::<Cpu>::new(2, 0.0, &device);
    load_resnet34(&mut model, path)
}
