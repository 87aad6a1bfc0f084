//! What every service says when it refuses input: a typed error with a bounded reason label.
//!
//! The label goes into the `reason` label of the refusal counters and the `at-reason` header of a
//! dead letter, so it must come from a fixed set (an attacker must not be able to grow a metric's
//! cardinality); the error's `Display` goes into `at-detail` and logs (our errors never carry
//! secrets or plaintext).

/// A refusal of hostile or unusable input, with a bounded reason label.
pub trait Refusal: std::error::Error {
    /// Bounded label (`snake_case`, from a fixed set) for metrics and dead-letter headers.
    fn reason(&self) -> &'static str;
}
