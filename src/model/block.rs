//! The Res-CBAM block (`Dense_BasicBlock_MALC`) and a layer of them.

use super::attention::{ChannelAttention, SpatialAttention};
use super::cbam_op;
use super::layers::{ConvBn, ConvSpec};
use super::weights::{Weights, WeightsError};
use candle_core::{Module, Result, Tensor};

/// `relu(SA∘CA(BN2(conv2(relu(BN1(conv1 x))))) + shortcut(x))`.
/// The shortcut is `BN(conv1x1 x)` when the width changes, else the identity.
/// State-dict names: `conv1`/`bn1` (cin→cout), `CONV`/`bn2` (cout→cout), `ca`, `sa`, `shortcut.{0,1}`.
#[derive(Debug, Clone)]
pub struct ResCbamBlock {
    pub(crate) conv1: ConvBn,
    pub(crate) conv2: ConvBn,
    pub(crate) ca: ChannelAttention,
    pub(crate) sa: SpatialAttention,
    pub(crate) shortcut: Option<ConvBn>,
}

impl ResCbamBlock {
    /// Loads a Res-CBAM block from `cin` to `cout` channels.
    pub fn load(w: &Weights, cin: usize, cout: usize) -> std::result::Result<Self, WeightsError> {
        let shortcut = if cin != cout {
            let s = w.pp("shortcut");
            Some(ConvBn::load(&s.pp(0), &s.pp(1), ConvSpec::same(cin, cout, 1))?)
        } else {
            None
        };
        Ok(Self {
            conv1: ConvBn::load(&w.pp("conv1"), &w.pp("bn1"), ConvSpec::same(cin, cout, 3))?,
            conv2: ConvBn::load(&w.pp("CONV"), &w.pp("bn2"), ConvSpec::same(cout, cout, 3))?,
            ca: ChannelAttention::load(&w.pp("ca"), cout)?,
            sa: SpatialAttention::load(&w.pp("sa"))?,
            shortcut,
        })
    }
}

impl Module for ResCbamBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let residual = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        let t = self.conv1.forward_relu(x)?;
        let t = self.conv2.forward(&t)?;
        let ca = self.ca.forward(&t)?;
        if cbam_op::applies(&[&t, &ca, &residual]) {
            // The same maths in two passes over the map, without the gated intermediates.
            let sa = self.sa.gate(&cbam_op::channel_pool(&t, &ca)?)?;
            return cbam_op::scale_add_relu(&t, &ca, &sa, &residual);
        }
        let t = t.broadcast_mul(&ca)?;
        let t = t.broadcast_mul(&self.sa.forward(&t)?)?;
        (t + residual)?.relu()
    }
}

/// `Block(cin, cout)` followed by `n − 1` copies of `Block(cout, cout)`, named `0..n`.
#[derive(Debug, Clone)]
pub struct Layer {
    pub(crate) blocks: Vec<ResCbamBlock>,
}

impl Layer {
    /// Loads `n` Res-CBAM blocks, the first from `cin` to `cout` channels.
    pub fn load(w: &Weights, cin: usize, cout: usize, n: usize) -> std::result::Result<Self, WeightsError> {
        let blocks = (0..n)
            .map(|i| ResCbamBlock::load(&w.pp(i), if i == 0 { cin } else { cout }, cout))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { blocks })
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.blocks.iter().try_fold(x.clone(), |x, b| b.forward(&x))
    }
}
