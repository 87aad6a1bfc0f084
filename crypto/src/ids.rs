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

/// Attribute rules of a device's state change or share bundle (the bridge checks them at the edge,
/// the workers again for what reached the log past it): `req` never (requests come from
/// requesters over Kafka); no other twin's attribute; `mpc-share` and `node-*` only together, as a
/// share bundle: exactly `location`, `mpc-share`, one `node-j` (j in 1..=3) and the twin attribute
/// (so never `sync`). `Ok(true)` for a share bundle; `Err` names the rule broken.
pub fn uplink_attribute_rules(
    attrs: &[String],
    twin_id: &str,
) -> std::result::Result<bool, &'static str> {
    let twin_attr = twin_attribute(twin_id);
    if attrs.iter().any(|a| a == "req") {
        return Err("req");
    }
    if attrs
        .iter()
        .filter(|a| a.starts_with("twin:"))
        .any(|a| *a != twin_attr)
    {
        return Err("twin:<other>");
    }
    let nodes: Vec<&String> = attrs.iter().filter(|a| a.starts_with("node-")).collect();
    let share = attrs.iter().any(|a| a == "mpc-share");
    if !share && nodes.is_empty() {
        return Ok(false);
    }
    if !share || nodes.len() != 1 || !matches!(nodes[0].as_str(), "node-1" | "node-2" | "node-3") {
        return Err("mpc-share/node-j");
    }
    if attrs.iter().any(|a| a == "sync") {
        return Err("sync in a share bundle");
    }
    // Nothing else rides along: an extra attribute could match some other re-key's policy.
    let allowed =
        |a: &String| a == "location" || a == "mpc-share" || *a == twin_attr || a == nodes[0];
    if attrs.len() != 4 || !attrs.iter().all(allowed) {
        return Err("a share bundle carries exactly location, mpc-share, node-j, twin");
    }
    Ok(true)
}
