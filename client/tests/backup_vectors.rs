//! The fixed backup vectors of `crypto/tests/vectors/backup/` (a password file and three 2-of-3
//! share files of one owner whose keys are fixed bytes, made by the client before the format moved
//! into `armored_crypto::backup`) restore, through the client's files, exactly the owner they were
//! made from. `crypto/tests/backup.rs` checks them at the format level and regenerates them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};

use armored_client::owner::backup;
use armored_crypto::keyfile::{load_pre_key, load_signing_key};
use rand_core::{OsRng, RngCore};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crypto/tests/vectors/backup"
);
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
    assert_eq!(
        std::fs::read(dir.join("grants.json")).expect("ledger"),
        LEDGER
    );
    assert_eq!(
        std::fs::read(dir.join(format!("trusted/{}.identity", PARTY.0))).expect("party"),
        PARTY.1
    );
}

#[test]
fn committed_backup_vectors_restore_the_owner() {
    let d = scratch();
    let b = backup::open_password(&Path::new(DIR).join("owner.backup"), PASSWORD)
        .expect("password vector");
    assert_eq!(b.owner_id(), "alice");
    backup::restore(&b, &d.join("from-password")).expect("restore");
    check_restored(&d.join("from-password"));

    let s = shares();
    for (i, pair) in [[0, 1], [1, 2], [0, 2]].iter().enumerate() {
        let chosen: Vec<PathBuf> = pair.iter().map(|&j| s[j].clone()).collect();
        let out = d.join(format!("from-shares-{i}"));
        let b = backup::open_shares(&chosen).expect("share vectors");
        backup::restore(&b, &out).expect("restore");
        check_restored(&out);
    }
    let _ = std::fs::remove_dir_all(d);
}
