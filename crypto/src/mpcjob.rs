//! MPC jobs and failures (Protocol 2, phase 6+; envelope.md, "MPC jobs and the peer channel"):
//! a job is signed by the submitting service (`at/v1/mpc-job`) and identified by `job_hash`, the
//! SHA-256 of its signed bytes; a failed attempt is reported in a `JobFailed` signed by the node
//! (`at/v1/job-failed`).

use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_JOB_BYTES};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

/// A job whose service signature verified, with its hash.
#[derive(Clone, Debug)]
pub struct SignedJob {
    /// The job as signed.
    pub job: v1::MpcJob,
    /// SHA-256 of the signed body bytes.
    pub job_hash: [u8; 32],
}

/// The service's id and the job id of a signed job, read before the signature is checked (to
/// find the signer's key). Nothing here is trusted.
pub fn peek_job(bytes: &[u8]) -> Result<v1::MpcJob> {
    let signed = decode_signed(bytes, MAX_JOB_BYTES)?;
    let job: v1::MpcJob = decode_strict("MpcJob", &signed.body, MAX_JOB_BYTES)?;
    check_version("MpcJob", job.version)?;
    Ok(job)
}

/// Signs a job as its service.
pub fn sign_job(service: &SigningKey, job: &v1::MpcJob) -> Vec<u8> {
    service.sign_to_vec(SigDomain::MpcJob, job.encode_to_vec())
}

/// Verifies a signed job under the service's key and computes its hash.
pub fn verify_job(bytes: &[u8], service: &VerifyingKey) -> Result<Verified<SignedJob>> {
    let signed = decode_signed(bytes, MAX_JOB_BYTES)?;
    let body = service.verify(SigDomain::MpcJob, &signed, "mpc job")?;
    let job: v1::MpcJob = decode_strict("MpcJob", body, MAX_JOB_BYTES)?;
    check_version("MpcJob", job.version)?;
    crate::ids::check_id(&job.job_id, "job_id")?;
    Ok(Verified::new(SignedJob {
        job_hash: Sha256::digest(body).into(),
        job,
    }))
}

/// What a node reports when an attempt fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFailure {
    /// Job id.
    pub job_id: String,
    /// Job hash.
    pub job_hash: [u8; 32],
    /// Attempt.
    pub attempt: u32,
    /// Reporting node (1..=3).
    pub node_index: u32,
    /// Bounded reason label.
    pub reason: String,
    /// Human-readable detail (never a share or a value).
    pub detail: String,
}

/// Signs a failure report as node `node`.
pub fn sign_job_failed(node: &SigningKey, f: &JobFailure) -> Vec<u8> {
    node.sign_to_vec(
        SigDomain::JobFailed,
        v1::JobFailed {
            version: WIRE_VERSION,
            job_id: f.job_id.clone(),
            job_hash: f.job_hash.to_vec(),
            attempt: f.attempt,
            node_index: f.node_index,
            reason: f.reason.clone(),
            detail: f.detail.clone(),
        }
        .encode_to_vec(),
    )
}

/// Verifies a failure report under node `node`'s key.
pub fn verify_job_failed(bytes: &[u8], node: &VerifyingKey) -> Result<Verified<JobFailure>> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let body = node.verify(SigDomain::JobFailed, &signed, "job failure")?;
    let m: v1::JobFailed = decode_strict("JobFailed", body, MAX_CONTROL_BYTES)?;
    check_version("JobFailed", m.version)?;
    let job_hash: [u8; 32] = m
        .job_hash
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidField {
            field: "job_failed.job_hash",
            reason: "32 bytes expected",
        })?;
    Ok(Verified::new(JobFailure {
        job_id: m.job_id,
        job_hash,
        attempt: m.attempt,
        node_index: m.node_index,
        reason: m.reason,
        detail: m.detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn job() -> v1::MpcJob {
        v1::MpcJob {
            version: WIRE_VERSION,
            job_id: "job-1".into(),
            function: "contact-tracing/v1".into(),
            service_id: "health".into(),
            distance: 5,
            window_slots: 50,
            ..Default::default()
        }
    }

    #[test]
    fn job_round_trip_and_hash_binds_the_body() {
        let k = SigningKey::generate(&mut OsRng);
        let bytes = sign_job(&k, &job());
        let v = verify_job(&bytes, k.verifying_key()).unwrap();
        assert_eq!(v.job, job());
        let mut other = job();
        other.distance = 6;
        let v2 = verify_job(&sign_job(&k, &other), k.verifying_key()).unwrap();
        assert_ne!(v.job_hash, v2.job_hash);
        assert_eq!(peek_job(&bytes).unwrap().service_id, "health");
    }

    #[test]
    fn job_under_another_key_or_flipped_is_refused() {
        let k = SigningKey::generate(&mut OsRng);
        let bytes = sign_job(&k, &job());
        let other = SigningKey::generate(&mut OsRng);
        assert!(verify_job(&bytes, other.verifying_key()).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(
                verify_job(&b, k.verifying_key()).is_err(),
                "bit flip at {i}"
            );
        }
    }

    #[test]
    fn failure_round_trip() {
        let k = SigningKey::generate(&mut OsRng);
        let f = JobFailure {
            job_id: "job-1".into(),
            job_hash: [7; 32],
            attempt: 2,
            node_index: 3,
            reason: "timeout".into(),
            detail: "round 4".into(),
        };
        let bytes = sign_job_failed(&k, &f);
        assert_eq!(*verify_job_failed(&bytes, k.verifying_key()).unwrap(), f);
        let other = SigningKey::generate(&mut OsRng);
        assert!(verify_job_failed(&bytes, other.verifying_key()).is_err());
    }
}
