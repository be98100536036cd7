use candle_core::{Device, Tensor, D};
use std::time::Instant;
fn ms<T>(f: impl Fn() -> T) -> f64 {
    let _ = f();
    let t = Instant::now();
    for _ in 0..3 {
        let _ = f();
    }
    t.elapsed().as_secs_f64() * 1e3 / 3.0
}
fn main() {
    let d = Device::Cpu;
    let b = 8;
    for (cin, cout, k, hw) in [
        (8usize, 8usize, 3usize, 96usize),
        (2, 1, 7, 96),
        (64, 64, 3, 12),
        (16, 16, 3, 48),
        (24, 8, 3, 96),
    ] {
        let x = Tensor::randn(0f32, 1., (b, cin, hw, hw), &d).unwrap();
        let w = Tensor::randn(0f32, 1., (cout, cin, k, k), &d).unwrap();
        let g = Tensor::randn(0f32, 1., (b, cout, hw, hw), &d).unwrap();
        let p = k / 2;
        let fwd = ms(|| x.conv2d(&w, p, 1, 1, 1).unwrap());
        let ct = ms(|| g.conv_transpose2d(&w, p, 0, 1, 1).unwrap());
        let rev: Vec<u32> = (0..k as u32).rev().collect();
        let rev = Tensor::new(rev.as_slice(), &d).unwrap();
        let wf = w
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&rev, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&rev, 3)
            .unwrap()
            .contiguous()
            .unwrap();
        let gx2 = ms(|| g.conv2d(&wf, k - 1 - p, 1, 1, 1).unwrap());
        let a = g.conv_transpose2d(&w, p, 0, 1, 1).unwrap();
        let bb = g.conv2d(&wf, k - 1 - p, 1, 1, 1).unwrap();
        let diff = (a - bb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let gw_candle = ms(|| {
            x.transpose(0, 1)
                .unwrap()
                .conv2d(&g.transpose(0, 1).unwrap(), p, 1, 1, 1)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
        });
        let gw_unfold = ms(|| {
            let xp = x.pad_with_zeros(2, p, p).unwrap().pad_with_zeros(3, p, p).unwrap();
            let mut cols = vec![];
            for ky in 0..k {
                for kx in 0..k {
                    cols.push(xp.narrow(2, ky, hw).unwrap().narrow(3, kx, hw).unwrap());
                }
            }
            let cols = Tensor::stack(&cols, 2)
                .unwrap()
                .reshape((b, cin * k * k, hw * hw))
                .unwrap();
            g.reshape((b, cout, hw * hw))
                .unwrap()
                .matmul(&cols.transpose(1, 2).unwrap())
                .unwrap()
                .sum(0)
                .unwrap()
        });
        let _ = D::Minus1;
        println!("{cin}->{cout} k{k} @{hw}: fwd {fwd:.1} | gx convT {ct:.1} vs conv-flip {gx2:.1} (diff {diff:.1e}) | gw candle {gw_candle:.1} vs unfold {gw_unfold:.1} ms");
    }
}
