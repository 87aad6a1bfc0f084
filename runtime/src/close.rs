//! A bound on closing a group consumer. rdkafka's `BaseConsumer` leaves its group when dropped and
//! waits, without a limit, until the group coordinator has answered; after a broker restart that
//! answer may never come (seen: a consumer's drop polling for over 20 minutes, so the service and
//! its runtime never finished shutting down). Here the close runs on a thread of its own and is
//! waited for at most [`CLOSE_WAIT`]; after that the broker drops the member at its session timeout.

use std::ops::Deref;
use std::sync::mpsc;
use std::time::Duration;

/// How long dropping waits for the consumer to leave its group.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A value whose drop (a consumer's close) may block: it runs on its own thread, waited for at
/// most [`CLOSE_WAIT`].
pub struct BoundedClose<T: Send + 'static>(Option<T>, Duration);

impl<T: Send + 'static> BoundedClose<T> {
    /// Wraps `value`; its drop is waited for at most [`CLOSE_WAIT`].
    pub fn new(value: T) -> Self {
        Self::with_wait(value, CLOSE_WAIT)
    }

    /// Wraps `value`; its drop is waited for at most `wait`.
    pub fn with_wait(value: T, wait: Duration) -> Self {
        Self(Some(value), wait)
    }
}

impl<T: Send + 'static> std::fmt::Debug for BoundedClose<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedClose")
            .field("wait", &self.1)
            .finish()
    }
}

impl<T: Send + 'static> Deref for BoundedClose<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `drop` takes the value out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("BoundedClose used after drop"))
    }
}

impl<T: Send + 'static> Drop for BoundedClose<T> {
    fn drop(&mut self) {
        let Some(value) = self.0.take() else { return };
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("close".into())
            .spawn(move || {
                drop(value);
                let _ = done_tx.send(());
            });
        if spawned.is_ok() && done_rx.recv_timeout(self.1).is_err() {
            tracing::warn!(
                wait_ms = self.1.as_millis() as u64,
                "the consumer did not leave its group in time; the broker drops it at its session timeout"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    struct Slow(Arc<AtomicBool>, Duration);
    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(self.1);
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_quick_close_is_waited_for() {
        let closed = Arc::new(AtomicBool::new(false));
        drop(BoundedClose::new(Slow(
            closed.clone(),
            Duration::from_millis(50),
        )));
        assert!(closed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_close_that_hangs_is_left_behind_after_the_wait() {
        let closed = Arc::new(AtomicBool::new(false));
        let (wait, hang) = (Duration::from_millis(100), Duration::from_secs(5));
        let t0 = Instant::now();
        drop(BoundedClose::with_wait(Slow(closed.clone(), hang), wait));
        assert!(t0.elapsed() < hang);
        assert!(!closed.load(Ordering::SeqCst));
    }
}
