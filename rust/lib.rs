//! Rust core of koemorph-data.
//!
//! Pure Rust (no PyO3 types outside `bindings`): blendshape JSONL parsing, frame-rate
//! conversion, audio/frame alignment, the take manifest's lines, epoch window plans and
//! window gathering.
//! `cargo test` covers all of it without a Python interpreter.
pub mod arkit;
pub mod fps;
pub mod gather;
pub mod jsonl;
pub mod manifest;
pub mod plan;
pub mod pool;
pub mod rng;
pub mod timing;
pub mod track;

#[cfg(feature = "python")]
mod bindings;
