//! The text form of backup and share files: a title line, then `name: value` lines (blank lines and
//! `#` comments are skipped when reading).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::BackupError;

/// A parsed file: its title and fields, with the file's name for errors.
pub(super) struct Fields {
    pub(super) file: String,
    pub(super) title: String,
    map: BTreeMap<String, String>,
}

impl Fields {
    pub(super) fn parse(file: &str, text: &str) -> Result<Self, BackupError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let title = lines.next().unwrap_or_default().to_string();
        let mut map = BTreeMap::new();
        for l in lines {
            let (k, v) = l.split_once(':').ok_or_else(|| BackupError::Format {
                file: file.into(),
                reason: format!("line {l:?} is not `name: value`"),
            })?;
            if map
                .insert(k.trim().to_string(), v.trim().to_string())
                .is_some()
            {
                return Err(BackupError::Format {
                    file: file.into(),
                    reason: format!("field {k:?} twice"),
                });
            }
        }
        Ok(Self {
            file: file.into(),
            title,
            map,
        })
    }

    /// A format error about this file.
    pub(super) fn bad(&self, reason: impl Into<String>) -> BackupError {
        BackupError::Format {
            file: self.file.clone(),
            reason: reason.into(),
        }
    }

    pub(super) fn get(&self, k: &str) -> Result<&str, BackupError> {
        self.map
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("missing field {k:?}")))
    }

    pub(super) fn num<T: std::str::FromStr>(&self, k: &str) -> Result<T, BackupError> {
        self.get(k)?
            .parse()
            .map_err(|_| self.bad(format!("field {k:?} is not a number")))
    }

    pub(super) fn hex(&self, k: &str) -> Result<Vec<u8>, BackupError> {
        hex::decode(self.get(k)?).map_err(|_| self.bad(format!("field {k:?} is not hex")))
    }
}

/// The file text: `title`, then one `name: value` line per field.
pub(super) fn render(title: &str, fields: &[(&str, String)]) -> String {
    let mut s = format!("{title}\n");
    for (k, v) in fields {
        let _ = writeln!(s, "{k}: {v}");
    }
    s
}
