//! Seeds: small valid inputs for every target, made by the real encoders.

// The fixture is built from constants: a failure there is a broken harness, not input-derived.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;

use super::fixture::*;
use crate::envelope::{
    decode_envelope, make_delivery, parse_header, seal_state_change, StateChangeInput,
};
use crate::group::{Scalar, G1, G2};
use crate::identity::enroll_device;
use crate::kpcpre::{reencrypt, Policy, ReKey, SecretKey};
use crate::peer::PeerSender;
use crate::shares::{seal_share_bundle, ShareInput};
use crate::sig::{decode_signed, SigningKey};
use crate::tokens::{
    issue_process_token, issue_rekey_upload, issue_revocation, issue_write_token_for,
    verify_revocation, ProcessTokenInput, ReKeyUploadInput, ReceiverKind, RevocationKind,
    RevocationSet,
};

/// Inputs per target name.
pub type Seeds = Vec<(&'static str, Vec<Vec<u8>>)>;

/// Small valid inputs for every target, made by the real encoders with the fixture's keys
/// (deterministic). `fuzz/corpus/<target>/` holds them; the ignored test `write_seed_corpus`
/// rewrites it.
pub fn seeds() -> Seeds {
    let f = fixture();
    let mut r = rng(5);
    let with = |m: u8, b: &[u8]| [&[m][..], b].concat();

    let policy_texts = [
        "sync AND (location OR node-2)",
        "2 of (a, b, c)",
        "or(and(sync,location),2of3(x,y,z))",
        "mpc-share AND location AND node-1",
    ];

    // A state change sealed by the device (epoch 5, sync + location), and its body.
    let (env_bytes, cap1) = {
        let mut epochs = f.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let key = epochs
            .key_for(5, &["sync", "location"], &mut r)
            .expect("epoch key");
        let input = StateChangeInput {
            device_id: DEVICE.into(),
            seq: 1,
            observed_at_ms: NOW_MS,
            delta: b"{\"t\":21.5}".to_vec(),
            write_token: None,
            expires_at_ms: 0,
        };
        let env = seal_state_change(key, &f.device_sig, &input, &mut r).expect("seal");
        (env, key.capsule().clone())
    };
    let (env, header, _) = decode_envelope(&env_bytes).expect("seed envelope");
    let body = v1::StateChangeBody {
        version: WIRE_VERSION,
        header: env.header.clone(),
        observed_at_ms: NOW_MS,
        delta: b"{\"t\":21.5}".to_vec(),
        write_token: Vec::new(),
    }
    .encode_to_vec();
    parse_header(&env.header).expect("seed header");
    let _ = header;

    // The service's re-key and the delivery it yields.
    let policy = Policy::parse("sync AND location").expect("policy");
    let rk = ReKey::generate(&f.owner_pre, &policy, f.service_pre.public(), &mut r).expect("rk");
    let c2 = reencrypt(&rk, &cap1.clone().check(&mut r).expect("check")).expect("reenc");
    let delivery_bytes = make_delivery(&env, &c2, None);

    // Node 1's share bundle and its delivery.
    let share_delivery = {
        let mut epochs = f.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let attrs = crate::shares::share_attributes(NODE).expect("attrs");
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        // The fixture made this key: no randomness is drawn here.
        let key = epochs.key_for(9, &attrs, &mut r).expect("share key");
        let input = ShareInput {
            device_id: DEVICE.into(),
            item_id: 3,
            slot: 9,
            node_index: NODE,
            values: vec![5, 7],
            seq: 2,
        };
        let env_bytes = seal_share_bundle(key, &f.device_sig, &input, 1, &mut r).expect("share");
        let (env, _, cap) = decode_envelope(&env_bytes).expect("share envelope");
        let p = Policy::parse("mpc-share AND location AND node-1").expect("node policy");
        let rk = ReKey::generate(&f.owner_pre, &p, &f.node_public, &mut r).expect("rk");
        let c2 = reencrypt(&rk, &cap.check(&mut r).expect("check")).expect("reenc");
        make_delivery(&env, &c2, None)
    };

    // Control records.
    let upload = issue_rekey_upload(
        &f.owner_sig,
        &rk,
        &ReKeyUploadInput {
            receiver_kind: ReceiverKind::Service,
            receiver_id: SERVICE,
            not_after_ms: Some(NOW_MS + 1),
            history_from_epoch: None,
            until_epoch: None,
        },
    );
    let write_token = issue_write_token_for(
        &f.owner_sig,
        TWIN,
        f.service_sig.verifying_key(),
        0,
        NOW_MS + 1,
        &mut r,
    );
    let process_token = issue_process_token(
        &f.owner_sig,
        &ProcessTokenInput {
            policy: &Policy::parse("mpc-share AND location").expect("policy"),
            receiver_key_id: f.service_pre.key_id(),
            receiver_sig_key_id: f.service_sig.key_id(),
            receiver_hpke_key: f.node1_hpke.public(),
            grants: vec![v1::FunctionGrant {
                function: "contact-tracing/v1".into(),
                distance: 4,
                slot_len_ms: 60_000,
                window_alignment: 1,
                min_window_slots: 1,
                max_jobs_per_window: 2,
                reference_designator_key_id: f.service_sig.key_id().0.to_vec(),
            }],
            not_after_ms: NOW_MS + 1,
        },
        &mut r,
    );
    let revocation = issue_revocation(
        &f.owner_sig,
        RevocationKind::WriteToken,
        &[9; 16],
        NOW_MS,
        None,
    );
    let (_, replay) =
        crate::history::issue_replay_request(&f.owner_sig, rk.rk_id(), 3, NOW_MS, &mut r);
    let body_of = |signed: &[u8]| decode_signed(signed, usize::MAX).expect("signed").body;
    let control = |rec: v1::control_record::Record| {
        v1::ControlRecord {
            version: WIRE_VERSION,
            record: Some(rec),
        }
        .encode_to_vec()
    };
    use v1::control_record::Record as C;

    // Registry: a second device of the twin, and the revocation of the fixture's device.
    let device2 = SigningKey::from_bytes(&[0x23; 32]).expect("device 2");
    let device2_pre = SecretKey::from_bytes(&[0x24; 32], &mut r).expect("device 2 PRE");
    let enroll2 = enroll_device(
        &f.owner_sig,
        TWIN,
        "d2",
        device2_pre.public(),
        device2.verifying_key(),
        60_000,
    );
    let dev_revocation = issue_revocation(
        &f.owner_sig,
        RevocationKind::Device,
        f.device_sig.key_id().as_bytes(),
        NOW_MS,
        Some(10),
    );
    use v1::registry_record::Record as R;

    // Peer channel node 1 -> node 2.
    let mut sender =
        PeerSender::open(&f.node1_hpke, f.node2_hpke.public(), f.channel, &mut r).expect("hpke");
    let hello = sender.seal(u32::MAX, 0, 1, &[1; 16]).expect("seal");

    // An MPC job of the service, and a node's failure report.
    let job = v1::MpcJob {
        version: WIRE_VERSION,
        job_id: "job-1".into(),
        function: "contact-tracing/v1".into(),
        service_id: SERVICE.into(),
        reference: Some(v1::JobParticipant {
            twin_id: TWIN.into(),
            token_id: vec![1; 16],
        }),
        distance: 4,
        window_start_slot: 9,
        window_slots: 2,
        participants: vec![v1::JobParticipant {
            twin_id: "t2".into(),
            token_id: vec![2; 16],
        }],
        node_ids: vec!["n1".into(), "n2".into(), "n3".into()],
        designation: Vec::new(),
        designator_key_id: f.service_sig.key_id().0.to_vec(),
        submitted_at_ms: NOW_MS,
    };
    let signed_job = crate::mpcjob::sign_job(&f.service_sig, &job);
    let submission = v1::JobSubmission {
        version: WIRE_VERSION,
        job: signed_job,
        attempt: 1,
    }
    .encode_to_vec();
    let failed = crate::mpcjob::sign_job_failed(
        &f.device_sig,
        &crate::mpcjob::JobFailure {
            job_id: "job-1".into(),
            job_hash: [3; 32],
            attempt: 1,
            node_index: 2,
            reason: "timeout".into(),
            detail: "round 4".into(),
        },
    );

    // Persisted state.
    let mut guard = crate::replay::ReplayGuard::new();
    guard
        .check(TWIN, f.device_sig.key_id(), 7)
        .expect("fresh seq");
    let mut revs = RevocationSet::default();
    revs.apply(
        &verify_revocation(&dev_revocation, f.owner_sig.verifying_key()).expect("revocation"),
    );

    let cap1_bytes = cap1.encode();
    vec![
        (
            "policy",
            policy_texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
        ),
        ("envelope", vec![env_bytes.clone()]),
        ("state_change", vec![body]),
        ("delivery", vec![delivery_bytes.clone()]),
        ("capsule1", vec![cap1_bytes]),
        ("capsule2", vec![c2.encode()]),
        ("capsule_header", vec![cap1.hdr_bytes().to_vec()]),
        (
            "points",
            vec![
                with(0, &G1::generator().to_bytes()),
                with(1, &G2::generator().to_bytes()),
                with(2, &f.owner_pre.public().to_bytes()),
                with(3, &f.owner_pre.public().to_bytes()),
                with(4, &Scalar::from_u64(7).to_bytes()),
            ],
        ),
        ("rekey", vec![rk.encode()]),
        (
            "rekey_upload",
            vec![with(0, &upload), with(1, &body_of(&upload))],
        ),
        (
            "tokens",
            vec![
                with(0, &write_token),
                with(1, &body_of(&write_token)),
                with(2, &process_token),
                with(3, &body_of(&process_token)),
                with(4, &revocation),
                with(5, &body_of(&revocation)),
                with(6, &replay),
                with(7, &body_of(&replay)),
            ],
        ),
        (
            "control_record",
            vec![
                control(C::RekeyUpload(upload.clone())),
                control(C::WriteToken(write_token.clone())),
                control(C::ProcessToken(process_token.clone())),
                control(C::Revocation(revocation.clone())),
                control(C::ReplayRequest(replay.clone())),
            ],
        ),
        (
            "registry",
            vec![
                with(0, &crate::registry::record(R::Enrollment(enroll2.clone()))),
                with(
                    0,
                    &crate::registry::record(R::DeviceRevocation(dev_revocation.clone())),
                ),
                with(1, &body_of(&enroll2)),
                with(2, &body_of(&dev_revocation)),
            ],
        ),
        ("share_bundle", vec![share_delivery]),
        ("peer_message", vec![hello.encode_to_vec()]),
        (
            "mpc_job",
            vec![
                with(0, &submission),
                with(1, &job.encode_to_vec()),
                with(2, &body_of(&failed)),
                with(3, &failed),
            ],
        ),
        (
            "local_state",
            vec![with(0, &revs.to_bytes()), with(1, &guard.to_bytes())],
        ),
        ("audit_batch", {
            let entry = v1::AuditEntry {
                rk_id: vec![1; 16],
                receiver_kind: ReceiverKind::Service as i32,
                receiver_id: "insurer".into(),
                twin_id: TWIN.into(),
                epoch: 7,
                attributes_digest: crate::audit::attributes_digest(&["sync".into()]).to_vec(),
                capsule_id: vec![2; 32],
                at_ms: NOW_MS,
                source_topic: "at.sync.v1".into(),
                source_partition: 1,
                source_offset: 2,
                delivery_topic: "at.deliver.v1".into(),
                delivery_sha256: crate::audit::delivery_digest(b"d").to_vec(),
                replay_request_id: String::new(),
            };
            let batch = crate::audit::seal_batch(&f.service_sig, "w1", NOW_MS, vec![entry]);
            vec![with(0, &batch), with(1, &body_of(&batch))]
        }),
    ]
}

/// Inputs that once broke a target (regression seeds), kept next to the generated seeds.
pub fn regressions() -> Seeds {
    Vec::new()
}
