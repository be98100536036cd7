//! The streaming runtime: sources → preprocess → inference → postprocess → sinks, one thread
//! per stage joined by bounded channels (`pipeline` holds the topology).

pub mod defects;
pub mod frame;
pub mod motion;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod publish;
pub mod register;
pub mod sinks;
pub mod sources;
pub mod stats;
pub mod stop;
