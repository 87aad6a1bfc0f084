//! Simulation check on a node's transcript: what party 1 sees while computing LTZ (the shares of
//! every opened value, its own and the two it receives) must look uniform, and alike for two input
//! sets with equal outputs. The statistic (chi-square over 16 equal buckets of F_p, 15 degrees of
//! freedom, bound 44 ≈ the 99.99% quantile; fixed seeds) is shown to reject a broken mask and a
//! missing zero-sharing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::sync::{Arc, Mutex};

use armored_mpc::field::Fp;
use armored_mpc::shamir::{lagrange3, Party};
use armored_mpc::{InMemoryConfig, InMemoryTransport, Transport, TransportError};
use common::{chi2, rng, run_engines_on};
use rand_core::RngCore;

const N: usize = 4096;
const BOUND: f64 = 44.0;

/// (round, sent?, peer, payload) as party 1 saw it.
type Log = Arc<Mutex<Vec<(u32, bool, Party, Vec<u8>)>>>;

/// Records what one party sends and receives.
struct Recording {
    inner: InMemoryTransport,
    log: Option<Log>,
}

impl Transport for Recording {
    fn send(&mut self, to: Party, round: u32, payload: Vec<u8>) -> Result<(), TransportError> {
        if let Some(log) = &self.log {
            log.lock().unwrap().push((round, true, to, payload.clone()));
        }
        self.inner.send(to, round, payload)
    }
    fn recv(&mut self, from: Party, round: u32) -> Result<Vec<u8>, TransportError> {
        let m = self.inner.recv(from, round)?;
        if let Some(log) = &self.log {
            log.lock().unwrap().push((round, false, from, m.clone()));
        }
        Ok(m)
    }
}

fn elements(bytes: &[u8]) -> Vec<Fp> {
    bytes
        .chunks_exact(8)
        .map(|w| Fp::from_canonical(u64::from_le_bytes(w.try_into().unwrap())).unwrap())
        .collect()
}

/// The three points (1, 2, 3) of each degree-2 sharing opened in one round, as party 1 saw them.
fn opened_points(log: &Log, round: u32) -> Vec<[Fp; 3]> {
    let log = log.lock().unwrap();
    let find = |sent: bool, peer: u8| {
        let m = log
            .iter()
            .find(|(r, s, p, _)| *r == round && *s == sent && p.index() == peer);
        elements(&m.expect("message of the round").3)
    };
    let (own, s2, s3) = (find(true, 2), find(false, 2), find(false, 3));
    assert_eq!(own, find(true, 3), "the same share goes to both peers");
    own.iter()
        .zip(&s2)
        .zip(&s3)
        .map(|((&a, &b), &c)| [a, b, c])
        .collect()
}

fn value(p: &[Fp; 3]) -> Fp {
    let l = lagrange3();
    l[0] * p[0] + l[1] * p[1] + l[2] * p[2]
}

/// X^2 coefficient of the polynomial through (1, p1), (2, p2), (3, p3).
fn quadratic(p: &[Fp; 3]) -> Fp {
    let inv2 = Fp::new(2).inverse().unwrap();
    (p[0] - p[1] - p[1] + p[2]) * inv2
}

struct View {
    /// Opened masked values c (round 1) and the points party 1 saw.
    c: Vec<[Fp; 3]>,
    /// Opened w of the random bits (round 0).
    w: Vec<[Fp; 3]>,
    /// Output shares of parties 1 and 2 (degree 1), and the results.
    out: Vec<[Fp; 2]>,
    results: Vec<i64>,
}

/// LTZ on a = dx^2 - 100 where dx is shared by the constant polynomial (every party holds dx):
/// the product polynomial then has no X^2 term of its own, so any X^2 term the transcript shows
/// comes from the zero-sharing alone.
fn observe(dx: &[i64], seed: u64) -> View {
    let log: Log = Arc::default();
    let outs = run_engines_on(
        seed,
        InMemoryConfig::default(),
        |t| {
            let log = (t.party().index() == 1).then(|| log.clone());
            Recording { inner: t, log }
        },
        |e| {
            let a: Vec<Fp> = dx
                .iter()
                .map(|&x| Fp::from_i64(x) * Fp::from_i64(x) - Fp::new(100))
                .collect();
            e.ltz(&a)
        },
    );
    let c = opened_points(&log, 1);
    let w = opened_points(&log, 0);
    assert_eq!((c.len(), w.len()), (dx.len(), 61 * dx.len()));
    View {
        c,
        w,
        out: outs[0]
            .iter()
            .zip(&outs[1])
            .map(|(&a, &b)| [a, b])
            .collect(),
        results: common::reveal(&outs),
    }
}

fn assert_uniform(what: &str, values: impl IntoIterator<Item = Fp>) {
    let x = chi2(values);
    assert!(x < BOUND, "{what}: chi2 = {x:.1}");
}

#[test]
fn transcripts_of_equal_output_inputs_look_uniform() {
    // Both input sets give the all-zero output: a = 0 throughout (dx = 10, the boundary), and
    // scattered large distances.
    let set_a = vec![10i64; N];
    let mut r = rng(1);
    let set_b: Vec<i64> = (0..N)
        .map(|_| 10 + i64::from(r.next_u32() % 60000))
        .collect();
    for (name, dx, seed) in [("a", &set_a, 2), ("b", &set_b, 3)] {
        let v = observe(dx, seed);
        assert!(v.results.iter().all(|&x| x == 0), "equal outputs");
        assert_uniform(&format!("{name}: opened c"), v.c.iter().map(value));
        assert_uniform(&format!("{name}: X^2 term of c"), v.c.iter().map(quadratic));
        for j in 0..3 {
            assert_uniform(&format!("{name}: share {j} of c"), v.c.iter().map(|p| p[j]));
        }
        assert_uniform(&format!("{name}: X^2 term of w"), v.w.iter().map(quadratic));
        // Output shares: a random line through the result, so its slope is uniform.
        assert_uniform(
            &format!("{name}: output slope"),
            v.out.iter().map(|o| o[1] - o[0]),
        );
    }
}

#[test]
fn the_statistic_rejects_a_broken_mask_and_a_missing_zero_sharing() {
    let mut r = rng(4);
    // c = 2a + r with a 40-bit mask instead of 61 bits: concentrated near 2a.
    let broken = (0..N).map(|_| Fp::new(r.next_u64() >> 24));
    assert!(chi2(broken) > BOUND);
    // Without the zero-sharing, the constant-polynomial inputs leave no X^2 term at all.
    assert!(chi2(std::iter::repeat_n(Fp::ZERO, N)) > BOUND);
    // And a uniform sample passes (the bound is not too tight for this sample size).
    assert!(chi2((0..N).map(|_| armored_mpc::shamir::random_element(&mut r))) < BOUND);
}
