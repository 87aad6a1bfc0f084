//! Envelopes (Protocol 1, phases 3 and 4; envelope.md "State change" and "Re-encrypted delivery").
//!
//! Device side: [`seal_state_change`] signs a `StateChangeBody` (domain `at/v1/state-change`) and
//! encrypts it with the epoch's DEK, the header bytes as associated data. Receiver side:
//! [`Receiver::open_envelope`] (owner, from capsule1) and [`Receiver::open_delivery`] (anyone holding a
//! re-key's receiver key, from capsule2) decrypt, then check the signature, the writer's authority,
//! and that the signed header, the envelope header and the capsule header agree.

use std::collections::HashMap;

use armored_schemas::limits::{MAX_DELIVERY_BYTES, MAX_ENVELOPE_BYTES};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::domain::SigDomain;
use crate::epoch::EpochKey;
use crate::error::{Error, Result};
use crate::keyid::KeyId;
use crate::kpcpre::{AttributeSet, Capsule1, Capsule2, Dek, Header, SecretKey, TCache};
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::sym::{open, seal, NONCE_BYTES};
use crate::tokens::{verify_write_token, write_token_writer_key, RevocationSet};
use crate::verified::Verified;

// Ids are checked below every sealed format (capsules, tokens, epochs); re-exported here, where
// callers outside the crate have always found them.
pub use crate::ids::{check_id, is_valid_id, twin_attribute};

/// Parses and validates an `EnvelopeHeader` (ids, key id, sorted attributes with `twin:<id>`, cid).
pub fn parse_header(bytes: &[u8]) -> Result<v1::EnvelopeHeader> {
    let h: v1::EnvelopeHeader = decode_strict("EnvelopeHeader", bytes, MAX_ENVELOPE_BYTES)?;
    crate::error::check_version("EnvelopeHeader", h.version)?;
    check_id(&h.twin_id, "header.twin_id")?;
    check_id(&h.device_id, "header.device_id")?;
    KeyId::from_slice(&h.writer_key_id, "header.writer_key_id")?;
    if h.capsule_id.len() != 32 {
        return Err(Error::InvalidField {
            field: "header.capsule_id",
            reason: "32 bytes",
        });
    }
    let attrs = AttributeSet::from_sorted(h.attributes.clone())?;
    if !attrs.contains(&twin_attribute(&h.twin_id)) {
        return Err(Error::InvalidField {
            field: "header.attributes",
            reason: "missing twin:<twin_id>",
        });
    }
    Ok(h)
}

/// What a writer puts in one state change.
#[derive(Clone, Debug, Default)]
pub struct StateChangeInput {
    /// The uploading device.
    pub device_id: String,
    /// Per-writer sequence number.
    pub seq: u64,
    /// When the change was observed.
    pub observed_at_ms: u64,
    /// The change itself.
    pub delta: Vec<u8>,
    /// A signed write token, when the writer is neither the device nor the owner.
    pub write_token: Option<Vec<u8>>,
    /// Requests only: expiry enforced by the cloud.
    pub expires_at_ms: u64,
}

/// Seals a state change under the epoch key: signs it (`at/v1/state-change`) and encrypts it with the
/// DEK, header as associated data. Returns the encoded `Envelope`.
pub fn seal_state_change<R: RngCore + CryptoRng>(
    key: &EpochKey,
    writer: &SigningKey,
    input: &StateChangeInput,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let cap = key.capsule();
    let hdr = cap.header();
    check_id(&input.device_id, "device_id")?;
    let header = v1::EnvelopeHeader {
        version: WIRE_VERSION,
        twin_id: hdr.twin_id.clone(),
        device_id: input.device_id.clone(),
        writer_key_id: writer.key_id().0.to_vec(),
        seq: input.seq,
        epoch: hdr.epoch,
        attributes: hdr.attributes.as_slice().to_vec(),
        capsule_id: cap.cid().to_vec(),
        expires_at_ms: input.expires_at_ms,
    }
    .encode_to_vec();
    // Validate what we are about to send exactly as a receiver will.
    parse_header(&header)?;
    let body = v1::StateChangeBody {
        version: WIRE_VERSION,
        header: header.clone(),
        observed_at_ms: input.observed_at_ms,
        delta: input.delta.clone(),
        write_token: input.write_token.clone().unwrap_or_default(),
    }
    .encode_to_vec();
    let signed = writer.sign_to_vec(SigDomain::StateChange, body);
    seal_signed(key, header, &signed, "envelope", rng)
}

/// The sealing step shared by state changes, requests and share bundles: encrypts a signed body with
/// the epoch's DEK (header bytes as associated data) into an encoded `Envelope` carrying the epoch's
/// capsule, refused as `field` when larger than `MAX_ENVELOPE_BYTES`.
pub(crate) fn seal_signed<R: RngCore + CryptoRng>(
    key: &EpochKey,
    header: Vec<u8>,
    signed: &[u8],
    field: &'static str,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let ciphertext = seal(&key.dek().sym(), &nonce, signed, &header);
    let bytes = v1::Envelope {
        version: WIRE_VERSION,
        header,
        capsule1: Some(key.capsule().to_proto()),
        nonce: nonce.to_vec(),
        ciphertext,
    }
    .encode_to_vec();
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Error::InvalidField {
            field,
            reason: "larger than max_envelope_bytes",
        });
    }
    Ok(bytes)
}

/// Decodes an envelope's outer layer (no decryption): header validated, capsule1 points validated,
/// header and capsule agree. This is all the cloud can check.
pub fn decode_envelope(bytes: &[u8]) -> Result<(v1::Envelope, v1::EnvelopeHeader, Capsule1)> {
    let env: v1::Envelope = decode_strict("Envelope", bytes, MAX_ENVELOPE_BYTES)?;
    crate::error::check_version("Envelope", env.version)?;
    let header = parse_header(&env.header)?;
    let cap = Capsule1::from_proto(env.capsule1.as_ref().ok_or(Error::InvalidField {
        field: "envelope.capsule1",
        reason: "missing",
    })?)?;
    check_header_matches(&header, cap.header(), cap.cid())?;
    if env.nonce.len() != NONCE_BYTES {
        return Err(Error::InvalidField {
            field: "envelope.nonce",
            reason: "12 bytes",
        });
    }
    Ok((env, header, cap))
}

/// The envelope header's twin, epoch and attributes equal the capsule's hdr; its capsule_id is the cid.
pub(crate) fn check_header_matches(
    h: &v1::EnvelopeHeader,
    cap: &Header,
    cid: &[u8; 32],
) -> Result<()> {
    if h.twin_id != cap.twin_id {
        return Err(Error::Mismatch("header twin_id differs from the capsule's"));
    }
    if h.epoch != cap.epoch {
        return Err(Error::Mismatch("header epoch differs from the capsule's"));
    }
    if h.attributes.as_slice() != cap.attributes.as_slice() {
        return Err(Error::Mismatch(
            "header attributes differ from the capsule's",
        ));
    }
    if h.capsule_id.as_slice() != cid.as_slice() {
        return Err(Error::Mismatch(
            "header capsule_id differs from the capsule's cid",
        ));
    }
    Ok(())
}

/// Who wrote a state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The twin's owner.
    Owner,
    /// An enrolled device of the twin.
    Device(String),
    /// A holder of a valid write token (token id).
    Token(Vec<u8>),
}

/// A decrypted, verified state change.
#[derive(Clone, Debug)]
pub struct StateChange {
    /// The header, as parsed from the authenticated bytes.
    pub header: v1::EnvelopeHeader,
    /// The exact header bytes.
    pub header_bytes: Vec<u8>,
    /// When it was observed.
    pub observed_at_ms: u64,
    /// The change.
    pub delta: Vec<u8>,
    /// Who wrote it.
    pub writer: Writer,
}

/// The keys a receiver trusts as writers of one owner's twins.
#[derive(Clone, Debug)]
pub struct TrustStore {
    owner: VerifyingKey,
    devices: HashMap<KeyId, (String, VerifyingKey)>,
    others: HashMap<KeyId, VerifyingKey>,
    /// Sticky revocations (write tokens, devices).
    pub revocations: RevocationSet,
}

impl TrustStore {
    /// Trusts the owner's signing key.
    pub fn new(owner: VerifyingKey) -> Self {
        Self {
            owner,
            devices: HashMap::new(),
            others: HashMap::new(),
            revocations: RevocationSet::default(),
        }
    }

    /// The owner's signing key.
    pub fn owner(&self) -> &VerifyingKey {
        &self.owner
    }

    /// Adds an enrolled device of `twin_id` (from a verified enrollment).
    pub fn add_device(&mut self, twin_id: &str, key: VerifyingKey) {
        self.devices.insert(key.key_id(), (twin_id.to_owned(), key));
    }

    /// Adds a known key (a pinned service) that may write only with a write token.
    pub fn add_key(&mut self, key: VerifyingKey) {
        self.others.insert(key.key_id(), key);
    }

    /// The enrolled device with signing key `kid`: its twin and key.
    pub(crate) fn enrolled_device(&self, kid: &KeyId) -> Option<(&str, &VerifyingKey)> {
        self.devices.get(kid).map(|(t, k)| (t.as_str(), k))
    }

    /// Decides whether the writer of `header` may write this twin, and returns its key.
    fn authorize(
        &self,
        h: &v1::EnvelopeHeader,
        write_token: &[u8],
        now_ms: u64,
    ) -> Result<(VerifyingKey, Writer)> {
        let kid = KeyId::from_slice(&h.writer_key_id, "header.writer_key_id")?;
        if kid == self.owner.key_id() {
            return Ok((self.owner, Writer::Owner));
        }
        if let Some((twin, key)) = self.devices.get(&kid) {
            if *twin != h.twin_id {
                return Err(Error::UnknownSigner(
                    "state change (device of another twin)",
                ));
            }
            if self.revocations.device_revoked(&kid, h.seq) {
                return Err(Error::Revoked("device"));
            }
            return Ok((*key, Writer::Device(h.device_id.clone())));
        }
        if write_token.is_empty() {
            return Err(Error::UnknownSigner("state change"));
        }
        let token = verify_write_token(write_token, &self.owner, &self.revocations, now_ms)?;
        if token.twin_id != h.twin_id || token.writer_key_id != h.writer_key_id {
            return Err(Error::Mismatch("write token is for another twin or writer"));
        }
        // A pinned key wins; otherwise the key the owner named in the token itself.
        let key = match self.others.get(&kid) {
            Some(k) => *k,
            None => write_token_writer_key(&token)?.ok_or(Error::UnknownSigner(
                "state change (token holder's key unknown)",
            ))?,
        };
        Ok((key, Writer::Token(token.token_id.clone())))
    }
}

/// A receiver (owner, device, service): its PRE key, its cache of t per re-key, and a cache of DEKs
/// per capsule so that a known epoch key costs only AES.
pub struct Receiver {
    sk: SecretKey,
    tcache: TCache,
    deks: HashMap<[u8; 32], Dek>,
    dek_capacity: usize,
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Receiver({}, {} cached DEKs)",
            self.sk.key_id(),
            self.deks.len()
        )
    }
}

impl Receiver {
    /// A receiver with bounded caches.
    pub fn new(sk: SecretKey) -> Self {
        Self {
            sk,
            tcache: TCache::new(1024),
            deks: HashMap::new(),
            dek_capacity: 4096,
        }
    }

    /// The PRE key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.sk
    }

    fn remember(&mut self, key: [u8; 32], dek: Dek) {
        if self.deks.len() >= self.dek_capacity {
            self.deks.clear();
        }
        self.deks.insert(key, dek);
    }

    /// Owner side: opens an envelope from capsule1 with the owner's key.
    pub fn open_envelope(
        &mut self,
        bytes: &[u8],
        trust: &TrustStore,
        now_ms: u64,
    ) -> Result<Verified<StateChange>> {
        let (env, header, cap) = decode_envelope(bytes)?;
        // The cache key covers everything the capsule's AEAD authenticates.
        let ck = dek_cache_key(cap.hdr_bytes(), cap.cid(), &cap.encode());
        let dek = match self.deks.get(&ck) {
            Some(d) => d.clone(),
            None => {
                let d = cap.decrypt(&self.sk)?;
                self.remember(ck, d.clone());
                d
            }
        };
        open_payload(
            &dek,
            &env.header,
            header,
            &env.nonce,
            &env.ciphertext,
            trust,
            now_ms,
        )
    }

    /// Receiver side: opens a delivery (capsule2 + the forwarded ciphertext).
    pub fn open_delivery<R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        trust: &TrustStore,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<Verified<StateChange>> {
        let (d, header, c2) = self.decode_delivery(bytes)?;
        let dek = self.delivery_dek(&d, &c2, rng)?;
        open_payload(
            &dek,
            &d.envelope_header,
            header,
            &d.nonce,
            &d.ciphertext,
            trust,
            now_ms,
        )
    }

    /// Receiver side, for payloads that are not state changes (requests, `crate::request`):
    /// decrypts a delivery with every binding check of [`Receiver::open_delivery`] but leaves the
    /// plaintext (a signed record) to the caller. Returns (header, header bytes, plaintext).
    pub fn open_delivery_raw<R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<(v1::EnvelopeHeader, Vec<u8>, zeroize::Zeroizing<Vec<u8>>)> {
        let (d, header, c2) = self.decode_delivery(bytes)?;
        let dek = self.delivery_dek(&d, &c2, rng)?;
        let pt = open(&dek.sym(), &d.nonce, &d.ciphertext, &d.envelope_header)
            .ok_or(Error::PayloadAuth)?;
        Ok((header, d.envelope_header, pt))
    }

    /// Decodes a delivery for this receiver (no decryption): capsule2 for our key, header valid and
    /// equal to the capsule's hdr and cid.
    pub(crate) fn decode_delivery(
        &self,
        bytes: &[u8],
    ) -> Result<(v1::Delivery, v1::EnvelopeHeader, Capsule2)> {
        let d: v1::Delivery = decode_strict("Delivery", bytes, MAX_DELIVERY_BYTES)?;
        crate::error::check_version("Delivery", d.version)?;
        let c2 = Capsule2::from_proto(d.capsule2.as_ref().ok_or(Error::InvalidField {
            field: "delivery.capsule2",
            reason: "missing",
        })?)?;
        let rk_kid = KeyId::from_slice(&d.receiver_key_id, "delivery.receiver_key_id")?;
        if rk_kid != self.sk.key_id() || c2.receiver_key_id() != rk_kid {
            return Err(Error::KeyMismatch("delivery is for another receiver key"));
        }
        if d.rk_id.as_slice() != c2.rk_id().as_slice() {
            return Err(Error::Mismatch("delivery rk_id differs from the capsule's"));
        }
        if d.nonce.len() != NONCE_BYTES {
            return Err(Error::InvalidField {
                field: "delivery.nonce",
                reason: "12 bytes",
            });
        }
        let header = parse_header(&d.envelope_header)?;
        check_header_matches(&header, c2.header(), c2.cid())?;
        Ok((d, header, c2))
    }

    /// Dec^2 of a capsule2 (cached per capsule).
    /// `d` is the delivery `c2` was decoded from: its capsule's wire bytes (canonical, checked by
    /// the strict decoding) key the cache, with no need to serialize the points again.
    pub(crate) fn delivery_dek<R: RngCore + CryptoRng>(
        &mut self,
        d: &v1::Delivery,
        c2: &Capsule2,
        rng: &mut R,
    ) -> Result<Dek> {
        let wire = d
            .capsule2
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let ck = dek_cache_key(c2.hdr_bytes(), c2.cid(), &wire);
        if let Some(dk) = self.deks.get(&ck) {
            return Ok(dk.clone());
        }
        let dk = self.tcache.decrypt(&self.sk, c2, rng)?;
        self.remember(ck, dk.clone());
        Ok(dk)
    }
}

fn dek_cache_key(hdr: &[u8], cid: &[u8; 32], capsule: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(hdr);
    h.update(cid);
    h.update(capsule);
    h.finalize().into()
}

fn open_payload(
    dek: &Dek,
    header_bytes: &[u8],
    header: v1::EnvelopeHeader,
    nonce: &[u8],
    ciphertext: &[u8],
    trust: &TrustStore,
    now_ms: u64,
) -> Result<Verified<StateChange>> {
    let pt = open(&dek.sym(), nonce, ciphertext, header_bytes).ok_or(Error::PayloadAuth)?;
    let signed = decode_signed(&pt, MAX_ENVELOPE_BYTES)?;
    // Decode the body only to learn the write token; nothing else is used before the signature checks.
    let body: v1::StateChangeBody =
        decode_strict("StateChangeBody", &signed.body, MAX_ENVELOPE_BYTES)?;
    crate::error::check_version("StateChangeBody", body.version)?;
    let (key, writer) = trust.authorize(&header, &body.write_token, now_ms)?;
    key.verify(SigDomain::StateChange, &signed, "state change")?;
    if body.header.as_slice() != header_bytes {
        return Err(Error::Mismatch("signed header differs from the envelope's"));
    }
    Ok(Verified::new(StateChange {
        header,
        header_bytes: header_bytes.to_vec(),
        observed_at_ms: body.observed_at_ms,
        delta: body.delta,
        writer,
    }))
}

/// Builds the `Delivery` a worker forwards: capsule2 plus the envelope's untouched ciphertext.
pub fn make_delivery(
    envelope: &v1::Envelope,
    capsule2: &Capsule2,
    replay_request_id: Option<&str>,
) -> Vec<u8> {
    v1::Delivery {
        version: WIRE_VERSION,
        receiver_key_id: capsule2.receiver_key_id().0.to_vec(),
        rk_id: capsule2.rk_id().to_vec(),
        envelope_header: envelope.header.clone(),
        capsule2: Some(capsule2.to_proto()),
        nonce: envelope.nonce.clone(),
        ciphertext: envelope.ciphertext.clone(),
        replay_request_id: replay_request_id.unwrap_or_default().to_owned(),
    }
    .encode_to_vec()
}
