//! Every dashboard pane rendered in ratatui's TestBackend from a fixed App state (built from engine events),
//! at 80×24 and at 160×48, with assertions on the text shown.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pneumoscope::data::{Class, ClassCounts, SplitCounts};
use pneumoscope::metrics::{Confusion, Metrics};
use pneumoscope::model::ModelKind;
use pneumoscope::train::events::{BatchProgress, ModelStatus, RunInfo, TrainEvent};
use pneumoscope::tui::app::{App, Effect};
use pneumoscope::tui::keymap::Pane;
use pneumoscope::tui::predict::ImageView;
use pneumoscope::tui::predict::PredictResult;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn metrics(tn: u64, fp: u64, fn_: u64, tp: u64, loss: f64) -> Metrics {
    Metrics::from_confusion(Confusion { tn, fp, fn_, tp }, loss, Some(0.912), 0.5)
}

/// A run in progress: simple done and tested, regularized training in epoch 2, resnet34 queued.
fn app() -> App {
    let models = [ModelKind::Simple, ModelKind::Regularized, ModelKind::Resnet34];
    let mut app = App::new(&models);
    let evs = vec![
        TrainEvent::RunStarted {
            info: RunInfo {
                run_dir: PathBuf::from("runs/20261125-120000"),
                data_root: PathBuf::from("/data/chest_xray"),
                source: pneumoscope::data::demo::DataSource::Synthetic,
                models: models.to_vec(),
                device: "cpu (burn-flex, 2 threads, AVX2 conv GEMM)".into(),
                image_size: 64,
                batch_size: 16,
                epochs: 3,
                threads: 2,
                task: Default::default(),
            },
        },
        TrainEvent::DataReady {
            counts: SplitCounts {
                train: ClassCounts { normal: 1073, pneumonia: 3100, ..Default::default() },
                validation: ClassCounts { normal: 268, pneumonia: 775, ..Default::default() },
                test: ClassCounts { normal: 234, pneumonia: 390, ..Default::default() },
            },
            skipped: 2,
            seconds: 1.0,
            test_source: Default::default(),
        },
        TrainEvent::ModelStarted {
            model: ModelKind::Simple,
            index: 0,
            params: 288_000,
            steps_per_epoch: 10,
            epochs: 3,
            init: pneumoscope::model::Init::Scratch,
        },
    ];
    for e in evs {
        app.on_event(e);
    }
    for epoch in 1..=3 {
        for step in 1..=10 {
            app.on_event(TrainEvent::Batch(BatchProgress {
                model: ModelKind::Simple,
                epoch,
                step,
                steps_per_epoch: 10,
                global_step: (epoch - 1) * 10 + step - 1,
                loss: 0.7 - 0.01 * step as f64,
                accuracy: 0.6 + 0.01 * step as f64,
                lr: 1e-3,
                images_per_sec: 88.5,
                eta_secs: 30.0,
            }));
        }
        app.on_event(TrainEvent::EpochEnded {
            model: ModelKind::Simple,
            epoch,
            train_loss: 0.6,
            train_accuracy: 0.7,
            validation: metrics(40, 20, 10, 130, 0.5 - 0.05 * epoch as f64),
            best: true,
            seconds: 10.0,
            images_per_sec: 88.5,
            loader_wait: 0.0,
        });
    }
    app.on_event(TrainEvent::CheckpointSaved {
        model: ModelKind::Simple,
        path: PathBuf::from("runs/x/checkpoints/simple-best.ckpt"),
        kind: pneumoscope::train::CheckpointKind::Best,
    });
    app.on_event(TrainEvent::Evaluated {
        model: ModelKind::Simple,
        split: pneumoscope::train::EvalSplit::Test,
        metrics: metrics(150, 84, 10, 380, 0.41),
    });
    app.on_event(TrainEvent::ModelFinished {
        model: ModelKind::Simple,
        status: ModelStatus::Done,
        seconds: 95.0,
        error: None,
    });
    app.on_event(TrainEvent::ModelStarted {
        model: ModelKind::Regularized,
        index: 1,
        params: 1_210_000,
        steps_per_epoch: 10,
        epochs: 3,
        init: pneumoscope::model::Init::Scratch,
    });
    for step in 1..=4 {
        app.on_event(TrainEvent::Batch(BatchProgress {
            model: ModelKind::Regularized,
            epoch: 2,
            step,
            steps_per_epoch: 10,
            global_step: 10 + step - 1,
            loss: 0.55,
            accuracy: 0.75,
            lr: 5e-4,
            images_per_sec: 27.3,
            eta_secs: 125.0,
        }));
    }
    app.predict.items = vec![
        (PathBuf::from("/data/chest_xray/test/NORMAL/IM-0001-0001.jpeg"), Class::Normal),
        (PathBuf::from("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg"), Class::Pneumonia),
    ];
    app
}

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut image = ImageView::default();
    terminal.draw(|f| pneumoscope::tui::render(app, &mut image, f)).unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn with_pane(mut app: App, pane: Pane) -> App {
    app.pane = pane;
    app
}

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

#[test]
fn header_tabs_and_status_line() {
    for (w, h) in SIZES {
        let s = draw(&app(), w, h);
        assert!(s.contains("pneumoscope"), "{s}");
        assert!(s.contains("SYNTHETIC data"), "{s}");
        assert!(s.contains("1 Data") && s.contains("5 Predict"), "{s}");
        assert!(s.contains("training regularized e2/3"), "{s}");
        assert!(s.contains("?:help"), "{s}");
        for line in s.lines() {
            assert_eq!(line.chars().count(), w as usize);
        }
    }
}

#[test]
fn balance_pane_shows_counts_ratios_and_source() {
    for (w, h) in SIZES {
        let s = draw(&with_pane(app(), Pane::Balance), w, h);
        assert!(s.contains("SYNTHETIC demo data"), "{s}");
        assert!(s.contains("NORMAL  1073") && s.contains("PNEUMONIA  3100"), "{s}");
        assert!(s.contains("ratio 1:2.89"), "{s}");
        assert!(s.contains("test       NORMAL   234  PNEUMONIA   390") && s.contains("1:1.67"), "{s}");
        assert!(s.contains("2 unreadable files skipped"), "{s}");
    }
}

#[test]
fn charts_pane_shows_progress_values_and_axes() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE)); // regularized → resnet34
    a.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::NONE)); // back to regularized
    for (w, h) in SIZES {
        let s = draw(&with_pane(a.clone(), Pane::Charts), w, h);
        assert!(s.contains("Regularized CNN — per batch"), "{s}");
        assert!(s.contains("epoch 2/3 step 4/10"), "{s}");
        assert!(s.contains("27.3 img/s") && s.contains("ETA 2m05s") && s.contains("lr 5.00e-4"), "{s}");
        assert!(s.contains("14/30 steps"), "{s}");
        assert!(s.contains("loss") && s.contains("accuracy") && s.contains("epoch"), "{s}");
    }
    // The simple model's curves: per-batch braille points and the epoch axis to 3.
    let mut a = app();
    a.selected = 0;
    let s = draw(&with_pane(a, Pane::Charts), 160, 48);
    assert!(s.chars().any(|c| ('\u{2801}'..='\u{28FF}').contains(&c)), "braille curve expected: {s}");
}

#[test]
fn confusion_pane_shows_cells_row_percentages_and_derived_metrics() {
    let mut a = app();
    a.selected = 0; // simple: tested
    for (w, h) in SIZES {
        let s = draw(&with_pane(a.clone(), Pane::Confusion), w, h);
        assert!(s.contains("test (best checkpoint)"), "{s}");
        assert!(s.contains("150   64.1%") && s.contains("84   35.9%"), "{s}");
        assert!(s.contains("10    2.6%") && s.contains("380   97.4%"), "{s}");
        assert!(s.contains("sensitivity 97.4%") && s.contains("specificity 64.1%"), "{s}");
        assert!(s.contains("precision   81.9%") && s.contains("ROC-AUC 0.912"), "{s}");
    }
    // v switches to the latest validation epoch.
    a.on_key(KeyEvent::new(KeyCode::Char('v'), KeyModifiers::NONE));
    let s = draw(&with_pane(a, Pane::Confusion), 80, 24);
    assert!(s.contains("validation (latest epoch)") && s.contains("40   66.7%"), "{s}");
    // A model without results says so.
    let mut a = app();
    a.selected = 2;
    let s = draw(&with_pane(a, Pane::Confusion), 80, 24);
    assert!(s.contains("no result yet"), "{s}");
}

#[test]
fn compare_pane_shows_models_side_by_side() {
    for (w, h) in SIZES {
        let s = draw(&with_pane(app(), Pane::Compare), w, h);
        assert!(s.contains("done") && s.contains("training") && s.contains("queued"), "{s}");
        assert!(s.contains("84.9") && s.contains("97.4") && s.contains("64.1") && s.contains("0.912"), "{s}");
        assert!(s.contains("validation accuracy per epoch"), "{s}");
        assert!(s.contains("scratch"), "{s}");
        // The test columns are at 0.5 and the header says so (the notes give the operating point's figures).
        assert!(s.contains("acc@.5") && !s.contains("test acc"), "{s}");
    }
    let s = draw(&with_pane(app(), Pane::Compare), 160, 48);
    assert!(s.contains("Simple CNN") && s.contains("Regularized CNN") && s.contains("ResNet-34"), "{s}");
}

#[test]
fn compare_pane_says_when_resnet34_started_from_imagenet_weights() {
    let mut a = with_pane(app(), Pane::Compare);
    a.on_event(TrainEvent::ModelStarted {
        model: ModelKind::Resnet34,
        index: 2,
        params: 21_285_698,
        steps_per_epoch: 10,
        epochs: 3,
        init: pneumoscope::model::Init::ImageNet("resnet34-b627a593.pth".into()),
    });
    let s = draw(&a, 80, 24);
    assert!(s.contains("init: resnet34 ImageNet, others scratch"), "{s}");
    let s = draw(&a, 160, 48);
    assert!(s.contains("imagenet (resnet34-b627a593.pth)"), "{s}");
}

#[test]
fn predict_pane_lists_test_images_and_shows_the_verdict() {
    let mut a = with_pane(app(), Pane::Predict);
    a.selected = 0; // simple has a checkpoint
    let s = draw(&a, 80, 24);
    assert!(s.contains("N IM-0001-0001.jpeg") && s.contains("P person1_virus_6.jpeg"), "{s}");
    assert!(s.contains("press enter to classify"), "{s}");
    // j moves down, enter asks the worker for a prediction with the shown model's checkpoint.
    a.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
    let fx = a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(fx.len(), 1);
    assert!(draw(&a, 80, 24).contains("classifying…"));
    a.on_prediction(PredictResult {
        path: PathBuf::from("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg"),
        model: ModelKind::Simple,
        truth: Class::Pneumonia,
        outcome: Ok(0.87),
        threshold: 0.5,
        class_probabilities: Vec::new(),
        overlay: None,
    });
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("says PNEUMONIA") && s.contains("✓ right"), "{s}");
        assert!(s.contains("P(pneumonia) 87.0%"), "{s}");
        assert!(s.contains("test 2/2"), "{s}");
    }
    // g turns the Grad-CAM heatmap on: the shown verdict has none yet, so it is asked for.
    let fx = a.on_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE));
    assert!(matches!(fx.as_slice(), [pneumoscope::tui::app::Effect::Predict { heatmap: true, .. }]), "{fx:?}");
    assert!(draw(&a, 80, 24).contains("Grad-CAM heatmap on"));
    a.on_prediction(PredictResult {
        path: PathBuf::from("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg"),
        model: ModelKind::Simple,
        truth: Class::Pneumonia,
        outcome: Ok(0.87),
        threshold: 0.5,
        class_probabilities: Vec::new(),
        overlay: Some(pneumoscope::tui::predict::Overlay(std::sync::Arc::new(image::RgbImage::new(4, 4)))),
    });
    assert!(draw(&a, 80, 24).contains("Grad-CAM: red = what drove P(pneumonia)"));
    // g again: off, nothing to compute.
    assert!(a.on_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE)).is_empty());
    assert!(!draw(&a, 80, 24).contains("Grad-CAM"));
    // A model without a checkpoint cannot classify, and says why.
    a.selected = 2;
    assert!(a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)).is_empty());
    assert!(draw(&a, 80, 24).contains("no checkpoint yet"));
}

#[test]
fn help_overlay_is_generated_from_the_key_map() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        for b in pneumoscope::tui::keymap::KEYMAP.iter().filter(|b| !b.keys.is_empty()) {
            assert!(s.contains(b.help), "help should list `{}` at {w}×{h}: {s}", b.help);
        }
    }
    a.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(!draw(&a, 80, 24).contains("Keys (esc closes)"));
}

#[test]
fn quit_confirmation_popup() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
    let s = draw(&a, 80, 24);
    assert!(s.contains("Quit?") && s.contains("y: yes"), "{s}");
}

#[test]
fn every_size_from_tiny_to_large_renders_without_panic() {
    for pane in Pane::ALL {
        let mut a = with_pane(app(), pane);
        a.help = pane == Pane::Compare;
        for w in [1u16, 5, 20, 39, 40, 41, 60, 80, 81, 120, 200] {
            for h in [1u16, 3, 10, 11, 12, 13, 24, 50] {
                let s = draw(&a, w, h);
                if (w < 40 || h < 12) && w >= 20 && h >= 10 {
                    assert!(s.contains("terminal too small"), "{w}×{h}: {s}");
                }
            }
        }
    }
}

#[test]
fn a_resumed_runs_history_reaches_the_charts() {
    use pneumoscope::train::events::TrainEvent as E;
    let mut a = App::new(&[ModelKind::Regularized]);
    let history = (1..=2)
        .flat_map(|epoch| {
            vec![
                E::Batch(BatchProgress {
                    model: ModelKind::Regularized,
                    epoch,
                    step: 10,
                    steps_per_epoch: 10,
                    global_step: epoch * 10 - 1,
                    loss: 0.5,
                    accuracy: 0.8,
                    lr: 1e-3,
                    images_per_sec: 30.0,
                    eta_secs: 0.0,
                }),
                E::EpochEnded {
                    model: ModelKind::Regularized,
                    epoch,
                    train_loss: 0.5,
                    train_accuracy: 0.8,
                    validation: metrics(10, 5, 5, 30, 0.45),
                    best: true,
                    seconds: 1.0,
                    images_per_sec: 30.0,
                    loader_wait: 0.0,
                },
            ]
        })
        .collect();
    a.on_event(E::History { events: history });
    assert_eq!(a.models[0].val_loss.len(), 2);
    assert_eq!(a.models[0].batch_loss.len(), 2);
    a.pane = Pane::Compare;
    let s = draw(&a, 80, 24);
    assert!(s.contains("0.4500") && s.contains("80.0"), "{s}");
}

/// The simple CNN's analysis, from scores that separate the classes fairly well.
fn analysed(app: &mut App) {
    let truth: Vec<bool> = (0..200).map(|i| i % 5 != 0).collect();
    let scores: Vec<f32> = (0..200)
        .map(|i| if truth[i] { 0.45 + (i % 11) as f32 / 20.0 } else { 0.05 + (i % 13) as f32 / 20.0 })
        .collect();
    let ev = pneumoscope::analysis::evaluate(
        (&scores[..100], &truth[..100]),
        (&scores[100..], &truth[100..], 0.4),
        pneumoscope::analysis::OperatingRule::Youden,
        200,
        1,
    );
    app.on_event(TrainEvent::Analysed { model: ModelKind::Simple, evaluation: Box::new(ev), differences: vec![] });
}

#[test]
fn compare_pane_shows_confidence_intervals_and_whether_differences_are_noise() {
    let mut a = with_pane(app(), Pane::Compare);
    analysed(&mut a);
    let e = a.models[0].evaluation.clone().unwrap();
    let d = pneumoscope::train::events::PairDifference {
        a: ModelKind::Regularized,
        b: ModelKind::Simple,
        accuracy: pneumoscope::analysis::Difference {
            value: 0.012,
            interval: pneumoscope::analysis::Interval { lo: -0.02, hi: 0.04 },
        },
        auc: None,
    };
    a.on_event(TrainEvent::Analysed {
        model: ModelKind::Regularized,
        evaluation: Box::new(e.clone()),
        differences: vec![d],
    });
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        let auc = e.test_at_threshold.auc.unwrap();
        assert!(s.contains(&format!("simple: AUC {auc:.3} [")), "{s}");
        assert!(s.contains(&format!("acc@{:.2}", e.threshold)), "{s}");
        assert!(s.contains("regularized vs simple: acc +1.2 within the noise"), "{s}");
    }
}

#[test]
fn roc_pane_draws_the_curves_and_marks_the_operating_point() {
    let mut a = with_pane(app(), Pane::Roc);
    a.selected = 0;
    let s = draw(&a, 80, 24);
    assert!(s.contains("6 ROC"), "{s}");
    assert!(s.contains("no ROC yet"), "{s}");
    analysed(&mut a);
    let e = a.models[0].evaluation.clone().unwrap();
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("ROC — Simple CNN"), "{s}");
        assert!(s.contains(&format!("threshold {:.2} (Youden's J)", e.threshold)), "{s}");
        assert!(s.contains(&format!("test AUC {:.3} [", e.test_at_threshold.auc.unwrap())), "{s}");
        assert!(s.contains("at 0.50: sens"), "{s}");
        assert!(s.contains("1 − specificity"), "{s}");
        // Braille dots of the curves.
        assert!(s.chars().any(|c| ('\u{2801}'..='\u{28FF}').contains(&c)), "{s}");
    }
}

#[test]
fn the_header_shows_the_gpu_and_its_memory_when_known() {
    let mut a = app();
    a.device_note = pneumoscope::train::backend::parse_gpu_status("NVIDIA H200, 3277, 143771");
    let s = draw(&a, 160, 48);
    assert!(s.contains("NVIDIA H200 · 3.2/140.4 GiB"), "{s}");
}

#[test]
fn the_ensemble_joins_the_comparison_as_a_fourth_row_and_can_be_chosen_for_prediction() {
    let mut a = with_pane(app(), Pane::Compare);
    analysed(&mut a);
    let e = a.models[0].evaluation.clone().unwrap();
    let manifest = PathBuf::from("runs/20261125-120000/checkpoints/ensemble.json");
    for ev in [
        TrainEvent::CheckpointSaved {
            model: ModelKind::Ensemble,
            path: manifest.clone(),
            kind: pneumoscope::train::CheckpointKind::Ensemble,
        },
        TrainEvent::Evaluated {
            model: ModelKind::Ensemble,
            split: pneumoscope::train::EvalSplit::Test,
            metrics: e.test_at_half,
        },
        TrainEvent::Analysed { model: ModelKind::Ensemble, evaluation: Box::new(e.clone()), differences: vec![] },
        TrainEvent::ModelFinished { model: ModelKind::Ensemble, status: ModelStatus::Done, seconds: 30.0, error: None },
    ] {
        a.on_event(ev);
    }
    assert_eq!(a.models.len(), 4);
    assert_eq!(a.models[3].kind, ModelKind::Ensemble);
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("Ensemble") || s.contains("ensemble"), "{s}");
        assert!(s.contains(&format!("ensemble: AUC {:.3} [", e.test_at_threshold.auc.unwrap())), "{s}");
    }
    // ←/→ reach it, and enter on the predict pane asks for a prediction with its manifest.
    a.pane = Pane::Predict;
    a.selected = 3;
    let fx = a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(
        matches!(&fx[..], [Effect::Predict { checkpoint, model: ModelKind::Ensemble, .. }] if *checkpoint == manifest),
        "{fx:?}"
    );
    // A resumed run's RunStarted (the three networks) keeps the ensemble's row and history.
    let info = a.info.clone().unwrap();
    a.on_event(TrainEvent::RunStarted { info });
    assert_eq!(a.models.len(), 4);
    assert!(a.models[0].evaluation.is_some());
}

#[test]
fn a_test_split_held_out_from_train_is_said_on_the_data_pane() {
    let mut a = with_pane(app(), Pane::Balance);
    a.test_source = pneumoscope::data::split::TestSource::HeldOut { fraction: 0.15 };
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("held out from train/ by patient (15 %)"), "{s}");
    }
}

#[test]
fn three_class_runs_show_the_3x3_matrix_and_three_probabilities() {
    let mut a = app();
    a.on_event(TrainEvent::RunStarted {
        info: RunInfo {
            run_dir: PathBuf::from("runs/20261205-120000"),
            data_root: PathBuf::from("/data/chest_xray"),
            source: pneumoscope::data::demo::DataSource::Folder,
            models: vec![ModelKind::Simple, ModelKind::Regularized, ModelKind::Resnet34],
            device: "cpu".into(),
            image_size: 64,
            batch_size: 16,
            epochs: 3,
            threads: 2,
            task: pneumoscope::data::Task::ThreeClass,
        },
    });
    a.on_event(TrainEvent::DataReady {
        counts: SplitCounts {
            train: ClassCounts { normal: 911, pneumonia: 2634, bacterial: 1701, viral: 933 },
            validation: ClassCounts { normal: 229, pneumonia: 660, bacterial: 441, viral: 219 },
            test: ClassCounts { normal: 201, pneumonia: 581, bacterial: 388, viral: 193 },
        },
        skipped: 0,
        seconds: 1.0,
        test_source: Default::default(),
    });
    let s = draw(&with_pane(a.clone(), Pane::Balance), 80, 24);
    assert!(s.contains("NORMAL   911  BACTERIAL  1701  VIRAL   933"), "{s}");
    // Simple's test analysis with its three-class figures: 9 films, one of each kind of mistake.
    let probs = [
        0.8, 0.1, 0.1, 0.7, 0.2, 0.1, 0.3, 0.6, 0.1, //
        0.1, 0.7, 0.2, 0.2, 0.6, 0.2, 0.2, 0.3, 0.5, //
        0.1, 0.2, 0.7, 0.1, 0.3, 0.6, 0.6, 0.1, 0.3,
    ];
    let targets = [0, 0, 0, 1, 1, 1, 2, 2, 2];
    let scores: Vec<f32> = probs.chunks(3).map(|r| r[1] + r[2]).collect();
    let truth: Vec<bool> = targets.iter().map(|&t| t > 0).collect();
    let mut ev = pneumoscope::analysis::evaluate(
        (&scores, &truth),
        (&scores, &truth, 0.5),
        pneumoscope::analysis::OperatingRule::Fixed(0.5),
        50,
        1,
    );
    ev.three_class = Some(pneumoscope::analysis::three_class::evaluate(&probs, &targets, 0.5, 50, 1));
    a.on_event(TrainEvent::Analysed { model: ModelKind::Simple, evaluation: Box::new(ev), differences: vec![] });
    a.selected = 0;
    for (w, h) in SIZES {
        let s = draw(&with_pane(a.clone(), Pane::Confusion), w, h);
        assert!(s.contains("true BACTERIAL") && s.contains("true VIRAL"), "{s}");
        // NORMAL row: 2 right, 1 called BACTERIAL; VIRAL row: 1 missed, 2 right.
        assert!(s.contains("2  66.7%") && s.contains("1  33.3%"), "{s}");
        assert!(s.contains("macro AUC") && s.contains("bacterial vs viral (6 films)"), "{s}");
        assert!(s.contains("BACTERIAL sens  66.7%"), "{s}");
    }
    // The compare pane: the table's test columns are pneumonia vs normal, the three-class figures follow below.
    let three = ev_three_class_accuracy(&a);
    let s = draw(&with_pane(a.clone(), Pane::Compare), 80, 24);
    assert!(s.contains(&format!("3 classes: acc {:.1}", 100.0 * three)), "{s}");
    assert!(s.contains("bact/viral AUC"), "{s}");
    // The predict pane: the true cause from the file name, the call and the three probabilities.
    a.pane = Pane::Predict;
    a.predict.selected = 1;
    a.on_prediction(PredictResult {
        path: PathBuf::from("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg"),
        model: ModelKind::Simple,
        truth: Class::Pneumonia,
        outcome: Ok(0.8),
        threshold: 0.5,
        class_probabilities: vec![("NORMAL".into(), 0.2), ("BACTERIAL".into(), 0.3), ("VIRAL".into(), 0.5)],
        overlay: None,
    });
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("true label VIRAL"), "{s}");
        assert!(s.contains("says VIRAL") && s.contains("✓ right"), "{s}");
        assert!(s.contains("BACTERIAL 30%") && s.contains("VIRAL 50%"), "{s}");
    }
}

/// The three-class test accuracy of the first model's evaluation.
fn ev_three_class_accuracy(a: &App) -> f64 {
    a.models[0]
        .evaluation
        .as_ref()
        .and_then(|e| e.three_class.as_ref())
        .map(|t| t.accuracy)
        .expect("three-class figures")
}

/// One finished run of the simple CNN, as `view` replays it beside others.
fn replayed(index: usize, split_key: &str, val_acc: f64, scores: Vec<f32>) -> TrainEvent {
    use pneumoscope::train::events::{ModelScores, RunScores, RunTag};
    let truth: Vec<bool> = (0..scores.len()).map(|i| i % 2 == 1).collect();
    let events = vec![
        TrainEvent::RunStarted {
            info: RunInfo {
                run_dir: PathBuf::from(format!("runs/2026120{}-120000", index + 1)),
                data_root: PathBuf::from("/data/chest_xray"),
                source: pneumoscope::data::demo::DataSource::Folder,
                models: vec![ModelKind::Simple],
                device: "cpu".into(),
                image_size: 64,
                batch_size: 16,
                epochs: 1,
                threads: 2,
                task: Default::default(),
            },
        },
        TrainEvent::ModelStarted {
            model: ModelKind::Simple,
            index: 0,
            params: 288_000,
            steps_per_epoch: 10,
            epochs: 1,
            init: pneumoscope::model::Init::Scratch,
        },
        TrainEvent::EpochEnded {
            model: ModelKind::Simple,
            epoch: 1,
            train_loss: 0.5,
            train_accuracy: 0.8,
            validation: Metrics { accuracy: val_acc, ..metrics(40, 10, 5, 45, 0.4) },
            best: true,
            seconds: 10.0,
            images_per_sec: 50.0,
            loader_wait: 0.0,
        },
        TrainEvent::ModelFinished { model: ModelKind::Simple, status: ModelStatus::Done, seconds: 10.0, error: None },
        TrainEvent::Finished { run_dir: PathBuf::from("runs/x"), stopped: false },
    ];
    TrainEvent::Replayed {
        run: RunTag {
            index,
            label: format!("r{}", index + 1),
            legend: format!("2026120{}-120000 · chest_xray · 64 px · 1 epochs · pneumonia", index + 1),
        },
        scores: RunScores {
            split_key: split_key.into(),
            truth,
            models: vec![ModelScores { model: ModelKind::Simple, scores, threshold: 0.5 }],
        },
        events,
    }
}

#[test]
fn several_runs_side_by_side_are_labelled_and_two_chosen_models_are_paired() {
    let mut a = App::new(&[ModelKind::Simple]);
    let good: Vec<f32> = (0..40).map(|i| if i % 2 == 1 { 0.8 } else { 0.2 }).collect();
    let worse: Vec<f32> = (0..40).map(|i| if i % 2 == 1 || i % 8 == 0 { 0.7 } else { 0.3 }).collect();
    a.on_event(replayed(0, "the test/ folder of /data/chest_xray", 0.9, good.clone()));
    a.on_event(replayed(1, "the test/ folder of /data/chest_xray", 0.7, worse));
    a.on_event(replayed(2, "films held out from /other/train by patient (15 %, seed 2, Patient split)", 0.8, good));
    assert_eq!(a.models.len(), 3, "one simple CNN per run");
    a.pane = Pane::Compare;
    a.selected = 0;
    for (w, h) in SIZES {
        let s = draw(&a, w, h);
        assert!(s.contains("simple·r2") && s.contains("simple·r3") || s.contains("Simple CNN · r2"), "{s}");
        assert!(s.contains("r2 = 20261202-120000"), "the legend says which run is which: {s}");
        assert!(s.contains("m marks a model"), "{s}");
    }
    // m marks r1's model; moving to r2's compares them on the same test images: r1 is right on 5 more of 40.
    a.on_key(KeyEvent::new(KeyCode::Char('m'), KeyModifiers::NONE));
    a.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
    let s = draw(&a, 80, 24);
    assert!(s.contains("simple·r2 − simple·r1 (paired, same test images): acc -12.5"), "{s}");
    assert!(s.contains("◆"), "the marked model is shown: {s}");
    // r3 was tested on other films: refused, saying why.
    a.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
    let s = draw(&a, 160, 48);
    assert!(s.contains("not on the same test images") && s.contains("held out from /other/train"), "{s}");
    // The predict pane browses r1's test films and says so for r3's model.
    a.pane = Pane::Predict;
    a.predict.items = vec![(PathBuf::from("/data/chest_xray/test/NORMAL/IM-0001-0001.jpeg"), Class::Normal)];
    let s = draw(&a, 160, 48);
    assert!(s.contains("these are r1's test films; simple·r3 was tested on other films"), "{s}");
}
