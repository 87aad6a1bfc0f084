//! Hostile input to the KP-CPRE layer: every failure is a typed error, never a DEK.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::kpcpre::*;
use armored_crypto::tokens::{
    issue_rekey_upload, verify_rekey_upload, ReKeyUploadInput, ReceiverKind, RevocationSet,
};
use armored_crypto::{sig::SigningKey, Error};
use armored_schemas::v1;
use prost::Message;

struct World {
    rng: rand_chacha::ChaCha20Rng,
    owner: SecretKey,
    bob: SecretKey,
    carol: SecretKey,
    dek: Dek,
    c1: Capsule1,
    rk: ReKey,
}

fn world(attrs: &[&str], policy: &str) -> World {
    let mut rng = common::rng(11);
    let owner = SecretKey::generate(&mut rng);
    let bob = SecretKey::generate(&mut rng);
    let carol = SecretKey::generate(&mut rng);
    let dek = Dek::generate(&mut rng);
    let set = AttributeSet::new(attrs.iter().copied()).unwrap();
    let c1 = Capsule1::encrypt(owner.public(), "t1", 5, &set, &dek, &mut rng).unwrap();
    let rk = ReKey::generate(
        &owner,
        &Policy::parse(policy).unwrap(),
        bob.public(),
        &mut rng,
    )
    .unwrap();
    World {
        rng,
        owner,
        bob,
        carol,
        dek,
        c1,
        rk,
    }
}

/// Runs the whole receiver pipeline on capsule1 bytes: decode, check, ReEnc, Dec2.
fn reencrypt_path(w: &mut World, c1_bytes: &[u8]) -> Result<Dek, Error> {
    let c1 = Capsule1::decode(c1_bytes)?;
    let checked = c1.check(&mut w.rng)?;
    let c2 = reencrypt(&w.rk, &checked)?;
    c2.decrypt(&w.bob, &mut w.rng)
}

#[test]
fn policy_not_satisfied_computes_nothing() {
    let mut w = world(&["sync", "location"], "sync AND node-2");
    let checked = w.c1.clone().check(&mut w.rng).unwrap();
    assert_eq!(
        reencrypt(&w.rk, &checked).unwrap_err(),
        Error::PolicyNotSatisfied
    );
}

#[test]
fn wrong_receiver_and_borrowed_rekeys_fail() {
    let mut w = world(&["sync", "location"], "sync");
    let checked = w.c1.clone().check(&mut w.rng).unwrap();
    let c2 = reencrypt(&w.rk, &checked).unwrap();
    assert!(c2.decrypt(&w.bob, &mut w.rng).unwrap() == w.dek);
    // Carol is handed Bob's capsule2.
    assert!(matches!(
        c2.decrypt(&w.carol, &mut w.rng),
        Err(Error::KeyMismatch(_))
    ));
    // Carol relabels Bob's capsule2 as hers: t was sealed to Bob and does not open.
    let mut m = v1::Capsule2::decode(c2.encode().as_slice()).unwrap();
    m.receiver_key_id = w.carol.key_id().0.to_vec();
    let forged = Capsule2::decode(&m.encode_to_vec()).unwrap();
    assert_eq!(
        forged.decrypt(&w.carol, &mut w.rng).unwrap_err(),
        Error::ReKeyAuth
    );
    // The owner cannot use it either.
    assert!(c2.decrypt(&w.owner, &mut w.rng).is_err());
    // A re-key of another owner does not apply.
    let other_owner = SecretKey::generate(&mut w.rng);
    let rk2 = ReKey::generate(
        &other_owner,
        &Policy::parse("sync").unwrap(),
        w.bob.public(),
        &mut w.rng,
    )
    .unwrap();
    assert!(matches!(
        reencrypt(&rk2, &checked),
        Err(Error::KeyMismatch(_))
    ));
    // Owner decryption with the wrong key.
    assert!(matches!(w.c1.decrypt(&w.bob), Err(Error::KeyMismatch(_))));
}

fn with_header(c1: &Capsule1, edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut h = c1.header().clone();
    edit(&mut h);
    let mut m = v1::Capsule1::decode(c1.encode().as_slice()).unwrap();
    m.hdr = h.encode();
    m.encode_to_vec()
}

#[test]
fn rewritten_labels_epoch_and_twin_never_open() {
    // A = {location, sync}; P = node-2 AND sync. Relabel "location" as "node-2" so that P(A') = 1.
    let mut w = world(&["location", "sync"], "node-2 AND sync");
    let relabeled = with_header(&w.c1, |h| {
        h.attributes = AttributeSet::new(["node-2", "sync"]).unwrap();
    });
    let c = Capsule1::decode(&relabeled).unwrap();
    assert_eq!(c.decrypt(&w.owner).unwrap_err(), Error::CapsuleAuth);
    assert_eq!(
        reencrypt_path(&mut w, &relabeled).unwrap_err(),
        Error::MalformedCapsule
    );

    let mut w = world(&["location", "sync"], "sync");
    for bytes in [
        with_header(&w.c1, |h| h.epoch += 1),
        with_header(&w.c1, |h| h.twin_id = "t2".into()),
    ] {
        let c = Capsule1::decode(&bytes).unwrap();
        assert_eq!(c.decrypt(&w.owner).unwrap_err(), Error::CapsuleAuth);
        assert_eq!(
            reencrypt_path(&mut w, &bytes).unwrap_err(),
            Error::CapsuleAuth
        );
    }
}

#[test]
fn every_byte_of_capsule1_flipped_is_an_error() {
    let mut w = world(&["location", "sync"], "sync AND location");
    let good = w.c1.encode();
    assert!(reencrypt_path(&mut w, &good).unwrap() == w.dek);
    let mut n = 0;
    for bad in common::flips(&good) {
        match Capsule1::decode(&bad) {
            Err(_) => {}
            Ok(c) => {
                assert!(
                    c.decrypt(&w.owner).is_err(),
                    "owner path opened a flipped capsule"
                );
                assert!(
                    reencrypt_path(&mut w, &bad).is_err(),
                    "ReEnc path opened a flipped capsule"
                );
            }
        }
        n += 1;
    }
    assert_eq!(n, 2 * good.len());
}

#[test]
fn every_byte_of_capsule2_flipped_is_an_error() {
    let mut w = world(&["location", "sync"], "sync AND location");
    let checked = w.c1.clone().check(&mut w.rng).unwrap();
    let good = reencrypt(&w.rk, &checked).unwrap().encode();
    let mut cache = TCache::new(8);
    assert!(
        cache
            .decrypt(&w.bob, &Capsule2::decode(&good).unwrap(), &mut w.rng)
            .unwrap()
            == w.dek
    );
    for bad in common::flips(&good) {
        if let Ok(c2) = Capsule2::decode(&bad) {
            assert!(
                cache.decrypt(&w.bob, &c2, &mut w.rng).is_err(),
                "a flipped capsule2 opened"
            );
        }
    }
}

#[test]
fn every_byte_of_a_signed_rekey_upload_flipped_is_an_error() {
    let mut w = world(&["location", "sync"], "sync AND location");
    let sig = SigningKey::generate(&mut w.rng);
    let input = ReKeyUploadInput {
        receiver_kind: ReceiverKind::Service,
        receiver_id: "svc-1",
        not_after_ms: None,
        history_from_epoch: Some(0),
        until_epoch: None,
    };
    let good = issue_rekey_upload(&sig, &w.rk, &input);
    let revoked = RevocationSet::default();
    let ok =
        verify_rekey_upload(&good, sig.verifying_key(), w.owner.key_id(), &revoked, 0).unwrap();
    assert_eq!(ok.rk.rk_id(), w.rk.rk_id());
    for bad in common::flips(&good) {
        assert!(
            verify_rekey_upload(&bad, sig.verifying_key(), w.owner.key_id(), &revoked, 0).is_err(),
            "a flipped re-key upload verified"
        );
    }
    // The re-key alone, flipped, never decodes to one that re-encrypts to a DEK for Bob.
    let rk_bytes = w.rk.encode();
    let checked = w.c1.clone().check(&mut w.rng).unwrap();
    for bad in common::flips(&rk_bytes).step_by(3) {
        if let Ok(rk) = ReKey::decode(&bad) {
            if let Ok(c2) = reencrypt(&rk, &checked) {
                assert!(
                    c2.decrypt(&w.bob, &mut w.rng).is_err(),
                    "a flipped re-key still decrypts"
                );
            }
        }
    }
}

const G1_IDENTITY: [u8; 48] = {
    let mut b = [0u8; 48];
    b[0] = 0xc0;
    b
};
const G2_IDENTITY: [u8; 96] = {
    let mut b = [0u8; 96];
    b[0] = 0xc0;
    b
};

#[test]
fn identity_points_and_zero_scalars_are_decode_errors() {
    let mut w = world(&["location", "sync"], "sync AND location");
    let c1 = v1::Capsule1::decode(w.c1.encode().as_slice()).unwrap();
    let mut m = c1.clone();
    m.c0 = G2_IDENTITY.to_vec();
    assert!(matches!(
        Capsule1::decode(&m.encode_to_vec()),
        Err(Error::InvalidPoint { .. })
    ));
    let mut m = c1.clone();
    m.ca[1] = G1_IDENTITY.to_vec();
    assert!(matches!(
        Capsule1::decode(&m.encode_to_vec()),
        Err(Error::InvalidPoint { .. })
    ));

    let rk = v1::ReKey::decode(w.rk.encode().as_slice()).unwrap();
    for edit in [
        (|m: &mut v1::ReKey| m.e = G2_IDENTITY.to_vec()) as fn(&mut v1::ReKey),
        |m| m.leaves[0].d = G1_IDENTITY.to_vec(),
        |m| m.leaves[1].r = G2_IDENTITY.to_vec(),
    ] {
        let mut m = rk.clone();
        edit(&mut m);
        assert!(matches!(
            ReKey::decode(&m.encode_to_vec()),
            Err(Error::InvalidPoint { .. })
        ));
    }

    let checked = w.c1.clone().check(&mut w.rng).unwrap();
    let c2 = v1::Capsule2::decode(reencrypt(&w.rk, &checked).unwrap().encode().as_slice()).unwrap();
    for edit in [
        (|m: &mut v1::Capsule2| m.c0 = G2_IDENTITY.to_vec()) as fn(&mut v1::Capsule2),
        |m| m.e = G2_IDENTITY.to_vec(),
    ] {
        let mut m = c2.clone();
        edit(&mut m);
        assert!(matches!(
            Capsule2::decode(&m.encode_to_vec()),
            Err(Error::InvalidPoint { .. })
        ));
    }
    // Z = 1 (GT identity) decodes as field elements (kp-cpre.md) but only yields a wrong key.
    let mut m = c2.clone();
    let mut one = vec![0u8; 576];
    one[0] = 1;
    m.z = one;
    let c = Capsule2::decode(&m.encode_to_vec()).unwrap();
    assert_eq!(
        c.decrypt(&w.bob, &mut w.rng).unwrap_err(),
        Error::CapsuleAuth
    );

    // Zero and out-of-range secret scalars.
    assert!(SecretKey::from_bytes(&[0u8; 32], &mut w.rng).is_err());
    assert!(SecretKey::from_bytes(&[0xffu8; 32], &mut w.rng).is_err());
    assert!(PublicKey::from_bytes(&[0u8; 576]).is_err());
}

#[test]
fn policy_text_in_a_rekey_must_be_canonical() {
    let w = world(&["sync"], "sync OR location");
    let mut m = v1::ReKey::decode(w.rk.encode().as_slice()).unwrap();
    m.policy = "sync OR location".into();
    assert!(ReKey::decode(&m.encode_to_vec()).is_err());
}

#[test]
fn swapped_or_foreign_attribute_points_fail_the_check() {
    let mut w = world(&["location", "sync"], "sync AND location");
    let mut m = v1::Capsule1::decode(w.c1.encode().as_slice()).unwrap();
    m.ca.swap(0, 1);
    assert_eq!(
        reencrypt_path(&mut w, &m.encode_to_vec()).unwrap_err(),
        Error::MalformedCapsule
    );
    // A Ca taken from another capsule (another s) for the same attribute.
    let other = Capsule1::encrypt(
        w.owner.public(),
        "t1",
        5,
        &AttributeSet::new(["location", "sync"]).unwrap(),
        &w.dek,
        &mut w.rng,
    )
    .unwrap();
    let theirs = v1::Capsule1::decode(other.encode().as_slice()).unwrap();
    let mut m = v1::Capsule1::decode(w.c1.encode().as_slice()).unwrap();
    m.ca[0] = theirs.ca[0].clone();
    assert_eq!(
        reencrypt_path(&mut w, &m.encode_to_vec()).unwrap_err(),
        Error::MalformedCapsule
    );
}

/// The batched check accepts a batch of honest capsules, and refuses exactly the malformed ones
/// of a mixed batch (the others still pass and re-encrypt to their DEK).
#[test]
fn the_batched_check_refuses_exactly_the_malformed_capsules() {
    let mut w = world(
        &["location", "mpc-share", "node-1"],
        "mpc-share AND node-1 AND location",
    );
    let set = AttributeSet::new(["location", "mpc-share", "node-1"]).unwrap();
    let mut deks = Vec::new();
    let mut capsules = Vec::new();
    for epoch in 0..6 {
        let dek = Dek::generate(&mut w.rng);
        capsules.push(
            Capsule1::encrypt(w.owner.public(), "t1", epoch, &set, &dek, &mut w.rng).unwrap(),
        );
        deks.push(dek);
    }
    let all_good = Capsule1::check_batch(capsules.clone(), &mut w.rng);
    assert!(all_good.iter().all(Result::is_ok));
    // Capsule 2 with its Ca points swapped; capsule 4 with a Ca of capsule 5 (another s).
    let mut wire: Vec<v1::Capsule1> = capsules
        .iter()
        .map(|c| v1::Capsule1::decode(c.encode().as_slice()).unwrap())
        .collect();
    wire[2].ca.swap(0, 1);
    wire[4].ca[1] = wire[5].ca[1].clone();
    let mixed: Vec<Capsule1> = wire
        .iter()
        .map(|m| Capsule1::decode(&m.encode_to_vec()).unwrap())
        .collect();
    let results = Capsule1::check_batch(mixed, &mut w.rng);
    for (i, r) in results.into_iter().enumerate() {
        match (i, r) {
            (2 | 4, r) => assert_eq!(r.unwrap_err(), Error::MalformedCapsule, "capsule {i}"),
            (i, r) => {
                let c2 = reencrypt(&w.rk, &r.unwrap()).unwrap();
                assert!(
                    c2.decrypt(&w.bob, &mut w.rng).unwrap() == deks[i],
                    "capsule {i}"
                );
            }
        }
    }
    assert!(Capsule1::check_batch(Vec::new(), &mut w.rng).is_empty());
    let one = Capsule1::check_batch(vec![capsules[0].clone()], &mut w.rng);
    assert!(one.len() == 1 && one[0].is_ok());
}
