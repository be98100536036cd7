//! SRSNet infrared small-target runtime: the network (`model`), single-frame inference and
//! the command implementations behind the `srsnet` binary.

pub mod model;
