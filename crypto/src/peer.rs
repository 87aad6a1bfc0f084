//! The MPC peer channel (envelope.md, "MPC jobs and the peer channel"): per job attempt and ordered
//! node pair (i, j), node i opens a fresh HPKE auth-mode sender context to j (authenticated by i's
//! static key), info = `armoredtwins/v1/mpc-peer || job_hash || attempt || i || j`. The
//! encapsulated key travels in i's first message. Messages are sealed in order with their routing
//! fields as associated data, so a message that is out of order, replayed, forged or meant for
//! another attempt fails to open. The pair's PRSS seed is exported from the context whose sender
//! has the lower index, so each pair of nodes holds one fresh seed per attempt.

use armored_schemas::{v1, WIRE_VERSION};
use hpke::aead::{AeadCtxR, AeadCtxS, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::domain::HPKE_MPC_PEER_INFO;
use crate::error::{Error, Result};
use crate::hpke::{HpkePublicKey, HpkeSecretKey, Kem};

/// Exporter context of the PRSS seed shared by a node pair.
const SEED_EXPORT: &[u8] = b"armoredtwins/v1/mpc-seed";

/// One direction of the channel of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelId {
    /// SHA-256 of the signed job.
    pub job_hash: [u8; 32],
    /// Attempt.
    pub attempt: u32,
    /// Sending node (1..=3).
    pub from: u32,
    /// Receiving node (1..=3).
    pub to: u32,
}

impl ChannelId {
    fn info(&self) -> Vec<u8> {
        let mut i = HPKE_MPC_PEER_INFO.to_vec();
        i.extend_from_slice(&self.job_hash);
        i.extend_from_slice(&self.attempt.to_be_bytes());
        i.extend_from_slice(&self.from.to_be_bytes());
        i.extend_from_slice(&self.to.to_be_bytes());
        i
    }
}

/// Associated data: every field of the message but the ciphertext (and the encapsulated key,
/// which the context itself authenticates).
fn aad(m: &v1::PeerMessage) -> Vec<u8> {
    let mut a = Vec::with_capacity(64);
    a.extend_from_slice(&m.version.to_be_bytes());
    a.extend_from_slice(&m.job_hash);
    for v in [m.attempt, m.from, m.to, m.round, m.chunk, m.chunks] {
        a.extend_from_slice(&v.to_be_bytes());
    }
    a.extend_from_slice(&m.seq.to_be_bytes());
    a
}

/// Node i's sending end towards j.
pub struct PeerSender {
    ctx: AeadCtxS<AesGcm256, HkdfSha256, Kem>,
    id: ChannelId,
    enc: Vec<u8>,
    seq: u64,
}

impl core::fmt::Debug for PeerSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "PeerSender({} -> {}, seq {})",
            self.id.from, self.id.to, self.seq
        )
    }
}

impl PeerSender {
    /// Opens a fresh auth-mode context from `me` to `peer`.
    pub fn open<R: RngCore + CryptoRng>(
        me: &HpkeSecretKey,
        peer: &HpkePublicKey,
        id: ChannelId,
        rng: &mut R,
    ) -> Result<Self> {
        let mode = OpModeS::Auth((me.inner().clone(), me.public().inner().clone()));
        let (enc, ctx) = hpke::setup_sender::<AesGcm256, HkdfSha256, Kem, R>(
            &mode,
            peer.inner(),
            &id.info(),
            rng,
        )
        .map_err(|_| Error::Hpke("peer channel setup"))?;
        Ok(Self {
            ctx,
            id,
            enc: enc.to_bytes().to_vec(),
            seq: 0,
        })
    }

    /// Seals the next message; the first carries the encapsulated key.
    pub fn seal(
        &mut self,
        round: u32,
        chunk: u32,
        chunks: u32,
        plaintext: &[u8],
    ) -> Result<v1::PeerMessage> {
        let mut m = v1::PeerMessage {
            version: WIRE_VERSION,
            job_hash: self.id.job_hash.to_vec(),
            attempt: self.id.attempt,
            from: self.id.from,
            to: self.id.to,
            seq: self.seq,
            round,
            chunk,
            chunks,
            encapsulated_key: if self.seq == 0 {
                self.enc.clone()
            } else {
                Vec::new()
            },
            ciphertext: Vec::new(),
        };
        m.ciphertext = self
            .ctx
            .seal(plaintext, &aad(&m))
            .map_err(|_| Error::Hpke("peer seal"))?;
        self.seq += 1;
        Ok(m)
    }

    /// The pair's PRSS seed (use it only when this node has the lower index of the pair).
    pub fn export_seed(&self) -> Result<Zeroizing<[u8; 32]>> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.ctx
            .export(SEED_EXPORT, out.as_mut())
            .map_err(|_| Error::Hpke("seed export"))?;
        Ok(out)
    }
}

/// Node j's receiving end from i; created from i's first message.
pub struct PeerReceiver {
    ctx: AeadCtxR<AesGcm256, HkdfSha256, Kem>,
    id: ChannelId,
    seq: u64,
}

impl core::fmt::Debug for PeerReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "PeerReceiver({} -> {}, seq {})",
            self.id.from, self.id.to, self.seq
        )
    }
}

impl PeerReceiver {
    /// Opens the receiving context from the sender's first message (`seq` 0, with the
    /// encapsulated key), authenticating the sender's static key `peer`.
    pub fn open(
        me: &HpkeSecretKey,
        peer: &HpkePublicKey,
        id: ChannelId,
        first: &v1::PeerMessage,
    ) -> Result<Self> {
        if first.seq != 0 || first.encapsulated_key.is_empty() {
            return Err(Error::Mismatch("peer channel must start with message 0"));
        }
        let enc = <Kem as KemTrait>::EncappedKey::from_bytes(&first.encapsulated_key)
            .map_err(|_| Error::Hpke("peer encapsulated key"))?;
        let ctx = hpke::setup_receiver::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Auth(peer.inner().clone()),
            me.inner(),
            &enc,
            &id.info(),
        )
        .map_err(|_| Error::Hpke("peer channel setup"))?;
        Ok(Self { ctx, id, seq: 0 })
    }

    /// Opens the next message: it must be for this channel and the next in order.
    pub fn open_next(&mut self, m: &v1::PeerMessage) -> Result<Zeroizing<Vec<u8>>> {
        if m.version != WIRE_VERSION
            || m.job_hash.as_slice() != self.id.job_hash.as_slice()
            || m.attempt != self.id.attempt
            || m.from != self.id.from
            || m.to != self.id.to
        {
            return Err(Error::Mismatch("peer message for another channel"));
        }
        if m.seq != self.seq || (m.seq > 0 && !m.encapsulated_key.is_empty()) {
            return Err(Error::Mismatch("peer message out of order or replayed"));
        }
        let pt = self
            .ctx
            .open(&m.ciphertext, &aad(m))
            .map_err(|_| Error::Hpke("peer message does not open"))?;
        self.seq += 1;
        Ok(Zeroizing::new(pt))
    }

    /// The pair's PRSS seed (use it only when the sender has the lower index of the pair).
    pub fn export_seed(&self) -> Result<Zeroizing<[u8; 32]>> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.ctx
            .export(SEED_EXPORT, out.as_mut())
            .map_err(|_| Error::Hpke("seed export"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn pair() -> (HpkeSecretKey, HpkeSecretKey, ChannelId) {
        let a = HpkeSecretKey::generate(&mut OsRng);
        let b = HpkeSecretKey::generate(&mut OsRng);
        let id = ChannelId {
            job_hash: [9; 32],
            attempt: 1,
            from: 1,
            to: 2,
        };
        (a, b, id)
    }

    #[test]
    fn in_order_messages_open_and_seeds_agree() {
        let (a, b, id) = pair();
        let mut s = PeerSender::open(&a, b.public(), id, &mut OsRng).unwrap();
        let m0 = s.seal(u32::MAX, 0, 1, b"hello").unwrap();
        let m1 = s.seal(0, 0, 1, b"round 0").unwrap();
        let mut r = PeerReceiver::open(&b, a.public(), id, &m0).unwrap();
        assert_eq!(&r.open_next(&m0).unwrap()[..], b"hello");
        assert_eq!(&r.open_next(&m1).unwrap()[..], b"round 0");
        assert_eq!(*s.export_seed().unwrap(), *r.export_seed().unwrap());
    }

    #[test]
    fn replayed_reordered_forged_or_foreign_messages_fail() {
        let (a, b, id) = pair();
        let mut s = PeerSender::open(&a, b.public(), id, &mut OsRng).unwrap();
        let m0 = s.seal(u32::MAX, 0, 1, b"hello").unwrap();
        let m1 = s.seal(0, 0, 1, b"one").unwrap();
        let m2 = s.seal(1, 0, 1, b"two").unwrap();
        let mut r = PeerReceiver::open(&b, a.public(), id, &m0).unwrap();
        r.open_next(&m0).unwrap();
        assert!(r.open_next(&m2).is_err(), "skipped a message");
        assert!(r.open_next(&m0).is_err(), "replayed");
        let mut forged = m1.clone();
        forged.round = 5;
        assert!(r.open_next(&forged).is_err(), "rewritten round");
        let mut flipped = m1.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(r.open_next(&flipped).is_err(), "flipped ciphertext");
        assert_eq!(&r.open_next(&m1).unwrap()[..], b"one");

        // Another sender key (not the pinned peer) cannot open a channel to b as a.
        let mallory = HpkeSecretKey::generate(&mut OsRng);
        let mut ms = PeerSender::open(&mallory, b.public(), id, &mut OsRng).unwrap();
        let f0 = ms.seal(u32::MAX, 0, 1, b"hello").unwrap();
        let opened = PeerReceiver::open(&b, a.public(), id, &f0)
            .and_then(|mut r| r.open_next(&f0).map(|_| ()));
        assert!(opened.is_err(), "auth mode binds the sender's key");

        // A message of attempt 1 does not open in attempt 2's channel.
        let id2 = ChannelId { attempt: 2, ..id };
        assert!(PeerReceiver::open(&b, a.public(), id2, &m0)
            .and_then(|mut r| r.open_next(&m0).map(|_| ()))
            .is_err());
    }
}
