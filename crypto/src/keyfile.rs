//! Versioned key files: one secret with its key id, protobuf-encoded, written 0600 (atomically), and
//! refused at load when group or others can read or write them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use armored_schemas::limits::MAX_KEY_FILE_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::hpke::HpkeSecretKey;
use crate::keyid::KeyId;
use crate::kpcpre::SecretKey;
use crate::sig::SigningKey;

pub use v1::KeyKind;

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn write(path: &Path, kind: KeyKind, key_id: KeyId, secret: &[u8], label: &str) -> Result<()> {
    let file = Zeroizing::new(
        v1::KeyFile {
            version: WIRE_VERSION,
            kind: kind as i32,
            key_id: key_id.0.to_vec(),
            secret: secret.to_vec(),
            label: label.to_owned(),
        }
        .encode_to_vec(),
    );
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(&tmp, e.to_string()))?;
    f.write_all(&file)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(&tmp, e.to_string()))?;
    fs::rename(&tmp, path).map_err(|e| err(path, e.to_string()))
}

fn read(path: &Path, kind: KeyKind) -> Result<(KeyId, Zeroizing<Vec<u8>>, String)> {
    let meta = fs::metadata(path).map_err(|e| err(path, e.to_string()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(err(
            path,
            format!("mode {:o} is too open (want 600)", mode & 0o777),
        ));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| err(path, e.to_string()))?);
    let m: v1::KeyFile = decode_strict("KeyFile", &bytes, MAX_KEY_FILE_BYTES)
        .map_err(|e| err(path, e.to_string()))?;
    if m.version != WIRE_VERSION {
        return Err(err(
            path,
            format!("unsupported key file version {}", m.version),
        ));
    }
    if m.kind != kind as i32 {
        return Err(err(
            path,
            format!(
                "holds a {:?} key, expected {kind:?}",
                KeyKind::try_from(m.kind)
            ),
        ));
    }
    let kid =
        KeyId::from_slice(&m.key_id, "key_file.key_id").map_err(|e| err(path, e.to_string()))?;
    Ok((kid, Zeroizing::new(m.secret.clone()), m.label.clone()))
}

fn check_key_id(path: &Path, stored: KeyId, actual: KeyId) -> Result<()> {
    if stored == actual {
        Ok(())
    } else {
        Err(err(
            path,
            format!("key id {stored} does not match its key ({actual})"),
        ))
    }
}

/// Writes a KP-CPRE secret key.
pub fn save_pre_key(path: &Path, key: &SecretKey, label: &str) -> Result<()> {
    write(path, KeyKind::Pre, key.key_id(), &key.to_bytes()[..], label)
}

/// Loads a KP-CPRE secret key, checking mode, kind and key id.
pub fn load_pre_key<R: RngCore + CryptoRng>(path: &Path, rng: &mut R) -> Result<SecretKey> {
    let (kid, secret, _) = read(path, KeyKind::Pre)?;
    let key = SecretKey::from_bytes(&secret, rng).map_err(|e| err(path, e.to_string()))?;
    check_key_id(path, kid, key.key_id())?;
    Ok(key)
}

/// Writes an ECDSA signing key.
pub fn save_signing_key(path: &Path, key: &SigningKey, label: &str) -> Result<()> {
    write(
        path,
        KeyKind::Signing,
        key.key_id(),
        &key.to_bytes()[..],
        label,
    )
}

/// Loads an ECDSA signing key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let (kid, secret, _) = read(path, KeyKind::Signing)?;
    let key = SigningKey::from_bytes(&secret).map_err(|e| err(path, e.to_string()))?;
    check_key_id(path, kid, key.key_id())?;
    Ok(key)
}

/// Writes an HPKE key.
pub fn save_hpke_key(path: &Path, key: &HpkeSecretKey, label: &str) -> Result<()> {
    write(
        path,
        KeyKind::Hpke,
        key.public().key_id(),
        &key.to_bytes(),
        label,
    )
}

/// Loads an HPKE key.
pub fn load_hpke_key(path: &Path) -> Result<HpkeSecretKey> {
    let (kid, secret, _) = read(path, KeyKind::Hpke)?;
    let key = HpkeSecretKey::from_bytes(&secret).map_err(|e| err(path, e.to_string()))?;
    check_key_id(path, kid, key.public().key_id())?;
    Ok(key)
}
