//! Envelopes end to end (device seal, owner open, worker ReEnc, delivery open) and their failures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::envelope::*;
use armored_crypto::epoch::EpochKeyManager;
use armored_crypto::identity::{enroll_device, verify_enrollment};
use armored_crypto::kpcpre::{reencrypt, Policy, ReKey, SecretKey};
use armored_crypto::replay::ReplayGuard;
use armored_crypto::sig::SigningKey;
use armored_crypto::sym::seal;
use armored_crypto::tokens::{
    issue_revocation, issue_write_token, verify_revocation, RevocationKind,
};
use armored_crypto::{domain::SigDomain, Error};
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;

struct Setup {
    rng: rand_chacha::ChaCha20Rng,
    owner_pre: SecretKey,
    owner_sig: SigningKey,
    device_sig: SigningKey,
    service: SecretKey,
    trust: TrustStore,
    keys: EpochKeyManager,
}

fn setup() -> Setup {
    let mut rng = common::rng(21);
    let owner_pre = SecretKey::generate(&mut rng);
    let owner_sig = SigningKey::generate(&mut rng);
    let device_pre = SecretKey::generate(&mut rng);
    let device_sig = SigningKey::generate(&mut rng);
    let service = SecretKey::generate(&mut rng);
    let enrollment = enroll_device(
        &owner_sig,
        "t1",
        "d1",
        device_pre.public(),
        device_sig.verifying_key(),
        3_600_000,
    );
    let e = verify_enrollment(&enrollment, owner_sig.verifying_key()).unwrap();
    let mut trust = TrustStore::new(*owner_sig.verifying_key());
    trust.add_device(&e.twin_id, e.sig);
    let keys = EpochKeyManager::new(owner_pre.public().clone(), "t1").unwrap();
    Setup {
        rng,
        owner_pre,
        owner_sig,
        device_sig,
        service,
        trust,
        keys,
    }
}

fn input(seq: u64, delta: &[u8]) -> StateChangeInput {
    StateChangeInput {
        device_id: "d1".into(),
        seq,
        observed_at_ms: 1000 + seq,
        delta: delta.to_vec(),
        ..Default::default()
    }
}

fn seal_as(s: &mut Setup, writer: &SigningKey, inp: &StateChangeInput) -> Vec<u8> {
    let key = s
        .keys
        .key_for(7, &["sync", "location"], &mut s.rng)
        .unwrap();
    seal_state_change(key, writer, inp, &mut s.rng).unwrap()
}

/// What a worker does: check the capsule once, re-encrypt, forward the ciphertext untouched.
fn deliver(s: &mut Setup, env_bytes: &[u8], rk: &ReKey) -> Vec<u8> {
    let (env, _header, c1) = decode_envelope(env_bytes).unwrap();
    let checked = c1.check(&mut s.rng).unwrap();
    let c2 = reencrypt(rk, &checked).unwrap();
    make_delivery(&env, &c2, None)
}

#[test]
fn device_to_owner_and_to_a_service() {
    let mut s = setup();
    let device_sig = s.device_sig.clone();
    let envs: Vec<Vec<u8>> = (0..3)
        .map(|i| seal_as(&mut s, &device_sig, &input(i, b"temp=21")))
        .collect();
    // One Enc^1 for the epoch and attribute set.
    assert_eq!(s.keys.capsules_made(), 1);

    let mut owner =
        Receiver::new(SecretKey::from_bytes(&s.owner_pre.to_bytes()[..], &mut s.rng).unwrap());
    let mut guard = ReplayGuard::new();
    for (i, e) in envs.iter().enumerate() {
        let sc = owner.open_envelope(e, &s.trust, 0).unwrap();
        assert_eq!(sc.delta, b"temp=21");
        assert_eq!(sc.header.seq, i as u64);
        assert_eq!(sc.writer, Writer::Device("d1".into()));
        assert!(sc.header.attributes.contains(&"twin:t1".to_string()));
        let kid = armored_crypto::KeyId::from_slice(&sc.header.writer_key_id, "w").unwrap();
        guard.check(&sc.header.twin_id, kid, sc.header.seq).unwrap();
    }
    // At-least-once redelivery is recognised.
    let again = owner.open_envelope(&envs[1], &s.trust, 0).unwrap();
    let kid = armored_crypto::KeyId::from_slice(&again.header.writer_key_id, "w").unwrap();
    assert_eq!(
        guard.check("t1", kid, again.header.seq),
        Err(Error::Duplicate { seq: 1 })
    );

    // Phase 6: a service with `sync AND location` gets deliveries.
    let policy = Policy::parse("sync AND location").unwrap();
    let rk = ReKey::generate(&s.owner_pre, &policy, s.service.public(), &mut s.rng).unwrap();
    let mut svc =
        Receiver::new(SecretKey::from_bytes(&s.service.to_bytes()[..], &mut s.rng).unwrap());
    for e in &envs {
        let d = deliver(&mut s, e, &rk);
        let sc = svc.open_delivery(&d, &s.trust, 0, &mut s.rng).unwrap();
        assert_eq!(sc.delta, b"temp=21");
    }
    // A receiver that is not the re-key's cannot open the delivery.
    let d = deliver(&mut s, &envs[0], &rk);
    let mut stranger = Receiver::new(SecretKey::generate(&mut s.rng));
    assert!(matches!(
        stranger.open_delivery(&d, &s.trust, 0, &mut s.rng),
        Err(Error::KeyMismatch(_))
    ));
}

#[test]
fn epoch_keys_rotate_after_their_budget() {
    let mut s = setup();
    let mut keys = EpochKeyManager::new(s.owner_pre.public().clone(), "t1")
        .unwrap()
        .with_limit(2);
    let cid = |k: &armored_crypto::epoch::EpochKey| *k.capsule().cid();
    let a = cid(keys.key_for(1, &["sync"], &mut s.rng).unwrap());
    let b = cid(keys.key_for(1, &["sync"], &mut s.rng).unwrap());
    let c = cid(keys.key_for(1, &["sync"], &mut s.rng).unwrap());
    let d = cid(keys.key_for(2, &["sync"], &mut s.rng).unwrap());
    let e = cid(keys.key_for(2, &["location", "sync"], &mut s.rng).unwrap());
    assert_eq!(a, b);
    assert_ne!(b, c, "rotated after 2 messages");
    assert_ne!(c, d, "new epoch, new key");
    assert_ne!(d, e, "new attribute set, new key");
    assert_eq!(keys.capsules_made(), 4);
    keys.prune_before(2);
    assert!(EpochKeyManager::new(s.owner_pre.public().clone(), "T1").is_err());
}

#[test]
fn writers_must_be_owner_device_or_token_holder() {
    let mut s = setup();
    let mut owner =
        Receiver::new(SecretKey::from_bytes(&s.owner_pre.to_bytes()[..], &mut s.rng).unwrap());
    // The owner may write.
    let owner_sig = s.owner_sig.clone();
    let e = seal_as(&mut s, &owner_sig, &input(1, b"x"));
    assert_eq!(
        owner.open_envelope(&e, &s.trust, 0).unwrap().writer,
        Writer::Owner
    );
    // A stranger may not.
    let stranger = SigningKey::generate(&mut s.rng);
    let e = seal_as(&mut s, &stranger, &input(1, b"x"));
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 0),
        Err(Error::UnknownSigner(_))
    ));
    // A service with a write token may, within its window and until revoked.
    let svc = SigningKey::generate(&mut s.rng);
    s.trust.add_key(*svc.verifying_key());
    let token = issue_write_token(&s.owner_sig, "t1", svc.key_id(), 100, 200, &mut s.rng);
    let mut inp = input(1, b"x");
    inp.write_token = Some(token.clone());
    let e = seal_as(&mut s, &svc, &inp);
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 150).unwrap().writer,
        Writer::Token(_)
    ));
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 201),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 99),
        Err(Error::Expired { .. })
    ));
    // Revoked (sticky).
    let token_id = {
        let signed = v1::Signed::decode(token.as_slice()).unwrap();
        v1::WriteToken::decode(signed.body.as_slice())
            .unwrap()
            .token_id
    };
    let rev = issue_revocation(
        &s.owner_sig,
        RevocationKind::WriteToken,
        &token_id,
        150,
        None,
    );
    let rev = verify_revocation(&rev, s.owner_sig.verifying_key()).unwrap();
    let mut trust = s.trust.clone();
    trust.revocations.apply(&rev);
    assert_eq!(
        owner.open_envelope(&e, &trust, 150).unwrap_err(),
        Error::Revoked("write token")
    );
    // A token of another owner, or for another twin.
    let foreign = SigningKey::generate(&mut s.rng);
    let mut inp = input(2, b"x");
    inp.write_token = Some(issue_write_token(
        &foreign,
        "t1",
        svc.key_id(),
        0,
        1000,
        &mut s.rng,
    ));
    let e = seal_as(&mut s, &svc, &inp);
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 150),
        Err(Error::BadSignature(_))
    ));
    let mut inp = input(3, b"x");
    inp.write_token = Some(issue_write_token(
        &s.owner_sig,
        "t2",
        svc.key_id(),
        0,
        1000,
        &mut s.rng,
    ));
    let e = seal_as(&mut s, &svc, &inp);
    assert!(matches!(
        owner.open_envelope(&e, &s.trust, 150),
        Err(Error::Mismatch(_))
    ));
    // A revoked device: changes up to last_valid_seq still pass, later ones do not.
    let dev = s.device_sig.clone();
    let rev = issue_revocation(
        &s.owner_sig,
        RevocationKind::Device,
        &dev.key_id().0,
        0,
        Some(5),
    );
    trust
        .revocations
        .apply(&verify_revocation(&rev, s.owner_sig.verifying_key()).unwrap());
    let ok = seal_as(&mut s, &dev, &input(5, b"x"));
    let late = seal_as(&mut s, &dev, &input(6, b"x"));
    assert!(owner.open_envelope(&ok, &trust, 0).is_ok());
    assert_eq!(
        owner.open_envelope(&late, &trust, 0).unwrap_err(),
        Error::Revoked("device")
    );
}

#[test]
fn a_signed_header_that_differs_from_the_envelopes_is_refused() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let real = seal_as(&mut s, &dev, &input(1, b"x"));
    let env = v1::Envelope::decode(real.as_slice()).unwrap();
    // The writer signed a header with seq 2; the envelope carries seq 1.
    let mut signed_header = v1::EnvelopeHeader::decode(env.header.as_slice()).unwrap();
    signed_header.seq = 2;
    let body = v1::StateChangeBody {
        version: WIRE_VERSION,
        header: signed_header.encode_to_vec(),
        observed_at_ms: 1,
        delta: b"x".to_vec(),
        write_token: vec![],
    };
    let signed = s
        .device_sig
        .sign_to_vec(SigDomain::StateChange, body.encode_to_vec());
    let key = s
        .keys
        .key_for(7, &["sync", "location"], &mut s.rng)
        .unwrap();
    let nonce = [9u8; 12];
    let forged = v1::Envelope {
        ciphertext: seal(&key.dek().sym(), &nonce, &signed, &env.header),
        nonce: nonce.to_vec(),
        ..env.clone()
    };
    let mut owner =
        Receiver::new(SecretKey::from_bytes(&s.owner_pre.to_bytes()[..], &mut s.rng).unwrap());
    assert!(matches!(
        owner.open_envelope(&forged.encode_to_vec(), &s.trust, 0),
        Err(Error::Mismatch(_))
    ));
    // A state-change body signed under another domain is not a state change.
    let wrong_domain = s
        .device_sig
        .sign_to_vec(SigDomain::Request, body.encode_to_vec());
    let forged = v1::Envelope {
        ciphertext: seal(&key.dek().sym(), &nonce, &wrong_domain, &env.header),
        nonce: nonce.to_vec(),
        ..env
    };
    assert!(matches!(
        owner.open_envelope(&forged.encode_to_vec(), &s.trust, 0),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn every_byte_of_envelope_and_delivery_flipped_is_an_error() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let env = seal_as(&mut s, &dev, &input(1, b"a state change"));
    let mut owner =
        Receiver::new(SecretKey::from_bytes(&s.owner_pre.to_bytes()[..], &mut s.rng).unwrap());
    owner.open_envelope(&env, &s.trust, 0).unwrap();
    for bad in common::flips(&env) {
        assert!(
            owner.open_envelope(&bad, &s.trust, 0).is_err(),
            "a flipped envelope opened"
        );
    }
    let rk = ReKey::generate(
        &s.owner_pre,
        &Policy::parse("sync").unwrap(),
        s.service.public(),
        &mut s.rng,
    )
    .unwrap();
    let d = deliver(&mut s, &env, &rk);
    let mut svc =
        Receiver::new(SecretKey::from_bytes(&s.service.to_bytes()[..], &mut s.rng).unwrap());
    svc.open_delivery(&d, &s.trust, 0, &mut s.rng).unwrap();
    for bad in common::flips(&d) {
        assert!(
            svc.open_delivery(&bad, &s.trust, 0, &mut s.rng).is_err(),
            "a flipped delivery opened"
        );
    }
}

#[test]
fn malformed_and_oversized_envelopes_are_typed_errors() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let env = seal_as(&mut s, &dev, &input(1, b"x"));
    assert!(matches!(
        decode_envelope(&[0xff; 10]),
        Err(Error::Decode(_))
    ));
    let big = vec![0u8; armored_schemas::limits::MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(decode_envelope(&big), Err(Error::Decode(_))));
    let mut m = v1::Envelope::decode(env.as_slice()).unwrap();
    m.version = 2;
    assert!(matches!(
        decode_envelope(&m.encode_to_vec()),
        Err(Error::UnsupportedVersion { .. })
    ));
    // Header and capsule disagree (header epoch rewritten).
    let mut m = v1::Envelope::decode(env.as_slice()).unwrap();
    let mut h = v1::EnvelopeHeader::decode(m.header.as_slice()).unwrap();
    h.epoch += 1;
    m.header = h.encode_to_vec();
    assert!(matches!(
        decode_envelope(&m.encode_to_vec()),
        Err(Error::Mismatch(_))
    ));
    // An oversized delta is refused at sealing.
    let key = s.keys.key_for(7, &["sync"], &mut s.rng).unwrap();
    let huge = input(2, &vec![0u8; armored_schemas::limits::MAX_ENVELOPE_BYTES]);
    assert!(seal_state_change(key, &dev, &huge, &mut s.rng).is_err());
}
