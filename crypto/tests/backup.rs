//! Owner key backups (`armored_crypto::backup`): fixed vectors in `tests/vectors/backup/` (made by
//! the code before it moved here from the client: an existing backup must keep restoring), round
//! trips, and tampering: a flipped bit in any field of a password file or a share file is a typed
//! error, never a wrong key. Regenerate the vectors only deliberately (old backups stop opening
//! if the format changed) with `AT_WRITE_VECTORS=1 cargo test -p armored-crypto --test backup`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;

use armored_crypto::backup::{password, shares, BackupError, Bundle};
use armored_crypto::identity::create_owner_identity;
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::sig::SigningKey;
use sha2::{Digest, Sha256};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/backup");
const PASSWORD: &[u8] = b"correct horse battery staple";
const PRE: [u8; 32] = [0x11; 32];
const SIG: [u8; 32] = [0x22; 32];
const LEDGER: &[u8] = b"[]";
const PARTY: (&str, &[u8]) = ("insurer", b"insurer identity bytes");

fn vector(name: &str) -> String {
    std::fs::read_to_string(Path::new(DIR).join(name)).expect("vector file")
}

fn share_vectors() -> Vec<String> {
    (1..=3)
        .map(|i| vector(&format!("owner-{i}-of-3.share")))
        .collect()
}

/// The vectors' owner: fixed keys, the committed identity (its signature is random).
fn vector_bundle() -> Bundle {
    let mut rng = common::rng(7);
    let pre = SecretKey::from_bytes(&PRE, &mut rng).expect("pre");
    let sig = SigningKey::from_bytes(&SIG).expect("sig");
    let identity = std::fs::read(Path::new(DIR).join("owner.identity")).expect("identity");
    Bundle::new(
        identity,
        &pre,
        &sig,
        LEDGER.to_vec(),
        vec![(PARTY.0.into(), PARTY.1.to_vec())],
    )
    .expect("bundle")
}

/// Rewrites the vectors (with a fresh identity: its signature is random).
fn write_vectors() {
    let mut rng = common::rng(0x4241_4b31); // "BAK1"
    let pre = SecretKey::from_bytes(&PRE, &mut rng).expect("pre");
    let sig = SigningKey::from_bytes(&SIG).expect("sig");
    let identity = create_owner_identity("alice", &pre, &sig, 0, &sig, &mut rng);
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).expect("vector dir");
    std::fs::write(Path::new(DIR).join("owner.identity"), &identity).expect("identity");
    let b = Bundle::new(
        identity,
        &pre,
        &sig,
        LEDGER.to_vec(),
        vec![(PARTY.0.into(), PARTY.1.to_vec())],
    )
    .expect("bundle");
    let text = password::seal(&b, PASSWORD, &mut rng).expect("seal");
    std::fs::write(Path::new(DIR).join("owner.backup"), text).expect("write");
    for s in shares::split(&b, 2, 3, &mut rng).expect("split") {
        let name = format!("owner-{}-of-3.share", s.index);
        std::fs::write(Path::new(DIR).join(name), s.text).expect("write");
    }
}

/// What the vectors hold.
fn check_vector_owner(b: &Bundle) {
    let (pre, sig) = b
        .keys(&mut common::rng(1))
        .expect("keys match the identity");
    assert_eq!(b.owner_id(), "alice");
    assert_eq!(*pre.to_bytes(), PRE);
    assert_eq!(*sig.to_bytes(), SIG);
    assert_eq!(
        b.identity(),
        std::fs::read(Path::new(DIR).join("owner.identity")).expect("identity")
    );
    assert_eq!(b.ledger(), LEDGER);
    assert_eq!(b.trusted(), [(PARTY.0.to_string(), PARTY.1.to_vec())]);
}

#[test]
fn committed_vectors_open_to_the_same_owner() {
    if std::env::var_os("AT_WRITE_VECTORS").is_some() {
        write_vectors();
    }
    let b = password::open("owner.backup", &vector("owner.backup"), PASSWORD).expect("password");
    check_vector_owner(&b);
    let s = share_vectors();
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let files = pair.map(|i| ("share", s[i].as_str()));
        check_vector_owner(&shares::combine(files).expect("two shares"));
    }
    check_vector_owner(&shares::combine(s.iter().map(|t| ("share", t.as_str()))).expect("all"));
}

#[test]
fn password_round_trip_wrong_password_and_edited_header() {
    let mut rng = common::rng(2);
    let text = password::seal(&vector_bundle(), b"eight ch", &mut rng).expect("seal");
    assert!(text.starts_with(password::TITLE) && text.contains("owner: alice"));
    check_vector_owner(&password::open("f", &text, b"eight ch").expect("open"));

    let err = password::open("f", &text, b"eight cH").expect_err("wrong password");
    assert!(matches!(err, BackupError::WrongPassword), "{err}");
    // An edited header (here the owner id) fails like a wrong password: it is associated data.
    let forged = text.replace("owner: alice", "owner: mallory");
    let err = password::open("f", &forged, b"eight ch").expect_err("forged");
    assert!(matches!(err, BackupError::WrongPassword), "{err}");

    let err = password::seal(&vector_bundle(), b"seven c", &mut rng).expect_err("short");
    assert!(matches!(err, BackupError::WeakPassword), "{err}");
}

#[test]
fn shares_k_of_n_round_trip_and_refusals() {
    let mut rng = common::rng(3);
    let b = vector_bundle();
    let five = shares::split(&b, 3, 5, &mut rng).expect("3-of-5");
    assert_eq!(
        five.iter().map(|s| s.index).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let text = |i: usize| ("share", five[i].text.as_str());
    check_vector_owner(&shares::combine([text(4), text(0), text(2)]).expect("three"));
    let err = shares::combine([text(4), text(0)]).expect_err("two of three");
    assert!(
        matches!(err, BackupError::TooFewShares { have: 2, need: 3 }),
        "{err}"
    );
    // The same share twice is still one share.
    let err = shares::combine([text(1), text(1), text(2)]).expect_err("dup");
    assert!(
        matches!(err, BackupError::TooFewShares { have: 2, need: 3 }),
        "{err}"
    );
    let err = shares::combine([]).expect_err("none");
    assert!(matches!(err, BackupError::TooFewShares { .. }), "{err}");

    let other = shares::split(&b, 3, 5, &mut rng).expect("another set");
    let err =
        shares::combine([text(0), text(1), ("other", other[2].text.as_str())]).expect_err("mixed");
    assert!(matches!(err, BackupError::MixedShares(_)), "{err}");

    for (k, n) in [(1, 3), (0, 0), (4, 3)] {
        let err = shares::split(&b, k, n, &mut rng).expect_err("bad k-of-n");
        assert!(matches!(err, BackupError::BadThreshold { .. }), "{err}");
    }
    // A password file is not a share, and the other way round.
    let err = shares::combine([("f", vector("owner.backup").as_str())]).expect_err("not a share");
    assert!(matches!(err, BackupError::Format { .. }), "{err}");
    let err = password::open("f", &five[0].text, PASSWORD).expect_err("share as file");
    assert!(matches!(err, BackupError::Format { .. }), "{err}");
}

/// `text` with the low bit of byte `at` of line `line`'s value flipped (for hex fields, in the
/// decoded bytes, so that the value stays hex).
fn flip_value(text: &str, field: &str, at: usize, hex_field: bool) -> String {
    let prefix = format!("{field}: ");
    text.lines()
        .map(|l| match l.strip_prefix(&prefix) {
            Some(v) if hex_field => {
                let mut b = hex::decode(v).expect("hex");
                let i = at % b.len();
                b[i] ^= 0x01;
                format!("{prefix}{}\n", hex::encode(b))
            }
            Some(v) => {
                let mut b = v.as_bytes().to_vec();
                let i = at % b.len();
                b[i] ^= 0x01;
                format!("{prefix}{}\n", String::from_utf8_lossy(&b))
            }
            None => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn a_flipped_bit_in_a_password_file_is_a_typed_error() {
    let text = vector("owner.backup");
    // Each field: decimal and text fields flip their last character's low bit (m_kib 65536 ->
    // 65537: a valid but different cost); hex fields a byte at the start, middle and end (the
    // sealed bytes are nonce || ciphertext || tag).
    let mut cases = vec![text.replacen("ArmoredTwins", "ArmoredTwinS", 1)];
    for f in ["version", "owner", "kdf", "m_kib", "t", "p"] {
        cases.push(flip_value(&text, f, usize::MAX - 1, false));
    }
    for f in ["salt", "sealed"] {
        for at in [0, 20, usize::MAX] {
            cases.push(flip_value(&text, f, at, true));
        }
    }
    for (i, case) in cases.iter().enumerate() {
        assert_ne!(*case, text, "case {i} changes the file");
        match password::open("f", case, PASSWORD) {
            Ok(_) => panic!("case {i}: a tampered file opened"),
            Err(
                BackupError::WrongPassword
                | BackupError::Format { .. }
                | BackupError::Inconsistent(_),
            ) => {}
            Err(e) => panic!("case {i}: unexpected error {e}"),
        }
    }
}

/// A share file's checksum, recomputed as the format defines it (first 8 bytes of SHA-256 of the
/// title line and the fields before `checksum`), to forge changes consistent with it.
fn with_checksum(text: &str) -> String {
    let fields: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("checksum: "))
        .collect();
    let rendered: String = fields.iter().map(|l| format!("{l}\n")).collect();
    let sum = hex::encode(&Sha256::digest(rendered.as_bytes())[..8]);
    format!("{rendered}checksum: {sum}\n")
}

#[test]
fn a_flipped_bit_in_a_share_file_is_a_typed_error() {
    let s = share_vectors();
    let uncommented: String = s[1]
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        with_checksum(&s[1]),
        uncommented,
        "checksums as the format defines them"
    );
    // Any field of one share, as stored: the checksum catches it (or the field no longer parses).
    for f in [
        "version",
        "owner",
        "threshold",
        "shares",
        "index",
        "checksum",
    ] {
        let bad = flip_value(&s[1], f, usize::MAX - 1, false);
        let err = shares::combine([("a", s[0].as_str()), ("b", bad.as_str())]).expect_err(f);
        assert!(
            matches!(
                err,
                BackupError::ShareCorrupted { .. } | BackupError::Format { .. }
            ),
            "{f}: {err}"
        );
    }
    for f in ["set", "share", "sealed"] {
        for at in [0, 17, usize::MAX] {
            let bad = flip_value(&s[1], f, at, true);
            let err = shares::combine([("a", s[0].as_str()), ("b", bad.as_str())]).expect_err(f);
            assert!(
                matches!(
                    err,
                    BackupError::ShareCorrupted { .. } | BackupError::Format { .. }
                ),
                "{f}: {err}"
            );
        }
    }
    // Changes consistent with the checksum: never a wrong key. The share value (not its index
    // byte) of one share, or the sealed bundle, set or owner of both, give a key that does not
    // open the bundle; a sealed bundle changed in one share only is another backup's share.
    let forged = |t: &str, f: &str, at: usize, hex_field: bool| {
        with_checksum(&flip_value(t, f, at, hex_field))
    };
    let cases: Vec<([String; 2], &str)> = vec![
        ([s[0].clone(), forged(&s[1], "share", 5, true)], "share"),
        (
            [s[0].clone(), forged(&s[1], "share", usize::MAX, true)],
            "share end",
        ),
        (
            [
                forged(&s[0], "sealed", 40, true),
                forged(&s[1], "sealed", 40, true),
            ],
            "sealed",
        ),
        (
            [forged(&s[0], "set", 0, true), forged(&s[1], "set", 0, true)],
            "set",
        ),
        (
            [
                forged(&s[0], "owner", 0, false),
                forged(&s[1], "owner", 0, false),
            ],
            "owner",
        ),
        (
            [s[0].clone(), forged(&s[1], "sealed", 40, true)],
            "one sealed",
        ),
        (
            [s[0].clone(), forged(&s[1], "threshold", 0, false)],
            "one threshold",
        ),
    ];
    for ([a, b], what) in &cases {
        match shares::combine([("a", a.as_str()), ("b", b.as_str())]) {
            Ok(_) => panic!("{what}: tampered shares opened"),
            Err(
                BackupError::BadCombination
                | BackupError::MixedShares(_)
                | BackupError::TooFewShares { .. }
                | BackupError::BadThreshold { .. }
                | BackupError::Format { .. },
            ) => {}
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    }
}
