//! A scalar that is secret key material: zeroized on drop, never printed.

use super::Scalar;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret scalar (x, t, s, shares of x - t). Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SecretScalar(Scalar);

impl SecretScalar {
    /// Wraps a scalar that must stay secret.
    pub fn new(s: Scalar) -> Self {
        Self(s)
    }

    /// Borrows the value for a computation.
    pub fn expose(&self) -> &Scalar {
        &self.0
    }
}

impl Zeroize for SecretScalar {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for SecretScalar {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretScalar {}

impl core::fmt::Debug for SecretScalar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretScalar(<redacted>)")
    }
}
