//! Owner key recovery (paper 5.4), the owner's side: `atctl owner backup` reads the owner
//! directory into a [`Bundle`] and writes it sealed with a password, or as k-of-n share files for
//! trustees; `atctl owner restore` opens them and recreates the owner directory (key files 0600),
//! after checking that the keys match the signed identity. The format itself (Argon2id +
//! AES-256-GCM, Shamir over GF(2^8), the text files) is `armored_crypto::backup`.

use std::path::{Path, PathBuf};

use armored_crypto::backup::{password, shares};
pub use armored_crypto::backup::{BackupError, Bundle};
use armored_crypto::keyfile::{load_pre_key, load_signing_key, save_pre_key, save_signing_key};
use rand_core::OsRng;

use crate::error::{io, ClientError, Result};
use crate::files;

/// Reads an owner directory: its identity, keys, ledger of grants and pinned parties.
pub fn read_owner(dir: &Path) -> Result<Bundle> {
    let identity = files::read(&dir.join("owner.identity"))?;
    let pre = load_pre_key(&dir.join("pre.key"), &mut OsRng)?;
    let sig = load_signing_key(&dir.join("sig.key"))?;
    let ledger_path = dir.join("grants.json");
    let ledger = if ledger_path.exists() {
        files::read(&ledger_path)?
    } else {
        Vec::new()
    };
    let mut trusted = Vec::new();
    let tdir = dir.join("trusted");
    if tdir.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&tdir)
            .map_err(io("reading", &tdir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".identity"))
            else {
                continue;
            };
            trusted.push((name.to_string(), files::read(&p)?));
        }
    }
    Ok(Bundle::new(identity, &pre, &sig, ledger, trusted)?)
}

/// Writes the bundle as an owner directory (key files 0600), after checking that its keys are the
/// ones its signed identity names. Refuses a directory that holds an owner.
pub fn restore(bundle: &Bundle, dir: &Path) -> Result<()> {
    if dir.join("owner.identity").exists() {
        return Err(ClientError::Occupied {
            dir: dir.display().to_string(),
            what: "an owner identity; restore into an empty directory",
        });
    }
    let (pre, sig) = bundle.keys(&mut OsRng)?;
    files::create_dir_all(dir)?;
    let label = |what: &str| format!("owner {} {what} (restored)", bundle.owner_id());
    save_pre_key(&dir.join("pre.key"), &pre, &label("PRE"))?;
    save_signing_key(&dir.join("sig.key"), &sig, &label("signing"))?;
    if !bundle.ledger().is_empty() {
        files::write(&dir.join("grants.json"), bundle.ledger())?;
    }
    if !bundle.trusted().is_empty() {
        let tdir = dir.join("trusted");
        files::create_dir_all(&tdir)?;
        for (party, b) in bundle.trusted() {
            files::write(&tdir.join(format!("{party}.identity")), b)?;
        }
    }
    // The identity last: its presence is what makes the directory an owner.
    files::write(&dir.join("owner.identity"), bundle.identity())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io("reading", path))
}

/// Writes the owner in `dir` as a password-protected backup file at `out` (refuses to overwrite).
pub fn backup_password(dir: &Path, out: &Path, password: &[u8]) -> Result<()> {
    if password.len() < password::MIN_PASSWORD_LEN {
        return Err(BackupError::WeakPassword.into());
    }
    let text = password::seal(&read_owner(dir)?, password, &mut OsRng)?;
    files::write_private(out, text, false)
}

/// Opens a password-protected backup file.
pub fn open_password(path: &Path, password: &[u8]) -> Result<Bundle> {
    let text = read_text(path)?;
    Ok(password::open(
        &path.display().to_string(),
        &text,
        password,
    )?)
}

/// Writes the owner in `dir` as `n` share files `out_prefix-<i>-of-<n>.share`, any `k` of which
/// restore it. Returns the paths.
pub fn backup_shares(dir: &Path, out_prefix: &Path, k: u8, n: u8) -> Result<Vec<PathBuf>> {
    if k < 2 || k > n {
        return Err(BackupError::BadThreshold { k, n }.into());
    }
    let files = shares::split(&read_owner(dir)?, k, n, &mut OsRng)?;
    let stem = out_prefix
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("owner");
    let mut paths = Vec::new();
    for s in files {
        let path = out_prefix.with_file_name(format!("{stem}-{}-of-{n}.share", s.index));
        files::write_private(&path, &s.text, false)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Combines share files into the backup's bundle.
pub fn open_shares(paths: &[PathBuf]) -> Result<Bundle> {
    let texts = paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read_text(p)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(shares::combine(
        texts.iter().map(|(f, t)| (f.as_str(), t.as_str())),
    )?)
}
