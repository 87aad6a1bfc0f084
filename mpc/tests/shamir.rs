//! Split / Combine (Definition 2): round trips, the consistency check, the device's range check,
//! and uniform single shares.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_mpc::field::{Fp, P};
use armored_mpc::shamir::{combine, combine_all, split, split_coordinate, Party, MAX_COORDINATE};
use armored_mpc::Error;
use common::rng;
use proptest::prelude::*;

proptest! {
    #[test]
    fn split_combine_round_trip(secret in 0..P, seed in any::<u64>()) {
        let shares = split(Fp::new(secret), &mut rng(seed));
        prop_assert_eq!(combine(shares).map(Fp::value), Ok(secret));
    }

    #[test]
    fn any_corrupted_share_is_caught(secret in 0..P, seed in any::<u64>(), which in 0usize..3, delta in 1..P) {
        let mut shares = split(Fp::new(secret), &mut rng(seed));
        shares[which] += Fp::new(delta);
        prop_assert_eq!(combine(shares), Err(Error::InconsistentShares));
    }

    #[test]
    fn coordinates_in_range_round_trip(v in 0..=MAX_COORDINATE, seed in any::<u64>()) {
        let shares = split_coordinate(v, &mut rng(seed)).unwrap();
        prop_assert_eq!(combine(shares).map(Fp::value), Ok(u64::from(v)));
    }

    #[test]
    fn coordinates_out_of_range_are_refused(v in (MAX_COORDINATE + 1)..=u32::MAX) {
        prop_assert!(matches!(split_coordinate(v, &mut rng(1)), Err(Error::InvalidInput(_))));
    }
}

#[test]
fn combine_all_checks_every_value_and_the_lengths() {
    let mut r = rng(7);
    let secrets = [0u64, 1, P - 1, 65535];
    let mut s: [Vec<Fp>; 3] = Default::default();
    for v in secrets {
        let sh = split(Fp::new(v), &mut r);
        for j in 0..3 {
            s[j].push(sh[j]);
        }
    }
    let out = combine_all([&s[0], &s[1], &s[2]]).unwrap();
    assert_eq!(out.iter().map(|v| v.value()).collect::<Vec<_>>(), secrets);
    let mut bad = s.clone();
    bad[2][3] += Fp::ONE;
    assert_eq!(
        combine_all([&bad[0], &bad[1], &bad[2]]),
        Err(Error::InconsistentShares)
    );
    assert_eq!(
        combine_all([&s[0], &s[1][..3], &s[2]]),
        Err(Error::InconsistentShares)
    );
}

#[test]
fn party_ring() {
    for p in Party::ALL {
        assert_eq!(p.next().prev(), p);
        assert_ne!(p.next(), p);
        assert_ne!(p.prev(), p);
    }
    assert!(Party::new(0).is_err() && Party::new(4).is_err());
}

#[test]
fn a_single_share_is_uniform_whatever_the_secret() {
    // 15 degrees of freedom: the 99.99% quantile is ~44; a share that depended on the secret (e.g.
    // f(1) = M + a with a 60-bit a) would be far off.
    for secret in [0u64, 65535] {
        let mut r = rng(secret ^ 0xfeed);
        for j in 0..3 {
            let shares: Vec<u64> = (0..4096)
                .map(|_| split(Fp::new(secret), &mut r)[j].value())
                .collect();
            let chi2 = common::chi2(shares.into_iter().map(Fp::new));
            assert!(chi2 < 44.0, "share {j} of secret {secret}: chi2 = {chi2}");
        }
    }
    // The statistic has power: shares from a slope of 60 bits (a broken Split) fail it.
    let mut r = rng(3);
    let broken = (0..4096).map(|_| {
        let a = rand_core::RngCore::next_u64(&mut r) >> 4;
        (Fp::new(5) + Fp::new(a)).value()
    });
    assert!(common::chi2(broken.map(Fp::new)) > 44.0);
}
