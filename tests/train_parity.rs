//! Three SGD steps of each training stage reproduce the reference's losses, parameters and
//! BatchNorm running statistics (`../shared/fixtures/train/tiny_train.safetensors`, made by
//! the reference in PyTorch f32). Tolerances: losses 1e-4 relative; tensors 1e-4·max(1, max|ref|).

mod common;
use candle_core::{DType, Device};
use common::*;
use srsnet::model::weights::VarSource;
use srsnet::model::Weights;
use srsnet::train::optim::SgdConfig;
use srsnet::train::stages::{ReconStage, SegStage};
use std::path::Path;

fn check_final(fx: &Path, vars: &VarSource, from: &str, to: &str) {
    let mut worst = 0f32;
    for (name, var) in vars.vars() {
        let ref_name = name.replacen(from, to, 1);
        let reference = io_tensor(fx, &ref_name);
        let err = max_abs_diff(var.as_tensor(), &reference);
        let bound = 1e-4 * max_abs(&reference).max(1.0);
        assert!(err <= bound, "{ref_name}: max abs err {err} > {bound}");
        worst = worst.max(err / bound);
    }
    eprintln!(
        "{to}: {} tensors within tolerance (worst at {:.1}% of its bound)",
        vars.vars().len(),
        worst * 100.0
    );
}

fn check_losses(ours: &[f64], fx: &Path, name: &str) {
    let reference = common::store(fx)
        .get_any_shape(name, DType::F64, &Device::Cpu)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        let rel = (a - b).abs() / b.abs().max(1e-30);
        eprintln!("{name}[{i}]: ours {a:.9e} ref {b:.9e} rel {rel:.2e}");
        assert!(rel <= 1e-4, "{name}[{i}]: ours {a} ref {b}");
    }
}

#[test]
fn three_steps_of_each_stage_match_the_reference() {
    let Some(fx) = shared("fixtures/train/tiny_train.safetensors") else {
        return;
    };
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let x = io_tensor(&fx, "input");
    let mask = io_tensor(&fx, "mask");
    let store = common::store(&fx);

    // Stage 1.
    let rvars = VarSource::new(Some(store.clone()), 0);
    let rw = Weights::from_vars(rvars.clone(), DType::F32, &dev).pp("r_init");
    let mut r = ReconStage::new(&rw, rvars.clone(), &cfg, SgdConfig::default(), 3).unwrap();
    let losses: Vec<f64> = (0..3).map(|_| r.step(&x).unwrap()).collect();
    check_losses(&losses, &fx, "r_losses");
    check_final(&fx, &rvars, "r_init.", "r_final.");

    // Stage 2, with R's encoder from the reference's stage-1 result.
    let svars = VarSource::new(Some(store.clone()), 0);
    let sw = Weights::from_vars(svars.clone(), DType::F32, &dev).pp("s_init");
    let recon = Weights::new(store, DType::F32, &dev).pp("r_final");
    let mut s = SegStage::new(&sw, svars.clone(), &recon, &cfg, SgdConfig::default(), 3).unwrap();
    let losses: Vec<f64> = (0..3).map(|_| s.step(&x, &mask).unwrap()).collect();
    check_losses(&losses, &fx, "s_losses");
    check_final(&fx, &svars, "s_init.", "s_final.");
}
