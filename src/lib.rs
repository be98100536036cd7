//! SRSNet infrared small-target runtime: the network (`model`), single-frame inference and
//! the command implementations behind the `srsnet` binary.

#![warn(missing_docs)]

pub mod calibration;
pub mod cli;
pub mod compare;
pub mod dataset;
pub mod detect;
pub mod device;
pub mod engine;
pub mod eval;
pub mod heap;
pub mod image_io;
pub mod infer;
pub mod limits;
pub mod model;
pub mod overlay;
pub mod plot;
pub mod preprocess;
pub mod progress;
pub mod robust;
pub mod stream;
pub mod synthetic;
pub mod temporal;
pub mod tensor_file;
pub mod train;
pub mod verify;
