//! Evaluation: the field's metrics and the training-free baseline.

pub mod metrics;
pub mod tophat;
