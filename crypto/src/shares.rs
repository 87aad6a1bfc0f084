//! MPC share bundles (Protocol 2, phase 3+; envelope.md "MPC share bundles").
//!
//! Device side: [`seal_share_bundle`] signs one node's `ShareBody` (domain `at/v1/mpc-share`) and
//! seals it like a state change, under the epoch key of (share epoch, node): attributes exactly
//! `location`, `mpc-share`, `node-<j>`, `twin:<id>`, epoch = [`share_epoch`] of the global slot.
//! As state changes reuse one DEK and capsule per (epoch, attribute set), the shares of every slot
//! of one share epoch for one node reuse one: the worker checks and re-encrypts that capsule once,
//! the node runs Dec² once. The slot itself stays in the signed body. This is safe because node j
//! receives every slot of share number j anyway. What changes is revocation's granularity: the
//! worker stops re-encrypting for a revoked node at once, but a revoked node that also reads the
//! raw log holds the DEK of the current share epoch until it ends (before, of the current slot).
//! An enrollment with one slot per share epoch keeps the paper's accounting (a capsule per point).
//! Node side:
//! [`Receiver::open_share_delivery`] opens the re-encrypted delivery and accepts it only from an
//! enrolled device of the twin (never the owner or a write-token holder) and only for node j.
//!
//! The signature covers the share, never the point: a node holding a signature over plaintext
//! coordinates could test all 2^32 pairs offline.
//!
//! Sequence numbers: the header's `seq` is the device's one counter over everything it uploads
//! (state changes and share envelopes alike), so the edge's and receivers' duplicate guards per
//! (twin, writer key) stay meaningful and a device revocation's `last_valid_seq` covers shares too.
//! The three envelopes of one point carry three seqs and one `item_id`.

use armored_schemas::limits::MAX_ENVELOPE_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::domain::SigDomain;
use crate::envelope::{parse_header, seal_signed, Receiver, TrustStore};
use crate::epoch::EpochKey;
use crate::error::{Error, Result};
use crate::ids::{check_id, twin_attribute};
use crate::keyid::KeyId;
use crate::sig::{decode_signed, SigningKey};
use crate::sym::open;
use crate::verified::Verified;

/// The attribute every share bundle carries.
pub const MPC_SHARE: &str = "mpc-share";
/// The attribute of the shared data (location points).
pub const LOCATION: &str = "location";
/// Values per body: share j of x and share j of y.
pub const SHARE_VALUES: usize = 2;
/// The MPC field's modulus (`armored-mpc`, p = 2^61 - 1): a share is a canonical element below it.
pub const FIELD_MODULUS: u64 = (1 << 61) - 1;
/// Node indices are 1..=NODES.
pub const NODES: u8 = 3;
/// Slots per share epoch of a new device: one 50-slot window (the demo's and the default grant's
/// `min_window_slots`), so that a window's shares travel in one capsule per node.
pub const DEFAULT_SLOTS_PER_SHARE_EPOCH: u64 = 50;
/// Most slots per share epoch an enrollment may name (bounds the edge's epoch arithmetic).
pub const MAX_SLOTS_PER_SHARE_EPOCH: u64 = 100_000;

/// The share epoch of `slot`: the epoch key's epoch for its share bundles (0 slots per epoch is
/// read as 1).
pub fn share_epoch(slot: u64, slots_per_share_epoch: u64) -> u64 {
    slot / slots_per_share_epoch.max(1)
}

/// `node-<j>` for j in 1..=3.
pub fn node_attribute(node_index: u8) -> Result<String> {
    if (1..=NODES).contains(&node_index) {
        Ok(format!("node-{node_index}"))
    } else {
        Err(Error::WrongNode {
            expected: 0,
            got: u32::from(node_index),
        })
    }
}

/// The attributes a device passes to the epoch key manager for node j's bundles (the manager adds
/// `twin:<id>`): `location`, `mpc-share`, `node-<j>`.
pub fn share_attributes(node_index: u8) -> Result<[String; 3]> {
    Ok([
        LOCATION.to_owned(),
        MPC_SHARE.to_owned(),
        node_attribute(node_index)?,
    ])
}

/// What a device puts in one node's share of one point.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareInput {
    /// The uploading device.
    pub device_id: String,
    /// The point's id (per device; equal in the three bundles of one point).
    pub item_id: u64,
    /// The global slot (= the epoch key's epoch).
    pub slot: u64,
    /// The node j this share is for (1..=3).
    pub node_index: u8,
    /// Share j of x and y (canonical F_p elements).
    pub values: Vec<u64>,
    /// The envelope header's seq: the device's upload counter (unique per envelope; see the
    /// module docs).
    pub seq: u64,
}

impl core::fmt::Debug for ShareInput {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShareInput")
            .field("device_id", &self.device_id)
            .field("item_id", &self.item_id)
            .field("slot", &self.slot)
            .field("node_index", &self.node_index)
            .field("seq", &self.seq)
            .field("values", &"<redacted>")
            .finish()
    }
}

fn check_values(values: &[u64]) -> Result<()> {
    if values.len() != SHARE_VALUES || values.iter().any(|v| *v >= FIELD_MODULUS) {
        return Err(Error::InvalidField {
            field: "share.values",
            reason: "two canonical field elements (< 2^61 - 1)",
        });
    }
    Ok(())
}

/// Attribute rule of a share bundle for node j: `mpc-share`, `location`, `node-<j>` and no other
/// `node-*`, never `sync` or `req` (the twin attribute is checked by the header parser).
fn check_share_attributes(attrs: &[String], node_index: u8) -> Result<()> {
    let node = node_attribute(node_index)?;
    let has = |a: &str| attrs.iter().any(|x| x == a);
    if !has(MPC_SHARE) || !has(LOCATION) {
        return Err(Error::NotAShareBundle("mpc-share and location required"));
    }
    if has("sync") || has("req") {
        return Err(Error::NotAShareBundle("sync or req on a share bundle"));
    }
    if attrs.iter().any(|a| a.starts_with("node-") && *a != node) || !has(&node) {
        return Err(Error::WrongNode {
            expected: node_index,
            got: attrs
                .iter()
                .find_map(|a| a.strip_prefix("node-").and_then(|j| j.parse().ok()))
                .unwrap_or(0),
        });
    }
    Ok(())
}

/// Seals node j's share of one point: signs the `ShareBody` with the device key (domain
/// `at/v1/mpc-share`) and encrypts it with the (share epoch, node) epoch key's DEK, header as
/// associated data. The key must be for epoch = [`share_epoch`]`(input.slot,
/// slots_per_share_epoch)` (the enrolled value) and attributes exactly `location`, `mpc-share`,
/// `node-<j>`, `twin:<id>`. Returns the encoded `Envelope`.
pub fn seal_share_bundle<R: RngCore + CryptoRng>(
    key: &EpochKey,
    device: &SigningKey,
    input: &ShareInput,
    slots_per_share_epoch: u64,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let cap = key.capsule();
    let hdr = cap.header();
    check_id(&input.device_id, "device_id")?;
    check_values(&input.values)?;
    if hdr.epoch != share_epoch(input.slot, slots_per_share_epoch) {
        return Err(Error::Mismatch("epoch key is for another share epoch"));
    }
    let mut want: Vec<String> = share_attributes(input.node_index)?.into();
    want.push(twin_attribute(&hdr.twin_id));
    want.sort();
    if hdr.attributes.as_slice() != want.as_slice() {
        return Err(Error::NotAShareBundle(
            "epoch key's attributes are not exactly location, mpc-share, node-j, twin",
        ));
    }
    let header = v1::EnvelopeHeader {
        version: WIRE_VERSION,
        twin_id: hdr.twin_id.clone(),
        device_id: input.device_id.clone(),
        writer_key_id: device.key_id().0.to_vec(),
        seq: input.seq,
        epoch: hdr.epoch,
        attributes: hdr.attributes.as_slice().to_vec(),
        capsule_id: cap.cid().to_vec(),
        expires_at_ms: 0,
    }
    .encode_to_vec();
    parse_header(&header)?;
    let body = v1::ShareBody {
        version: WIRE_VERSION,
        twin_id: hdr.twin_id.clone(),
        device_id: input.device_id.clone(),
        item_id: input.item_id,
        slot: input.slot,
        node_index: u32::from(input.node_index),
        values: input.values.clone(),
        header: header.clone(),
    }
    .encode_to_vec();
    let signed = device.sign_to_vec(SigDomain::MpcShare, body);
    seal_signed(key, header, &signed, "envelope", rng)
}

/// A verified, decrypted share of one point, for node `node_index`.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareItem {
    /// Twin.
    pub twin_id: String,
    /// The enrolled device that signed it.
    pub device_id: String,
    /// The point's id (per device).
    pub item_id: u64,
    /// Global slot.
    pub slot: u64,
    /// j.
    pub node_index: u8,
    /// Share j of x and y (canonical F_p elements).
    pub values: Vec<u64>,
    /// The owner's PRE key id (whose capsule carried the DEK): "comes from capsules of that owner".
    pub owner_key_id: KeyId,
    /// The re-key that re-encrypted it.
    pub rk_id: [u8; 16],
    /// The device's signing key id.
    pub writer_key_id: KeyId,
    /// The envelope's seq (for the receiver's duplicate guard per (twin, writer key)).
    pub seq: u64,
    /// The envelope's attributes, sorted (what the token's policy is evaluated on).
    pub attributes: Vec<String>,
}

impl core::fmt::Debug for ShareItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShareItem")
            .field("twin_id", &self.twin_id)
            .field("device_id", &self.device_id)
            .field("item_id", &self.item_id)
            .field("slot", &self.slot)
            .field("node_index", &self.node_index)
            .field("owner_key_id", &self.owner_key_id)
            .field("seq", &self.seq)
            .field("values", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Drop for ShareItem {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.values);
    }
}

impl Receiver {
    /// Node j's side: opens a re-encrypted share bundle (Dec^2 of capsule2, then the AEAD) and
    /// accepts it only if every check of envelope.md holds: the header's attributes (equal to the
    /// capsule's) include `mpc-share`, `location`, `node-<node_index>` and no `sync`; the writer is
    /// an enrolled, unrevoked device of the header's twin in `trust` (the owner and write-token
    /// holders are refused); its `at/v1/mpc-share` signature verifies; the signed header equals the
    /// envelope's byte for byte; the body's twin, device and node index equal the header's and
    /// `node_index`, and its slot lies in the header's share epoch under the writer's enrolled
    /// `slots_per_share_epoch`. The DEK is cached per capsule, so the shares of one share epoch
    /// cost one Dec² together.
    pub fn open_share_delivery<R: RngCore + CryptoRng>(
        &mut self,
        delivery: &[u8],
        trust: &TrustStore,
        node_index: u8,
        slots_per_share_epoch: u64,
        rng: &mut R,
    ) -> Result<Verified<ShareItem>> {
        let (d, header, c2) = self.decode_delivery(delivery)?;
        // Cheap plain checks before any pairing.
        check_share_attributes(&header.attributes, node_index)?;
        let kid = KeyId::from_slice(&header.writer_key_id, "header.writer_key_id")?;
        let (twin, key) = trust
            .enrolled_device(&kid)
            .ok_or(Error::UnknownSigner("mpc share (not an enrolled device)"))?;
        if twin != header.twin_id {
            return Err(Error::UnknownSigner("mpc share (device of another twin)"));
        }
        if trust.revocations.device_revoked(&kid, header.seq) {
            return Err(Error::Revoked("device"));
        }
        let key = *key;
        let dek = self.delivery_dek(&d, &c2, rng)?;
        let pt = open(&dek.sym(), &d.nonce, &d.ciphertext, &d.envelope_header)
            .ok_or(Error::PayloadAuth)?;
        let signed = decode_signed(&pt, MAX_ENVELOPE_BYTES)?;
        let body_bytes = key.verify(SigDomain::MpcShare, &signed, "mpc share")?;
        let body: v1::ShareBody = decode_strict("ShareBody", body_bytes, MAX_ENVELOPE_BYTES)?;
        crate::error::check_version("ShareBody", body.version)?;
        if body.header != d.envelope_header {
            return Err(Error::Mismatch("signed header differs from the envelope's"));
        }
        if body.twin_id != header.twin_id || body.device_id != header.device_id {
            return Err(Error::Mismatch("share body ids differ from the header's"));
        }
        if share_epoch(body.slot, slots_per_share_epoch) != header.epoch {
            return Err(Error::Mismatch(
                "share body slot is outside the share epoch",
            ));
        }
        if body.node_index != u32::from(node_index) {
            return Err(Error::WrongNode {
                expected: node_index,
                got: body.node_index,
            });
        }
        check_values(&body.values)?;
        let v1::ShareBody {
            twin_id,
            device_id,
            item_id,
            slot,
            values,
            ..
        } = body;
        Ok(Verified::new(ShareItem {
            twin_id,
            device_id,
            item_id,
            slot,
            node_index,
            values,
            owner_key_id: c2.owner_key_id(),
            rk_id: *c2.rk_id(),
            writer_key_id: kid,
            seq: header.seq,
            attributes: header.attributes,
        }))
    }
}
