//! placeholder
#![forbid(unsafe_code)]
pub mod domain;
pub mod encoding;
pub mod envelope;
pub mod error;
pub mod group;
pub mod keyid;
pub mod kpcpre;
pub mod sym;
pub use error::{Error, Result};
