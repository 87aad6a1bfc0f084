//! Helpers shared by the integration tests: three engines on threads with seeds from a fixed RNG,
//! and sharing of cleartext vectors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use armored_mpc::field::Fp;
use armored_mpc::local::run_three;
use armored_mpc::shamir::split;
use armored_mpc::{Engine, InMemoryConfig, InMemoryTransport, PartySeeds, Result, Transport};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const JOB_HASH: [u8; 32] = [0x5a; 32];

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Runs `f` on the three parties' engines (fresh seeds from `seed`) and returns their results.
pub fn run_engines<R, F>(seed: u64, f: F) -> [R; 3]
where
    R: Send,
    F: Fn(&mut Engine<InMemoryTransport>) -> Result<R> + Sync,
{
    run_engines_on(seed, InMemoryConfig::default(), |t| t, f)
}

/// `run_engines` with a transport wrapper (e.g. one that records what a party receives).
pub fn run_engines_on<R, F, W, T>(seed: u64, net: InMemoryConfig, wrap: W, f: F) -> [R; 3]
where
    R: Send,
    T: Transport,
    W: Fn(InMemoryTransport) -> T + Sync,
    F: Fn(&mut Engine<T>) -> Result<R> + Sync,
{
    let seeds = PartySeeds::deal(&mut rng(seed));
    run_three(net, seeds, |t, s| {
        let mut e = Engine::new(&s, &JOB_HASH, 0, wrap(t));
        f(&mut e)
    })
    .expect("the three parties succeed")
}

/// Degree-1 sharings of the given signed values, as per-party vectors.
pub fn share(values: &[i64], seed: u64) -> [Vec<Fp>; 3] {
    let mut r = rng(seed);
    let mut out: [Vec<Fp>; 3] = Default::default();
    for &v in values {
        let s = split(Fp::from_i64(v), &mut r);
        for j in 0..3 {
            out[j].push(s[j]);
        }
    }
    out
}

/// Opens degree-1 output vectors in the clear (all three shares on one line).
pub fn reveal(shares: &[Vec<Fp>; 3]) -> Vec<i64> {
    armored_mpc::shamir::combine_all([&shares[0], &shares[1], &shares[2]])
        .expect("outputs are consistent degree-1 sharings")
        .into_iter()
        .map(Fp::to_i64)
        .collect()
}

/// Chi-square statistic of field elements over 16 equal buckets of F_p (their top four bits);
/// with 15 degrees of freedom its 99.99% quantile is ~44.
pub fn chi2(values: impl IntoIterator<Item = Fp>) -> f64 {
    let mut buckets = [0u64; 16];
    let mut n = 0u64;
    for v in values {
        buckets[(v.value() >> 57) as usize] += 1;
        n += 1;
    }
    let expect = n as f64 / 16.0;
    buckets
        .iter()
        .map(|&b| (b as f64 - expect).powi(2) / expect)
        .sum()
}
