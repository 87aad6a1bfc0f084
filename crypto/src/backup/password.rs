//! A backup sealed with a password: Argon2id derives the AES-256-GCM key from the password and a
//! random salt; the associated data is [`BACKUP_PASSWORD_AAD`] followed by the rendered header
//! (title and every field but `sealed`), so an edited header fails like a wrong password.

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::text::{render, Fields};
use super::{
    aes_open, aes_seal, BackupError, Bundle, ARGON2_M_KIB, ARGON2_P, ARGON2_T, BACKUP_VERSION,
};
use crate::domain::BACKUP_PASSWORD_AAD;

/// The title line of a password backup file.
pub const TITLE: &str = "ArmoredTwins owner backup (password, Argon2id + AES-256-GCM)";
/// The shortest password a backup is sealed with.
pub const MIN_PASSWORD_LEN: usize = 8;
// Bounds on what a file may ask for, so that a crafted file cannot make restore allocate 100 GiB.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 16;
const MAX_P: u32 = 16;

fn argon2_key(
    file: &str,
    password: &[u8],
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let bad = |e: argon2::Error| BackupError::Format {
        file: file.into(),
        reason: format!("argon2: {e}"),
    };
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(bad)?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, key.as_mut())
        .map_err(bad)?;
    Ok(key)
}

fn header(owner: &str, (m, t, p): (u32, u32, u32), salt: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("version", BACKUP_VERSION.to_string()),
        ("owner", owner.to_string()),
        ("kdf", "argon2id".into()),
        ("m_kib", m.to_string()),
        ("t", t.to_string()),
        ("p", p.to_string()),
        ("salt", hex::encode(salt)),
    ]
}

fn aad(header: &[(&str, String)]) -> Vec<u8> {
    [BACKUP_PASSWORD_AAD, render(TITLE, header).as_bytes()].concat()
}

/// Seals `bundle` with `password` (at least [`MIN_PASSWORD_LEN`] bytes); returns the file's text.
pub fn seal<R: RngCore + CryptoRng>(
    bundle: &Bundle,
    password: &[u8],
    rng: &mut R,
) -> Result<String, BackupError> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(BackupError::WeakPassword);
    }
    let cost = (ARGON2_M_KIB, ARGON2_T, ARGON2_P);
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let header = header(bundle.owner_id(), cost, &salt);
    let key = argon2_key("password", password, &salt, cost)?;
    let sealed = aes_seal(&key, &aad(&header), &bundle.encode(), rng);
    let mut fields = header;
    fields.push(("sealed", hex::encode(sealed)));
    Ok(render(TITLE, &fields))
}

/// Opens the text of a password backup file (`file` names it in errors).
pub fn open(file: &str, text: &str, password: &[u8]) -> Result<Bundle, BackupError> {
    let f = Fields::parse(file, text)?;
    if f.title != TITLE {
        return Err(f.bad("not a password backup (a share? use --share)"));
    }
    if f.num::<u32>("version")? != BACKUP_VERSION || f.get("kdf")? != "argon2id" {
        return Err(f.bad("unsupported version or KDF"));
    }
    let cost = (
        f.num::<u32>("m_kib")?,
        f.num::<u32>("t")?,
        f.num::<u32>("p")?,
    );
    if cost.0 > MAX_M_KIB || cost.1 > MAX_T || cost.2 > MAX_P {
        return Err(f.bad("Argon2 parameters beyond the accepted bounds"));
    }
    let salt = f.hex("salt")?;
    let header = header(f.get("owner")?, cost, &salt);
    let key = argon2_key(&f.file, password, &salt, cost)?;
    let plain =
        aes_open(&key, &aad(&header), &f.hex("sealed")?).ok_or(BackupError::WrongPassword)?;
    let b = Bundle::decode(&plain)?;
    if b.owner_id() != f.get("owner")? {
        return Err(BackupError::Inconsistent(
            "owner id differs from the header".into(),
        ));
    }
    Ok(b)
}
