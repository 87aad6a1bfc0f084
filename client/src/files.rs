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
