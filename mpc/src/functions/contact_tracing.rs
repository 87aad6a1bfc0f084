//! `contact-tracing/v1` (paper Section 6.2): for each user u,
//! contacts(u) = Σ_{e ∈ W, both present} [(x_u,e - x_R,e)^2 + (y_u,e - y_R,e)^2 < d^2],
//! and the sum over all users.
//!
//! Which (user, slot) pairs are present is public metadata: the nodes agree on it (a hash of each
//! node's admitted presence pattern) before computing. The squaring is local (a degree-2 sharing)
//! and folded into LTZ's masked opening. All comparisons run as one batch (in chunks of
//! `EngineConfig::max_batch` to bound memory), so the rounds do not grow with N below that size.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::engine::{Engine, RunStats};
use crate::error::{Error, Result};
use crate::field::Fp;
use crate::job::{ContactTracingParams, Function, Job};
use crate::output::OutputShares;
use crate::prss::{PartySeeds, LABEL_INPUTS};
use crate::shamir::{split_coordinate, Party};
use crate::transport::Transport;

/// One party's shares of a location (x, y) in one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Zeroize)]
pub struct PointShare {
    /// Share of x.
    pub x: Fp,
    /// Share of y.
    pub y: Fp,
}

/// Split of a point on the device: both coordinates must be in 0..=65535.
pub fn split_point<R: RngCore + CryptoRng>(x: u32, y: u32, rng: &mut R) -> Result<[PointShare; 3]> {
    let xs = split_coordinate(x, rng)?;
    let ys = split_coordinate(y, rng)?;
    Ok([0, 1, 2].map(|j| PointShare { x: xs[j], y: ys[j] }))
}

/// One twin's shares over the slot window; `None` marks a slot without a location (public).
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Track(Vec<Option<PointShare>>);

impl core::fmt::Debug for Track {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let present = self.0.iter().filter(|s| s.is_some()).count();
        write!(f, "Track({present} of {} slots, <redacted>)", self.0.len())
    }
}

impl Track {
    /// A track from per-slot shares.
    pub fn new(slots: Vec<Option<PointShare>>) -> Track {
        Track(slots)
    }

    /// The per-slot shares.
    pub fn slots(&self) -> &[Option<PointShare>] {
        &self.0
    }
}

/// One party's inputs: the reference twin's track and the users' tracks in participant order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartyInputs {
    /// The reference twin.
    pub reference: Track,
    /// The users, in the job's participant order.
    pub users: Vec<Track>,
}

/// A path in the clear: per slot, a location or nothing.
pub type Path = [Option<(u32, u32)>];

/// Shares a reference path and user paths for the three parties (what the devices do, one
/// `split_point` per location), e.g. for tests, benches and demos.
pub fn share_inputs<R: RngCore + CryptoRng>(
    reference: &Path,
    users: &[Vec<Option<(u32, u32)>>],
    rng: &mut R,
) -> Result<[PartyInputs; 3]> {
    let mut out: [PartyInputs; 3] = Default::default();
    let mut share_track = |path: &Path| -> Result<[Track; 3]> {
        let mut t: [Vec<Option<PointShare>>; 3] = Default::default();
        for slot in path {
            let s = slot.map(|(x, y)| split_point(x, y, rng)).transpose()?;
            for (j, tj) in t.iter_mut().enumerate() {
                tj.push(s.map(|s| s[j]));
            }
        }
        Ok(t.map(Track))
    };
    for (j, t) in share_track(reference)?.into_iter().enumerate() {
        out[j].reference = t;
    }
    for path in users {
        for (j, t) in share_track(path)?.into_iter().enumerate() {
            out[j].users.push(t);
        }
    }
    Ok(out)
}

/// The function in the clear (the reference implementation the tests compare against): per-user
/// counts; the total is their sum.
pub fn cleartext(distance: u32, reference: &Path, users: &[Vec<Option<(u32, u32)>>]) -> Vec<u64> {
    let d2 = u64::from(distance).pow(2);
    users
        .iter()
        .map(|path| {
            path.iter()
                .zip(reference)
                .filter_map(|(u, r)| Some(((*u)?, (*r)?)))
                .filter(|&((ux, uy), (rx, ry))| {
                    let dx = u64::from(ux.abs_diff(rx));
                    let dy = u64::from(uy.abs_diff(ry));
                    dx * dx + dy * dy < d2
                })
                .count() as u64
        })
        .collect()
}

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Comparisons per batch. Memory grows with it (a few KB per comparison and party at the
    /// peak: the 61 random bits, their openings and the carry tree); jobs with more comparisons run
    /// in sequential chunks of 9 rounds each, so rounds are constant in N up to this many
    /// comparisons (655 users of 50 slots by default).
    pub max_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_batch: 1 << 15 }
    }
}

/// One party's result: its output shares (per-user counts, then the total) and its statistics.
#[derive(Debug)]
pub struct PartyOutput {
    /// The output shares, to be sealed for the receiver.
    pub shares: OutputShares,
    /// Rounds and traffic.
    pub stats: RunStats,
}

/// Runs party `party`'s side of `job` on its verified inputs, with its seeds for this attempt.
pub fn run_party<T: Transport>(
    party: Party,
    job: &Job,
    inputs: &PartyInputs,
    seeds: &PartySeeds,
    transport: T,
) -> Result<PartyOutput> {
    run_party_with(
        &EngineConfig::default(),
        party,
        job,
        inputs,
        seeds,
        transport,
    )
}

/// `run_party` with explicit engine settings.
pub fn run_party_with<T: Transport>(
    config: &EngineConfig,
    party: Party,
    job: &Job,
    inputs: &PartyInputs,
    seeds: &PartySeeds,
    transport: T,
) -> Result<PartyOutput> {
    if seeds.party() != party {
        return Err(Error::InvalidInput("seeds belong to another party"));
    }
    let Function::ContactTracingV1(params) = &job.function;
    params.validate()?;
    check_shape(params, job, inputs)?;
    let mut engine = Engine::new(seeds, &job.job_hash, job.attempt, transport);
    engine.agree(&presence_digest(job, inputs))?;
    let values = contact_tracing(&mut engine, config, params, inputs)?;
    Ok(PartyOutput {
        shares: OutputShares::new(party, values),
        stats: engine.stats(),
    })
}

fn check_shape(params: &ContactTracingParams, job: &Job, inputs: &PartyInputs) -> Result<()> {
    let w = params.window.slots as usize;
    if inputs.users.len() != job.participants.len() {
        return Err(Error::InvalidInput("one track per participant"));
    }
    if inputs.reference.0.len() != w || inputs.users.iter().any(|t| t.0.len() != w) {
        return Err(Error::InvalidInput("one entry per slot of the window"));
    }
    if params.window.slots > u32::MAX / 2 || inputs.users.len() > u32::MAX as usize {
        return Err(Error::InvalidInput("job too large"));
    }
    Ok(())
}

/// SHA-256 over the job and the public presence pattern; equal on all nodes iff they admitted
/// inputs for the same (twin, slot) pairs.
fn presence_digest(job: &Job, inputs: &PartyInputs) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LABEL_INPUTS);
    h.update(job.job_hash);
    h.update(job.attempt.to_be_bytes());
    h.update((inputs.users.len() as u64).to_be_bytes());
    for track in std::iter::once(&inputs.reference).chain(&inputs.users) {
        h.update((track.0.len() as u64).to_be_bytes());
        let bits: Vec<u8> = track
            .0
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, s)| acc | (u8::from(s.is_some()) << i))
            })
            .collect();
        h.update(&bits);
    }
    h.finalize().into()
}

fn contact_tracing<T: Transport>(
    engine: &mut Engine<T>,
    config: &EngineConfig,
    params: &ContactTracingParams,
    inputs: &PartyInputs,
) -> Result<Vec<Fp>> {
    let d2 = Fp::new(u64::from(params.distance).pow(2));
    // (user, slot) of every comparison: both present.
    let reference = inputs.reference.slots();
    let pairs: Vec<(u32, u32)> = inputs
        .users
        .iter()
        .enumerate()
        .flat_map(|(u, track)| {
            track
                .slots()
                .iter()
                .zip(reference)
                .enumerate()
                .filter(|(_, (a, b))| a.is_some() && b.is_some())
                .map(move |(e, _)| (u as u32, e as u32))
        })
        .collect();
    let n = inputs.users.len();
    let mut counts = vec![Fp::ZERO; n];
    let mut compared = vec![false; n];
    for chunk in pairs.chunks(config.max_batch.max(1)) {
        // a = dx^2 + dy^2 - d^2, a degree-2 sharing; |a| < 2^33.
        let a: Vec<Fp> = chunk
            .iter()
            .map(|&(u, e)| {
                let (p, r) = match (
                    inputs.users[u as usize].0[e as usize],
                    reference[e as usize],
                ) {
                    (Some(p), Some(r)) => (p, r),
                    _ => (PointShare::default(), PointShare::default()),
                };
                let (dx, dy) = (p.x - r.x, p.y - r.y);
                dx * dx + dy * dy - d2
            })
            .collect();
        let less = engine.ltz(&a)?;
        for (&(u, _), b) in chunk.iter().zip(less) {
            counts[u as usize] += b;
            compared[u as usize] = true;
        }
    }
    // A user without a single comparison has a public count of 0; it still gets a fresh random
    // sharing so that every output share is uniform (one extra round, only when needed).
    let idle: Vec<usize> = (0..n).filter(|&u| !compared[u]).collect();
    if !idle.is_empty() {
        let zeros = engine.reshare(vec![Fp::ZERO; idle.len()])?;
        for (u, z) in idle.into_iter().zip(zeros) {
            counts[u] = z;
        }
    }
    let total: Fp = counts.iter().copied().sum();
    counts.push(total);
    Ok(counts)
}

/// The receiver's view of the combined outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactTracingResult {
    /// Contacts per user, in participant order.
    pub counts: Vec<u64>,
    /// Their sum.
    pub total: u64,
}

impl ContactTracingResult {
    /// Reads combined output values (counts, then the total) for `users` users over `slots`
    /// slots; counts out of range or a total that is not their sum are `InconsistentShares`.
    pub fn from_values(values: &[Fp], users: usize, slots: u32) -> Result<Self> {
        let (total, counts) = match values.split_last() {
            Some((t, c)) if c.len() == users => (t.value(), c),
            _ => return Err(Error::InconsistentShares),
        };
        let counts: Vec<u64> = counts.iter().map(|c| c.value()).collect();
        let sum = counts.iter().try_fold(0u64, |acc, &c| {
            (c <= u64::from(slots)).then(|| acc.saturating_add(c))
        });
        if sum != Some(total) {
            return Err(Error::InconsistentShares);
        }
        Ok(ContactTracingResult { counts, total })
    }
}
