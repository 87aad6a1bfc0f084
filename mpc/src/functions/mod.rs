//! Functions computed on the engine.

pub mod contact_tracing;
