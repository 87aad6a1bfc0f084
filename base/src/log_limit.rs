//! A bound on repeated log lines: every refused input from an attacker must not become a log line
//! (a flood of bad records would fill the disk and drown what matters). The metric and the
//! dead-letter record still count every one; the log keeps the first few of each second and says
//! how many it left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_second` lines a second; the rest are counted and reported with the next line.
#[derive(Debug)]
pub struct LogLimit {
    per_second: u32,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Lets `per_second` lines through each second.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            state: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if this line may be logged, `n` being how many were left out since the last
    /// one logged; `None` if it must be left out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let Ok(mut w) = self.state.lock() else {
            return Some(0);
        };
        if w.start
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1))
        {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged >= self.per_second {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_few_through_each_second_and_counts_the_rest() {
        let l = LogLimit::new(3);
        let t0 = Instant::now();
        let first: Vec<_> = (0..10).map(|_| l.admit(t0)).collect();
        assert_eq!(&first[..3], &[Some(0), Some(0), Some(0)]);
        assert!(first[3..].iter().all(Option::is_none));
        // The next second's first line says how many were left out.
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), Some(7));
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), Some(0));
    }
}
