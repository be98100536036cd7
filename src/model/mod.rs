//! The SRSNet network in Candle: configuration, layers, the two nets and their weights.

pub mod attention;
pub mod batchnorm_train;
pub mod block;
pub mod cbam_op;
pub mod config;
pub mod conv;
pub mod cpu_storage;
pub mod dpconv;
pub mod dpconv_op;
pub mod fusion;
pub mod layers;
pub mod resample_op;
pub mod srsnet;
pub mod unet;
pub mod weights;
pub mod weights_file;

pub use config::{ModelConfig, NetConfig};
pub use srsnet::{ReconNet, SegNet, SegTrace, Srsnet};
pub use weights::{WeightStore, Weights, WeightsError};
