//! Pseudo-random secret sharing without a dealer (Cramer-Damgård-Ishai): PRSS (random degree-1
//! sharings), PRZS (degree-2 sharings of zero) and the PRG of GRR multiplication, from the three
//! pairwise seeds. Seed k_j is shared by the two parties other than j.
//!
//! The PRF is `PRF(k, label || job_hash || attempt || batch || ctr)` realised as ChaCha20: the key is
//! HKDF-SHA256(salt = label, ikm = k, info = job_hash || attempt), the 96-bit nonce is the batch
//! number, and ctr is the position in the key stream (8 bytes per element). Labels are distinct per
//! use, the engine draws a fresh batch number for every vectorised call, and seeds are fresh per
//! job attempt, so no (key, nonce, position) is ever used twice.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::field::{Fp, P};
use crate::shamir::Party;

/// Label of PRSS (random degree-1 sharings).
pub const LABEL_PRSS: &[u8] = b"armoredtwins/v1/mpc/prss";
/// Label of PRZS (degree-2 zero-sharings).
pub const LABEL_PRZS: &[u8] = b"armoredtwins/v1/mpc/przs";
/// Label of the PRG that replaces one resharing message in GRR multiplication.
pub const LABEL_GRR: &[u8] = b"armoredtwins/v1/mpc/grr";
/// Domain of the hash of a node's admitted input set (input agreement).
pub const LABEL_INPUTS: &[u8] = b"armoredtwins/v1/mpc/inputs";

/// A 32-byte pairwise seed, zeroized on drop, never printed.
#[derive(Clone)]
pub struct Seed(Zeroizing<[u8; 32]>);

impl Seed {
    /// Wraps seed bytes (e.g. exported from the attempt's HPKE peer context).
    pub fn new(bytes: [u8; 32]) -> Seed {
        Seed(Zeroizing::new(bytes))
    }

    /// A fresh random seed.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Seed {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(s.as_mut());
        Seed(s)
    }
}

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// The two seeds one party holds for a job attempt: the one it shares with the next party
/// (k_prev in the spec's naming) and the one it shares with the previous party (k_next).
#[derive(Clone, Debug)]
pub struct PartySeeds {
    party: Party,
    with_next: Seed,
    with_prev: Seed,
}

impl PartySeeds {
    /// Party `party`'s seeds: `with_next` is known to `party.next()` too, `with_prev` to
    /// `party.prev()`. They must be fresh for every job attempt.
    pub fn new(party: Party, with_next: Seed, with_prev: Seed) -> PartySeeds {
        PartySeeds {
            party,
            with_next,
            with_prev,
        }
    }

    /// The party these seeds belong to.
    pub fn party(&self) -> Party {
        self.party
    }

    /// Deals consistent seeds to all three parties from one RNG: for tests, benches and
    /// single-process simulations. Nodes derive theirs pairwise instead.
    pub fn deal<R: RngCore + CryptoRng>(rng: &mut R) -> [PartySeeds; 3] {
        // k[j] is the seed the two parties other than j share.
        let k = [Seed::random(rng), Seed::random(rng), Seed::random(rng)];
        Party::ALL.map(|i| PartySeeds {
            party: i,
            with_next: k[i.prev().slot()].clone(),
            with_prev: k[i.next().slot()].clone(),
        })
    }
}

/// One derived ChaCha20 key (per seed, label, job and attempt).
struct StreamKey(Zeroizing<[u8; 32]>);

impl StreamKey {
    fn derive(seed: &Seed, label: &[u8], job_hash: &[u8; 32], attempt: u32) -> StreamKey {
        let hk = Hkdf::<Sha256>::new(Some(label), seed.0.as_ref());
        let mut info = [0u8; 36];
        info[..32].copy_from_slice(job_hash);
        info[32..].copy_from_slice(&attempt.to_be_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255·32; the error cannot occur.
        let _ = hk.expand(&info, key.as_mut());
        StreamKey(key)
    }

    /// Calls `f(k, element_k)` for k in 0..n, the elements drawn from the stream of `batch`.
    fn for_each(&self, batch: u64, n: usize, mut f: impl FnMut(usize, Fp)) {
        const CHUNK: usize = 512;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&batch.to_be_bytes());
        let mut cipher = ChaCha20::new(self.0.as_ref().into(), (&nonce).into());
        let mut buf = Zeroizing::new([0u8; CHUNK * 8]);
        let mut k = 0;
        while k < n {
            let m = CHUNK.min(n - k);
            let bytes = &mut buf[..m * 8];
            bytes.fill(0);
            cipher.apply_keystream(bytes);
            for word in bytes.chunks_exact(8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                // 61 bits; the single value p maps to 0 (a 2^-61 bias, mpc.md's "uniform up to 2^-60").
                f(k, Fp::new(u64::from_le_bytes(w) & P));
                k += 1;
            }
        }
    }
}

/// The keys a party derives for one job attempt.
pub(crate) struct Prf {
    /// Keys from the seed shared with the next party.
    next: Keys,
    /// Keys from the seed shared with the previous party.
    prev: Keys,
    /// PRSS coefficients (1 - x_i/x_j) for j = the party excluded by each seed.
    prss_coef: (Fp, Fp),
    /// PRZS coefficients x_i·(1 - x_i/x_j).
    przs_coef: (Fp, Fp),
}

struct Keys {
    prss: StreamKey,
    przs: StreamKey,
    grr: StreamKey,
}

impl Keys {
    fn derive(seed: &Seed, job_hash: &[u8; 32], attempt: u32) -> Keys {
        Keys {
            prss: StreamKey::derive(seed, LABEL_PRSS, job_hash, attempt),
            przs: StreamKey::derive(seed, LABEL_PRZS, job_hash, attempt),
            grr: StreamKey::derive(seed, LABEL_GRR, job_hash, attempt),
        }
    }
}

impl Prf {
    pub(crate) fn new(seeds: &PartySeeds, job_hash: &[u8; 32], attempt: u32) -> Prf {
        let i = seeds.party;
        // The seed shared with next(i) is k_{prev(i)}: it excludes prev(i), and vice versa.
        let xi = i.x();
        let coef = |excluded: Party| {
            let inv = excluded.x().inverse().unwrap_or(Fp::ZERO);
            Fp::ONE - xi * inv
        };
        let (c_next, c_prev) = (coef(i.prev()), coef(i.next()));
        Prf {
            next: Keys::derive(&seeds.with_next, job_hash, attempt),
            prev: Keys::derive(&seeds.with_prev, job_hash, attempt),
            prss_coef: (c_next, c_prev),
            przs_coef: (xi * c_next, xi * c_prev),
        }
    }

    /// This party's shares of n random values (degree 1): Σ_j PRF(k_j)·(1 - x_i/x_j).
    pub(crate) fn random(&self, batch: u64, n: usize) -> Vec<Fp> {
        let mut out = vec![Fp::ZERO; n];
        let (a, b) = self.prss_coef;
        self.next.prss.for_each(batch, n, |k, r| out[k] = r * a);
        self.prev.prss.for_each(batch, n, |k, r| out[k] += r * b);
        out
    }

    /// Adds this party's shares of n degree-2 sharings of zero to `acc`:
    /// Σ_j PRF(k_j)·x_i·(1 - x_i/x_j).
    pub(crate) fn add_zero2(&self, batch: u64, acc: &mut [Fp]) {
        let (a, b) = self.przs_coef;
        let n = acc.len();
        self.next.przs.for_each(batch, n, |k, r| acc[k] += r * a);
        self.prev.przs.for_each(batch, n, |k, r| acc[k] += r * b);
    }

    /// The values this party's resharing polynomials take at the next party (shared with it).
    pub(crate) fn grr_to_next(&self, batch: u64, out: &mut [Fp]) {
        let n = out.len();
        self.next.grr.for_each(batch, n, |k, r| out[k] = r);
    }

    /// Adds the values the previous party's resharing polynomials take at this party.
    pub(crate) fn add_grr_from_prev(&self, batch: u64, acc: &mut [Fp]) {
        let n = acc.len();
        self.prev.grr.for_each(batch, n, |k, r| acc[k] += r);
    }
}
