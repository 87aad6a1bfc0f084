//! Owner-signed control records, identities, HPKE output shares and key files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::hpke::{open_output_share, seal_output_share, HpkeSecretKey, OutputShareInput};
use armored_crypto::identity::*;
use armored_crypto::keyfile::*;
use armored_crypto::kpcpre::{Policy, ReKey, SecretKey};
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::*;
use armored_crypto::{domain::SigDomain, Error};
use armored_schemas::v1;
use prost::Message;

fn rk_upload(
    rng: &mut rand_chacha::ChaCha20Rng,
    owner: &SecretKey,
    sig: &SigningKey,
    not_after: Option<u64>,
) -> (ReKey, Vec<u8>) {
    let bob = SecretKey::generate(rng);
    let rk = ReKey::generate(owner, &Policy::parse("sync").unwrap(), bob.public(), rng).unwrap();
    let input = ReKeyUploadInput {
        receiver_kind: ReceiverKind::Device,
        receiver_id: "d1",
        not_after_ms: not_after,
        history_from_epoch: None,
        until_epoch: None,
    };
    let bytes = issue_rekey_upload(sig, &rk, &input);
    (rk, bytes)
}

#[test]
fn a_signature_of_one_type_is_not_accepted_as_another() {
    let mut rng = common::rng(31);
    let owner = SigningKey::generate(&mut rng);
    let owner_pre = SecretKey::generate(&mut rng);
    let vk = *owner.verifying_key();
    let none = RevocationSet::default();
    let wt = issue_write_token(&owner, "t1", owner.key_id(), 0, 10, &mut rng);
    let rev = issue_revocation(&owner, RevocationKind::Rekey, &[1; 16], 0, None);
    let (_, rku) = rk_upload(&mut rng, &owner_pre, &owner, None);
    let enr = enroll_device(&owner, "t1", "d1", owner_pre.public(), &vk, 1000);
    // Each record verified as every other type fails.
    assert!(verify_write_token(&wt, &vk, &none, 5).is_ok());
    assert!(verify_revocation(&wt, &vk).is_err());
    assert!(verify_process_token(&wt, &vk, &none, 5).is_err());
    assert!(verify_rekey_upload(&wt, &vk, owner_pre.key_id(), &none, 5).is_err());
    assert!(verify_enrollment(&wt, &vk).is_err());
    assert!(verify_write_token(&rev, &vk, &none, 5).is_err());
    assert!(verify_write_token(&rku, &vk, &none, 5).is_err());
    assert!(verify_revocation(&enr, &vk).is_err());
    // Same body bytes, re-signed under the right domain, would verify: the domain is what failed.
    let body = v1::Signed::decode(rev.as_slice()).unwrap().body;
    let as_wt = owner.sign_to_vec(SigDomain::WriteToken, body);
    assert!(matches!(
        verify_write_token(&as_wt, &vk, &none, 5),
        Err(Error::Decode(_)) | Err(Error::UnknownSigner(_)) | Err(Error::Expired { .. })
    ));
}

#[test]
fn a_time_windowed_rekey_admits_only_its_epochs_and_an_empty_window_is_refused() {
    let mut rng = common::rng(33);
    let owner_pre = SecretKey::generate(&mut rng);
    let sig = SigningKey::generate(&mut rng);
    let none = RevocationSet::default();
    let bob = SecretKey::generate(&mut rng);
    let rk = ReKey::generate(
        &owner_pre,
        &Policy::parse("sync").unwrap(),
        bob.public(),
        &mut rng,
    )
    .unwrap();
    let upload = |from: Option<u64>, until: Option<u64>| {
        let input = ReKeyUploadInput {
            receiver_kind: ReceiverKind::Service,
            receiver_id: "svc",
            not_after_ms: None,
            history_from_epoch: from,
            until_epoch: until,
        };
        let bytes = issue_rekey_upload(&sig, &rk, &input);
        verify_rekey_upload(&bytes, sig.verifying_key(), owner_pre.key_id(), &none, 0)
    };
    let g = upload(Some(10), Some(12)).unwrap();
    let admitted: Vec<u64> = (0..20).filter(|e| g.admits_epoch(*e)).collect();
    assert_eq!(admitted, vec![10, 11]);
    let open_start = upload(None, Some(3)).unwrap();
    assert!(open_start.admits_epoch(0) && !open_start.admits_epoch(3));
    let open = upload(None, None).unwrap();
    assert!(open.admits_epoch(0) && open.admits_epoch(u64::MAX));
    for (from, until) in [(12, 12), (12, 11)] {
        assert!(matches!(
            upload(Some(from), Some(until)),
            Err(Error::InvalidField {
                field: "rekey_upload.until_epoch",
                ..
            })
        ));
    }
}

#[test]
fn rekey_uploads_check_signer_owner_key_expiry_and_revocation() {
    let mut rng = common::rng(32);
    let owner_pre = SecretKey::generate(&mut rng);
    let sig = SigningKey::generate(&mut rng);
    let none = RevocationSet::default();
    let (rk, bytes) = rk_upload(&mut rng, &owner_pre, &sig, Some(100));
    let ok =
        verify_rekey_upload(&bytes, sig.verifying_key(), owner_pre.key_id(), &none, 50).unwrap();
    assert_eq!(ok.receiver_kind, ReceiverKind::Device);
    assert!(matches!(
        verify_rekey_upload(&bytes, sig.verifying_key(), owner_pre.key_id(), &none, 101),
        Err(Error::Expired { .. })
    ));
    let other_sig = SigningKey::generate(&mut rng);
    assert!(matches!(
        verify_rekey_upload(
            &bytes,
            other_sig.verifying_key(),
            owner_pre.key_id(),
            &none,
            50
        ),
        Err(Error::BadSignature(_))
    ));
    let other_pre = SecretKey::generate(&mut rng);
    assert!(matches!(
        verify_rekey_upload(&bytes, sig.verifying_key(), other_pre.key_id(), &none, 50),
        Err(Error::KeyMismatch(_))
    ));
    let rev = issue_revocation(&sig, RevocationKind::Rekey, rk.rk_id(), 60, None);
    let mut revoked = RevocationSet::default();
    revoked.apply(&verify_revocation(&rev, sig.verifying_key()).unwrap());
    assert_eq!(
        verify_rekey_upload(
            &bytes,
            sig.verifying_key(),
            owner_pre.key_id(),
            &revoked,
            50
        )
        .unwrap_err(),
        Error::Revoked("re-key")
    );
    // Revocations persist and stay sticky.
    let back = RevocationSet::from_bytes(&revoked.to_bytes()).unwrap();
    assert_eq!(back, revoked);
    assert!(back.is_revoked(RevocationKind::Rekey, rk.rk_id()));
    // A revocation signed by a stranger is refused.
    let forged = issue_revocation(&other_sig, RevocationKind::Rekey, rk.rk_id(), 60, None);
    assert!(verify_revocation(&forged, sig.verifying_key()).is_err());
}

#[test]
fn process_tokens_expire_revoke_and_name_their_owner() {
    let mut rng = common::rng(33);
    let owner = SigningKey::generate(&mut rng);
    let receiver_sig = SigningKey::generate(&mut rng);
    let receiver_pre = SecretKey::generate(&mut rng);
    let hpke = HpkeSecretKey::generate(&mut rng);
    let policy = Policy::parse("sync AND node-1 AND location").unwrap();
    let grant = v1::FunctionGrant {
        function: "contact-tracing/v1".into(),
        distance: 5,
        slot_len_ms: 60_000,
        window_alignment: 50,
        min_window_slots: 50,
        max_jobs_per_window: 1,
        reference_designator_key_id: vec![7; 16],
    };
    let input = ProcessTokenInput {
        policy: &policy,
        receiver_key_id: receiver_pre.key_id(),
        receiver_sig_key_id: receiver_sig.key_id(),
        receiver_hpke_key: hpke.public(),
        grants: vec![grant],
        not_after_ms: 1000,
    };
    let tok = issue_process_token(&owner, &input, &mut rng);
    let none = RevocationSet::default();
    let g = verify_process_token(&tok, owner.verifying_key(), &none, 999).unwrap();
    assert_eq!(g.policy, policy);
    assert_eq!(&g.receiver_hpke_key, hpke.public());
    assert!(matches!(
        verify_process_token(&tok, owner.verifying_key(), &none, 1001),
        Err(Error::Expired { .. })
    ));
    let foreign = SigningKey::generate(&mut rng);
    assert!(verify_process_token(&tok, foreign.verifying_key(), &none, 999).is_err());
    let rev = issue_revocation(
        &owner,
        RevocationKind::ProcessToken,
        &g.token.token_id,
        0,
        None,
    );
    let mut revoked = RevocationSet::default();
    revoked.apply(&verify_revocation(&rev, owner.verifying_key()).unwrap());
    assert_eq!(
        verify_process_token(&tok, owner.verifying_key(), &revoked, 999).unwrap_err(),
        Error::Revoked("process token")
    );
    // A token that names a key id other than its signer's.
    let mut body =
        v1::ProcessToken::decode(v1::Signed::decode(tok.as_slice()).unwrap().body.as_slice())
            .unwrap();
    body.owner_sig_key_id = vec![0; 16];
    let renamed = owner.sign_to_vec(SigDomain::ProcessToken, body.encode_to_vec());
    assert!(matches!(
        verify_process_token(&renamed, owner.verifying_key(), &none, 0),
        Err(Error::UnknownSigner(_))
    ));
}

#[test]
fn owner_identities_prove_knowledge_of_x_and_the_registry_is_first_writer_wins() {
    let mut rng = common::rng(34);
    let pre = SecretKey::generate(&mut rng);
    let sig = SigningKey::generate(&mut rng);
    let id = create_owner_identity("alice", &pre, &sig, 0, &sig, &mut rng);
    let v = verify_owner_identity(&id, None).unwrap();
    assert_eq!(v.pre.key_id(), pre.key_id());

    // A proof for another x (Y swapped, re-signed) fails.
    let other = SecretKey::generate(&mut rng);
    let mut body =
        v1::OwnerIdentity::decode(v1::Signed::decode(id.as_slice()).unwrap().body.as_slice())
            .unwrap();
    body.pre_public_key = other.public().to_bytes().to_vec();
    let swapped = sig.sign_to_vec(SigDomain::Identity, body.encode_to_vec());
    assert_eq!(
        verify_owner_identity(&swapped, None).unwrap_err(),
        Error::ProofOfKnowledge
    );
    // A tampered response fails.
    let mut body =
        v1::OwnerIdentity::decode(v1::Signed::decode(id.as_slice()).unwrap().body.as_slice())
            .unwrap();
    body.pok_response[0] ^= 1;
    let tampered = sig.sign_to_vec(SigDomain::Identity, body.encode_to_vec());
    assert_eq!(
        verify_owner_identity(&tampered, None).unwrap_err(),
        Error::ProofOfKnowledge
    );

    let mut reg = OwnerRegistry::new();
    assert_eq!(reg.apply(&id).unwrap(), RegistryChange::Added);
    // Someone else claims "alice": refused, the first record stays.
    let mallory_sig = SigningKey::generate(&mut rng);
    let claim = create_owner_identity("alice", &other, &mallory_sig, 1, &mallory_sig, &mut rng);
    assert!(reg.apply(&claim).is_err());
    assert_eq!(reg.get("alice").unwrap().sig, *sig.verifying_key());
    // A rotation signed by the current key, generation + 1, is accepted.
    let new_sig = SigningKey::generate(&mut rng);
    let rot = create_owner_identity("alice", &pre, &new_sig, 1, &sig, &mut rng);
    assert_eq!(reg.apply(&rot).unwrap(), RegistryChange::Rotated);
    assert_eq!(reg.get("alice").unwrap().sig, *new_sig.verifying_key());
    let skip = create_owner_identity("alice", &pre, &sig, 5, &new_sig, &mut rng);
    assert!(reg.apply(&skip).is_err());
}

#[test]
fn enrollments_and_pinned_identities() {
    let mut rng = common::rng(35);
    let owner = SigningKey::generate(&mut rng);
    let dev_pre = SecretKey::generate(&mut rng);
    let dev_sig = SigningKey::generate(&mut rng);
    let e = enroll_device(
        &owner,
        "t1",
        "d1",
        dev_pre.public(),
        dev_sig.verifying_key(),
        60_000,
    );
    let v = verify_enrollment(&e, owner.verifying_key()).unwrap();
    assert_eq!(
        (v.twin_id.as_str(), v.device_id.as_str(), v.epoch_len_ms),
        ("t1", "d1", 60_000)
    );
    let stranger = SigningKey::generate(&mut rng);
    assert!(verify_enrollment(&e, stranger.verifying_key()).is_err());

    let svc_pre = SecretKey::generate(&mut rng);
    let svc_sig = SigningKey::generate(&mut rng);
    let svc_hpke = HpkeSecretKey::generate(&mut rng);
    let file = create_party_identity(
        PartyKind::Service,
        "svc-1",
        svc_pre.public(),
        &svc_sig,
        svc_hpke.public(),
        0,
    );
    let fp = fingerprint(&file);
    let p = verify_pinned_identity(&file, &fp).unwrap();
    assert_eq!(p.party_id, "svc-1");
    let mut other = file.clone();
    let n = other.len();
    other[n - 1] ^= 1;
    assert!(verify_pinned_identity(&other, &fp).is_err());
    assert!(verify_pinned_identity(&other, &fingerprint(&other)).is_err());
}

#[test]
fn output_shares_open_only_for_the_right_job_node_and_receiver() {
    let mut rng = common::rng(36);
    let receiver = HpkeSecretKey::generate(&mut rng);
    let node = SigningKey::generate(&mut rng);
    let job_hash = [3u8; 32];
    let values = [1u64, 2, (1 << 61) - 2];
    let share = OutputShareInput {
        job_id: "job-1",
        job_hash,
        attempt: 2,
        node_index: 3,
        values: &values,
    };
    let sealed = seal_output_share(receiver.public(), &node, &share, &mut rng).unwrap();
    let out = open_output_share(&receiver, node.verifying_key(), &job_hash, 2, &sealed).unwrap();
    assert_eq!(out.values, values);
    assert_eq!(out.node_index, 3);
    assert!(matches!(
        open_output_share(&receiver, node.verifying_key(), &[4; 32], 2, &sealed),
        Err(Error::Mismatch(_))
    ));
    assert!(matches!(
        open_output_share(&receiver, node.verifying_key(), &job_hash, 1, &sealed),
        Err(Error::Mismatch(_))
    ));
    let other_node = SigningKey::generate(&mut rng);
    assert!(matches!(
        open_output_share(&receiver, other_node.verifying_key(), &job_hash, 2, &sealed),
        Err(Error::BadSignature(_))
    ));
    let other_receiver = HpkeSecretKey::generate(&mut rng);
    assert_eq!(
        open_output_share(&other_receiver, node.verifying_key(), &job_hash, 2, &sealed)
            .unwrap_err(),
        Error::Hpke("open")
    );
    // The node re-signs a share whose node_index was changed outside the HPKE layer: refused.
    let mut body = v1::EncryptedOutputShare::decode(
        v1::Signed::decode(sealed.as_slice())
            .unwrap()
            .body
            .as_slice(),
    )
    .unwrap();
    body.node_index = 1;
    let moved = node.sign_to_vec(SigDomain::OutputShare, body.encode_to_vec());
    assert!(open_output_share(&receiver, node.verifying_key(), &job_hash, 2, &moved).is_err());
    for bad in common::flips(&sealed).step_by(5) {
        assert!(open_output_share(&receiver, node.verifying_key(), &job_hash, 2, &bad).is_err());
    }
}

#[test]
fn key_files_are_0600_versioned_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let mut rng = common::rng(37);
    let dir = std::env::temp_dir().join(format!("at-keyfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pre = SecretKey::generate(&mut rng);
    let sig = SigningKey::generate(&mut rng);
    let hp = HpkeSecretKey::generate(&mut rng);
    let (pp, sp, hpp) = (
        dir.join("owner.pre"),
        dir.join("owner.sig"),
        dir.join("owner.hpke"),
    );
    save_pre_key(&pp, &pre, "owner").unwrap();
    save_signing_key(&sp, &sig, "owner").unwrap();
    save_hpke_key(&hpp, &hp, "owner").unwrap();
    assert_eq!(
        std::fs::metadata(&pp).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(load_pre_key(&pp, &mut rng).unwrap().key_id(), pre.key_id());
    assert_eq!(load_signing_key(&sp).unwrap().key_id(), sig.key_id());
    assert_eq!(load_hpke_key(&hpp).unwrap().public(), hp.public());
    // Wrong kind, wider mode, and a key id that does not match its key.
    assert!(load_signing_key(&pp).is_err());
    std::fs::set_permissions(&sp, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(load_signing_key(&sp), Err(Error::KeyFile { .. })));
    let mut m = v1::KeyFile::decode(std::fs::read(&pp).unwrap().as_slice()).unwrap();
    m.key_id = vec![0; 16];
    std::fs::write(&pp, m.encode_to_vec()).unwrap();
    std::fs::set_permissions(&pp, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        load_pre_key(&pp, &mut rng),
        Err(Error::KeyFile { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
