//! The configuration's defaults, parsing and the errors that name the key.

use super::*;

#[test]
fn shipped_config_toml_matches_struct_defaults() {
    let text = include_str!("../../config.toml");
    let parsed = Config::from_toml(text).expect("config.toml parses");
    assert_eq!(parsed, Config::default(), "config.toml and Config::default() disagree");
}

#[test]
fn empty_toml_gives_defaults() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = Config::from_toml("[training]\nepocs = 3\n").unwrap_err().to_string();
    assert!(err.contains("epocs"), "{err}");
    let err = Config::from_toml("[trainin]\n").unwrap_err().to_string();
    assert!(err.contains("trainin"), "{err}");
}

#[test]
fn invalid_enum_values_list_the_allowed_ones() {
    let err = Config::from_toml("[data]\nsplit = \"random\"\n").unwrap_err().to_string();
    assert!(err.contains("random") && err.contains("patient") && err.contains("image"), "{err}");
}

#[test]
fn invalid_numbers_name_the_key() {
    for (toml, key) in [
        ("[training]\nbatch_size = 0\n", "training.batch_size"),
        ("[training]\nmax_lr = -1.0\n", "training.max_lr"),
        ("[training]\nepochs = 0\n", "training.epochs"),
        ("[data]\nimage_size = 8\n", "data.image_size"),
        ("[data]\nval_fraction = 1.5\n", "data.val_fraction"),
        ("[data]\ntest_fraction = 0.0\n", "data.test_fraction"),
        ("[data]\nstd = [0.2, 0.0, 0.2]\n", "data.std"),
        ("[training]\nmodels = [\"vgg\"]\n", "training.models"),
        ("[training]\nmodels = []\n", "training.models"),
        ("[training]\ndevice = \"tpu\"\n", "training.device"),
        ("[training]\nclass_weights = \"inverse\"\n", "training.class_weights"),
        ("[training]\nclass_weights = [1.0, -2.0]\n", "training.class_weights"),
        ("[training]\nclass_weights = [1.0, 2.0, 3.0]\n", "training.class_weights"),
        ("[data]\ntask = \"three-class\"\n[training]\nclass_weights = [1.0, 2.0]\n", "training.class_weights"),
        ("[data]\ntask = \"four-class\"\n", "data.task"),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml:?} gave {err}");
    }
}

#[test]
fn wrong_types_name_the_key() {
    let err = Config::from_toml("[training]\nepochs = \"ten\"\n").unwrap_err().to_string();
    assert!(err.contains("`training.epochs`") && err.contains("line 2"), "{err}");
    let err = Config::from_toml("[data]\nseed = 1\nimage_size = [1]\n").unwrap_err().to_string();
    assert!(err.contains("`data.image_size`"), "{err}");
}

#[test]
fn duplicate_models_and_absurd_thread_counts_are_refused() {
    let err = Config::from_toml("[training]\nmodels = [\"simple\", \"simple\"]\n").unwrap_err().to_string();
    assert!(err.contains("training.models") && err.contains("twice"), "{err}");
    for n in [1025, 100_000] {
        let err = Config::from_toml(&format!("[training]\nthreads = {n}\n")).unwrap_err().to_string();
        assert!(err.contains("training.threads"), "{err}");
    }
    assert!(Config::from_toml("[training]\nthreads = 8\n").is_ok());
}

#[test]
fn class_weights_forms() {
    let c = Config::from_toml("[training]\nclass_weights = [1.0, 0.5]\n").unwrap();
    assert_eq!(c.training.class_weights, ClassWeights::Explicit(vec![1.0, 0.5]));
    let c = Config::from_toml("[training]\nclass_weights = \"balanced\"\n").unwrap();
    assert_eq!(c.training.class_weights, ClassWeights::Balanced);
    let c = Config::from_toml("[training]\nclass_weights = \"none\"\n").unwrap();
    assert_eq!(c.training.class_weights, ClassWeights::None);
    let err = Config::from_toml("[training]\nclass_weights = \"inverse\"\n").unwrap_err().to_string();
    assert!(err.contains("`training.class_weights`") && err.contains("balanced"), "{err}");
}

#[test]
fn device_parsing() {
    assert_eq!(DeviceChoice::parse("cpu"), Ok(DeviceChoice::Cpu));
    assert_eq!(DeviceChoice::parse("cuda"), Ok(DeviceChoice::Cuda(0)));
    assert_eq!(DeviceChoice::parse("cuda:3"), Ok(DeviceChoice::Cuda(3)));
    assert_eq!(DeviceChoice::parse("auto"), Ok(DeviceChoice::Auto));
    assert!(DeviceChoice::parse("cuda:x").is_err());
    assert!(DeviceChoice::parse("gpu").is_err());
    let c = Config::from_toml("[training]\ndevice = \"cuda:1\"\n").unwrap();
    assert_eq!(c.training.device, DeviceChoice::Cuda(1));
    let err = Config::from_toml("[training]\ndevice = \"tpu\"\n").unwrap_err().to_string();
    assert!(err.contains("`training.device`") && err.contains("cuda:N"), "{err}");
}

#[test]
fn models_are_read_as_kinds_and_unknown_names_are_refused_by_name() {
    let c = Config::from_toml("[training]\nmodels = [\"resnet34\", \"simple\"]\n").unwrap();
    assert_eq!(c.training.models, vec![ModelKind::Resnet34, ModelKind::Simple]);
    for bad in ["vgg", "ensemble"] {
        let err = Config::from_toml(&format!("[training]\nmodels = [\"{bad}\"]\n")).unwrap_err().to_string();
        assert!(err.contains("`training.models`") && err.contains(&format!("`{bad}` is not a model")), "{err}");
    }
}

#[test]
fn a_saved_config_reads_back_the_same() {
    let mut c = Config::default();
    c.training.device = DeviceChoice::Cuda(2);
    c.training.class_weights = ClassWeights::Explicit(vec![1.0, 0.25]);
    c.training.models = vec![ModelKind::Regularized];
    let text = toml::to_string(&c).unwrap();
    assert!(text.contains("device = \"cuda:2\"") && text.contains("models = [\"regularized\"]"), "{text}");
    assert_eq!(Config::from_toml(&text).unwrap(), c);
}
