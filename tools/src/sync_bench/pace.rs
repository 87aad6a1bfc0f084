//! Flow control of a run: publishers wait while `backlog` messages are published and not yet
//! received by the slowest receiver. An MQTT PUBACK comes from the broker, not from whoever reads
//! the message, so without this a fast publisher only fills the broker's queue; with it, the
//! publish rate settles at what the slowest stage sustains (the run's maximum rate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long publishers wait on receivers that make no progress before the run fails.
pub const STALL: Duration = Duration::from_secs(60);

/// Published and received counters, and the bound between them.
#[derive(Debug)]
pub struct Pace {
    published: AtomicU64,
    received: Vec<Arc<AtomicU64>>,
    /// What the receivers had counted before the run.
    base: u64,
    backlog: u64,
}

impl Pace {
    /// A pace over `received` (one counter per receiver), which stood at `base` before the run.
    pub fn new(backlog: u64, received: Vec<Arc<AtomicU64>>, base: u64) -> Self {
        Self {
            published: AtomicU64::new(0),
            received,
            base,
            backlog: backlog.max(1),
        }
    }

    /// Received by the slowest receiver since the run began.
    pub fn slowest(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
            .saturating_sub(self.base)
    }

    /// Waits for room for one more message, then counts it published; fails when the receivers
    /// made no progress for [`STALL`].
    pub async fn admit(&self) -> anyhow::Result<()> {
        let mut last = (self.slowest(), Instant::now());
        while self.published.load(Ordering::Relaxed) >= self.slowest() + self.backlog {
            let now = self.slowest();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > STALL {
                anyhow::bail!(
                    "stalled: {} published, the slowest receiver at {now} for {STALL:?}",
                    self.published.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_backlog_of_the_slowest_receiver() {
        let (a, b) = (Arc::new(AtomicU64::new(10)), Arc::new(AtomicU64::new(10)));
        let pace = Arc::new(Pace::new(2, vec![a.clone(), b.clone()], 10));
        pace.admit().await.expect("room");
        pace.admit().await.expect("room");
        let third = {
            let pace = pace.clone();
            tokio::spawn(async move { pace.admit().await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!third.is_finished(), "a third message waits for a receiver");
        a.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !third.is_finished(),
            "one receiver alone does not make room"
        );
        b.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(2), third)
            .await
            .expect("room once the slowest receiver has one")
            .expect("task")
            .expect("no stall");
    }
}
