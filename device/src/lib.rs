//! The device side of ArmoredTwins, as a library a real device embeds (the `at-device` simulator is
//! a thin binary over it):
//! - phase 1, [`setup`]: keys made on the device, the public card exported for the owner, the
//!   owner's identity pinned;
//! - phase 3, [`Device::record`]: a state change signed by the device and sealed under the epoch
//!   key of its attribute set (one DEK and capsule per epoch and attribute set);
//! - phase 4, [`Device::handle_downlink`]: deliveries decrypted and accepted only when written by
//!   the owner, an enrolled device of the twin (from the owner-signed roster) or a write-token holder;
//!   duplicates dropped; state and sequence number persisted;
//! - phase 3+, [`Device::share_point`]: a location point split into three Shamir shares, each
//!   signed and sealed for one MPC node (`mpc-share`, `node-j`, `location`; one DEK per slot and
//!   node); [`sim`] is the deterministic location simulator of the demos;
//! - [`link::run`]: the MQTT link (persistent session, QoS 1, reconnect with backoff).
#![forbid(unsafe_code)]

mod device;
mod error;
mod files;
pub mod link;
pub mod outbox;
pub mod sim;

pub use device::ShareState;
pub use device::{Device, DeviceError, Event, State};
pub use files::{
    pin_owner, setup, setup_with_slot_len, setup_with_slots, Card, DEFAULT_SLOT_LEN_MS,
};
