//! The processing service's side of Protocol 2 (phase 6+ steps 1 and 7): `atctl service
//! mpc-submit` signs an `MpcJob` (finding each participant's process token on at.tokens.v1) and
//! writes it to at.mpc.jobs.v1; `atctl service mpc-result` collects the three output shares of an
//! attempt from at.mpc.results.v1, verifies and opens them, and combines them with the
//! consistency check, or reports the nodes' signed failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_crypto::keyfile::{load_hpke_key, load_signing_key};
use armored_crypto::mpcjob::{peek_job, sign_job, verify_job, verify_job_failed};
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::{verify_process_token, verify_revocation, RevocationSet};
use armored_crypto::KeyId;
use armored_mpc::functions::contact_tracing::ContactTracingResult;
use armored_mpc::output::open_and_combine;
use armored_runtime::registry::Registry;
use armored_runtime::time::now_ms;
use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_JOB_BYTES};
use armored_schemas::v1::control_record::Record;
use armored_schemas::v1::mpc_result::Result as ResultKind;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use serde::Serialize;

use crate::kafka::{read_topic, Ctl};
use crate::owner::CONTACT_TRACING;

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
fn usable_tokens(
    ctl: &Ctl,
    registry: &Registry,
    service: &KeyId,
) -> anyhow::Result<Vec<UsableToken>> {
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
) -> anyhow::Result<(SigningKey, v1::MpcJob)> {
    let key = load_signing_key(&service_dir.join("sig.key")).with_context(|| {
        format!(
            "no signing key in {} (atctl service init)",
            service_dir.display()
        )
    })?;
    let service_id = crate::service::Service::open(service_dir)?.id;
    let registry = ctl.registry().await?;
    let tokens = usable_tokens(ctl, &registry, &key.key_id())?;
    let mut designator = None;
    let mut participant = |twin: &str| -> anyhow::Result<v1::JobParticipant> {
        let owner = registry
            .twin_owner(twin)
            .with_context(|| format!("twin {twin} has no registered owner"))?;
        let t = tokens
            .iter()
            .filter(|(k, ..)| *k == owner.sig.key_id())
            .max_by_key(|(.., until)| *until)
            .with_context(|| {
                format!(
                    "no usable process token from the owner of {twin} ({}) for this service",
                    owner.owner_id
                )
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
        .collect::<anyhow::Result<Vec<_>>>()?;
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
) -> anyhow::Result<Submitted> {
    let signed = sign_job(key, job);
    let v = verify_job(&signed, key.verifying_key())?;
    let rec = v1::JobSubmission {
        version: WIRE_VERSION,
        job: signed,
        attempt,
    }
    .encode_to_vec();
    ctl.send(&ctl.topics.mpc_jobs(), &job.job_id, &rec).await?;
    Ok(Submitted {
        job_id: job.job_id.clone(),
        job_hash: hex::encode(v.job_hash),
        attempt,
    })
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
) -> anyhow::Result<Outcome> {
    let hpke = load_hpke_key(&service_dir.join("hpke.key"))
        .with_context(|| format!("no HPKE key in {}", service_dir.display()))?;
    let me = load_signing_key(&service_dir.join("sig.key"))?;
    let deadline = Instant::now() + wait;
    loop {
        // The job as this service signed it: the first body under this id (nodes refuse others).
        let job = read_topic(ctl, &ctl.topics.mpc_jobs())?
            .into_iter()
            .filter_map(|r| {
                decode_strict::<v1::JobSubmission>("JobSubmission", &r, MAX_JOB_BYTES + 64).ok()
            })
            .filter(|s| peek_job(&s.job).is_ok_and(|j| j.job_id == job_id))
            .find_map(|s| verify_job(&s.job, me.verifying_key()).ok())
            .with_context(|| format!("no job {job_id} signed by this service on at.mpc.jobs.v1"))?
            .into_inner();
        let registry = ctl.registry().await?;
        let nodes = job
            .job
            .node_ids
            .iter()
            .map(|n| {
                registry
                    .party(n)
                    .map(|p| p.sig)
                    .with_context(|| format!("node {n} is not registered"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let [n1, n2, n3] = nodes.as_slice() else {
            bail!("the job names {} nodes", nodes.len())
        };
        let mut shares: BTreeMap<u32, [Option<Vec<u8>>; 3]> = BTreeMap::new();
        let mut failures: BTreeMap<u32, Vec<(u32, String, String)>> = BTreeMap::new();
        for r in read_topic(ctl, &ctl.topics.mpc_results())? {
            let Ok(rec) = decode_strict::<v1::MpcResult>("MpcResult", &r, MAX_JOB_BYTES) else {
                continue;
            };
            match rec.result {
                Some(ResultKind::OutputShare(b)) => {
                    let Some(e) = peek::<v1::EncryptedOutputShare>(&b) else {
                        continue;
                    };
                    if e.job_id != job_id
                        || e.job_hash != job.job_hash
                        || !(1..=3).contains(&e.node_index)
                    {
                        continue;
                    }
                    shares.entry(e.attempt).or_default()[(e.node_index - 1) as usize] = Some(b);
                }
                Some(ResultKind::JobFailed(b)) => {
                    let Some(f) = peek::<v1::JobFailed>(&b) else {
                        continue;
                    };
                    if f.job_id != job_id
                        || f.job_hash != job.job_hash
                        || !(1..=3).contains(&f.node_index)
                    {
                        continue;
                    }
                    let key = [n1, n2, n3][(f.node_index - 1) as usize];
                    if let Ok(v) = verify_job_failed(&b, key) {
                        let list = failures.entry(v.attempt).or_default();
                        if !list.iter().any(|(n, ..)| *n == v.node_index) {
                            list.push((v.node_index, v.reason.clone(), v.detail.clone()));
                        }
                    }
                }
                None => {}
            }
        }
        let latest = shares.keys().chain(failures.keys()).max().copied();
        if let Some(a) = latest {
            if let Some(f) = failures.get(&a) {
                let mut f = f.clone();
                f.sort();
                return Ok(Outcome::Failed {
                    attempt: a,
                    failures: f,
                });
            }
            if let Some([Some(s1), Some(s2), Some(s3)]) = shares.get(&a) {
                let values = open_and_combine(&hpke, [n1, n2, n3], &job.job_hash, a, [s1, s2, s3])?;
                let r = ContactTracingResult::from_values(
                    &values,
                    job.job.participants.len(),
                    job.job.window_slots,
                )?;
                return Ok(Outcome::Completed {
                    attempt: a,
                    counts: job
                        .job
                        .participants
                        .iter()
                        .map(|p| p.twin_id.clone())
                        .zip(r.counts)
                        .collect(),
                    total: r.total,
                });
            }
        }
        if Instant::now() >= deadline {
            bail!("no complete result for job {job_id} within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
