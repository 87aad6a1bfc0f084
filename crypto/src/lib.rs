//! placeholder
#![forbid(unsafe_code)]
pub mod domain;
pub mod encoding;
pub mod error;
pub mod group;
pub use error::{Error, Result};
