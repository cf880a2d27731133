//! Watching credentials between rotations: what every source holds (`observe`), what is wrong with
//! it (`findings`, `metrics`), whether it is due (`due`), telling people (`alerts`), and the
//! `rekey run` cycle and `rekey daemon` loop built from them.

pub mod alerts;
pub mod audited;
mod batch;
pub mod budget;
pub mod daemon;
pub mod due;
pub mod findings;
mod leader;
pub mod metrics;
pub mod observe;
pub mod run;
pub mod secret_findings;
