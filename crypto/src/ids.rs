//! Ids on the wire: twin, device, owner, party and job ids are `[a-z0-9-]{1,32}`; a twin's
//! attribute is `twin:<id>`. Every sealed format checks its ids with these, so they sit below all
//! of them.

use crate::error::{Error, Result};

/// Twin and device ids: `[a-z0-9-]{1,32}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Checks an id field against `[a-z0-9-]{1,32}`.
pub fn check_id(id: &str, field: &'static str) -> Result<()> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidField {
            field,
            reason: "must match [a-z0-9-]{1,32}",
        })
    }
}

/// The attribute every envelope of twin `twin_id` carries.
pub fn twin_attribute(twin_id: &str) -> String {
    format!("twin:{twin_id}")
}
