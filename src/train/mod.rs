//! Training both SRSNet stages: losses, the optimiser, data, augmentation and the loop.

pub mod loss;
pub mod optim;
pub mod stages;
