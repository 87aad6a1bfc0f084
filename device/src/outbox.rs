//! The device's durable outbox. Every envelope the device seals (a state change, a share bundle)
//! is written to `outbox/` (0600, synced) right after the state that reserved its seq, and removed
//! once the broker has acknowledged its publish (QoS 1 PUBACK). A device that crashes between
//! sealing a change and that acknowledgement publishes it again when its link starts; receivers
//! drop a copy they already have (by twin, writer and seq). Before, the envelope lived only in a
//! channel in memory, and a crash lost the change while the device kept it in its state.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::files::write_private;
use crate::DeviceError;

/// The outbox directory of the device in `dir`.
pub fn dir_of(device_dir: &Path) -> PathBuf {
    device_dir.join("outbox")
}

/// Where `envelope` waits in the outbox of the device in `device_dir` (named by its digest, so
/// that the link finds it from the bytes it publishes).
pub fn path_of(device_dir: &Path, envelope: &[u8]) -> PathBuf {
    let digest = Sha256::digest(envelope);
    dir_of(device_dir).join(format!("{}.env", hex::encode(&digest[..16])))
}

/// Keeps `envelope` until its publish is acknowledged.
pub(crate) fn keep(device_dir: &Path, envelope: &[u8]) -> Result<(), DeviceError> {
    let dir = dir_of(device_dir);
    std::fs::create_dir_all(&dir).map_err(|e| DeviceError::Io(dir.display().to_string(), e))?;
    write_private(&path_of(device_dir, envelope), envelope)
}

/// The envelopes still waiting, oldest first.
pub fn pending(device_dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, DeviceError> {
    let dir = dir_of(device_dir);
    let io = |e| DeviceError::Io(dir.display().to_string(), e);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    for e in entries {
        let path = e.map_err(io)?.path();
        if path.extension().is_some_and(|x| x == "env") {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io)?;
            files.push((modified, path));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| {
            let bytes =
                std::fs::read(&p).map_err(|e| DeviceError::Io(p.display().to_string(), e))?;
            Ok((p, bytes))
        })
        .collect()
}

/// The broker has it: forget it.
pub fn done(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "outbox entry not removed");
        }
    }
}
