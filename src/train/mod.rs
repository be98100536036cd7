//! Training both SRSNet stages: losses, the optimiser, data, augmentation and the loop.

pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod ema;
pub mod loss;
pub mod mining;
pub mod motion;
pub mod optim;
pub mod recipe;
pub mod stages;
pub mod trainer;
pub mod verifier;
