//! The twin's roster (phase 4's trust): owner-signed enrollments and revocations, which the bridge
//! pushes as a retained message. The device keeps every item it verified in `roster.pb`: after a
//! restart it trusts its siblings and honours revocations at once, not only once the retained
//! roster arrives again (queued deliveries come before it).

use std::path::Path;

use armored_crypto::identity::verify_enrollment;
use armored_crypto::tokens::verify_revocation;
use armored_crypto::Error as CryptoError;
use armored_schemas::{decode_strict, v1};
use prost::Message;

use super::{Device, DeviceError, Event};
use crate::files::write_private;

/// Largest `roster.pb` read back (a twin of thousands of devices).
const MAX_ROSTER_FILE_BYTES: usize = 8 << 20;

impl Device {
    pub(super) fn apply_roster(&mut self, r: &v1::TwinRoster) -> Result<Event, DeviceError> {
        if r.twin_id != self.card.twin_id {
            return Err(CryptoError::Mismatch("roster of another twin").into());
        }
        let (devices, new_items) = self.trust_roster(r);
        if new_items {
            let path = crate::files::Paths::new(&self.dir).roster;
            write_private(&path, &self.roster.encode_to_vec())?;
        }
        Ok(Event::Roster { devices })
    }

    /// Reads `roster.pb` back (if any) and trusts what it holds (checked again). A file that does
    /// not decode is an error: running without the revocations it holds would be worse.
    pub(super) fn restore_roster(&mut self, path: &Path) -> Result<(), DeviceError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(DeviceError::Io(path.display().to_string(), e)),
        };
        let r: v1::TwinRoster = decode_strict("TwinRoster", &bytes, MAX_ROSTER_FILE_BYTES)
            .map_err(|e| DeviceError::State(format!("{}: {e}", path.display())))?;
        if r.twin_id != self.card.twin_id {
            return Err(DeviceError::State(format!(
                "{}: a roster of another twin",
                path.display()
            )));
        }
        self.trust_roster(&r);
        Ok(())
    }

    /// Trusts each enrollment and revocation the pinned owner signed (others are ignored) and
    /// keeps the new ones. Returns (devices this roster names, whether anything was new).
    fn trust_roster(&mut self, r: &v1::TwinRoster) -> (usize, bool) {
        let owner = *self.trust.owner();
        self.roster.twin_id.clone_from(&self.card.twin_id);
        let (mut devices, mut new_items) = (0, false);
        for raw in &r.enrollments {
            if let Ok(e) = verify_enrollment(raw, &owner) {
                if e.twin_id == self.card.twin_id {
                    self.trust.add_device(&e.twin_id, e.sig);
                    devices += 1;
                    if !self.roster.enrollments.contains(raw) {
                        self.roster.enrollments.push(raw.clone());
                        new_items = true;
                    }
                }
            }
        }
        for raw in &r.revocations {
            if let Ok(v) = verify_revocation(raw, &owner) {
                self.trust.revocations.apply(&v);
                if !self.roster.revocations.contains(raw) {
                    self.roster.revocations.push(raw.clone());
                    new_items = true;
                }
            }
        }
        (devices, new_items)
    }
}
