//! What inference calls on the CPU: a cache of plans (one per input size) and the thread
//! pool they run on.

use super::plan::Plan;
use super::simd::Isa;
use super::threads::ThreadPool;
use crate::model::Srsnet;
use anyhow::{Context, Result};

/// Which implementation runs the network on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// The inference plan of fused kernels (the default).
    #[default]
    Plan,
    /// The Candle graph, as training runs it: the reference path, kept for comparison.
    Candle,
}

/// Plans kept at once; a stream that alternates between more sizes rebuilds the oldest.
const CACHED_PLANS: usize = 4;

/// Plans by input size, and the pool their kernels run on.
#[derive(Debug)]
pub struct CpuEngine {
    pool: ThreadPool,
    isa: Isa,
    plans: Vec<Plan>,
}

impl CpuEngine {
    /// An engine of `threads` kernel threads using `isa`.
    pub fn new(threads: usize, isa: Isa) -> Result<Self> {
        Ok(Self {
            pool: ThreadPool::new(threads).context("starting the engine's kernel threads")?,
            isa,
            plans: Vec::new(),
        })
    }

    /// Kernel threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The instruction set the kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs one frame `(channels, h, w)` into `logits` (h × w), building the plan for its size
    /// on first use (the oldest of [`CACHED_PLANS`] is dropped for a new size).
    pub fn forward(&mut self, model: &Srsnet, input: &[f32], h: usize, w: usize, logits: &mut [f32]) -> Result<()> {
        let i = match self.plans.iter().position(|p| p.size == (h, w)) {
            Some(i) => i,
            None => {
                if self.plans.len() == CACHED_PLANS {
                    self.plans.remove(0);
                }
                self.plans.push(Plan::build(model, h, w, self.isa)?);
                self.plans.len() - 1
            }
        };
        self.plans[i].run(&self.pool, input, logits)
    }

    /// The pool, for callers that run a plan themselves (bench, tests).
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }
}
