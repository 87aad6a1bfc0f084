//! Known answers computed with the arkworks backend (same API, same inputs): both backends must
//! agree byte for byte, including what a seeded RNG yields after secret multiplications.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

const DST: &[u8] = b"ARMOREDTWINS-V1-ATTR-BLS12381G1_XMD:SHA-256_SSWU_RO_";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn pairing_generator_matches_arkworks() -> Result<()> {
    let e = Gt::generator().to_bytes();
    assert_eq!(
        hex::encode(&e[..32]),
        "b68917caaa0543a808c53908f694d1b6e7b38de90ce9d83d505ca1ef1b442d27"
    );
    assert_eq!(
        sha(&e),
        "ff9912603bb02b77bc6ec1deaeddf9d1fee40ac17a781fb13c9c6e7a9f74d22b"
    );
    assert_eq!(pairing(&G1::generator(), &G2::generator()), Gt::generator());
    // The arkworks bytes decode, validated, to the same element.
    assert_eq!(Gt::from_bytes_validated(&e, "e")?, Gt::generator());
    Ok(())
}

#[test]
fn scalars_points_and_rng_stream_match_arkworks() -> Result<()> {
    let mut r = ChaCha20Rng::seed_from_u64(2024);
    let k = Scalar::random_nonzero(&mut r);
    assert_eq!(
        hex::encode(k.to_bytes()),
        "281b00d4a93bb7c864b0472edeb20f63f389378bb50affaec79e3357dfc1ec3c"
    );
    let g1k = "a1db3331af4863b8792c56f3cf0e295c85a630813a122712f6ec30c820c3b039315db18a5b22e72b09d832aa193ee1ed";
    assert_eq!(hex::encode(G1::generator().mul(&k).to_bytes()), g1k);
    assert_eq!(
        hex::encode(G2::generator().mul(&k).to_bytes()),
        "b5971b817277855cbc787bb071a7c7027ab5349cddc06235cfa4f8c05277404313feed5ba592731744229f26b212e98c035ac2047d768686c9dd1db8b0f05af63a1e38a55d53085f87ae9fe5540a31aaa3cb5bcefed3d23fd7f5d22211253976"
    );
    // Secret multiplications draw one blinding factor each, as under arkworks.
    let s = G1::generator().mul_secret(&k, &mut r);
    assert_eq!(hex::encode(s.to_bytes()), g1k);
    let t = gt_table().pow_secret(&k, &mut r);
    assert_eq!(
        sha(&t.to_bytes()),
        "67771f0d65b50977ba49579ce43ccf826a661d7afa2ef5c1f5208309ffba6acf"
    );
    assert_eq!(
        sha(&t.inverse().to_bytes()),
        "e53a2e0a53be2c0bcf9f52ce9de7ea35be13afd6058aff28d5be0a882cef0008"
    );
    let k2 = Scalar::random_nonzero(&mut r);
    assert_eq!(
        hex::encode(k2.to_bytes()),
        "3d92574119be4cb68796ee4d28fcd0150b82a15532816cc19f87945ca076772a"
    );
    let h = G1::hash_to_curve(b"sync", DST)?;
    assert_eq!(
        hex::encode(h.to_bytes()),
        "8c6a626429e85f314b0c22c4713ed1ba124ebfb70e8ac08dd3eb7dd06561e69f95c6c025bf3638a253d039a462734d8d"
    );
    let m = multi_pairing(&[
        (h, &G2::generator().mul(&k2).prepare()),
        (G1::generator().mul(&k), &G2::generator().prepare()),
    ]);
    assert_eq!(
        sha(&m.to_bytes()),
        "37421706a490bcbf1263573e04d01fb05ccae0d52f69a9867fa1f693087a32dd"
    );
    assert_eq!(
        hex::encode(G1::msm_u128(&[h, s], &[12345678901234567890u128 << 40, 77]).to_bytes()),
        "95c685bc316623560690eac7c725bbd176d6460cbfd9f82d24b736fbfae783c460ea609559d12381661977d317c5925e"
    );
    assert_eq!(
        hex::encode(Scalar::from_wide(&[0xff; 64]).to_bytes()),
        "6c9cf2f390e999c9235c9287cbed6c2b8f3954729614d30511ff599fd9d94807"
    );
    Ok(())
}

#[test]
fn gt_helpers() -> Result<()> {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let k = Scalar::random_nonzero(&mut r);
    let g = Gt::generator().pow(&k);
    assert_eq!(Gt::generator().pow(&-&k), g.inverse());
    assert_eq!(g.pow(&Scalar::zero()), Gt::one());
    assert_eq!(g.pow(&Scalar::one()), g);
    assert_eq!(Gt::from_bytes_unchecked_subgroup(&g.to_bytes(), "g")?, g);
    // Membership (blst's test) agrees with x^r = 1 on elements outside the subgroup.
    let mut b = [0u8; GT_BYTES];
    for (i, c) in b.chunks_exact_mut(48).enumerate() {
        c[..32].copy_from_slice(&Sha256::digest([i as u8]));
    }
    let x = Gt::from_bytes_unchecked_subgroup(&b, "x")?;
    assert_eq!(x.to_bytes(), b);
    assert!(!(x.pow(&-&Scalar::one()) * x).is_one());
    assert!(matches!(
        Gt::from_bytes_validated(&b, "x"),
        Err(Error::InvalidPoint {
            reason: "not in the order-r subgroup",
            ..
        })
    ));
    // A coefficient equal to p is not canonical.
    let mut bad = Gt::one().to_bytes();
    for (i, l) in P_LIMBS.iter().enumerate() {
        bad[48 * 5 + 8 * i..48 * 5 + 8 * i + 8].copy_from_slice(&l.to_le_bytes());
    }
    assert!(matches!(
        Gt::from_bytes_unchecked_subgroup(&bad, "x"),
        Err(Error::InvalidPoint {
            reason: "non-canonical field element",
            ..
        })
    ));
    assert!(matches!(
        Gt::from_bytes_validated(&Gt::one().to_bytes(), "x"),
        Err(Error::InvalidPoint {
            reason: "identity",
            ..
        })
    ));
    let mut inf = [0u8; G1_BYTES];
    inf[0] = 0xc0;
    assert!(matches!(
        G1::from_bytes(&inf, "p"),
        Err(Error::InvalidPoint {
            reason: "identity",
            ..
        })
    ));
    inf[0] = 0xe0;
    assert!(matches!(
        G1::from_bytes(&inf, "p"),
        Err(Error::InvalidPoint {
            reason: "not a valid compressed point in the subgroup",
            ..
        })
    ));
    assert_eq!(
        G1::generator().mul_small(0),
        G1::generator().mul(&Scalar::zero())
    );
    assert_eq!(
        G2::generator().mul_u128(u128::MAX),
        G2::generator().mul(&(&Scalar::from_u64(u64::MAX) * &fr_scalar_two64()))
            + G2::generator().mul(&Scalar::from_u64(u64::MAX))
    );
    Ok(())
}

fn fr_scalar_two64() -> Scalar {
    Scalar(two_pow_64())
}
