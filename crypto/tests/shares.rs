//! MPC share bundles: device seal, worker ReEnc with a node re-key, node open, and every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::envelope::*;
use armored_crypto::epoch::EpochKeyManager;
use armored_crypto::kpcpre::{reencrypt, Policy, ReKey, SecretKey};
use armored_crypto::shares::*;
use armored_crypto::sig::SigningKey;
use armored_crypto::sym::seal;
use armored_crypto::tokens::{issue_revocation, verify_revocation, RevocationKind};
use armored_crypto::{domain::SigDomain, Error};
use armored_schemas::Refusal;
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;

struct Setup {
    rng: rand_chacha::ChaCha20Rng,
    owner_pre: SecretKey,
    owner_sig: SigningKey,
    device_sig: SigningKey,
    nodes: Vec<SecretKey>,
    rks: Vec<ReKey>,
    trust: TrustStore,
    keys: EpochKeyManager,
    /// The device's enrolled slots per share epoch (1 unless a test says otherwise: epoch = slot).
    spe: u64,
}

fn setup() -> Setup {
    let mut rng = common::rng(77);
    let owner_pre = SecretKey::generate(&mut rng);
    let owner_sig = SigningKey::generate(&mut rng);
    let device_sig = SigningKey::generate(&mut rng);
    let nodes: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate(&mut rng)).collect();
    // Phase 2+: node j's re-key admits `mpc-share AND node-j AND location`.
    let rks = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let p = Policy::parse(&format!("mpc-share AND node-{} AND location", i + 1)).unwrap();
            ReKey::generate(&owner_pre, &p, n.public(), &mut rng).unwrap()
        })
        .collect();
    let mut trust = TrustStore::new(*owner_sig.verifying_key());
    trust.add_device("t1", *device_sig.verifying_key());
    let keys = EpochKeyManager::new(owner_pre.public().clone(), "t1").unwrap();
    Setup {
        rng,
        owner_pre,
        owner_sig,
        device_sig,
        nodes,
        rks,
        trust,
        keys,
        spe: 1,
    }
}

fn input(j: u8, seq: u64) -> ShareInput {
    ShareInput {
        device_id: "d1".into(),
        item_id: 42,
        slot: 1000,
        node_index: j,
        values: vec![11 * u64::from(j), 1_000_000 + u64::from(j)],
        seq,
    }
}

fn seal_as(s: &mut Setup, writer: &SigningKey, inp: &ShareInput) -> Result<Vec<u8>, Error> {
    let attrs = share_attributes(inp.node_index).unwrap();
    let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let key = s
        .keys
        .key_for(share_epoch(inp.slot, s.spe), &a, &mut s.rng)
        .unwrap();
    seal_share_bundle(key, writer, inp, s.spe, &mut s.rng)
}

/// What a worker does with node j's bundle.
fn deliver(s: &mut Setup, env_bytes: &[u8], j: u8) -> Vec<u8> {
    let (env, _h, c1) = decode_envelope(env_bytes).unwrap();
    let c2 = reencrypt(&s.rks[usize::from(j) - 1], &c1.check(&mut s.rng).unwrap()).unwrap();
    make_delivery(&env, &c2, None)
}

fn node(s: &mut Setup, j: u8) -> Receiver {
    let sk = &s.nodes[usize::from(j) - 1];
    Receiver::new(SecretKey::from_bytes(&sk.to_bytes()[..], &mut s.rng).unwrap())
}

fn open(s: &mut Setup, rx: &mut Receiver, d: &[u8], j: u8) -> Result<ShareItem, Error> {
    rx.open_share_delivery(d, &s.trust, j, s.spe, &mut s.rng)
        .map(|v| v.into_inner())
}

#[test]
fn round_trip_to_each_node() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    for j in 1..=3u8 {
        let env = seal_as(&mut s, &dev, &input(j, u64::from(j))).unwrap();
        let (_, h, _) = decode_envelope(&env).unwrap();
        assert_eq!(h.epoch, 1000, "epoch = slot");
        assert_eq!(
            h.attributes,
            vec![
                "location".to_string(),
                "mpc-share".into(),
                format!("node-{j}"),
                "twin:t1".into()
            ]
        );
        let d = deliver(&mut s, &env, j);
        let mut rx = node(&mut s, j);
        let item = open(&mut s, &mut rx, &d, j).unwrap();
        assert_eq!(item.values, input(j, 0).values);
        assert_eq!(
            (item.twin_id.as_str(), item.device_id.as_str()),
            ("t1", "d1")
        );
        assert_eq!((item.item_id, item.slot, item.node_index), (42, 1000, j));
        assert_eq!(item.seq, u64::from(j));
        assert_eq!(item.owner_key_id, s.owner_pre.key_id());
        assert_eq!(item.writer_key_id, dev.key_id());
        let dbg = format!("{item:?}");
        assert!(
            dbg.contains("redacted") && !dbg.contains("1000001"),
            "{dbg}"
        );
        // A second delivery under the same (slot, node) key costs only AES (DEK cached).
        let env2 = seal_as(
            &mut s,
            &dev,
            &ShareInput {
                item_id: 43,
                ..input(j, 10 + u64::from(j))
            },
        )
        .unwrap();
        let d2 = deliver(&mut s, &env2, j);
        assert_eq!(open(&mut s, &mut rx, &d2, j).unwrap().item_id, 43);
    }
    // One Enc^1 per (slot, node).
    assert_eq!(s.keys.capsules_made(), 3);
    assert!(!format!("{:?}", input(1, 0)).contains("1000001"));
}

#[test]
fn one_capsule_per_share_epoch() {
    let mut s = setup();
    s.spe = 50;
    let dev = s.device_sig.clone();
    let mut rx = node(&mut s, 1);
    // Slots 1000..1049 are share epoch 20: one capsule for node 1, every slot still in its body.
    let mut cids = Vec::new();
    for (i, slot) in (1000..1050).step_by(7).enumerate() {
        let inp = ShareInput {
            slot,
            item_id: i as u64,
            ..input(1, i as u64)
        };
        let env = seal_as(&mut s, &dev, &inp).unwrap();
        let (_, h, _) = decode_envelope(&env).unwrap();
        assert_eq!(h.epoch, 20);
        cids.push(h.capsule_id.clone());
        let d = deliver(&mut s, &env, 1);
        let item = open(&mut s, &mut rx, &d, 1).unwrap();
        assert_eq!((item.slot, item.item_id), (slot, i as u64));
    }
    cids.dedup();
    assert_eq!(cids.len(), 1, "one capsule for the share epoch");
    assert_eq!(s.keys.capsules_made(), 1);
    // The next share epoch has a capsule of its own.
    let next = ShareInput {
        slot: 1050,
        ..input(1, 100)
    };
    let env = seal_as(&mut s, &dev, &next).unwrap();
    assert_eq!(decode_envelope(&env).unwrap().1.epoch, 21);
    assert_eq!(s.keys.capsules_made(), 2);
    // A key of epoch 20 never seals slot 1050, nor with the paper's one slot per epoch.
    let attrs = share_attributes(1).unwrap();
    let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let key = s.keys.key_for(20, &a, &mut s.rng).unwrap();
    for (slot, spe) in [(1050, 50), (1001, 1)] {
        let inp = ShareInput {
            slot,
            ..input(1, 101)
        };
        assert!(matches!(
            seal_share_bundle(key, &dev, &inp, spe, &mut s.rng),
            Err(Error::Mismatch(_))
        ));
    }
    // A body (signed by the device) naming slot 1050 inside an envelope of share epoch 20 is
    // refused; so is any slot but 20 when the node reads the enrollment as one slot per epoch.
    let good = seal_as(&mut s, &dev, &input(1, 102)).unwrap();
    let (env, _, _) = decode_envelope(&good).unwrap();
    let body = v1::ShareBody {
        version: WIRE_VERSION,
        twin_id: "t1".into(),
        device_id: "d1".into(),
        item_id: 7,
        slot: 1050,
        node_index: 1,
        values: vec![1, 2],
        header: env.header.clone(),
    };
    let signed = dev.sign_to_vec(SigDomain::MpcShare, body.encode_to_vec());
    let key = s.keys.key_for(20, &a, &mut s.rng).unwrap();
    let forged = v1::Envelope {
        ciphertext: seal(&key.dek().sym(), &[5; 12], &signed, &env.header),
        nonce: vec![5; 12],
        ..env
    };
    let d = deliver(&mut s, &forged.encode_to_vec(), 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::Mismatch(_))
    ));
    let d = deliver(&mut s, &good, 1);
    assert!(open(&mut s, &mut rx, &d, 1).is_ok());
    s.spe = 1;
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::Mismatch(_))
    ));
}

#[test]
fn wrong_node_index_is_refused() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let env = seal_as(&mut s, &dev, &input(1, 1)).unwrap();
    let d = deliver(&mut s, &env, 1);
    let mut rx = node(&mut s, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 2),
        Err(Error::WrongNode {
            expected: 2,
            got: 1
        })
    ));
    assert!(matches!(
        open(&mut s, &mut rx, &d, 4),
        Err(Error::WrongNode { .. })
    ));
    // A key for node 2 cannot seal node 1's share.
    let attrs = share_attributes(2).unwrap();
    let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let key = s.keys.key_for(1000, &a, &mut s.rng).unwrap();
    assert!(matches!(
        seal_share_bundle(key, &dev, &input(1, 2), 1, &mut s.rng),
        Err(Error::NotAShareBundle(_))
    ));
    // A body naming node 2 inside node 1's envelope (signed by the device) is refused.
    let (env, h, _) = decode_envelope(&env).unwrap();
    let body = v1::ShareBody {
        version: WIRE_VERSION,
        twin_id: "t1".into(),
        device_id: "d1".into(),
        item_id: 42,
        slot: 1000,
        node_index: 2,
        values: vec![1, 2],
        header: env.header.clone(),
    };
    let key = s
        .keys
        .key_for(h.epoch, &["location", "mpc-share", "node-1"], &mut s.rng)
        .unwrap();
    let signed = dev.sign_to_vec(SigDomain::MpcShare, body.encode_to_vec());
    let forged = v1::Envelope {
        ciphertext: seal(&key.dek().sym(), &[7; 12], &signed, &env.header),
        nonce: vec![7; 12],
        ..env
    };
    let d = deliver(&mut s, &forged.encode_to_vec(), 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::WrongNode {
            expected: 1,
            got: 2
        })
    ));
    // Out-of-range values never seal.
    let bad = ShareInput {
        values: vec![FIELD_MODULUS, 0],
        ..input(1, 3)
    };
    assert!(matches!(
        seal_as(&mut s, &dev, &bad),
        Err(Error::InvalidField { .. })
    ));
}

#[test]
fn only_an_enrolled_device_of_the_twin_may_sign_shares() {
    let mut s = setup();
    let mut rx = node(&mut s, 1);
    // A key nobody enrolled.
    let stranger = SigningKey::generate(&mut s.rng);
    let env = seal_as(&mut s, &stranger, &input(1, 1)).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::UnknownSigner(_))
    ));
    // The owner (and a write-token holder) may write state changes, never shares.
    let owner = s.owner_sig.clone();
    let env = seal_as(&mut s, &owner, &input(1, 2)).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::UnknownSigner(_))
    ));
    let helper = SigningKey::generate(&mut s.rng);
    s.trust.add_key(*helper.verifying_key());
    let env = seal_as(&mut s, &helper, &input(1, 3)).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::UnknownSigner(_))
    ));
    // An enrolled device of another twin.
    let other = SigningKey::generate(&mut s.rng);
    s.trust.add_device("t2", *other.verifying_key());
    let env = seal_as(&mut s, &other, &input(1, 4)).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::UnknownSigner(_))
    ));
    // The enrolled device's key id in the header, a stranger's signature inside.
    let dev = s.device_sig.clone();
    let good = seal_as(&mut s, &dev, &input(1, 5)).unwrap();
    let (env, h, _) = decode_envelope(&good).unwrap();
    let body = v1::ShareBody {
        version: WIRE_VERSION,
        twin_id: "t1".into(),
        device_id: "d1".into(),
        item_id: 1,
        slot: h.epoch,
        node_index: 1,
        values: vec![1, 2],
        header: env.header.clone(),
    };
    let key = s
        .keys
        .key_for(h.epoch, &["location", "mpc-share", "node-1"], &mut s.rng)
        .unwrap()
        .dek()
        .sym();
    let signed = stranger.sign_to_vec(SigDomain::MpcShare, body.encode_to_vec());
    let forged = v1::Envelope {
        ciphertext: seal(&key, &[9; 12], &signed, &env.header),
        nonce: vec![9; 12],
        ..env.clone()
    };
    let d = deliver(&mut s, &forged.encode_to_vec(), 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::BadSignature(_))
    ));
    // The device's signature under the state-change domain is not a share.
    let signed = dev.sign_to_vec(SigDomain::StateChange, body.encode_to_vec());
    let forged = v1::Envelope {
        ciphertext: seal(&key, &[9; 12], &signed, &env.header),
        nonce: vec![9; 12],
        ..env
    };
    let d = deliver(&mut s, &forged.encode_to_vec(), 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::BadSignature(_))
    ));
    // A revoked device: shares past its last valid seq are refused, earlier ones still open.
    let rv = issue_revocation(
        &s.owner_sig,
        RevocationKind::Device,
        &dev.key_id().0,
        0,
        Some(5),
    );
    let rv = verify_revocation(&rv, s.owner_sig.verifying_key()).unwrap();
    s.trust.revocations.apply(&rv);
    let late = seal_as(&mut s, &dev, &input(1, 6)).unwrap();
    let d = deliver(&mut s, &late, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::Revoked(_))
    ));
    let d = deliver(&mut s, &good, 1);
    assert!(open(&mut s, &mut rx, &d, 1).is_ok());
}

#[test]
fn every_byte_of_a_share_delivery_flipped_is_an_error() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let env = seal_as(&mut s, &dev, &input(2, 1)).unwrap();
    let d = deliver(&mut s, &env, 2);
    let mut rx = node(&mut s, 2);
    open(&mut s, &mut rx, &d, 2).unwrap();
    for bad in common::flips(&d) {
        assert!(
            open(&mut s, &mut rx, &bad, 2).is_err(),
            "a flipped share delivery opened"
        );
    }
}

#[test]
fn attribute_tampering_is_refused() {
    let mut s = setup();
    let dev = s.device_sig.clone();
    let mut rx = node(&mut s, 1);
    // The header's attributes rewritten in the delivery: they no longer match the capsule.
    let env = seal_as(&mut s, &dev, &input(1, 1)).unwrap();
    let d = deliver(&mut s, &env, 1);
    let mut m = v1::Delivery::decode(d.as_slice()).unwrap();
    let mut h = v1::EnvelopeHeader::decode(m.envelope_header.as_slice()).unwrap();
    h.attributes = vec![
        "location".into(),
        "mpc-share".into(),
        "node-1".into(),
        "sync".into(),
        "twin:t1".into(),
    ];
    m.envelope_header = h.encode_to_vec();
    assert!(matches!(
        open(&mut s, &mut rx, &m.encode_to_vec(), 1),
        Err(Error::Mismatch(_))
    ));
    // Capsules whose own attributes break the share rule, admitted by permissive node re-keys.
    let loose = |s: &mut Setup, policy: &str| {
        let p = Policy::parse(policy).unwrap();
        ReKey::generate(&s.owner_pre, &p, s.nodes[0].public(), &mut s.rng).unwrap()
    };
    for (attrs, policy, want) in [
        (
            &["location", "mpc-share", "node-1", "sync"][..],
            "mpc-share AND node-1",
            "not_share_bundle",
        ),
        (
            &["mpc-share", "node-1"],
            "mpc-share AND node-1",
            "not_share_bundle",
        ),
        (
            &["location", "mpc-share", "node-1", "node-2"],
            "mpc-share AND node-1",
            "wrong_node",
        ),
    ] {
        let rk = loose(&mut s, policy);
        let key = s.keys.key_for(1000, attrs, &mut s.rng).unwrap();
        assert!(seal_share_bundle(key, &dev, &input(1, 10), 1, &mut s.rng).is_err());
        // A state change under those attributes (seal_share_bundle refuses them outright).
        let sc = StateChangeInput {
            device_id: "d1".into(),
            seq: 9,
            ..Default::default()
        };
        let env = seal_state_change(key, &dev, &sc, &mut s.rng).unwrap();
        let (e, _, c1) = decode_envelope(&env).unwrap();
        let c2 = reencrypt(&rk, &c1.check(&mut s.rng).unwrap()).unwrap();
        let d = make_delivery(&e, &c2, None);
        let r = open(&mut s, &mut rx, &d, 1);
        assert_eq!(r.map(|_| ()).unwrap_err().reason(), want, "{attrs:?}");
    }
    // A state change under exactly the share attributes is still not a share (domain, body).
    let key = s
        .keys
        .key_for(1000, &["location", "mpc-share", "node-1"], &mut s.rng)
        .unwrap();
    let sc = StateChangeInput {
        device_id: "d1".into(),
        seq: 11,
        ..Default::default()
    };
    let env = seal_state_change(key, &dev, &sc, &mut s.rng).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(matches!(
        open(&mut s, &mut rx, &d, 1),
        Err(Error::BadSignature(_))
    ));
    // And a share bundle is never a state change.
    let env = seal_as(&mut s, &dev, &input(1, 12)).unwrap();
    let d = deliver(&mut s, &env, 1);
    assert!(rx.open_delivery(&d, &s.trust, 0, &mut s.rng).is_err());
}
