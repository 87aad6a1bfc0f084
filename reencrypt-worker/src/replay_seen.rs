//! History replays run once per request. A replay request is a signed record anyone who captured
//! it could append again, and each copy would re-deliver the whole history; so a worker refuses a
//! request it finished (its id is kept, persisted next to the revoked re-keys) or is running, and
//! any request issued more than [`MAX_AGE_MS`] ago (or ahead of the clock by more than
//! [`SKEW_MS`]), which also bounds what it keeps. A replay that failed (to be redone) is not kept:
//! the same record, redelivered, runs again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::rekeys::StateFileError;

/// Oldest `issued_at_ms` a replay request may carry.
pub const MAX_AGE_MS: u64 = 24 * 3_600_000;
/// How far ahead of the worker's clock `issued_at_ms` may be.
pub const SKEW_MS: u64 = 5 * 60_000;

/// Why a replay request is not run (again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAgain {
    /// Issued too long ago, or in the future.
    Stale,
    /// Finished already, or running.
    Duplicate,
}

/// Finished and running replay requests.
#[derive(Debug)]
pub struct SeenReplays {
    path: Option<PathBuf>,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    running: HashSet<String>,
    /// Request id → its `issued_at_ms`.
    done: BTreeMap<String, u64>,
}

impl SeenReplays {
    /// Reads the finished requests kept in `path` (lines `{id} {issued_at_ms}`); a file that cannot
    /// be read or parsed is an error.
    pub fn open(path: Option<PathBuf>) -> Result<Self, StateFileError> {
        let mut seen = Seen::default();
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    for (i, line) in text.lines().enumerate() {
                        let (id, at) = line
                            .split_once(' ')
                            .and_then(|(id, at)| Some((id, at.parse::<u64>().ok()?)))
                            .filter(|(id, _)| id.len() == 32 && hex::decode(id).is_ok())
                            .ok_or_else(|| StateFileError::Corrupt(p.clone(), i + 1))?;
                        seen.done.insert(id.to_string(), at);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateFileError::Read(p.clone(), e)),
            }
        }
        Ok(Self {
            path,
            inner: Mutex::new(seen),
        })
    }

    /// Admits request `id` issued at `issued_at_ms` (then it counts as running), or says why not.
    pub fn admit(&self, id: &str, issued_at_ms: u64, now_ms: u64) -> Result<(), NotAgain> {
        if issued_at_ms.saturating_add(MAX_AGE_MS) < now_ms
            || issued_at_ms > now_ms.saturating_add(SKEW_MS)
        {
            return Err(NotAgain::Stale);
        }
        let Ok(mut s) = self.inner.lock() else {
            return Err(NotAgain::Duplicate);
        };
        if s.done.contains_key(id) || !s.running.insert(id.to_string()) {
            return Err(NotAgain::Duplicate);
        }
        Ok(())
    }

    /// Request `id` ended: kept if it finished (`done`), forgotten if it is to be redone.
    pub fn ended(&self, id: &str, issued_at_ms: u64, done: bool, now_ms: u64) {
        let Ok(mut s) = self.inner.lock() else { return };
        s.running.remove(id);
        if !done {
            return;
        }
        s.done.insert(id.to_string(), issued_at_ms);
        // Older ones are refused as stale anyway.
        s.done
            .retain(|_, at| at.saturating_add(MAX_AGE_MS) >= now_ms);
        if let Some(path) = &self.path {
            let text: String = s
                .done
                .iter()
                .map(|(id, at)| format!("{id} {at}\n"))
                .collect();
            if let Err(e) = armored_base::files::write_private(path, text.as_bytes()) {
                tracing::warn!(error = %e, path = %path.display(), "could not persist finished replays");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_request_runs_once_a_failed_one_again_a_stale_one_never() {
        let now = 10 * MAX_AGE_MS;
        let s = SeenReplays::open(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.admit(ID, now, now), Ok(()));
        assert_eq!(
            s.admit(ID, now, now),
            Err(NotAgain::Duplicate),
            "while running"
        );
        s.ended(ID, now, false, now);
        assert_eq!(s.admit(ID, now, now), Ok(()), "failed: may run again");
        s.ended(ID, now, true, now);
        assert_eq!(s.admit(ID, now, now), Err(NotAgain::Duplicate), "finished");
        let other = "ffeeddccbbaa99887766554433221100";
        assert_eq!(
            s.admit(other, now - MAX_AGE_MS - 1, now),
            Err(NotAgain::Stale)
        );
        assert_eq!(s.admit(other, now + SKEW_MS + 1, now), Err(NotAgain::Stale));
    }

    #[test]
    fn finished_requests_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("at-replays-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("replays-done.txt");
        let now = 10 * MAX_AGE_MS;
        let s = SeenReplays::open(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.admit(ID, now, now), Ok(()));
        s.ended(ID, now, true, now);
        let again = SeenReplays::open(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.admit(ID, now, now), Err(NotAgain::Duplicate));
        std::fs::write(&path, "nonsense\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            SeenReplays::open(Some(path)).is_err(),
            "a corrupt file is an error"
        );
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
}
