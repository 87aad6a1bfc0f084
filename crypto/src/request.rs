//! Requests to devices and their responses (Protocol 1 phase 5; envelope.md "Requests").
//!
//! A requester signs a `RequestBody` (domain `at/v1/request`) carrying a fresh request id and a
//! fresh 32-byte response key, and seals it in an [`Envelope`](armored_schemas::v1::Envelope)
//! exactly like a state change: AEAD under the epoch DEK of the attribute set `req`, `twin:<id>`,
//! the header (with a plain `expires_at_ms` the cloud enforces) as associated data. The cloud
//! re-encrypts it for the twin's devices; a device opens it with [`open_request`] and answers with
//! [`seal_response`]: a `ResponseBody` signed by the device (domain `at/v1/response`), sealed under
//! the response key with AES-256-GCM, the request id as associated data. The requester opens the
//! answer with [`open_response`].
//!
//! Who may ask what is the device's decision: [`authorize_requester`] recognises the twin's owner
//! and holders of a valid write token for the twin; everything else is an unauthenticated
//! stranger as far as the twin is concerned.

use armored_schemas::limits::{MAX_ENVELOPE_BYTES, MAX_RESPONSE_BYTES};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::domain::SigDomain;
use crate::envelope::{parse_header, seal_signed, Receiver, TrustStore};
use crate::epoch::EpochKey;
use crate::error::{check_version, Error, Result};
use crate::ids::check_id;
use crate::keyid::KeyId;
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::sym::{open, seal, SymKey, NONCE_BYTES};
use crate::tokens::verify_write_token;
use crate::verified::Verified;

/// The attribute every request carries (and no state change may).
pub const REQ_ATTRIBUTE: &str = "req";
/// Bytes of a request id.
pub const REQUEST_ID_BYTES: usize = 16;

/// The symmetric key a response is sealed under. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ResponseKey([u8; 32]);

impl core::fmt::Debug for ResponseKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResponseKey(<redacted>)")
    }
}

impl ResponseKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    fn from_slice(b: &[u8]) -> Result<Self> {
        let k: [u8; 32] = b.try_into().map_err(|_| Error::InvalidField {
            field: "request.response_key",
            reason: "32 bytes",
        })?;
        Ok(Self(k))
    }

    fn sym(&self) -> SymKey {
        SymKey::new(self.0)
    }
}

/// A fresh random request id.
pub fn new_request_id<R: RngCore + CryptoRng>(rng: &mut R) -> [u8; REQUEST_ID_BYTES] {
    let mut id = [0u8; REQUEST_ID_BYTES];
    rng.fill_bytes(&mut id);
    id
}

/// What a requester puts in a request.
#[derive(Clone, Debug)]
pub struct RequestInput<'a> {
    /// The requester's id (goes into the header's `device_id`, the "uploading" party).
    pub requester_id: &'a str,
    /// Fresh request id.
    pub request_id: [u8; REQUEST_ID_BYTES],
    /// Fresh response key.
    pub response_key: &'a ResponseKey,
    /// What to do.
    pub body: Vec<u8>,
    /// When the cloud must stop forwarding it (must be > 0).
    pub expires_at_ms: u64,
    /// Now.
    pub issued_at_ms: u64,
    /// Optional write token naming the requester's key.
    pub write_token: Option<Vec<u8>>,
}

/// Seals a request under `key` (the epoch key of `req`, `twin:<id>` for the twin's owner): signs a
/// `RequestBody` with `requester` (`at/v1/request`) and encrypts it, header as associated data.
/// Returns the encoded `Envelope` for `at.requests.v1`.
pub fn seal_request<R: RngCore + CryptoRng>(
    key: &EpochKey,
    requester: &SigningKey,
    input: &RequestInput<'_>,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let cap = key.capsule();
    let hdr = cap.header();
    check_id(input.requester_id, "requester_id")?;
    if !hdr.attributes.contains(REQ_ATTRIBUTE) {
        return Err(Error::InvalidField {
            field: "request attributes",
            reason: "must include req",
        });
    }
    if input.expires_at_ms == 0 {
        return Err(Error::InvalidField {
            field: "request.expires_at_ms",
            reason: "a request must expire",
        });
    }
    let header = v1::EnvelopeHeader {
        version: WIRE_VERSION,
        twin_id: hdr.twin_id.clone(),
        device_id: input.requester_id.to_owned(),
        writer_key_id: requester.key_id().0.to_vec(),
        seq: input.issued_at_ms,
        epoch: hdr.epoch,
        attributes: hdr.attributes.as_slice().to_vec(),
        capsule_id: cap.cid().to_vec(),
        expires_at_ms: input.expires_at_ms,
    }
    .encode_to_vec();
    parse_header(&header)?;
    let mut body = v1::RequestBody {
        version: WIRE_VERSION,
        header: header.clone(),
        request_id: input.request_id.to_vec(),
        response_key: input.response_key.0.to_vec(),
        body: input.body.clone(),
        requester_sig_key: requester.verifying_key().to_sec1(),
        write_token: input.write_token.clone().unwrap_or_default(),
        issued_at_ms: input.issued_at_ms,
    };
    let encoded = zeroize::Zeroizing::new(body.encode_to_vec());
    body.response_key.zeroize();
    let signed =
        zeroize::Zeroizing::new(requester.sign_to_vec(SigDomain::Request, encoded.to_vec()));
    seal_signed(key, header, &signed, "request", rng)
}

/// Whether a header's attributes mark it as a request.
pub fn is_request(header: &v1::EnvelopeHeader) -> bool {
    header.attributes.iter().any(|a| a == REQ_ATTRIBUTE)
}

/// A decrypted request whose signature verified under the key it names.
#[derive(Debug)]
pub struct Request {
    /// The header (plain, authenticated as associated data and inside the signature).
    pub header: v1::EnvelopeHeader,
    /// Request id.
    pub request_id: [u8; REQUEST_ID_BYTES],
    /// Where the answer is sealed.
    pub response_key: ResponseKey,
    /// What to do.
    pub body: Vec<u8>,
    /// The requester's key (the signature verified under it).
    pub requester: VerifyingKey,
    /// A write token, if the requester sent one (not yet checked: [`authorize_requester`]).
    pub write_token: Option<Vec<u8>>,
    /// When the requester says it asked.
    pub issued_at_ms: u64,
}

/// Device side: opens a re-encrypted request (a `Delivery` whose header carries `req`), verifies
/// the requester's signature and that the signed header is the delivered one.
pub fn open_request<R: RngCore + CryptoRng>(
    receiver: &mut Receiver,
    delivery: &[u8],
    rng: &mut R,
) -> Result<Verified<Request>> {
    let (header, header_bytes, pt) = receiver.open_delivery_raw(delivery, rng)?;
    if !is_request(&header) {
        return Err(Error::InvalidField {
            field: "header.attributes",
            reason: "not a request (no req attribute)",
        });
    }
    let signed = decode_signed(&pt, MAX_ENVELOPE_BYTES)?;
    let body: v1::RequestBody = decode_strict("RequestBody", &signed.body, MAX_ENVELOPE_BYTES)?;
    check_version("RequestBody", body.version)?;
    let requester = VerifyingKey::from_sec1(&body.requester_sig_key)?;
    if requester.key_id().0.as_slice() != header.writer_key_id.as_slice() {
        return Err(Error::Mismatch(
            "request signed by another key than the header names",
        ));
    }
    requester.verify(SigDomain::Request, &signed, "request")?;
    if body.header != header_bytes {
        return Err(Error::Mismatch("signed header differs from the envelope's"));
    }
    let request_id: [u8; REQUEST_ID_BYTES] =
        body.request_id
            .as_slice()
            .try_into()
            .map_err(|_| Error::InvalidField {
                field: "request.request_id",
                reason: "16 bytes",
            })?;
    let response_key = ResponseKey::from_slice(&body.response_key)?;
    let mut body = body;
    body.response_key.zeroize();
    Ok(Verified::new(Request {
        header,
        request_id,
        response_key,
        body: std::mem::take(&mut body.body),
        requester,
        write_token: (!body.write_token.is_empty()).then(|| std::mem::take(&mut body.write_token)),
        issued_at_ms: body.issued_at_ms,
    }))
}

/// Who a request comes from, as far as the twin is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    /// The twin's owner.
    Owner,
    /// The holder of a valid, unrevoked write token for this twin (token id).
    Token(Vec<u8>),
}

/// Decides whether the requester is the owner or holds a valid write token for the request's twin
/// that names its key. Anyone else gets `UnknownSigner` (a token that fails gets its own reason:
/// expired, revoked, bad signature, mismatch).
pub fn authorize_requester(req: &Request, trust: &TrustStore, now_ms: u64) -> Result<Requester> {
    if req.requester.key_id() == trust.owner().key_id() {
        return Ok(Requester::Owner);
    }
    let Some(tok) = &req.write_token else {
        return Err(Error::UnknownSigner(
            "request (neither the owner nor a token holder)",
        ));
    };
    let t = verify_write_token(tok, trust.owner(), &trust.revocations, now_ms)?;
    if t.twin_id != req.header.twin_id || t.writer_key_id != req.requester.key_id().0.as_slice() {
        return Err(Error::Mismatch("write token is for another twin or writer"));
    }
    Ok(Requester::Token(t.token_id.clone()))
}

/// Device side: signs the answer (`at/v1/response`) and seals it under the request's response key,
/// the request id as associated data. Returns the encoded `ResponseEnvelope` to publish on
/// `at/v1/resp/{twin}/{device}`.
pub fn seal_response<R: RngCore + CryptoRng>(
    device: &SigningKey,
    req: &Request,
    device_id: &str,
    body: Vec<u8>,
    now_ms: u64,
    rng: &mut R,
) -> Result<Vec<u8>> {
    check_id(device_id, "device_id")?;
    let rb = v1::ResponseBody {
        version: WIRE_VERSION,
        request_id: req.request_id.to_vec(),
        twin_id: req.header.twin_id.clone(),
        device_id: device_id.to_owned(),
        device_key_id: device.key_id().0.to_vec(),
        body,
        answered_at_ms: now_ms,
    };
    let signed = device.sign_to_vec(SigDomain::Response, rb.encode_to_vec());
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let env = v1::ResponseEnvelope {
        version: WIRE_VERSION,
        request_id: req.request_id.to_vec(),
        twin_id: req.header.twin_id.clone(),
        device_id: device_id.to_owned(),
        nonce: nonce.to_vec(),
        ciphertext: seal(&req.response_key.sym(), &nonce, &signed, &req.request_id),
    };
    let bytes = env.encode_to_vec();
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(Error::InvalidField {
            field: "response",
            reason: "larger than the response limit",
        });
    }
    Ok(bytes)
}

/// The plain outer layer of a response, validated (what the bridge can check).
pub fn parse_response_envelope(bytes: &[u8]) -> Result<v1::ResponseEnvelope> {
    let env: v1::ResponseEnvelope = decode_strict("ResponseEnvelope", bytes, MAX_RESPONSE_BYTES)?;
    check_version("ResponseEnvelope", env.version)?;
    if env.request_id.len() != REQUEST_ID_BYTES {
        return Err(Error::InvalidField {
            field: "response.request_id",
            reason: "16 bytes",
        });
    }
    check_id(&env.twin_id, "response.twin_id")?;
    check_id(&env.device_id, "response.device_id")?;
    if env.nonce.len() != NONCE_BYTES {
        return Err(Error::InvalidField {
            field: "response.nonce",
            reason: "12 bytes",
        });
    }
    Ok(env)
}

/// A verified answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Twin.
    pub twin_id: String,
    /// Answering device.
    pub device_id: String,
    /// The answer.
    pub body: Vec<u8>,
    /// When the device answered.
    pub answered_at_ms: u64,
}

/// Requester side: opens a response to request `request_id` with its response key; the device's
/// signing key comes from `device_key(twin, device)` (the owner-signed enrollment in the registry).
pub fn open_response(
    bytes: &[u8],
    key: &ResponseKey,
    request_id: &[u8; REQUEST_ID_BYTES],
    device_key: impl Fn(&str, &str) -> Option<VerifyingKey>,
) -> Result<Verified<Response>> {
    let env = parse_response_envelope(bytes)?;
    if env.request_id.as_slice() != request_id.as_slice() {
        return Err(Error::Mismatch("response is for another request"));
    }
    let pt = open(&key.sym(), &env.nonce, &env.ciphertext, request_id).ok_or(Error::PayloadAuth)?;
    let signed = decode_signed(&pt, MAX_RESPONSE_BYTES)?;
    let dev = device_key(&env.twin_id, &env.device_id).ok_or(Error::UnknownSigner(
        "response (device not enrolled for the twin)",
    ))?;
    dev.verify(SigDomain::Response, &signed, "response")?;
    let body: v1::ResponseBody = decode_strict("ResponseBody", &signed.body, MAX_RESPONSE_BYTES)?;
    check_version("ResponseBody", body.version)?;
    if body.request_id != env.request_id
        || body.twin_id != env.twin_id
        || body.device_id != env.device_id
        || KeyId::from_slice(&body.device_key_id, "response.device_key_id")? != dev.key_id()
    {
        return Err(Error::Mismatch(
            "signed response differs from its envelope or signer",
        ));
    }
    Ok(Verified::new(Response {
        twin_id: body.twin_id,
        device_id: body.device_id,
        body: body.body,
        answered_at_ms: body.answered_at_ms,
    }))
}

#[cfg(test)]
mod tests;
