//! A run stopped mid-epoch (as by Ctrl-C) and resumed ends with exactly the parameters,
//! running statistics, optimiser state and hard-negative pool of the same run left uninterrupted.

mod common;
use candle_core::{DType, Device};
use srsnet::dataset::Truth;
use srsnet::image_io::Frame;
use srsnet::model::weights_file::WeightsFile;
use srsnet::model::{ModelConfig, NetConfig, WeightStore};
use srsnet::preprocess::{Geometry, PreprocessSpec};
use srsnet::stream::stop::Stop;
use srsnet::synthetic::{Scene, SceneConfig};
use srsnet::train::augment::AugmentConfig;
use srsnet::train::checkpoint::Checkpoint;
use srsnet::train::data::Sample;
use srsnet::train::optim::SgdConfig;
use srsnet::train::recipe::{ValItem, ValSet};
use srsnet::train::trainer::{
    best_path, epoch_path, kept_epochs, last_path, train_recon, train_seg, Outcome, SegStart, TrainData, TrainOptions,
};
use std::path::PathBuf;

fn small_config() -> ModelConfig {
    let net = NetConfig {
        stem: 8,
        widths: [8, 8, 8, 8],
        blocks: [1, 1, 1, 1],
    };
    ModelConfig {
        name: "test".into(),
        in_channels: 1,
        motion_channel: false,
        recon_out_channels: 1,
        dpconv_kernel: 3,
        recon: net.clone(),
        seg: net,
    }
}

fn samples(n: usize, size: usize) -> Vec<Sample> {
    let mut scene = Scene::new(SceneConfig {
        width: size,
        height: size,
        targets: 1,
        seed: 3,
        ..Default::default()
    });
    (0..n)
        .map(|i| {
            let (img, truth) = scene.frame(i * 7);
            let mut mask = vec![0f32; size * size];
            for t in truth {
                let (x, y) = (t.x.round() as usize, t.y.round() as usize);
                mask[y * size + x] = 1.0;
            }
            Sample {
                name: format!("s{i}"),
                image: Frame::new(size, size, 1, img).unwrap(),
                mask: Some(mask),
            }
        })
        .collect()
}

fn options(out: PathBuf, resume: bool, stop_after: Option<usize>) -> TrainOptions {
    TrainOptions {
        config: small_config(),
        preprocess: PreprocessSpec {
            channels: 1,
            mean: vec![0.5],
            std: vec![0.25],
            post_scale: 1.0,
            geometry: Geometry::Pad { multiple: 8 },
            motion: None,
        },
        epochs: 2,
        batch: 4,
        sgd: SgdConfig::default(),
        seed: 9,
        augment: AugmentConfig {
            synthesis: srsnet::train::augment::Synthesis::default(),
            crop: Some(16),
            target_bias: 0.5,
            rotate_flip: true,
        },
        val_every: 1,
        out_dir: out,
        resume,
        progress: false,
        device: Device::Cpu,
        stop_after_batches: stop_after,
        hard_negatives: 0.0,
        loss: Default::default(),
        val_threshold: 0.5,
        val_grow: None,
        val_min_pd: 0.0,
        precise_bn: 0,
        ema: None,
        keep_epochs: false,
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn assert_same_checkpoints(a: &std::path::Path, b: &std::path::Path) {
    let (sa, sb) = (WeightStore::open(a).unwrap(), WeightStore::open(b).unwrap());
    assert_eq!(sa.names(), sb.names());
    assert!(
        sa.names().iter().any(|n| n.starts_with("momentum.")),
        "optimiser state is checkpointed"
    );
    for n in sa.names() {
        let x = sa.get_any_shape(&n, DType::F32, &Device::Cpu).unwrap();
        let y = sb.get_any_shape(&n, DType::F32, &Device::Cpu).unwrap();
        let d = common::max_abs_diff(&x, &y);
        assert_eq!(d, 0.0, "{n} differs after resume");
    }
}

fn val_set() -> ValSet {
    ValSet {
        name: "val".into(),
        items: samples(2, 32)
            .into_iter()
            .map(|s| ValItem {
                name: s.name,
                truth: Truth::Mask(s.mask.unwrap().iter().map(|&v| v > 0.5).collect()),
                image: s.image,
            })
            .collect(),
        ordered: false,
    }
}

#[test]
fn resumed_training_equals_uninterrupted() {
    let data = TrainData::new(samples(10, 32), vec![val_set()]);
    let never = Stop::new();

    let straight = tmp("straight");
    assert_eq!(
        train_recon(&options(straight.clone(), false, None), &data, &never).unwrap(),
        Outcome::Finished
    );
    let recon = best_path(&straight, "recon");
    assert_eq!(
        train_seg(
            &options(straight.clone(), false, None),
            &data,
            SegStart::Recon(&recon),
            &never
        )
        .unwrap(),
        Outcome::Finished
    );

    // 3 batches per epoch: stop after 4 (mid-epoch 2), resume, stop again after 1, resume to the end.
    let split = tmp("split");
    assert_eq!(
        train_recon(&options(split.clone(), false, Some(4)), &data, &never).unwrap(),
        Outcome::Interrupted
    );
    assert_eq!(
        train_recon(&options(split.clone(), true, None), &data, &never).unwrap(),
        Outcome::Finished
    );
    assert_same_checkpoints(&last_path(&straight, "recon"), &last_path(&split, "recon"));

    assert_eq!(
        train_seg(
            &options(split.clone(), false, Some(2)),
            &data,
            SegStart::Recon(&recon),
            &never
        )
        .unwrap(),
        Outcome::Interrupted
    );
    assert_eq!(
        train_seg(
            &options(split.clone(), true, Some(1)),
            &data,
            SegStart::Recon(&recon),
            &never
        )
        .unwrap(),
        Outcome::Interrupted
    );
    assert_eq!(
        train_seg(
            &options(split.clone(), true, None),
            &data,
            SegStart::Recon(&recon),
            &never
        )
        .unwrap(),
        Outcome::Finished
    );
    assert_same_checkpoints(&last_path(&straight, "seg"), &last_path(&split, "seg"));
}

#[test]
fn precise_batch_norm_resumes_exactly_and_changes_only_the_running_statistics() {
    let data = TrainData::new(samples(10, 32), vec![]);
    let never = Stop::new();
    let base = tmp("pbn-recon");
    train_recon(&options(base.clone(), false, None), &data, &never).unwrap();
    let recon = best_path(&base, "recon");
    let seg = |out: &PathBuf, resume: bool, stop_after: Option<usize>, precise_bn: usize| {
        let opts = TrainOptions {
            precise_bn,
            ..options(out.clone(), resume, stop_after)
        };
        train_seg(&opts, &data, SegStart::Recon(&recon), &never).unwrap()
    };
    let (plain, precise, split) = (tmp("pbn-plain"), tmp("pbn-precise"), tmp("pbn-split"));
    assert_eq!(seg(&plain, false, None, 0), Outcome::Finished);
    assert_eq!(seg(&precise, false, None, 2), Outcome::Finished);
    // Stopped in epoch 2 (3 batches per epoch), after epoch 1's re-estimate.
    assert_eq!(seg(&split, false, Some(4), 2), Outcome::Interrupted);
    assert_eq!(seg(&split, true, None, 2), Outcome::Finished);
    assert_same_checkpoints(&last_path(&precise, "seg"), &last_path(&split, "seg"));

    // Training itself uses batch statistics: every weight and momentum buffer is the same with
    // and without the re-estimate, and every running statistic differs.
    let (a, b) = (
        WeightStore::open(last_path(&plain, "seg")).unwrap(),
        WeightStore::open(last_path(&precise, "seg")).unwrap(),
    );
    let (mut same, mut moved) = (0, 0);
    for n in a.names().into_iter().filter(|n| n.starts_with("var.seg.")) {
        let d = common::max_abs_diff(
            &a.get_any_shape(&n, DType::F32, &Device::Cpu).unwrap(),
            &b.get_any_shape(&n, DType::F32, &Device::Cpu).unwrap(),
        );
        if n.contains("running_") {
            assert!(d > 0.0, "{n} was not re-estimated");
            moved += 1;
        } else {
            assert_eq!(d, 0.0, "{n} differs");
            same += 1;
        }
    }
    assert!(moved > 20 && same > 50, "{moved} running statistics, {same} weights");
}

fn tensor(store: &WeightStore, name: &str) -> candle_core::Tensor {
    store.get_any_shape(name, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn a_weight_average_resumes_exactly_and_is_what_validation_keeps() {
    let data = TrainData::new(samples(10, 32), vec![val_set()]);
    let never = Stop::new();
    let base = tmp("ema-recon");
    train_recon(&options(base.clone(), false, None), &data, &never).unwrap();
    let recon = best_path(&base, "recon");
    let seg = |out: &PathBuf, resume: bool, stop_after: Option<usize>, ema: Option<f64>| {
        let opts = TrainOptions {
            ema,
            keep_epochs: true,
            precise_bn: 2,
            ..options(out.clone(), resume, stop_after)
        };
        train_seg(&opts, &data, SegStart::Recon(&recon), &never)
    };
    let (plain, averaged, split) = (tmp("ema-plain"), tmp("ema-averaged"), tmp("ema-split"));
    assert_eq!(seg(&plain, false, None, None).unwrap(), Outcome::Finished);
    assert_eq!(seg(&averaged, false, None, Some(0.7)).unwrap(), Outcome::Finished);
    // 3 batches per epoch: stopped in epoch 2, after epoch 1's validation of the average.
    assert_eq!(seg(&split, false, Some(4), Some(0.7)).unwrap(), Outcome::Interrupted);
    assert_eq!(seg(&split, true, None, Some(0.7)).unwrap(), Outcome::Finished);
    assert_same_checkpoints(&last_path(&averaged, "seg"), &last_path(&split, "seg"));
    assert_eq!(kept_epochs(&averaged, "seg").unwrap(), vec![1, 2]);
    assert_same_checkpoints(&epoch_path(&averaged, "seg", 1), &epoch_path(&split, "seg", 1));

    // The average changes nothing SGD does: the raw weights, statistics and momentum are those
    // of the same run without it.
    let (raw, last) = (
        WeightStore::open(last_path(&plain, "seg")).unwrap(),
        WeightStore::open(last_path(&averaged, "seg")).unwrap(),
    );
    for n in raw.names() {
        assert_eq!(common::max_abs_diff(&tensor(&raw, &n), &tensor(&last, &n)), 0.0, "{n}");
    }
    // What validation kept for epoch 2 is the average (`ema.NAME` of the last checkpoint), and
    // the average is not the raw weights.
    let kept = WeightStore::open(epoch_path(&averaged, "seg", 2)).unwrap();
    let mut differ = 0;
    for n in last.names().into_iter().filter(|n| n.starts_with("var.seg.")) {
        let average = tensor(&last, &format!("ema.{}", &n["var.".len()..]));
        assert_eq!(common::max_abs_diff(&tensor(&kept, &n), &average), 0.0, "{n}");
        differ += usize::from(common::max_abs_diff(&average, &tensor(&last, &n)) > 0.0);
    }
    assert!(differ > 50, "{differ} averaged tensors differ from the raw ones");

    // A resume must keep the decay the run started with.
    for (other, says) in [
        (Some(0.8), "this command gives --ema 0.8"),
        (None, "this command gives no --ema"),
    ] {
        let err = format!("{:#}", seg(&split, true, None, other).expect_err("refused"));
        assert!(
            err.contains("seg-last.ckpt.safetensors") && err.contains("started with --ema 0.7") && err.contains(says),
            "{err}"
        );
    }
}

fn pool(dir: &std::path::Path) -> Vec<srsnet::train::mining::HardNegative> {
    Checkpoint::open(&last_path(dir, "seg")).unwrap().state.hard_negatives
}

/// 64×64 frames of two bright targets of which only the first is in the mask: the shipped
/// weights find both, so the second is a false target for mining to find. Also returns where
/// the second target is in each frame.
fn half_labelled(n: usize) -> (Vec<Sample>, Vec<(f64, f64)>) {
    let mut scene = Scene::new(SceneConfig {
        width: 64,
        height: 64,
        targets: 2,
        seed: 5,
        contrast: 0.4,
        ..Default::default()
    });
    (0..n)
        .map(|i| {
            let (img, truth) = scene.frame(i * 5);
            let mut mask = vec![0f32; 64 * 64];
            let (x, y) = (truth[0].x.round() as usize, truth[0].y.round() as usize);
            mask[y * 64 + x] = 1.0;
            let sample = Sample {
                name: format!("h{i}"),
                image: Frame::new(64, 64, 1, img).unwrap(),
                mask: Some(mask),
            };
            (sample, (truth[1].x, truth[1].y))
        })
        .unzip()
}

#[test]
fn a_fine_tune_mining_hard_negatives_resumes_exactly() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/srsnet-lite.safetensors");
    let file = WeightsFile::open(&shipped).unwrap();
    let opts = |out: PathBuf, resume: bool, stop_after: Option<usize>| TrainOptions {
        config: file.config.clone(),
        preprocess: file.preprocess.clone(),
        augment: AugmentConfig {
            crop: Some(32),
            ..options(out.clone(), resume, stop_after).augment
        },
        val_every: 2,
        hard_negatives: 0.5,
        loss: srsnet::train::loss::LossConfig {
            negative: srsnet::train::loss::NegativeLoss::Logits,
            negative_weight: 0.5,
            target_weight: 0.5,
        },
        ..options(out, resume, stop_after)
    };
    let (samples, unlabelled) = half_labelled(8);
    let data = TrainData::new(samples, Vec::new());
    let never = Stop::new();
    let from = SegStart::FineTune(&file);

    let straight = tmp("mining-straight");
    let done = train_seg(&opts(straight.clone(), false, None), &data, from, &never).unwrap();
    assert_eq!(done, Outcome::Finished);

    // 2 batches per epoch: stop after 1, resume to the end.
    let split = tmp("mining-split");
    let first = train_seg(&opts(split.clone(), false, Some(1)), &data, from, &never).unwrap();
    assert_eq!(first, Outcome::Interrupted);
    // Mined before the first batch: the unlabelled second target of each frame, near its truth.
    let mined = pool(&split);
    let near_unlabelled = mined.iter().filter(|h| {
        let (x, y) = unlabelled[h.sample];
        (h.x as f64 - x).abs() <= 2.0 && (h.y as f64 - y).abs() <= 2.0
    });
    assert!(near_unlabelled.count() >= 6, "{mined:?}");
    let rest = train_seg(&opts(split.clone(), true, None), &data, from, &never).unwrap();
    assert_eq!(rest, Outcome::Finished);
    assert_same_checkpoints(&last_path(&straight, "seg"), &last_path(&split, "seg"));
}
