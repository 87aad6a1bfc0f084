//! The processing service's side of Protocol 2 (phase 6+ steps 1 and 7): `atctl service
//! mpc-submit` signs an `MpcJob` (finding each participant's process token on at.tokens.v1) and
//! writes it to at.mpc.jobs.v1; `atctl service mpc-result` collects the three output shares of an
//! attempt from at.mpc.results.v1, verifies and opens them, and combines them with the
//! consistency check, or reports the nodes' signed failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::keyfile::{load_hpke_key, load_signing_key};
use armored_crypto::mpcjob::{peek_job, sign_job, verify_job, verify_job_failed, SignedJob};
use armored_crypto::registry::Registry;
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::{verify_process_token, verify_revocation, RevocationSet};
use armored_crypto::KeyId;
use armored_mpc::functions::contact_tracing::ContactTracingResult;
use armored_mpc::output::open_and_combine;
use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_JOB_BYTES};
use armored_schemas::v1::control_record::Record;
use armored_schemas::v1::mpc_result::Result as ResultKind;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use serde::Serialize;

use crate::error::{key, ClientError, Result};
use crate::kafka::{read_topic, Ctl};
use crate::owner::CONTACT_TRACING;

pub mod designate;

/// What a job asks (the service fills in tokens, designator and signature).
#[derive(Clone, Debug)]
pub struct JobRequest {
    /// Job id (unique per service); `None`: a random one.
    pub job_id: Option<String>,
    /// The reference twin (named by the designation).
    pub reference: String,
    /// Contact distance d.
    pub distance: u32,
    /// First global slot of the window.
    pub window_start_slot: u64,
    /// Slots in the window.
    pub window_slots: u32,
    /// Participant twins, in output order.
    pub participants: Vec<String>,
    /// The three node party ids, in index order.
    pub nodes: [String; 3],
    /// The designator's signed statement.
    pub designation: Vec<u8>,
}

/// A submitted job.
#[derive(Clone, Debug, Serialize)]
pub struct Submitted {
    /// Job id.
    pub job_id: String,
    /// SHA-256 of the signed job (hex).
    pub job_hash: String,
    /// Attempt.
    pub attempt: u32,
}

/// A usable process token: (owner signing key id, token id, designator key id, expiry).
type UsableToken = (KeyId, Vec<u8>, Vec<u8>, u64);

fn peek<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    let signed = armored_crypto::sig::decode_signed(bytes, MAX_CONTROL_BYTES).ok()?;
    M::decode(signed.body.as_slice()).ok()
}

/// The usable process tokens on at.tokens.v1 addressed to `service`: (owner signing key id, token
/// id, designator key id, expiry), with revocations applied.
fn usable_tokens(ctl: &Ctl, registry: &Registry, service: &KeyId) -> Result<Vec<UsableToken>> {
    let records = read_topic(ctl, &ctl.topics.tokens())?;
    let mut revoked: BTreeMap<KeyId, RevocationSet> = BTreeMap::new();
    let mut tokens = Vec::new();
    for r in &records {
        let Ok(rec) = decode_strict::<v1::ControlRecord>("ControlRecord", r, MAX_CONTROL_BYTES)
        else {
            continue;
        };
        match rec.record {
            Some(Record::ProcessToken(t)) => tokens.push(t),
            Some(Record::Revocation(b)) => {
                let Some(body) = peek::<v1::Revocation>(&b) else {
                    continue;
                };
                let Ok(k) = KeyId::from_slice(&body.owner_sig_key_id, "owner") else {
                    continue;
                };
                if let Some(o) = registry.owner_by_sig_key(&k) {
                    if let Ok(v) = verify_revocation(&b, &o.sig) {
                        revoked.entry(k).or_default().apply(&v);
                    }
                }
            }
            _ => {}
        }
    }
    let now = now_ms();
    let mut out = Vec::new();
    for t in tokens {
        let Some(body) = peek::<v1::ProcessToken>(&t) else {
            continue;
        };
        let Ok(k) = KeyId::from_slice(&body.owner_sig_key_id, "owner") else {
            continue;
        };
        let Some(o) = registry.owner_by_sig_key(&k) else {
            continue;
        };
        let none = RevocationSet::default();
        let Ok(g) = verify_process_token(&t, &o.sig, revoked.get(&k).unwrap_or(&none), now) else {
            continue;
        };
        if g.token.receiver_sig_key_id != service.0.as_slice() {
            continue;
        }
        for f in g
            .token
            .grants
            .iter()
            .filter(|f| f.function == CONTACT_TRACING)
        {
            out.push((
                k,
                g.token.token_id.clone(),
                f.reference_designator_key_id.clone(),
                g.token.not_after_ms,
            ));
        }
    }
    Ok(out)
}

/// The job a request becomes: every twin's newest usable token from its owner.
pub async fn build_job(
    ctl: &Ctl,
    service_dir: &Path,
    req: &JobRequest,
) -> Result<(SigningKey, v1::MpcJob)> {
    let key = load_signing_key(&service_dir.join("sig.key")).map_err(key(format!(
        "no signing key in {} (atctl service init)",
        service_dir.display()
    )))?;
    let service_id = crate::service::Service::open(service_dir)?.id;
    let registry = ctl.registry().await?;
    let tokens = usable_tokens(ctl, &registry, &key.key_id())?;
    let mut designator = None;
    let mut participant = |twin: &str| -> Result<v1::JobParticipant> {
        let owner = registry
            .twin_owner(twin)
            .ok_or_else(|| ClientError::NotFound(format!("twin {twin} has no registered owner")))?;
        let t = tokens
            .iter()
            .filter(|(k, ..)| *k == owner.sig.key_id())
            .max_by_key(|(.., until)| *until)
            .ok_or_else(|| {
                ClientError::NotFound(format!(
                    "no usable process token from the owner of {twin} ({}) for this service",
                    owner.owner_id
                ))
            })?;
        designator.get_or_insert_with(|| t.2.clone());
        Ok(v1::JobParticipant {
            twin_id: twin.to_string(),
            token_id: t.1.clone(),
        })
    };
    let reference = participant(&req.reference)?;
    let participants = req
        .participants
        .iter()
        .map(|t| participant(t))
        .collect::<Result<Vec<_>>>()?;
    let job = v1::MpcJob {
        version: WIRE_VERSION,
        job_id: req.job_id.clone().unwrap_or_else(|| {
            let mut b = [0u8; 8];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
            format!("job-{}", hex::encode(b))
        }),
        function: CONTACT_TRACING.to_string(),
        service_id,
        reference: Some(reference),
        distance: req.distance,
        window_start_slot: req.window_start_slot,
        window_slots: req.window_slots,
        participants,
        node_ids: req.nodes.to_vec(),
        designation: req.designation.clone(),
        designator_key_id: designator.unwrap_or_default(),
        submitted_at_ms: now_ms(),
    };
    Ok((key, job))
}

/// Signs `job` and writes attempt `attempt` of it to at.mpc.jobs.v1.
pub async fn submit_job(
    ctl: &Ctl,
    key: &SigningKey,
    job: &v1::MpcJob,
    attempt: u32,
) -> Result<Submitted> {
    let s = Submission::sign(key, job, attempt)?;
    s.send(ctl).await?;
    Ok(s.submitted())
}

/// A signed job attempt, ready to be written to at.mpc.jobs.v1.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The verified job, as the nodes will see it.
    pub job: SignedJob,
    record: Vec<u8>,
    attempt: u32,
}

impl Submission {
    /// Signs attempt `attempt` of `job`.
    pub fn sign(key: &SigningKey, job: &v1::MpcJob, attempt: u32) -> Result<Self> {
        let signed = sign_job(key, job);
        let v = verify_job(&signed, key.verifying_key())?.into_inner();
        let record = v1::JobSubmission {
            version: WIRE_VERSION,
            job: signed,
            attempt,
        }
        .encode_to_vec();
        Ok(Self {
            job: v,
            record,
            attempt,
        })
    }

    /// Writes it (keyed by job id) and waits for the broker's acknowledgement.
    pub async fn send(&self, ctl: &Ctl) -> Result<()> {
        ctl.send(&ctl.topics.mpc_jobs(), &self.job.job.job_id, &self.record)
            .await
    }

    /// What to print.
    pub fn submitted(&self) -> Submitted {
        Submitted {
            job_id: self.job.job.job_id.clone(),
            job_hash: hex::encode(self.job.job_hash),
            attempt: self.attempt,
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The combined result: contacts per participant (in job order) and their total.
    Completed {
        /// Attempt.
        attempt: u32,
        /// (twin, contacts).
        counts: Vec<(String, u64)>,
        /// Sum.
        total: u64,
    },
    /// At least one node failed the attempt: (node index, reason) of each signed failure.
    Failed {
        /// Attempt.
        attempt: u32,
        /// (node, reason, detail).
        failures: Vec<(u32, String, String)>,
    },
}

/// Reads the job's results until one attempt completes on all nodes or fails on one, or `wait`
/// passes. The latest attempt with an outcome wins.
pub async fn collect(
    ctl: &Ctl,
    service_dir: &Path,
    job_id: &str,
    wait: Duration,
) -> Result<Outcome> {
    let deadline = Instant::now() + wait;
    let me = load_signing_key(&service_dir.join("sig.key"))?;
    // The job as this service signed it: the first body under this id (nodes refuse others).
    let job = loop {
        let found = read_topic(ctl, &ctl.topics.mpc_jobs())?
            .into_iter()
            .filter_map(|r| {
                decode_strict::<v1::JobSubmission>("JobSubmission", &r, MAX_JOB_BYTES + 64).ok()
            })
            .filter(|s| peek_job(&s.job).is_ok_and(|j| j.job_id == job_id))
            .find_map(|s| verify_job(&s.job, me.verifying_key()).ok());
        match found {
            Some(j) => break j.into_inner(),
            None if Instant::now() >= deadline => {
                return Err(ClientError::NotFound(format!(
                    "no job {job_id} signed by this service on at.mpc.jobs.v1"
                )))
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut c = Collector::new(ctl, service_dir, job, false).await?;
    c.wait(deadline.saturating_duration_since(Instant::now()))
        .await
}

/// Collects one job's output shares or failures from at.mpc.results.v1 as they arrive. Everything
/// it needs (the receiver's key, the nodes' keys from the registry) is loaded by [`Collector::new`],
/// so that a service can prepare it before submitting and wait only for the nodes.
pub struct Collector {
    hpke: armored_crypto::hpke::HpkeSecretKey,
    job: SignedJob,
    nodes: [armored_crypto::sig::VerifyingKey; 3],
    tail: crate::kafka::Tail,
    shares: BTreeMap<u32, [Option<Vec<u8>>; 3]>,
    failures: BTreeMap<u32, Vec<(u32, String, String)>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collector({})", self.job.job.job_id)
    }
}

impl Collector {
    /// Loads the service's HPKE key and the job's nodes; follows the results topic from its
    /// beginning, or only what comes after now (`from_end`: a job submitted after this call).
    pub async fn new(
        ctl: &Ctl,
        service_dir: &Path,
        job: SignedJob,
        from_end: bool,
    ) -> Result<Self> {
        let hpke = load_hpke_key(&service_dir.join("hpke.key"))
            .map_err(key(format!("no HPKE key in {}", service_dir.display())))?;
        let registry = ctl.registry().await?;
        let nodes = job
            .job
            .node_ids
            .iter()
            .map(|n| {
                registry
                    .party(n)
                    .map(|p| p.sig)
                    .ok_or_else(|| ClientError::NotFound(format!("node {n} is not registered")))
            })
            .collect::<Result<Vec<_>>>()?;
        let nodes: [armored_crypto::sig::VerifyingKey; 3] =
            nodes.try_into().map_err(|v: Vec<_>| {
                ClientError::Invalid(format!("the job names {} nodes", v.len()))
            })?;
        let tail = crate::kafka::Tail::new(ctl, &ctl.topics.mpc_results(), from_end)?;
        Ok(Self {
            hpke,
            job,
            nodes,
            tail,
            shares: BTreeMap::new(),
            failures: BTreeMap::new(),
        })
    }

    fn absorb(&mut self, r: &[u8]) {
        let (job_id, job_hash) = (&self.job.job.job_id, &self.job.job_hash);
        let Ok(rec) = decode_strict::<v1::MpcResult>("MpcResult", r, MAX_JOB_BYTES) else {
            return;
        };
        match rec.result {
            Some(ResultKind::OutputShare(b)) => {
                let Some(e) = peek::<v1::EncryptedOutputShare>(&b) else {
                    return;
                };
                if e.job_id == *job_id && e.job_hash == job_hash && (1..=3).contains(&e.node_index)
                {
                    self.shares.entry(e.attempt).or_default()[(e.node_index - 1) as usize] =
                        Some(b);
                }
            }
            Some(ResultKind::JobFailed(b)) => {
                let Some(f) = peek::<v1::JobFailed>(&b) else {
                    return;
                };
                if f.job_id != *job_id || f.job_hash != job_hash || !(1..=3).contains(&f.node_index)
                {
                    return;
                }
                let key = &self.nodes[(f.node_index - 1) as usize];
                if let Ok(v) = verify_job_failed(&b, key) {
                    let list = self.failures.entry(v.attempt).or_default();
                    if !list.iter().any(|(n, ..)| *n == v.node_index) {
                        list.push((v.node_index, v.reason.clone(), v.detail.clone()));
                    }
                }
            }
            None => {}
        }
    }

    /// The latest attempt's outcome, once there is one.
    fn outcome(&self) -> Result<Option<Outcome>> {
        let Some(a) = self
            .shares
            .keys()
            .chain(self.failures.keys())
            .max()
            .copied()
        else {
            return Ok(None);
        };
        if let Some(f) = self.failures.get(&a) {
            let mut f = f.clone();
            f.sort();
            return Ok(Some(Outcome::Failed {
                attempt: a,
                failures: f,
            }));
        }
        let Some([Some(s1), Some(s2), Some(s3)]) = self.shares.get(&a) else {
            return Ok(None);
        };
        let [n1, n2, n3] = &self.nodes;
        let values = open_and_combine(
            &self.hpke,
            [n1, n2, n3],
            &self.job.job_hash,
            a,
            [s1, s2, s3],
        )?;
        let job = &self.job.job;
        let r =
            ContactTracingResult::from_values(&values, job.participants.len(), job.window_slots)?;
        Ok(Some(Outcome::Completed {
            attempt: a,
            counts: job
                .participants
                .iter()
                .map(|p| p.twin_id.clone())
                .zip(r.counts)
                .collect(),
            total: r.total,
        }))
    }

    /// Waits up to `wait` for an outcome: one attempt combined, or failed on a node.
    pub async fn wait(&mut self, wait: Duration) -> Result<Outcome> {
        let deadline = Instant::now() + wait;
        loop {
            // Non-blocking: what has arrived, then a short sleep (any runtime flavour).
            let batch = self.tail.poll(Duration::ZERO);
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for r in &batch {
                self.absorb(r);
            }
            if let Some(o) = self.outcome()? {
                return Ok(o);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::TimedOut(format!(
                    "no complete result for job {} within {wait:?}",
                    self.job.job.job_id
                )));
            }
        }
    }
}
