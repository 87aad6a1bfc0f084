//! Owner key backup and restore without brokers: password file and k-of-n shares round trip to an
//! owner that opens with the same keys; a wrong password, too few shares, a corrupted share and
//! shares of two backups fail with their typed errors; files are 0600.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use armored_client::owner::backup::{self, BackupError};
use armored_client::owner::Owner;
use armored_client::ClientError;
use armored_crypto::identity::create_owner_identity;
use armored_crypto::keyfile::{save_pre_key, save_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::sig::SigningKey;
use rand_core::{OsRng, RngCore};

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("at-backup-{:08x}", OsRng.next_u32()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// An owner directory as `atctl owner init` makes it, without publishing anything.
fn owner_dir(dir: &Path, id: &str) {
    std::fs::create_dir_all(dir).expect("dir");
    let pre = SecretKey::generate(&mut OsRng);
    let sig = SigningKey::generate(&mut OsRng);
    save_pre_key(&dir.join("pre.key"), &pre, "test PRE").expect("pre");
    save_signing_key(&dir.join("sig.key"), &sig, "test sig").expect("sig");
    let identity = create_owner_identity(id, &pre, &sig, 0, &sig, &mut OsRng);
    std::fs::write(dir.join("owner.identity"), identity).expect("identity");
    std::fs::write(dir.join("grants.json"), b"[]").expect("ledger");
    std::fs::create_dir_all(dir.join("trusted")).expect("trusted");
    std::fs::write(dir.join("trusted/insurer.identity"), b"public bytes").expect("party");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn same_owner(a: &Path, b: &Path) {
    let (x, y) = (
        Owner::open(a).expect("open a"),
        Owner::open(b).expect("open b"),
    );
    assert_eq!(x.owner_id, y.owner_id);
    assert_eq!(x.verifying_key().key_id(), y.verifying_key().key_id());
    assert_eq!(x.pre_key().public().key_id(), y.pre_key().public().key_id());
    assert_eq!(
        std::fs::read(a.join("trusted/insurer.identity")).expect("party a"),
        std::fs::read(b.join("trusted/insurer.identity")).expect("party b")
    );
    for f in ["pre.key", "sig.key"] {
        assert_eq!(mode(&b.join(f)), 0o600, "{f} of the restored owner");
    }
}

#[test]
fn password_file_round_trip_and_wrong_password() {
    let d = scratch();
    owner_dir(&d.join("owner"), "alice");
    let file = d.join("alice.backup");
    backup::backup_password(&d.join("owner"), &file, b"correct horse battery").expect("backup");
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("owner: alice") && text.contains("kdf: argon2id"));

    let err = backup::open_password(&file, b"wrong horse battery").expect_err("wrong password");
    assert!(
        matches!(err, ClientError::Backup(BackupError::WrongPassword)),
        "{err}"
    );

    // An edited header (here the owner id) fails like a wrong password: it is associated data.
    let forged = d.join("forged.backup");
    std::fs::write(&forged, text.replace("owner: alice", "owner: mallory")).expect("write");
    let err = backup::open_password(&forged, b"correct horse battery").expect_err("forged");
    assert!(
        matches!(err, ClientError::Backup(BackupError::WrongPassword)),
        "{err}"
    );

    let bundle = backup::open_password(&file, b"correct horse battery").expect("open");
    backup::restore(&bundle, &d.join("restored")).expect("restore");
    same_owner(&d.join("owner"), &d.join("restored"));
    // Restoring over an owner is refused.
    let err = backup::restore(&bundle, &d.join("owner")).expect_err("exists");
    assert!(matches!(err, ClientError::Occupied { .. }), "{err}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn shares_two_of_three_any_pair_restores_one_does_not() {
    let d = scratch();
    owner_dir(&d.join("owner"), "bob");
    let paths = backup::backup_shares(&d.join("owner"), &d.join("bob"), 2, 3).expect("shares");
    assert_eq!(paths.len(), 3);
    for p in &paths {
        assert_eq!(mode(p), 0o600);
        let t = std::fs::read_to_string(p).expect("read");
        assert!(t.contains("threshold: 2") && t.contains("shares: 3") && t.contains("checksum: "));
    }
    for (i, pair) in [[0, 1], [1, 2], [0, 2]].iter().enumerate() {
        let chosen: Vec<PathBuf> = pair.iter().map(|&j| paths[j].clone()).collect();
        let b = backup::open_shares(&chosen).expect("two shares");
        let out = d.join(format!("restored-{i}"));
        backup::restore(&b, &out).expect("restore");
        same_owner(&d.join("owner"), &out);
    }

    let err = backup::open_shares(&paths[..1]).expect_err("one share");
    assert!(
        matches!(
            err,
            ClientError::Backup(BackupError::TooFewShares { have: 1, need: 2 })
        ),
        "{err}"
    );
    // The same share twice is still one share.
    let err = backup::open_shares(&[paths[0].clone(), paths[0].clone()]).expect_err("dup");
    assert!(
        matches!(
            err,
            ClientError::Backup(BackupError::TooFewShares { have: 1, need: 2 })
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn corrupted_and_mixed_shares_are_refused() {
    let d = scratch();
    owner_dir(&d.join("owner"), "carol");
    let a = backup::backup_shares(&d.join("owner"), &d.join("a"), 2, 3).expect("a");
    let b = backup::backup_shares(&d.join("owner"), &d.join("b"), 2, 3).expect("b");

    // One flipped hex digit in the share value: the checksum catches it.
    let text = std::fs::read_to_string(&a[1]).expect("read");
    let line = text
        .lines()
        .find(|l| l.starts_with("share: "))
        .expect("share line");
    let mut flipped = line.to_string();
    let last = flipped.pop().expect("digit");
    flipped.push(if last == '0' { '1' } else { '0' });
    let bad = d.join("bad.share");
    std::fs::write(&bad, text.replace(line, &flipped)).expect("write");
    let err = backup::open_shares(&[a[0].clone(), bad]).expect_err("corrupted");
    assert!(
        matches!(err, ClientError::Backup(BackupError::ShareCorrupted { .. })),
        "{err}"
    );

    let err = backup::open_shares(&[a[0].clone(), b[1].clone()]).expect_err("mixed");
    assert!(
        matches!(err, ClientError::Backup(BackupError::MixedShares(_))),
        "{err}"
    );

    // A password file is not a share, and the other way round.
    let err = backup::open_shares(&[d.join("owner/grants.json")]).expect_err("not a share");
    assert!(
        matches!(err, ClientError::Backup(BackupError::Format { .. })),
        "{err}"
    );
    let err = backup::open_password(&a[0], b"whatever1").expect_err("share as file");
    assert!(
        matches!(err, ClientError::Backup(BackupError::Format { .. })),
        "{err}"
    );

    let err = backup::backup_shares(&d.join("owner"), &d.join("c"), 1, 3).expect_err("k=1");
    assert!(
        matches!(err, ClientError::Backup(BackupError::BadThreshold { .. })),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}
