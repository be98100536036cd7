use candle_core::{Device, Tensor};
use std::time::Instant;
fn t(name: &str, f: impl Fn() -> candle_core::Result<Tensor>) {
    let _ = f().unwrap();
    let n = 20;
    let t0 = Instant::now();
    for _ in 0..n {
        let _ = f().unwrap();
    }
    println!("{name}: {:.2} ms", t0.elapsed().as_secs_f64() * 1e3 / n as f64);
}
fn main() {
    let d = Device::Cpu;
    let b: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let x = Tensor::randn(0f32, 1., (b, 8, 256, 256), &d).unwrap();
    let k = Tensor::randn(0f32, 1., (8, 8, 3, 3), &d).unwrap();
    let k7 = Tensor::randn(0f32, 1., (1, 2, 7, 7), &d).unwrap();
    let ca = Tensor::randn(0f32, 1., (b, 8, 1, 1), &d).unwrap();
    let sa = Tensor::randn(0f32, 1., (b, 1, 256, 256), &d).unwrap();
    let bias = Tensor::randn(0f32, 1., (1, 8, 1, 1), &d).unwrap();
    t("conv3x3 8->8", || x.conv2d(&k, 1, 1, 1, 1));
    t("conv7x7 2->1", || x.narrow(1, 0, 2)?.conv2d(&k7, 3, 1, 1, 1));
    t("bias add", || x.broadcast_add(&bias));
    t("ca mul", || x.broadcast_mul(&ca));
    t("sa mul", || x.broadcast_mul(&sa));
    t("relu", || x.relu());
    t("add", || x.add(&x));
    t("mean_keepdim(1)", || x.mean_keepdim(1));
    t("max_keepdim(1)", || x.max_keepdim(1));
    t("sigmoid", || candle_nn::ops::sigmoid(&sa));
    t("pool", || srsnet::model::layers::pool(&x));
    t("maxpool2d", || x.max_pool2d(2));
    t("upsample x2 from 128", || {
        srsnet::model::layers::upsample(&x.narrow(2, 0, 128)?.narrow(3, 0, 128)?.contiguous()?, 2)
    });
    t("upsample native", || {
        x.narrow(2, 0, 128)?
            .narrow(3, 0, 128)?
            .contiguous()?
            .upsample_bilinear2d(256, 256, true)
    });
    t("cat", || Tensor::cat(&[&x, &x], 1));
}
