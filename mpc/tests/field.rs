//! F_p arithmetic against a big-integer reference.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use armored_mpc::field::{batch_inverse, sqrt_batch, Fp, P};
use num_bigint::BigUint;
use proptest::prelude::*;

fn big(v: u64) -> BigUint {
    BigUint::from(v)
}

fn reference(v: BigUint) -> u64 {
    let r = v % big(P);
    r.to_u64_digits().first().copied().unwrap_or(0)
}

/// Field elements with the edges over-represented.
fn element() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(P - 1),
        Just(P - 2),
        Just(1 << 60),
        Just((1 << 60) - 1),
        0..P,
    ]
}

proptest! {
    #[test]
    fn reduction_of_any_u64(v in any::<u64>()) {
        prop_assert_eq!(Fp::new(v).value(), reference(big(v)));
    }

    #[test]
    fn add_sub_mul_neg(a in element(), b in element()) {
        let (x, y) = (Fp::new(a), Fp::new(b));
        prop_assert_eq!((x + y).value(), reference(big(a) + big(b)));
        prop_assert_eq!((x - y).value(), reference(big(a) + big(P) - big(b)));
        prop_assert_eq!((x * y).value(), reference(big(a) * big(b)));
        prop_assert_eq!((-x).value(), reference(big(P) - big(a)));
        prop_assert!((x * y).value() < P && (x + y).value() < P && (x - y).value() < P);
    }

    #[test]
    fn pow_inverse_sqrt(a in element(), e in any::<u64>()) {
        let x = Fp::new(a);
        prop_assert_eq!(x.pow(e).value(), reference(big(a).modpow(&big(e), &big(P))));
        match x.inverse() {
            None => prop_assert_eq!(a, 0),
            Some(inv) => prop_assert_eq!((inv * x).value(), 1),
        }
        let sq = x * x;
        let root = sq.sqrt();
        prop_assert!(root == x || root == -x);
    }

    #[test]
    fn signed_round_trip(v in -(1i64 << 60)..(1i64 << 60)) {
        prop_assert_eq!(Fp::from_i64(v).to_i64(), v);
        let expect = if v >= 0 { v as u64 } else { P - v.unsigned_abs() };
        prop_assert_eq!(Fp::from_i64(v).value(), expect);
    }

    #[test]
    fn batched_inverse_and_roots(values in proptest::collection::vec(1..P, 0..20)) {
        let xs: Vec<Fp> = values.iter().map(|&v| Fp::new(v)).collect();
        let mut inv = xs.clone();
        prop_assert!(batch_inverse(&mut inv));
        for (x, i) in xs.iter().zip(&inv) {
            prop_assert_eq!((*x * *i).value(), 1);
        }
        let mut roots: Vec<Fp> = xs.iter().map(|x| *x * *x).collect();
        let squares = roots.clone();
        sqrt_batch(&mut roots);
        for (r, s) in roots.iter().zip(&squares) {
            prop_assert_eq!(*r, s.sqrt());
            prop_assert_eq!(*r * *r, *s);
        }
    }
}

#[test]
fn canonical_decoding_and_zero_in_batches() {
    assert!(Fp::from_canonical(P).is_none());
    assert!(Fp::from_canonical(u64::MAX).is_none());
    assert_eq!(Fp::from_canonical(P - 1).map(Fp::value), Some(P - 1));
    let mut with_zero = vec![Fp::new(3), Fp::ZERO, Fp::new(5)];
    let before = with_zero.clone();
    assert!(!batch_inverse(&mut with_zero));
    assert_eq!(
        with_zero, before,
        "a failed batch inversion changes nothing"
    );
    // p ≡ 3 mod 4: -1 is a non-residue, so its "root" squares to +1, not -1.
    let m1 = -Fp::ONE;
    assert_ne!(m1.sqrt() * m1.sqrt(), m1);
}

#[test]
fn debug_is_redacted() {
    let x = Fp::new(123_456_789);
    assert!(!format!("{x:?}").contains("123456789"));
}
