use candle_core::{Device, Tensor, Var};
use std::time::Instant;
fn unfold_conv(x: &Tensor, w: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let (cout, _, k, _) = w.dims4()?;
    let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let mut cols = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            cols.push(xp.narrow(2, ky, h)?.narrow(3, kx, wd)?);
        }
    }
    let cols = Tensor::stack(&cols, 2)?.reshape((b, cin * k * k, h * wd))?;
    let wm = w.reshape((cout, cin * k * k))?;
    let y = wm.broadcast_left(b)?.matmul(&cols)?;
    y.reshape((b, cout, h, wd))
}
fn main() {
    let d = Device::Cpu;
    let b = 8;
    for (cin, cout, k, hw) in [
        (8usize, 8usize, 3usize, 256usize),
        (2, 1, 7, 256),
        (64, 64, 3, 32),
        (16, 16, 3, 128),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, cin, hw, hw), &d).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (cout, cin, k, k), &d).unwrap()).unwrap();
        let t0 = Instant::now();
        let y = x.as_tensor().conv2d(w.as_tensor(), k / 2, 1, 1, 1).unwrap();
        let t1 = Instant::now();
        let g = y.sum_all().unwrap().backward().unwrap();
        let t2 = Instant::now();
        let y2 = unfold_conv(x.as_tensor(), w.as_tensor(), k / 2).unwrap();
        let t3 = Instant::now();
        let g2 = y2.sum_all().unwrap().backward().unwrap();
        let t4 = Instant::now();
        let d1 = (y - &y2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let gw = (g.get(w.as_tensor()).unwrap() - g2.get(w.as_tensor()).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let gx = (g.get(x.as_tensor()).unwrap() - g2.get(x.as_tensor()).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{cin}->{cout} k{k} @{hw}: candle fwd {:.0} bwd {:.0} ms | unfold fwd {:.0} bwd {:.0} ms | diff y {d1:.1e} gw {gw:.1e} gx {gx:.1e}",
            (t1-t0).as_secs_f64()*1e3, (t2-t1).as_secs_f64()*1e3, (t3-t2).as_secs_f64()*1e3, (t4-t3).as_secs_f64()*1e3);
    }
}
