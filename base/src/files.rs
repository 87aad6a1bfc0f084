//! Replacing a small state file so that a crash or a power loss leaves the old file or the new
//! one, never a torn or missing one.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`, readable by this user only (0600): written to a temporary file,
/// synced, renamed over `path`, and the directory synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // A leftover temporary file keeps its mode when truncated: start from none.
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Directories cannot be opened for syncing everywhere; where they can, the rename is made
        // durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_whole_and_readable_by_its_user_only() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("at-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("state.json");
        // A file left world-readable by an earlier version is replaced by a private one.
        std::fs::write(&path, b"old")?;
        write_private(&path, b"new")?;
        assert_eq!(std::fs::read(&path)?, b"new");
        assert!(!path.with_extension("tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "mode {mode:o}");
        }
        std::fs::remove_dir_all(&dir)
    }
}
