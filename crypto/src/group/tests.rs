//! Backend-agnostic checks of the group API: these run against arkworks and against blst.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

#[test]
fn hash_to_curve_matches_rfc9380_vector() {
    // RFC 9380, J.9.1 BLS12381G1_XMD:SHA-256_SSWU_RO_, msg = "".
    let p = G1::hash_to_curve(b"", b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_").unwrap();
    let mut x = p.to_bytes();
    x[0] &= 0x1f; // strip the compression/sign flags
    assert_eq!(
        hex::encode(x),
        "052926add2207b76ca4fa57a8734416c8dc95e24501772c814278700eed6d1e4e8cf62d9c09db0fac349612b759e79a1"
    );
}

#[test]
fn tables_and_blinding_agree_with_plain_multiplication() {
    let mut r = rng();
    for _ in 0..4 {
        let k = Scalar::random_nonzero(&mut r);
        let g1 = G1::generator().mul(&k);
        assert_eq!(g1_table().mul(&k), g1);
        assert_eq!(g1_table().mul_secret(&k, &mut r), g1);
        assert_eq!(G1::generator().mul_secret(&k, &mut r), g1);
        let g2 = G2::generator().mul(&k);
        assert_eq!(g2_table().mul(&k), g2);
        assert_eq!(g2_table().mul_secret(&k, &mut r), g2);
        let gt = Gt::generator().pow(&k);
        assert_eq!(gt_table().pow(&k), gt);
        assert_eq!(gt_table().pow_secret(&k, &mut r), gt);
        assert_eq!(Gt::generator().pow_secret(&k, &mut r), gt);
        let h = G1::hash_to_curve(b"sync", b"test-dst").unwrap();
        let t = G1Table::new(&h, 6);
        assert_eq!(t.mul(&k), h.mul(&k));
        assert_eq!(
            t.mul_u128(12345678901234567890123),
            h.mul_u128(12345678901234567890123)
        );
    }
}

#[test]
fn small_multiples_and_small_int_detection() {
    let p = G1::hash_to_curve(b"a", b"test-dst").unwrap();
    for k in [-8i64, -3, -2, -1, 1, 2, 3, 8, 63] {
        assert_eq!(p.mul_small(k), p.mul(&Scalar::from_i64(k)));
        assert_eq!(Scalar::from_i64(k).small_int(), Some(k));
    }
    let half = Scalar::from_u64(2).inverse().unwrap();
    assert_eq!(half.small_int(), None);
    assert_eq!(Scalar::from_u64(64).small_int(), None);
}

#[test]
fn pairing_is_bilinear_and_multi_pairing_multiplies() {
    let mut r = rng();
    let a = Scalar::random_nonzero(&mut r);
    let b = Scalar::random_nonzero(&mut r);
    let p = G1::generator().mul(&a);
    let q = G2::generator().mul(&b);
    let e = pairing(&p, &q);
    assert_eq!(e, Gt::generator().pow(&(&a * &b)));
    let q2 = G2::generator().mul(&a);
    let p2 = G1::generator().mul(&b);
    let m = multi_pairing(&[(p, &q.prepare()), (p2, &q2.prepare())]);
    assert_eq!(m, e * e);
    assert_eq!(
        multi_pairing(&[(p, &q.prepare()), (-p, &q.prepare())]),
        Gt::one()
    );
    assert_eq!(e.inverse() * e, Gt::one());
}

#[test]
fn msm_matches_sum_of_products() {
    let ps: Vec<G1> = (0..5u8)
        .map(|i| G1::hash_to_curve(&[i], b"test-dst").unwrap())
        .collect();
    let ks: Vec<u128> = (0..5u128)
        .map(|i| (i + 1) * 0x1234_5678_9abc_def0_1122_3344_5566_7788)
        .collect();
    let mut expect = ps[0].mul_u128(ks[0]);
    for i in 1..5 {
        expect += ps[i].mul_u128(ks[i]);
    }
    assert_eq!(G1::msm_u128(&ps, &ks), expect);
}

#[test]
fn encodings_round_trip_and_reject_bad_input() {
    let mut r = rng();
    let k = Scalar::random_nonzero(&mut r);
    let p = G1::generator().mul(&k);
    assert_eq!(G1::from_bytes(&p.to_bytes(), "p").unwrap(), p);
    let q = G2::generator().mul(&k);
    assert_eq!(G2::from_bytes(&q.to_bytes(), "q").unwrap(), q);
    let g = Gt::generator().pow(&k);
    assert_eq!(Gt::from_bytes_validated(&g.to_bytes(), "g").unwrap(), g);
    assert_eq!(Scalar::from_bytes(&k.to_bytes(), "k").unwrap(), k);

    // Identity encodings (compressed infinity: 0xc0 then zeros).
    let mut inf1 = [0u8; G1_BYTES];
    inf1[0] = 0xc0;
    assert!(G1::from_bytes(&inf1, "p").is_err());
    let mut inf2 = [0u8; G2_BYTES];
    inf2[0] = 0xc0;
    assert!(G2::from_bytes(&inf2, "q").is_err());
    assert!(Gt::from_bytes_validated(&Gt::one().to_bytes(), "g").is_err());
    // Wrong lengths, non-canonical scalar (r itself), off-subgroup GT.
    assert!(G1::from_bytes(&p.to_bytes()[..47], "p").is_err());
    let mut r_bytes = [0u8; 32];
    for (i, l) in R_LIMBS.iter().enumerate() {
        r_bytes[8 * i..8 * i + 8].copy_from_slice(&l.to_le_bytes());
    }
    assert!(Scalar::from_bytes(&r_bytes, "k").is_err());
    let mut not_gt = Gt::one().to_bytes();
    not_gt[0] = 2; // the field element 2 in Fq12: not of order r
    assert!(Gt::from_bytes_validated(&not_gt, "g").is_err());
    assert!(Gt::from_bytes_unchecked_subgroup(&not_gt, "g").is_ok());
    // x = p (non-canonical coordinate) is rejected.
    let mut bad = [0xffu8; G1_BYTES];
    bad[0] = 0x9f;
    assert!(G1::from_bytes(&bad, "p").is_err());
}

#[test]
fn blinding_limbs_add_a_multiple_of_r() {
    // k + m·r with k = 1, m = 1 is r + 1.
    let l = blind_limbs(&[1, 0, 0, 0], 1);
    assert_eq!(l[0], R_LIMBS[0] + 1);
    assert_eq!(&l[1..4], &R_LIMBS[1..4]);
    assert_eq!(l[4], 0);
}
