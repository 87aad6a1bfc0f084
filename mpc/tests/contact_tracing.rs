//! `contact-tracing/v1` end to end against the cleartext definition, on generated paths.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::sig::SigningKey;
use armored_mpc::engine::LTZ_ROUNDS;
use armored_mpc::functions::contact_tracing::{
    cleartext, share_inputs, ContactTracingResult, EngineConfig, PartyInputs,
};
use armored_mpc::output::open_and_combine;
use armored_mpc::shamir::combine_all;
use armored_mpc::{
    local, ContactTracingParams, Error, Function, InMemoryConfig, Job, PartySeeds, SlotWindow,
};
use common::rng;
use proptest::prelude::*;
use rand_core::RngCore;

type Path = Vec<Option<(u32, u32)>>;

fn job(n: usize, slots: u32, distance: u32) -> Job {
    Job {
        job_id: "job-ct".into(),
        job_hash: [0x11; 32],
        attempt: 3,
        function: Function::ContactTracingV1(ContactTracingParams {
            reference: "reference".into(),
            distance,
            window: SlotWindow {
                first_slot: 1000,
                slots,
            },
        }),
        participants: (0..n).map(|u| format!("user-{u}")).collect(),
    }
}

/// A random walk on the grid (clamped to 0..=65535) with missing slots.
fn walk(
    r: &mut impl RngCore,
    slots: u32,
    start: (u32, u32),
    step: u32,
    missing_per_mille: u32,
) -> Path {
    let (mut x, mut y) = start;
    (0..slots)
        .map(|_| {
            let mv = |v: u32, r: &mut dyn RngCore| {
                let d = r.next_u32() % (2 * step + 1);
                (v + d).saturating_sub(step).min(65535)
            };
            x = mv(x, r);
            y = mv(y, r);
            (r.next_u32() % 1000 >= missing_per_mille).then_some((x, y))
        })
        .collect()
}

/// Users who walk near the reference: each slot, the reference's point plus a small offset.
fn near(r: &mut impl RngCore, reference: &Path, spread: u32, missing_per_mille: u32) -> Path {
    reference
        .iter()
        .map(|p| {
            let (x, y) = p.unwrap_or((30000, 30000));
            let off = |v: u32, r: &mut dyn RngCore| {
                (v + r.next_u32() % (2 * spread + 1))
                    .saturating_sub(spread)
                    .min(65535)
            };
            (r.next_u32() % 1000 >= missing_per_mille).then(|| (off(x, r), off(y, r)))
        })
        .collect()
}

fn run(
    job: &Job,
    inputs: &[PartyInputs; 3],
    seed: u64,
    config: &EngineConfig,
) -> Result<[armored_mpc::PartyOutput; 3], Error> {
    local::contact_tracing(
        config,
        InMemoryConfig::default(),
        job,
        inputs,
        PartySeeds::deal(&mut rng(seed)),
    )
}

fn combined(out: &[armored_mpc::PartyOutput; 3], users: usize, slots: u32) -> ContactTracingResult {
    let values = combine_all([
        out[0].shares.values(),
        out[1].shares.values(),
        out[2].shares.values(),
    ])
    .unwrap();
    ContactTracingResult::from_values(&values, users, slots).unwrap()
}

fn generate(seed: u64, n: usize, slots: u32, distance: u32, missing: u32) -> (Path, Vec<Path>) {
    let mut r = rng(seed);
    let reference = walk(&mut r, slots, (30000, 30000), 50, missing);
    let users: Vec<Path> = (0..n)
        .map(|u| {
            if u % 2 == 0 {
                near(&mut r, &reference, distance + distance / 2, missing)
            } else {
                walk(&mut r, slots, (29950, 30050), 80, missing)
            }
        })
        .collect();
    (reference, users)
}

fn check(seed: u64, n: usize, slots: u32, distance: u32, missing: u32) {
    let (reference, users) = generate(seed, n, slots, distance, missing);
    let inputs = share_inputs(&reference, &users, &mut rng(seed ^ 5)).unwrap();
    let job = job(n, slots, distance);
    let out = run(&job, &inputs, seed ^ 9, &EngineConfig::default()).unwrap();
    let got = combined(&out, n, slots);
    let expect = cleartext(distance, &reference, &users);
    assert_eq!(got.counts, expect, "seed {seed}, n {n}");
    assert_eq!(got.total, expect.iter().sum::<u64>());
}

/// (seed, n, slots, d, missing per mille): several N, the paper's 50 points without gaps, and a
/// window where most slots are missing.
const CASES: [(u64, usize, u32, u32, u32); 7] = [
    (1, 0, 12, 40, 150),
    (2, 1, 12, 40, 150),
    (3, 2, 12, 40, 150),
    (4, 5, 12, 40, 150),
    (5, 9, 12, 40, 150),
    (6, 3, 50, 30, 0),
    (7, 4, 20, 30, 700),
];

#[test]
fn matches_cleartext_for_several_n_with_missing_slots() {
    for (seed, n, slots, d, missing) in CASES {
        check(seed, n, slots, d, missing);
    }
}

#[test]
fn the_generated_cases_are_not_trivial() {
    // Guards the test data: some users have contacts, some have fewer than the window, some
    // slots are missing on either side.
    let (mut contacts, mut misses, mut ref_missing, mut user_missing) = (0, 0, 0, 0);
    for (seed, n, slots, d, missing) in CASES {
        let (reference, users) = generate(seed, n, slots, d, missing);
        for c in cleartext(d, &reference, &users) {
            contacts += usize::from(c > 0);
            misses += usize::from(c < u64::from(slots));
        }
        ref_missing += reference.iter().filter(|p| p.is_none()).count();
        user_missing += users.iter().flatten().filter(|p| p.is_none()).count();
    }
    assert!(
        contacts > 3 && misses > 3 && ref_missing > 0 && user_missing > 0,
        "{contacts} {misses} {ref_missing} {user_missing}"
    );
}

#[test]
fn edge_distances_maximum_coordinates_and_negative_differences() {
    // d = 9: distances^2 of d^2 - 1 (8,4), d^2 (9,0), d^2 + 1 (9,1), 0, and the largest possible
    // (65535 on both axes), from either side (negative differences).
    let reference: Path = vec![
        Some((100, 100)),
        Some((100, 100)),
        Some((100, 100)),
        Some((0, 0)),
        Some((65535, 65535)),
        Some((65535, 0)),
        None,
        Some((7, 7)),
    ];
    let users: Vec<Path> = vec![
        vec![
            Some((108, 104)),
            Some((109, 100)),
            Some((109, 101)),
            Some((0, 0)),
            Some((0, 0)),
            Some((0, 65535)),
            Some((1, 1)),
            None,
        ],
        vec![
            Some((92, 96)),
            Some((91, 100)),
            Some((91, 99)),
            Some((65535, 65535)),
            Some((65535, 65535)),
            Some((65535, 0)),
            Some((5, 5)),
            Some((3, 15)),
        ],
    ];
    let expect = cleartext(9, &reference, &users);
    assert_eq!(expect, vec![2, 4], "the fixture means what it says");
    let inputs = share_inputs(&reference, &users, &mut rng(30)).unwrap();
    let out = run(&job(2, 8, 9), &inputs, 31, &EngineConfig::default()).unwrap();
    assert_eq!(combined(&out, 2, 8).counts, expect);
    // d = 2^16 - 1 with maximal differences: (65535, 65535) apart is no contact, (65534, 0) is.
    let reference: Path = vec![Some((0, 0)), Some((0, 0))];
    let users: Vec<Path> = vec![vec![Some((65535, 65535)), Some((65534, 0))]];
    let inputs = share_inputs(&reference, &users, &mut rng(32)).unwrap();
    let out = run(&job(1, 2, 65535), &inputs, 33, &EngineConfig::default()).unwrap();
    assert_eq!(combined(&out, 1, 2).counts, vec![1]);
    assert_eq!(cleartext(65535, &reference, &users), vec![1]);
}

#[test]
fn chunked_batches_give_the_same_result_and_constant_rounds_per_chunk() {
    let mut r = rng(40);
    let reference = walk(&mut r, 10, (1000, 1000), 30, 100);
    let users: Vec<Path> = (0..6).map(|_| near(&mut r, &reference, 40, 100)).collect();
    let inputs = share_inputs(&reference, &users, &mut r).unwrap();
    let j = job(6, 10, 25);
    let whole = run(&j, &inputs, 41, &EngineConfig::default()).unwrap();
    let chunked = run(&j, &inputs, 41, &EngineConfig { max_batch: 7 }).unwrap();
    let expect = cleartext(25, &reference, &users);
    assert_eq!(combined(&whole, 6, 10).counts, expect);
    assert_eq!(combined(&chunked, 6, 10).counts, expect);
    let comparisons = users
        .iter()
        .map(|u| {
            u.iter()
                .zip(&reference)
                .filter(|(a, b)| a.is_some() && b.is_some())
                .count()
        })
        .sum::<usize>();
    // One agreement round, then LTZ_ROUNDS per chunk.
    assert_eq!(whole[0].stats.rounds, 1 + LTZ_ROUNDS);
    assert_eq!(
        chunked[0].stats.rounds,
        1 + LTZ_ROUNDS * comparisons.div_ceil(7) as u32
    );
}

#[test]
fn rounds_are_independent_of_n() {
    let mut rounds = Vec::new();
    for n in [1usize, 4, 16] {
        let mut r = rng(50 + n as u64);
        let reference = walk(&mut r, 5, (500, 500), 10, 0);
        let users: Vec<Path> = (0..n).map(|_| near(&mut r, &reference, 20, 0)).collect();
        let inputs = share_inputs(&reference, &users, &mut r).unwrap();
        let out = run(&job(n, 5, 15), &inputs, 60, &EngineConfig::default()).unwrap();
        rounds.push(out.map(|o| o.stats.rounds));
    }
    assert!(
        rounds.iter().all(|r| *r == [1 + LTZ_ROUNDS; 3]),
        "{rounds:?}"
    );
}

#[test]
fn users_without_overlap_get_fresh_zero_sharings() {
    let reference: Path = vec![Some((10, 10)), None];
    let users: Vec<Path> = vec![
        vec![None, Some((10, 10))],
        vec![Some((10, 11)), Some((1, 1))],
    ];
    let inputs = share_inputs(&reference, &users, &mut rng(70)).unwrap();
    let out = run(&job(2, 2, 5), &inputs, 71, &EngineConfig::default()).unwrap();
    assert_eq!(combined(&out, 2, 2).counts, vec![0, 1]);
    // The public zero is still a random sharing: no node's share is 0.
    assert!(out
        .iter()
        .all(|o| o.shares.values()[0] != armored_mpc::Fp::ZERO));
    assert_eq!(
        out[0].stats.rounds,
        1 + LTZ_ROUNDS + 1,
        "one extra reshare round"
    );
}

#[test]
fn disagreeing_inputs_abort_with_input_mismatch() {
    let reference: Path = vec![Some((10, 10)), Some((20, 20))];
    let users: Vec<Path> = vec![vec![Some((11, 10)), Some((20, 21))]];
    let mut inputs = share_inputs(&reference, &users, &mut rng(80)).unwrap();
    // Node 2 admitted one share fewer (e.g. it rejected a signature).
    let mut slots = inputs[1].users[0].slots().to_vec();
    slots[1] = None;
    inputs[1].users[0] = armored_mpc::functions::contact_tracing::Track::new(slots);
    let err = run(&job(1, 2, 5), &inputs, 81, &EngineConfig::default()).unwrap_err();
    assert_eq!(err, Error::InputMismatch);
}

#[test]
fn parameters_and_shapes_are_checked() {
    let reference: Path = vec![Some((10, 10))];
    let users: Vec<Path> = vec![vec![Some((11, 10))]];
    let inputs = share_inputs(&reference, &users, &mut rng(90)).unwrap();
    let e = run(&job(1, 1, 1 << 16), &inputs, 91, &EngineConfig::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let e = run(&job(2, 1, 5), &inputs, 92, &EngineConfig::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let e = run(&job(1, 2, 5), &inputs, 93, &EngineConfig::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert!(share_inputs(&[Some((65536, 0))], &[], &mut rng(94)).is_err());
    // Seeds of another party.
    let seeds = PartySeeds::deal(&mut rng(95));
    let t = armored_mpc::InMemoryTransport::network(InMemoryConfig::default());
    let [t1, ..] = t;
    let e = armored_mpc::run_party(
        armored_mpc::Party::ALL[0],
        &job(1, 1, 5),
        &inputs[0],
        &seeds[1],
        t1,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));
}

#[test]
fn sealed_output_shares_open_and_combine_for_the_receiver() {
    let mut r = rng(100);
    let reference = walk(&mut r, 8, (2000, 2000), 20, 100);
    let users: Vec<Path> = (0..3).map(|_| near(&mut r, &reference, 30, 100)).collect();
    let inputs = share_inputs(&reference, &users, &mut r).unwrap();
    let j = job(3, 8, 20);
    let out = run(&j, &inputs, 101, &EngineConfig::default()).unwrap();
    let receiver = HpkeSecretKey::generate(&mut r);
    let nodes = [
        SigningKey::generate(&mut r),
        SigningKey::generate(&mut r),
        SigningKey::generate(&mut r),
    ];
    let sealed: Vec<Vec<u8>> = out
        .iter()
        .zip(&nodes)
        .map(|(o, k)| o.shares.seal(&j, receiver.public(), k, &mut r).unwrap())
        .collect();
    let vks = [
        nodes[0].verifying_key(),
        nodes[1].verifying_key(),
        nodes[2].verifying_key(),
    ];
    let values = open_and_combine(
        &receiver,
        vks,
        &j.job_hash,
        j.attempt,
        [&sealed[0], &sealed[1], &sealed[2]],
    )
    .unwrap();
    let result = ContactTracingResult::from_values(&values, 3, 8).unwrap();
    assert_eq!(result.counts, cleartext(20, &reference, &users));
    // Shares in the wrong slots (node 2's share presented as node 1's) are refused.
    let swapped = open_and_combine(
        &receiver,
        [vks[1], vks[0], vks[2]],
        &j.job_hash,
        j.attempt,
        [&sealed[1], &sealed[0], &sealed[2]],
    );
    assert!(swapped.is_err());
    // Another attempt's hash does not open.
    assert!(open_and_combine(
        &receiver,
        vks,
        &j.job_hash,
        j.attempt + 1,
        [&sealed[0], &sealed[1], &sealed[2]]
    )
    .is_err());
}

#[test]
fn a_faulty_node_is_caught_by_combine() {
    let reference: Path = vec![Some((10, 10)), Some((20, 20))];
    let users: Vec<Path> = vec![vec![Some((11, 10)), Some((20, 21))]];
    let inputs = share_inputs(&reference, &users, &mut rng(110)).unwrap();
    let out = run(&job(1, 2, 5), &inputs, 111, &EngineConfig::default()).unwrap();
    let mut bad = out[2].shares.values().to_vec();
    bad[0] += armored_mpc::Fp::ONE;
    let e = combine_all([out[0].shares.values(), out[1].shares.values(), &bad]).unwrap_err();
    assert_eq!(e, Error::InconsistentShares);
    // A total that is not the sum of the counts is refused too.
    let values = vec![armored_mpc::Fp::new(1), armored_mpc::Fp::new(2)];
    assert_eq!(
        ContactTracingResult::from_values(&values, 1, 2),
        Err(Error::InconsistentShares)
    );
}

#[test]
fn nothing_printable_contains_a_share() {
    let reference: Path = vec![Some((12345, 54321))];
    let users: Vec<Path> = vec![vec![Some((12346, 54321))]];
    let inputs = share_inputs(&reference, &users, &mut rng(120)).unwrap();
    let out = run(&job(1, 1, 5), &inputs, 121, &EngineConfig::default()).unwrap();
    let mut printed = format!("{inputs:?} {out:?}");
    for e in [
        Error::InputMismatch,
        Error::InconsistentShares,
        Error::Timeout { round: 1, peer: 2 },
    ] {
        printed += &format!("{e} {e:?}");
    }
    let mut secrets: Vec<u64> = out
        .iter()
        .flat_map(|o| o.shares.values().iter().map(|v| v.value()))
        .collect();
    for p in &inputs {
        for t in std::iter::once(&p.reference).chain(&p.users) {
            for s in t.slots().iter().flatten() {
                secrets.extend([s.x.value(), s.y.value()]);
            }
        }
    }
    for s in secrets {
        assert!(!printed.contains(&s.to_string()));
    }
    assert!(!printed.contains("12345") && !printed.contains("54321"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.min(8), ..ProptestConfig::default() })]

    #[test]
    fn random_paths_match_cleartext(seed in any::<u64>(), n in 1usize..6, slots in 1u32..12, distance in 0u32..200, missing in 0u32..600) {
        check(seed, n, slots, distance, missing);
    }
}
