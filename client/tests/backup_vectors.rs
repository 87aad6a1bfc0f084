//! Fixed backup vectors in `crypto/tests/vectors/backup/`: a password file and three 2-of-3 share
//! files of one owner whose keys are fixed bytes. They open with today's code and restore exactly
//! the owner they were made from, so a change of the on-disk format shows here. Regenerate only
//! deliberately (an existing backup must keep restoring) with
//! `AT_WRITE_VECTORS=1 cargo test -p armored-client --test backup_vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};

use armored_client::owner::backup;
use armored_crypto::identity::create_owner_identity;
use armored_crypto::keyfile::{load_pre_key, load_signing_key, save_pre_key, save_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::sig::SigningKey;
use rand_core::{OsRng, RngCore};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crypto/tests/vectors/backup");
const PASSWORD: &[u8] = b"correct horse battery staple";
const PRE: [u8; 32] = [0x11; 32];
const SIG: [u8; 32] = [0x22; 32];
const LEDGER: &[u8] = b"[]";
const PARTY: (&str, &[u8]) = ("insurer", b"insurer identity bytes");

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("at-backup-vec-{:08x}", OsRng.next_u32()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Writes the vectors from an owner directory with fixed keys (the identity's signature is random
/// and recorded in `owner.identity`).
fn write_vectors() {
    let d = scratch();
    let owner = d.join("owner");
    std::fs::create_dir_all(owner.join("trusted")).expect("dir");
    let pre = SecretKey::from_bytes(&PRE, &mut OsRng).expect("pre");
    let sig = SigningKey::from_bytes(&SIG).expect("sig");
    save_pre_key(&owner.join("pre.key"), &pre, "vector PRE").expect("pre");
    save_signing_key(&owner.join("sig.key"), &sig, "vector sig").expect("sig");
    let identity = create_owner_identity("alice", &pre, &sig, 0, &sig, &mut OsRng);
    std::fs::write(owner.join("owner.identity"), &identity).expect("identity");
    std::fs::write(owner.join("grants.json"), LEDGER).expect("ledger");
    std::fs::write(
        owner.join(format!("trusted/{}.identity", PARTY.0)),
        PARTY.1,
    )
    .expect("party");

    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).expect("vector dir");
    let out = Path::new(DIR);
    backup::backup_password(&owner, &out.join("owner.backup"), PASSWORD).expect("password");
    backup::backup_shares(&owner, &out.join("owner"), 2, 3).expect("shares");
    std::fs::write(out.join("owner.identity"), &identity).expect("identity vector");
    let _ = std::fs::remove_dir_all(d);
}

fn shares() -> Vec<PathBuf> {
    (1..=3)
        .map(|i| Path::new(DIR).join(format!("owner-{i}-of-3.share")))
        .collect()
}

/// What a restore of the vectors must recreate.
fn check_restored(dir: &Path) {
    let pre = load_pre_key(&dir.join("pre.key"), &mut OsRng).expect("pre key");
    let sig = load_signing_key(&dir.join("sig.key")).expect("sig key");
    assert_eq!(*pre.to_bytes(), PRE);
    assert_eq!(*sig.to_bytes(), SIG);
    assert_eq!(
        std::fs::read(dir.join("owner.identity")).expect("identity"),
        std::fs::read(Path::new(DIR).join("owner.identity")).expect("identity vector")
    );
    assert_eq!(std::fs::read(dir.join("grants.json")).expect("ledger"), LEDGER);
    assert_eq!(
        std::fs::read(dir.join(format!("trusted/{}.identity", PARTY.0))).expect("party"),
        PARTY.1
    );
}

#[test]
fn committed_backup_vectors_restore_the_owner() {
    if std::env::var_os("AT_WRITE_VECTORS").is_some() {
        write_vectors();
    }
    let d = scratch();
    let b = backup::open_password(&Path::new(DIR).join("owner.backup"), PASSWORD)
        .expect("password vector");
    assert_eq!(b.owner_id(), "alice");
    b.restore_to(&d.join("from-password")).expect("restore");
    check_restored(&d.join("from-password"));

    let s = shares();
    for (i, pair) in [[0, 1], [1, 2], [0, 2]].iter().enumerate() {
        let chosen: Vec<PathBuf> = pair.iter().map(|&j| s[j].clone()).collect();
        let out = d.join(format!("from-shares-{i}"));
        backup::open_shares(&chosen)
            .expect("share vectors")
            .restore_to(&out)
            .expect("restore");
        check_restored(&out);
    }
    let _ = std::fs::remove_dir_all(d);
}
