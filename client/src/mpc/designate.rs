//! `atctl service designate`: a designator (e.g. a health authority, any party with an
//! `atctl service init` directory) names the reference twin of one slot window. The process tokens
//! of the participants name the designator's signing key; a job submitter attaches the statement
//! and every node verifies it (`armored_crypto::designation`).

use std::path::Path;

use armored_base::time::now_ms;
use armored_crypto::designation::sign_designation;
use armored_crypto::keyfile::load_signing_key;

use crate::error::{io, key, parse, Result};

/// Signs a designation of `reference_twin` for slots `window_start .. window_start + window_slots`
/// with the signing key of the party in `dir`. Returns the signed record (raw bytes).
pub fn designate(
    dir: &Path,
    reference_twin: &str,
    window_start: u64,
    window_slots: u32,
) -> Result<Vec<u8>> {
    let key = load_signing_key(&dir.join("sig.key")).map_err(key(format!(
        "no signing key in {} (atctl service init)",
        dir.display()
    )))?;
    Ok(sign_designation(
        &key,
        reference_twin,
        window_start,
        window_slots,
        now_ms(),
    )?)
}

/// Reads a designation file as `designate` writes it: raw bytes, or hex text (what it prints).
pub fn read_designation(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    match std::str::from_utf8(&bytes).ok().map(str::trim) {
        Some(t) if !t.is_empty() && t.bytes().all(|c| c.is_ascii_hexdigit()) => {
            hex::decode(t).map_err(parse(format!("{} is not hex", path.display())))
        }
        _ => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armored_crypto::designation::verify_designation;
    use armored_crypto::identity::PartyKind;

    #[test]
    fn designate_and_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("at-designate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = crate::service::Service::init(&dir, "health-auth", PartyKind::Service)?;
        let d = designate(&dir, "patient-0", 1000, 50)?;
        let bytes = std::fs::read(id)?;
        let p = armored_crypto::identity::verify_pinned_identity(
            &bytes,
            &armored_crypto::identity::fingerprint(&bytes),
        )?;
        let v = verify_designation(&d, &p.sig)?;
        assert_eq!((v.window_start_slot, v.window_slots), (1000, 50));
        std::fs::write(dir.join("d.hex"), hex::encode(&d))?;
        std::fs::write(dir.join("d.bin"), &d)?;
        assert_eq!(read_designation(&dir.join("d.hex"))?, d);
        assert_eq!(read_designation(&dir.join("d.bin"))?, d);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
