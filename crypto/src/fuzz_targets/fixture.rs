//! The fixed keys and records every entry point shares, and the helpers of their checks.

// The fixture is built from constants: a failure there is a broken harness, not input-derived.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Mutex, OnceLock};

use armored_schemas::v1;
use prost::Message;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::envelope::{Receiver, TrustStore};
use crate::epoch::EpochKeyManager;
use crate::hpke::HpkeSecretKey;
use crate::identity::{create_party_identity, enroll_device, PartyKind};
use crate::kpcpre::{Capsule1, Dek, PublicKey, SecretKey};
use crate::peer::ChannelId;
use crate::registry::Registry;
use crate::sig::{decode_signed, SigningKey};

/// "Now" for every expiry check of the harness.
pub const NOW_MS: u64 = 1_700_000_000_000;
pub(super) const TWIN: &str = "t1";
pub(super) const DEVICE: &str = "d1";
pub(super) const SERVICE: &str = "svc";
pub(super) const NODE: u8 = 1;

/// Fixed keys and records every entry point shares (built once per process, deterministically, so
/// that the committed seeds verify in every run).
pub struct Fixture {
    pub(super) owner_sig: SigningKey,
    pub(super) owner_pre: SecretKey,
    pub(super) device_sig: SigningKey,
    pub(super) service_sig: SigningKey,
    pub(super) service_pre: SecretKey,
    pub(super) node_public: PublicKey,
    /// Receivers of the owner, the service and node 1 (keys are not `Clone`; their DEK caches key
    /// on exact capsule bytes, so reuse across inputs changes no result).
    pub(super) owner_rx: Mutex<Receiver>,
    pub(super) service_rx: Mutex<Receiver>,
    pub(super) node_rx: Mutex<Receiver>,
    pub(super) node1_hpke: HpkeSecretKey,
    pub(super) node2_hpke: HpkeSecretKey,
    pub(super) trust: TrustStore,
    /// Epoch keys of the twin (behind a lock: handing out a key counts its uses). Keys for epoch 5
    /// (`sync`, `location`) and slot 9 (node 1's shares) exist from the start, so that the seeds
    /// and every run see the same capsules.
    pub(super) epochs: Mutex<EpochKeyManager>,
    /// Epoch 5's DEK and capsule, for [`state_change`] (which must never rotate the key).
    pub(super) state_key: (Dek, Capsule1),
    /// The registry with the owner, its device and the service already folded in.
    pub(super) registry: Registry,
    /// The peer channel node 1 -> node 2 of the harness.
    pub(super) channel: ChannelId,
}

impl core::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Fixture(<test keys>)")
    }
}

pub(super) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The shared fixture.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut r = rng(1);
        let owner_sig = SigningKey::from_bytes(&[0x11; 32]).expect("owner signing key");
        let owner_pre = SecretKey::from_bytes(&[0x12; 32], &mut r).expect("owner PRE key");
        let device_sig = SigningKey::from_bytes(&[0x21; 32]).expect("device signing key");
        let device_pre = SecretKey::from_bytes(&[0x22; 32], &mut r).expect("device PRE key");
        let service_sig = SigningKey::from_bytes(&[0x31; 32]).expect("service signing key");
        let service_pre = SecretKey::from_bytes(&[0x32; 32], &mut r).expect("service PRE key");
        let service_hpke = HpkeSecretKey::from_bytes(&[0x33; 32]).expect("service HPKE key");
        let node_pre = SecretKey::from_bytes(&[0x41; 32], &mut r).expect("node PRE key");
        let node1_hpke = HpkeSecretKey::from_bytes(&[0x42; 32]).expect("node 1 HPKE key");
        let node2_hpke = HpkeSecretKey::from_bytes(&[0x52; 32]).expect("node 2 HPKE key");
        let mut trust = TrustStore::new(*owner_sig.verifying_key());
        trust.add_device(TWIN, *device_sig.verifying_key());
        let mut epochs = EpochKeyManager::new(owner_pre.public().clone(), TWIN).expect("twin id");
        let k = epochs
            .key_for(5, &["sync", "location"], &mut r)
            .expect("epoch 5 key");
        let state_key = (k.dek().clone(), k.capsule().clone());
        let share_attrs = crate::shares::share_attributes(NODE).expect("share attributes");
        let share_attrs: Vec<&str> = share_attrs.iter().map(String::as_str).collect();
        epochs.key_for(9, &share_attrs, &mut r).expect("slot 9 key");

        let mut registry = Registry::new();
        let owner_identity = crate::identity::create_owner_identity(
            "owner1", &owner_pre, &owner_sig, 0, &owner_sig, &mut r,
        );
        let enrollment = enroll_device(
            &owner_sig,
            TWIN,
            DEVICE,
            device_pre.public(),
            device_sig.verifying_key(),
            60_000,
        );
        let party = create_party_identity(
            PartyKind::Service,
            SERVICE,
            service_pre.public(),
            &service_sig,
            service_hpke.public(),
            0,
        );
        for rec in [
            v1::registry_record::Record::OwnerIdentity(owner_identity),
            v1::registry_record::Record::Enrollment(enrollment),
            v1::registry_record::Record::PartyIdentity(party),
        ] {
            registry
                .apply(&crate::registry::record(rec))
                .expect("fixture registry record");
        }
        Fixture {
            owner_sig,
            owner_pre,
            device_sig,
            service_sig,
            service_pre,
            node_public: node_pre.public().clone(),
            owner_rx: Mutex::new(Receiver::new(
                SecretKey::from_bytes(&[0x12; 32], &mut r).expect("owner PRE key"),
            )),
            service_rx: Mutex::new(Receiver::new(
                SecretKey::from_bytes(&[0x32; 32], &mut r).expect("service PRE key"),
            )),
            node_rx: Mutex::new(Receiver::new(node_pre)),
            node1_hpke,
            node2_hpke,
            trust,
            epochs: Mutex::new(epochs),
            state_key,
            registry,
            channel: ChannelId {
                job_hash: [7; 32],
                attempt: 1,
                from: 1,
                to: 2,
            },
        }
    })
}

/// Locks a fixture receiver (a finding that panicked while holding it does not poison the rest).
pub(super) fn lock(m: &Mutex<Receiver>) -> std::sync::MutexGuard<'_, Receiver> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Splits a mode byte off `data` (mode 0 for empty input).
pub(super) fn mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&m, rest)) => (m, rest),
        None => (0, data),
    }
}

/// A strictly decoded protobuf message re-encodes to the bytes it came from.
pub(super) fn assert_canonical<M: Message>(m: &M, bytes: &[u8], what: &str) {
    assert_eq!(
        m.encode_to_vec(),
        bytes,
        "{what}: accepted bytes do not re-encode to themselves"
    );
}

/// The `Signed` record of accepted bytes re-encodes to them; returns its body.
pub(super) fn signed_body(bytes: &[u8], limit: usize) -> Vec<u8> {
    let s = decode_signed(bytes, limit).expect("accepted record decodes as Signed");
    assert_canonical(&s, bytes, "Signed");
    s.body
}
