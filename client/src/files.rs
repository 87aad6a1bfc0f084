//! The file operations of the client, each failing with the path it was about.

use std::path::Path;

use crate::error::{io, Result};

/// Reads a file (`reading {path}` on error).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(io("reading", path))
}

/// Writes a file (`writing {path}` on error).
pub(crate) fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(io("writing", path))
}

/// Creates a directory and its parents (`creating {path}` on error).
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(io("creating", path))
}

/// Replaces `to` by `from` (`renaming {from}` on error).
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(io("renaming", from))
}

/// Writes a file readable by its owner only (`writing {path}` on error): a secret, a share of one,
/// or plaintext the owner keeps. `replace`: an existing file is overwritten (else refused).
pub(crate) fn write_private(path: &Path, bytes: impl AsRef<[u8]>, replace: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(io("creating", path))?;
    f.write_all(bytes.as_ref())
        .and_then(|()| f.sync_all())
        .map_err(io("writing", path))?;
    // The mode given to open() is narrowed by the umask and ignored for an existing file: make sure.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restricting", path))
}

/// Replaces `path` by `value` as JSON, atomically (a temporary file, then a rename); `what` names
/// it in errors; `private`: readable by its owner only.
pub(crate) fn replace_json<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
    what: &str,
    private: bool,
) -> Result<()> {
    let json =
        serde_json::to_vec_pretty(value).map_err(|source| crate::error::ClientError::Json {
            what: what.to_string(),
            source,
        })?;
    let tmp = path.with_extension("tmp");
    if private {
        write_private(&tmp, json, true)?;
    } else {
        write(&tmp, json)?;
    }
    rename(&tmp, path)
}
