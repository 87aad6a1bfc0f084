//! Each primitive against its cleartext function, with three parties on the in-memory transport.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use armored_mpc::engine::LTZ_ROUNDS;
use armored_mpc::field::{Fp, P};
use armored_mpc::local::run_three;
use armored_mpc::{Engine, Error, InMemoryConfig, PartySeeds};
use common::{reveal, rng, run_engines, share, JOB_HASH};
use proptest::prelude::*;

/// Values that exercise the edges of a < 0 (p/2 bounds, zero, ±1, squared-distance scale).
const HALF: i64 = (P / 2) as i64; // (p - 1)/2: the largest |a| with 2a < p.
const EDGES: [i64; 12] = [
    0,
    1,
    -1,
    2,
    -2,
    HALF,
    -HALF,
    HALF - 1,
    -(HALF - 1),
    (1 << 33) - 1,
    -(1 << 33) + 1,
    1 << 40,
];

#[test]
fn mul_matches_cleartext_on_edges_and_random() {
    let mut r = rng(11);
    let mut xs: Vec<i64> = EDGES.to_vec();
    let mut ys: Vec<i64> = EDGES.iter().rev().copied().collect();
    for _ in 0..100 {
        xs.push((rand_core::RngCore::next_u64(&mut r) >> 34) as i64 - (1 << 29));
        ys.push((rand_core::RngCore::next_u64(&mut r) >> 34) as i64 - (1 << 29));
    }
    let (sx, sy) = (share(&xs, 1), share(&ys, 2));
    let out = run_engines(3, |e| {
        let i = e.party().slot();
        let z = e.mul(&sx[i], &sy[i])?;
        assert_eq!(e.stats().rounds, 1);
        // One element per product to one peer.
        assert_eq!(e.stats().bytes_sent, 8 * xs.len() as u64);
        Ok(z)
    });
    let got = reveal(&out);
    for k in 0..xs.len() {
        let expect = Fp::from_i64(xs[k]) * Fp::from_i64(ys[k]);
        assert_eq!(got[k], expect.to_i64(), "product {k}");
    }
}

#[test]
fn reshare_reduces_a_sum_of_products_once() {
    let xs = [3i64, -7, 65535, 0];
    let ys = [5i64, 9, 65535, 12];
    let (sx, sy) = (share(&xs, 4), share(&ys, 5));
    let out = run_engines(6, |e| {
        let i = e.party().slot();
        let dot: Fp = sx[i].iter().zip(&sy[i]).map(|(a, b)| *a * *b).sum();
        e.reshare(vec![dot])
    });
    let expect: i64 = xs.iter().zip(&ys).map(|(a, b)| a * b).sum();
    assert_eq!(reveal(&out), vec![expect]);
}

#[test]
fn open_degree_one_and_two() {
    let xs = [0i64, 1, -1, HALF, -HALF, 42];
    let sx = share(&xs, 8);
    let out = run_engines(9, |e| {
        let i = e.party().slot();
        let a = e.open(&sx[i])?;
        // A product sharing (degree 2), re-randomised, opens with all three shares.
        let mut sq: Vec<Fp> = sx[i].iter().map(|v| *v * *v).collect();
        let z = e.zero2(sq.len());
        for (s, z) in sq.iter_mut().zip(z) {
            *s += z;
        }
        let b = e.open2(&sq)?;
        assert_eq!(e.stats().rounds, 2);
        Ok((a, b))
    });
    for (a, b) in &out {
        assert_eq!(a.iter().map(|v| v.to_i64()).collect::<Vec<_>>(), xs);
        let squares: Vec<Fp> = xs
            .iter()
            .map(|&x| Fp::from_i64(x) * Fp::from_i64(x))
            .collect();
        assert_eq!(b, &squares);
    }
}

#[test]
fn prss_values_are_consistent_and_przs_opens_to_zero() {
    let out = run_engines(12, |e| {
        let r = e.random(64);
        let z = e.zero2(64);
        Ok((r, z))
    });
    let r = reveal(&[out[0].0.clone(), out[1].0.clone(), out[2].0.clone()]);
    // 64 PRSS values on one line each (reveal checks) and not degenerate.
    assert!(r.iter().filter(|&&v| v == 0).count() < 2);
    let mut distinct = r.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 64);
    let l = armored_mpc::shamir::lagrange3();
    for k in 0..64 {
        let v = l[0] * out[0].1[k] + l[1] * out[1].1[k] + l[2] * out[2].1[k];
        assert_eq!(v, Fp::ZERO);
        assert_ne!(
            out[0].1[k],
            Fp::ZERO,
            "a zero-sharing is not the all-zero sharing"
        );
    }
}

#[test]
fn random_bits_are_bits_and_balanced() {
    let n = 2000;
    let out = run_engines(13, |e| {
        let b = e.random_bits(n)?;
        assert_eq!(e.stats().rounds, 1);
        Ok(b)
    });
    let bits = reveal(&out);
    assert!(bits.iter().all(|&b| b == 0 || b == 1));
    let ones = bits.iter().filter(|&&b| b == 1).count();
    // Binomial(2000, 1/2): sd ≈ 22; ±150 is ~7 sd.
    assert!((850..=1150).contains(&ones), "{ones} ones of {n}");
}

fn ltz_clear(a: i64) -> i64 {
    i64::from(a < 0)
}

#[test]
fn ltz_on_edges_degree_one_and_two() {
    let sa = share(&EDGES, 14);
    // d = 9: squared distances 0, d^2 - 1 = 8^2 + 4^2, d^2, d^2 + 1, the maximum, negative
    // differences, and d^2 - 1 again from negative differences.
    let d2: i64 = 81;
    let dx = [0i64, 8, 9, 9, 65535, -65535, -4];
    let dy = [0i64, 4, 0, 1, 65535, -65535, -8];
    let (sdx, sdy) = (share(&dx, 15), share(&dy, 16));
    let out = run_engines(17, |e| {
        let i = e.party().slot();
        let lin = e.ltz(&sa[i])?;
        assert_eq!(e.stats().rounds, LTZ_ROUNDS);
        let d2f = Fp::from_i64(d2);
        let quad: Vec<Fp> = sdx[i]
            .iter()
            .zip(&sdy[i])
            .map(|(&x, &y)| x * x + y * y - d2f)
            .collect();
        let q = e.ltz(&quad)?;
        Ok((lin, q))
    });
    let lin = reveal(&[out[0].0.clone(), out[1].0.clone(), out[2].0.clone()]);
    assert_eq!(lin, EDGES.map(ltz_clear).to_vec());
    let quad = reveal(&[out[0].1.clone(), out[1].1.clone(), out[2].1.clone()]);
    let expect: Vec<i64> = dx
        .iter()
        .zip(&dy)
        .map(|(x, y)| ltz_clear(x * x + y * y - d2))
        .collect();
    assert_eq!(quad, expect);
    assert_eq!(
        expect,
        vec![1, 1, 0, 0, 0, 0, 1],
        "the edge cases are what they claim"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.min(16), ..ProptestConfig::default() })]

    #[test]
    fn ltz_matches_cleartext(values in proptest::collection::vec(-HALF..=HALF, 1..40), seed in any::<u64>()) {
        let sa = share(&values, seed);
        let out = run_engines(seed ^ 1, |e| e.ltz(&sa[e.party().slot()]));
        prop_assert_eq!(reveal(&out), values.iter().map(|&a| ltz_clear(a)).collect::<Vec<_>>());
    }

    #[test]
    fn public_less_than_shared_bits(pairs in proptest::collection::vec((0u64..P, any::<u64>()), 1..20), seed in any::<u64>()) {
        // r's bits are shared as given (including r ≥ p), c is public.
        let pairs: Vec<(u64, u64)> = pairs.into_iter().map(|(c, r)| (c, r >> 3)).chain([(0, 0), (5, 5), (P - 1, (1 << 61) - 1), (P - 1, 0)]).collect();
        let bit_values: Vec<i64> = pairs.iter().flat_map(|&(_, r)| (0..61).map(move |l| ((r >> l) & 1) as i64)).collect();
        let sb = share(&bit_values, seed);
        let cs: Vec<u64> = pairs.iter().map(|&(c, _)| c).collect();
        let out = run_engines(seed ^ 2, |e| e.lt_public_bits(&cs, &sb[e.party().slot()]));
        prop_assert_eq!(reveal(&out), pairs.iter().map(|&(c, r)| i64::from(c < r)).collect::<Vec<_>>());
    }
}

#[test]
fn rounds_do_not_depend_on_the_batch_size() {
    for n in [1usize, 300] {
        let values: Vec<i64> = (0..n as i64).map(|k| k - 150).collect();
        let sa = share(&values, 20);
        let stats = run_engines(21, |e| {
            e.ltz(&sa[e.party().slot()])?;
            Ok(e.stats())
        });
        for s in stats {
            assert_eq!(s.rounds, LTZ_ROUNDS, "n = {n}");
        }
    }
}

#[test]
fn same_seeds_same_shares_other_attempt_other_shares() {
    let sa = share(&[5, -5, 0], 22);
    let run = |attempt: u32| {
        let seeds = PartySeeds::deal(&mut rng(23));
        run_three(InMemoryConfig::default(), seeds, |t, s| {
            let mut e = Engine::new(&s, &JOB_HASH, attempt, t);
            e.ltz(&sa[s.party().slot()])
        })
        .unwrap()
    };
    let (a, b, c) = (run(0), run(0), run(1));
    assert_eq!(a, b, "deterministic under fixed seeds");
    assert_ne!(a, c, "another attempt draws other masks");
    assert_eq!(reveal(&a), reveal(&c));
}

#[test]
fn a_missing_peer_is_a_typed_error() {
    let seeds = PartySeeds::deal(&mut rng(24));
    let net = InMemoryConfig {
        round_timeout: Duration::from_millis(50),
        ..InMemoryConfig::default()
    };
    let sa = share(&[1, 2], 25);
    // Party 3 keeps its end open but never sends: the others time out in round 0.
    let err = run_three(net, seeds.clone(), |t, s| {
        if s.party().index() == 3 {
            std::thread::sleep(Duration::from_millis(200));
            drop(t);
            return Ok(Vec::new());
        }
        Engine::new(&s, &JOB_HASH, 0, t).open(&sa[s.party().slot()])
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { round: 0, peer: _ }),
        "{err:?}"
    );
    // Party 3 quits at once: the link closes and the others fail without waiting for the timeout.
    let err = run_three(InMemoryConfig::default(), seeds, |t, s| {
        if s.party().index() == 3 {
            drop(t);
            return Err(Error::InvalidInput("party 3 refuses"));
        }
        Engine::new(&s, &JOB_HASH, 0, t).open(&sa[s.party().slot()])
    })
    .unwrap_err();
    assert_eq!(err, Error::InvalidInput("party 3 refuses"));
}

#[test]
fn seeds_and_engines_do_not_print_secrets() {
    let seeds = PartySeeds::deal(&mut rng(26));
    let s = format!("{seeds:?}");
    assert!(s.contains("redacted"));
    let raw = armored_mpc::Seed::new([0xab; 32]);
    assert!(
        !format!("{raw:?}").to_lowercase().contains("ab, 171")
            && !format!("{raw:?}").contains("171")
    );
}

/// Alters what party 1 receives in round 0.
struct Tamper {
    inner: armored_mpc::InMemoryTransport,
    edit: fn(&mut Vec<u8>),
}

impl armored_mpc::Transport for Tamper {
    fn send(
        &mut self,
        to: armored_mpc::Party,
        round: u32,
        payload: Vec<u8>,
    ) -> Result<(), armored_mpc::TransportError> {
        self.inner.send(to, round, payload)
    }
    fn recv(
        &mut self,
        from: armored_mpc::Party,
        round: u32,
    ) -> Result<Vec<u8>, armored_mpc::TransportError> {
        let mut m = self.inner.recv(from, round)?;
        if self.inner.party().index() == 1 && round == 0 {
            (self.edit)(&mut m);
        }
        Ok(m)
    }
}

fn tampered_random_bits(edit: fn(&mut Vec<u8>)) -> Error {
    let seeds = PartySeeds::deal(&mut rng(27));
    run_three(InMemoryConfig::default(), seeds, |t, s| {
        Engine::new(&s, &JOB_HASH, 0, Tamper { inner: t, edit }).random_bits(64)
    })
    .unwrap_err()
}

#[test]
fn malformed_and_inconsistent_peer_messages_are_typed_errors() {
    let e = tampered_random_bits(|m| m.truncate(m.len() - 1));
    assert!(
        matches!(e, Error::MalformedMessage { round: 0, .. }),
        "{e:?}"
    );
    // A non-canonical element (≥ p) is refused at decoding.
    let e = tampered_random_bits(|m| m[..8].copy_from_slice(&u64::MAX.to_le_bytes()));
    assert!(
        matches!(e, Error::MalformedMessage { round: 0, .. }),
        "{e:?}"
    );
    // Shifted shares open to values that are not squares: caught before any bit is used.
    let e = tampered_random_bits(|m| {
        for w in m.chunks_exact_mut(8) {
            let v = u64::from_le_bytes(w.try_into().unwrap());
            w.copy_from_slice(&(Fp::new(v) + Fp::ONE).value().to_le_bytes());
        }
    });
    assert_eq!(e, Error::ProtocolViolation("opened value is not a square"));
}
