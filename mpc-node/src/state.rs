//! What a node persists: its job ledger (idempotence by job id, attempts in flight when it
//! stopped), the per-(participant, window) job budgets, and the attempts deferred until their
//! window's cut-off (resumed after a restart). One JSON file, replaced atomically; a deferred
//! attempt's signed job (up to 1 MiB) in a file of its own beside it (`deferred/`), so that the
//! ledger rewritten on every change stays small and no job body is held in memory while it waits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An attempt's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Admitted and charged, waiting for its window's cut-off (`deferred` holds how to resume it).
    Deferred,
    /// Started and not finished: if the node finds this at start, it stopped mid-attempt.
    Running,
    /// Output share published.
    Done,
    /// `JobFailed` published.
    Failed,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct JobEntry {
    job_hash: String,
    attempts: BTreeMap<u32, AttemptState>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    jobs: BTreeMap<String, JobEntry>,
    /// "twin/first_slot/slots" → job ids charged.
    budgets: BTreeMap<String, BTreeSet<String>>,
    /// "job_id/attempt" → an attempt waiting for its cut-off.
    #[serde(default)]
    deferred: BTreeMap<String, Deferred>,
}

/// An attempt admitted and charged, waiting for its window's cut-off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// The job id.
    pub job_id: String,
    /// The attempt.
    pub attempt: u32,
    /// When its inputs close (Unix ms).
    pub cutoff_ms: u64,
    /// When it was admitted: it is admitted again at this time when it resumes, so that a node
    /// decides as it did (and as its peers did), except for what was revoked since.
    pub admitted_ms: u64,
}

impl Deferred {
    fn key(&self) -> String {
        format!("{}/{}", self.job_id, self.attempt)
    }

    /// Its signed job's file name: a digest, since job ids come from services.
    fn file_name(&self) -> String {
        use sha2::Digest;
        format!(
            "{}.job",
            hex::encode(sha2::Sha256::digest(self.key().as_bytes()))
        )
    }
}

/// What the ledger says about an incoming attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen: run it.
    New,
    /// Another body under a known job id.
    Conflict,
    /// Already finished (a redelivery): skip.
    Finished(AttemptState),
    /// This node stopped while running it: fail it.
    Interrupted,
    /// Waiting for its cut-off (a redelivery of a deferred attempt): nothing to do.
    Deferred,
}

/// The persisted node state.
#[derive(Debug)]
pub struct NodeState {
    path: Option<PathBuf>,
    data: Persisted,
    /// Signed jobs of deferred attempts, for a ledger kept in memory (`path` is `None`).
    jobs_in_memory: HashMap<String, Vec<u8>>,
}

/// State I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Read or write failed.
    #[error("node state {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not ours.
    #[error("node state {path} is corrupt: {source}")]
    Corrupt {
        /// File.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// A participant's job budget for the window is spent (the attempt fails, nothing is charged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}: no jobs left in this window")]
pub struct BudgetSpent(pub String);

impl NodeState {
    /// Loads (or starts) the state in `dir`; `None` keeps it in memory.
    pub fn open(dir: Option<PathBuf>) -> Result<Self, StateError> {
        let Some(dir) = dir else {
            return Ok(Self {
                path: None,
                data: Persisted::default(),
                jobs_in_memory: HashMap::new(),
            });
        };
        let io = |source| StateError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join("node-state.json");
        let data = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Corrupt {
                path: path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(Self {
            path: Some(path),
            data,
            jobs_in_memory: HashMap::new(),
        })
    }

    fn save(&self) -> Result<(), StateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.data).map_err(|source| StateError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Classifies an incoming attempt.
    pub fn seen(&self, job_id: &str, job_hash: &[u8; 32], attempt: u32) -> Seen {
        match self.data.jobs.get(job_id) {
            None => Seen::New,
            Some(e) if e.job_hash != hex::encode(job_hash) => Seen::Conflict,
            Some(e) => match e.attempts.get(&attempt) {
                None => Seen::New,
                Some(AttemptState::Running) => Seen::Interrupted,
                Some(AttemptState::Deferred) => Seen::Deferred,
                Some(s) => Seen::Finished(*s),
            },
        }
    }

    /// Records an attempt's state (persisted before the node acts on it).
    pub fn set(
        &mut self,
        job_id: &str,
        job_hash: &[u8; 32],
        attempt: u32,
        state: AttemptState,
    ) -> Result<(), StateError> {
        self.entry(job_id, job_hash).attempts.insert(attempt, state);
        self.save()
    }

    /// Where deferred attempts' signed jobs are kept (`None`: in memory).
    fn jobs_dir(&self) -> Option<PathBuf> {
        self.path
            .as_ref()
            .and_then(|p| p.parent())
            .map(|d| d.join("deferred"))
    }

    /// Defers an attempt until its cut-off: its signed job first (written and synced), then its
    /// state and how to resume it in one write of the ledger.
    pub fn defer(
        &mut self,
        job_hash: &[u8; 32],
        d: Deferred,
        signed_job: &[u8],
    ) -> Result<(), StateError> {
        match self.jobs_dir() {
            None => {
                self.jobs_in_memory.insert(d.key(), signed_job.to_vec());
            }
            Some(dir) => {
                let path = dir.join(d.file_name());
                let io = |source| StateError::Io {
                    path: path.display().to_string(),
                    source,
                };
                std::fs::create_dir_all(&dir).map_err(io)?;
                let tmp = path.with_extension("tmp");
                std::fs::File::create(&tmp)
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, signed_job)?;
                        f.sync_all()
                    })
                    .map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
            }
        }
        self.entry(&d.job_id, job_hash)
            .attempts
            .insert(d.attempt, AttemptState::Deferred);
        self.data.deferred.insert(d.key(), d);
        self.save()
    }

    /// A deferred attempt's signed job.
    pub fn signed_job(&self, d: &Deferred) -> Result<Vec<u8>, StateError> {
        match self.jobs_dir() {
            None => Ok(self
                .jobs_in_memory
                .get(&d.key())
                .cloned()
                .unwrap_or_default()),
            Some(dir) => {
                let path = dir.join(d.file_name());
                std::fs::read(&path).map_err(|source| StateError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }

    /// Forgets a deferred attempt's signed job (once the ledger no longer names it).
    fn forget_job(&mut self, d: &Deferred) {
        self.jobs_in_memory.remove(&d.key());
        if let Some(dir) = self.jobs_dir() {
            // A file left behind is harmless: nothing names it any more.
            let _ = std::fs::remove_file(dir.join(d.file_name()));
        }
    }

    /// Starts a deferred attempt: it is `Running` and no longer deferred, in one write.
    pub fn resume(&mut self, job_hash: &[u8; 32], d: &Deferred) -> Result<(), StateError> {
        self.data.deferred.remove(&d.key());
        self.entry(&d.job_id, job_hash)
            .attempts
            .insert(d.attempt, AttemptState::Running);
        self.save()?;
        self.forget_job(d);
        Ok(())
    }

    /// Forgets a deferred attempt that cannot resume (it is failed instead).
    pub fn drop_deferred(&mut self, d: &Deferred) -> Result<(), StateError> {
        self.data.deferred.remove(&d.key());
        self.save()?;
        self.forget_job(d);
        Ok(())
    }

    /// The attempts waiting for their cut-off.
    pub fn deferred(&self) -> Vec<Deferred> {
        self.data.deferred.values().cloned().collect()
    }

    /// How many attempts wait for their cut-off.
    pub fn deferred_count(&self) -> usize {
        self.data.deferred.len()
    }

    fn entry(&mut self, job_id: &str, job_hash: &[u8; 32]) -> &mut JobEntry {
        self.data
            .jobs
            .entry(job_id.to_owned())
            .or_insert_with(|| JobEntry {
                job_hash: hex::encode(job_hash),
                attempts: BTreeMap::new(),
            })
    }

    /// Charges `job_id` to every (twin, window) budget, all or nothing; a job already charged
    /// (an earlier attempt) is not charged again. Returns the first twin whose budget is spent.
    /// The outer error is the ledger's; the inner one is a refusal of the attempt.
    pub fn charge(
        &mut self,
        job_id: &str,
        window: (u64, u32),
        twins: &[(String, u32)],
    ) -> Result<Result<(), BudgetSpent>, StateError> {
        let key = |t: &str| format!("{t}/{}/{}", window.0, window.1);
        for (twin, max) in twins {
            let used = self.data.budgets.get(&key(twin));
            let charged = used.is_some_and(|s| s.contains(job_id));
            if !charged && used.map_or(0, BTreeSet::len) >= *max as usize {
                return Ok(Err(BudgetSpent(twin.clone())));
            }
        }
        for (twin, _) in twins {
            self.data
                .budgets
                .entry(key(twin))
                .or_default()
                .insert(job_id.to_owned());
        }
        self.save().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_all_or_nothing_and_idempotent_per_job() {
        let mut s = NodeState::open(None).unwrap();
        let w = (100, 50);
        let a = vec![("a".to_string(), 1), ("b".to_string(), 2)];
        assert_eq!(s.charge("j1", w, &a).unwrap(), Ok(()));
        assert_eq!(s.charge("j1", w, &a).unwrap(), Ok(()), "same job again");
        assert_eq!(s.charge("j2", w, &a).unwrap(), Err(BudgetSpent("a".into())));
        // b was not charged for j2.
        let b = vec![("b".to_string(), 2)];
        assert_eq!(s.charge("j3", w, &b).unwrap(), Ok(()));
        assert_eq!(s.charge("j4", w, &b).unwrap(), Err(BudgetSpent("b".into())));
        // Another window has its own budget.
        assert_eq!(s.charge("j2", (150, 50), &a).unwrap(), Ok(()));
    }

    #[test]
    fn ledger_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("at-node-state-{}", std::process::id()));
        let h = [1u8; 32];
        {
            let mut s = NodeState::open(Some(dir.clone())).unwrap();
            assert_eq!(s.seen("j", &h, 1), Seen::New);
            s.set("j", &h, 1, AttemptState::Running).unwrap();
        }
        let mut s = NodeState::open(Some(dir.clone())).unwrap();
        assert_eq!(s.seen("j", &h, 1), Seen::Interrupted);
        assert_eq!(s.seen("j", &[2u8; 32], 1), Seen::Conflict);
        s.set("j", &h, 1, AttemptState::Failed).unwrap();
        assert_eq!(s.seen("j", &h, 1), Seen::Finished(AttemptState::Failed));
        assert_eq!(s.seen("j", &h, 2), Seen::New);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_deferred_attempt_survives_a_restart_until_it_resumes() {
        let dir = std::env::temp_dir().join(format!("at-node-deferred-{}", std::process::id()));
        let h = [3u8; 32];
        let d = Deferred {
            job_id: "later".into(),
            attempt: 1,
            cutoff_ms: 5_000,
            admitted_ms: 1_000,
        };
        {
            let mut s = NodeState::open(Some(dir.clone())).unwrap();
            s.defer(&h, d.clone(), b"the signed job").unwrap();
            assert_eq!(s.seen("later", &h, 1), Seen::Deferred);
        }
        let mut s = NodeState::open(Some(dir.clone())).unwrap();
        assert_eq!(s.deferred(), vec![d.clone()]);
        assert_eq!(s.signed_job(&d).unwrap(), b"the signed job");
        assert_eq!(
            s.seen("later", &h, 1),
            Seen::Deferred,
            "a redelivery is skipped"
        );
        s.resume(&h, &d).unwrap();
        assert_eq!(s.deferred_count(), 0);
        assert!(s.signed_job(&d).is_err(), "its file goes once it runs");
        assert_eq!(s.seen("later", &h, 1), Seen::Interrupted, "running now");
        let _ = std::fs::remove_dir_all(dir);
    }
}
