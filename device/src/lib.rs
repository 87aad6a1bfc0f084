//! The device side of ArmoredTwins, as a library a real device embeds (the `at-device` simulator is
//! a thin binary over it):
//! - phase 1, [`setup`]: keys made on the device, the public card exported for the owner, the
//!   owner's identity pinned;
//! - phase 3, [`Device::record`]: a state change signed by the device and sealed under the epoch
//!   key of its attribute set (one DEK and capsule per epoch and attribute set);
//! - phase 4, [`Device::handle_downlink`]: deliveries decrypted and accepted only when written by
//!   the owner, an enrolled device of the twin (from the owner-signed roster) or a write-token holder;
//!   duplicates dropped; state and sequence number persisted;
//! - [`link::run`]: the MQTT link (persistent session, QoS 1, reconnect with backoff).
#![forbid(unsafe_code)]

mod device;
mod files;
pub mod link;

pub use device::{Device, DeviceError, Event, State};
pub use files::{pin_owner, setup, Card};
