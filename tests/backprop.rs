//! Candle's backward pass with our patch (vendor/candle-core/PATCH.md: a gradient's first
//! contribution is stored as it is, not added to zeros), checked against analytic gradients
//! on the cases the patch touches: a tensor used several times, subtraction, broadcasting,
//! a view (transpose) as the first contribution, and reductions.

use candle_core::{Device, Tensor, Var};

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

#[test]
fn gradients_of_shared_subtracted_and_broadcast_terms_are_exact() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let xv: Vec<f32> = (0..6).map(|i| 0.5 * i as f32 - 1.0).collect();
    let wv: Vec<f32> = (0..6).map(|i| 1.0 + 0.25 * i as f32).collect();
    let x = Var::from_tensor(&Tensor::from_vec(xv.clone(), (2, 3), &dev)?)?;
    let w = Var::from_tensor(&Tensor::from_vec(wv.clone(), (2, 3), &dev)?)?;
    let b = Var::from_tensor(&Tensor::new(&[0.5f32, -2.0, 3.0], &dev)?)?;
    // L = Σ (x − x²)·w + Σ (xᵀ)ᵀ·b_broadcast − Σ w + max(x)
    let xs = x.as_tensor();
    let term1 = (xs - xs.sqr()?)?.mul(w.as_tensor())?.sum_all()?;
    let bt = b.as_tensor().unsqueeze(0)?.broadcast_as((2, 3))?;
    let term2 = xs.t()?.t()?.mul(&bt)?.sum_all()?;
    let loss = ((term1 + term2)? - w.as_tensor().sum_all()?)?.add(&xs.flatten_all()?.max(0)?)?;
    let g = loss.backward()?;
    let gx = g.get(xs).unwrap().flatten_all()?.to_vec1::<f32>()?;
    let gw = g.get(w.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?;
    let gb = g.get(b.as_tensor()).unwrap().to_vec1::<f32>()?;
    let bv = [0.5f32, -2.0, 3.0];
    let max_at = 5; // x is increasing
    let want_x: Vec<f32> = (0..6)
        .map(|i| (1.0 - 2.0 * xv[i]) * wv[i] + bv[i % 3] + if i == max_at { 1.0 } else { 0.0 })
        .collect();
    let want_w: Vec<f32> = (0..6).map(|i| xv[i] - xv[i] * xv[i] - 1.0).collect();
    let want_b: Vec<f32> = (0..3).map(|j| xv[j] + xv[j + 3]).collect();
    close(&gx, &want_x);
    close(&gw, &want_w);
    close(&gb, &want_b);
    Ok(())
}

#[test]
fn a_view_stored_as_the_first_contribution_is_a_plain_gradient() -> candle_core::Result<()> {
    // The first (and only) contribution to x's gradient is a transposed view; it must read
    // as the right values and layout, and adding a second one later must still be exact.
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::arange(0f32, 6.0, &dev)?.reshape((2, 3))?)?;
    let m = Tensor::arange(1f32, 7.0, &dev)?.reshape((3, 2))?;
    let loss = x.as_tensor().t()?.mul(&m)?.sum_all()?;
    let g = loss.backward()?;
    let gx = g.get(x.as_tensor()).unwrap();
    assert_eq!(gx.dims(), &[2, 3]);
    assert!(gx.is_contiguous());
    assert_eq!(gx.to_vec2::<f32>()?, vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]);
    let loss2 = (x.as_tensor().t()?.mul(&m)?.sum_all()? + x.as_tensor().sum_all()?)?;
    let g2 = loss2.backward()?.get(x.as_tensor()).unwrap().to_vec2::<f32>()?;
    assert_eq!(g2, vec![vec![2.0, 4.0, 6.0], vec![3.0, 5.0, 7.0]]);
    Ok(())
}
