//! `Verified<T>`: a value from the wire that passed its checks (signature, expiry, keys, revocation).
//! Only this crate constructs one, so downstream code that takes a `Verified<T>` cannot be handed an
//! unchecked value.

/// A value that passed verification. Construct it only through this crate's `verify` functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    /// Gives up the proof of verification.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> core::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
