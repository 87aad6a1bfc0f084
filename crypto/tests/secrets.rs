//! Every secret type is `ZeroizeOnDrop` and its `Debug` prints nothing of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use armored_crypto::group::{Scalar, SecretScalar};
use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::kpcpre::{Dek, SecretKey, TCache};
use armored_crypto::sig::SigningKey;
use armored_crypto::sym::SymKey;
use zeroize::ZeroizeOnDrop;

fn zeroize_on_drop<T: ZeroizeOnDrop>() {}

#[test]
fn secret_types_zeroize_on_drop() {
    zeroize_on_drop::<SecretKey>();
    zeroize_on_drop::<SecretScalar>();
    zeroize_on_drop::<Dek>();
    zeroize_on_drop::<SymKey>();
    zeroize_on_drop::<TCache>();
    zeroize_on_drop::<SigningKey>();
    zeroize_on_drop::<HpkeSecretKey>();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `Debug` output contains none of the secret's bytes in any common rendering.
fn assert_redacted(debug: &str, secret: &[u8]) {
    let dec: Vec<String> = secret.iter().map(|b| b.to_string()).collect();
    assert!(!debug.contains(&hex(secret)), "hex of a secret in {debug}");
    assert!(
        !debug.contains(&hex(&secret[..8])),
        "hex prefix of a secret in {debug}"
    );
    assert!(
        !debug.contains(&dec[..6].join(", ")),
        "byte list of a secret in {debug}"
    );
}

#[test]
fn debug_never_prints_secrets() {
    let mut rng = common::rng(41);
    let sk = SecretKey::generate(&mut rng);
    assert_redacted(&format!("{sk:?}"), &sk.to_bytes()[..]);
    let dek = Dek::generate(&mut rng);
    assert_redacted(&format!("{dek:?}"), dek.as_bytes());
    let sig = SigningKey::generate(&mut rng);
    assert_redacted(&format!("{sig:?}"), &sig.to_bytes()[..]);
    let hp = HpkeSecretKey::generate(&mut rng);
    assert_redacted(&format!("{hp:?}"), &hp.to_bytes());
    let s = Scalar::random_nonzero(&mut rng);
    let bytes = s.to_bytes();
    assert_redacted(&format!("{s:?}"), &bytes);
    assert_redacted(&format!("{:?}", SecretScalar::new(s)), &bytes);
    let k = SymKey::new([0x5a; 32]);
    assert_redacted(&format!("{k:?}"), &[0x5a; 32]);
    assert!(format!("{:?}", TCache::new(1)).contains("redacted"));
}
