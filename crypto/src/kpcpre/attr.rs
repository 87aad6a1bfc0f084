//! Attributes (`[a-z][a-z0-9._:/-]{0,63}`, not `and`/`or`/`of`), attribute sets, and the cache of
//! H1(a) with its fixed-base table.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use crate::domain::H1_DST;
use crate::error::{Error, Result};
use crate::group::{G1Table, G1};

/// Most attributes one capsule may carry.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest attribute name.
pub const MAX_ATTRIBUTE_LEN: usize = 64;
/// Reserved words of the policy language.
pub const RESERVED: [&str; 3] = ["and", "or", "of"];

/// Whether `a` is a valid attribute name.
pub fn is_valid_attribute(a: &str) -> bool {
    let b = a.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ATTRIBUTE_LEN
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'.' | b'_' | b':' | b'/' | b'-')
        })
        && !RESERVED.contains(&a)
}

/// A sorted, deduplicated set of 1 to 32 valid attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttributeSet(Vec<String>);

impl AttributeSet {
    /// Validates, sorts and deduplicates.
    pub fn new<I, S>(attrs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = attrs.into_iter().map(Into::into).collect();
        if let Some(bad) = v.iter().find(|a| !is_valid_attribute(a)) {
            return Err(Error::InvalidAttribute(bad.clone()));
        }
        v.sort();
        v.dedup();
        Self::from_sorted(v)
    }

    /// Accepts only an already sorted, deduplicated list (what the wire must carry).
    pub fn from_sorted(v: Vec<String>) -> Result<Self> {
        if v.is_empty() {
            return Err(Error::InvalidField {
                field: "attributes",
                reason: "empty attribute set",
            });
        }
        if v.len() > MAX_ATTRIBUTES {
            return Err(Error::TooManyAttributes(v.len()));
        }
        if let Some(bad) = v.iter().find(|a| !is_valid_attribute(a)) {
            return Err(Error::InvalidAttribute(bad.clone()));
        }
        if v.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidField {
                field: "attributes",
                reason: "not sorted and deduplicated",
            });
        }
        Ok(Self(v))
    }

    /// The attributes, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (sets are non-empty); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Position of `a` in the sorted set.
    pub fn position(&self, a: &str) -> Option<usize> {
        self.0.binary_search_by(|x| x.as_str().cmp(a)).ok()
    }

    /// Whether `a` is in the set.
    pub fn contains(&self, a: &str) -> bool {
        self.position(a).is_some()
    }
}

/// H1(a) and its fixed-base table.
#[derive(Debug)]
pub struct AttrPoint {
    /// H1(a).
    pub point: G1,
    /// Multiples of H1(a) for fast multiplication by ephemeral scalars.
    pub table: G1Table,
}

const CACHE_CAPACITY: usize = 256;
const ATTR_TABLE_WINDOW: usize = 5;

static CACHE: LazyLock<RwLock<HashMap<String, Arc<AttrPoint>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// H1(a) (hash-to-curve, cached with its table; attribute names are public).
pub fn attr_point(a: &str) -> Result<Arc<AttrPoint>> {
    if let Ok(map) = CACHE.read() {
        if let Some(p) = map.get(a) {
            return Ok(Arc::clone(p));
        }
    }
    let point = G1::hash_to_curve(a.as_bytes(), H1_DST)?;
    let entry = Arc::new(AttrPoint {
        table: G1Table::new(&point, ATTR_TABLE_WINDOW),
        point,
    });
    if let Ok(mut map) = CACHE.write() {
        // A bounded cache: past capacity, start over (attribute vocabularies are small).
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(a.to_owned(), Arc::clone(&entry));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_language() {
        for ok in [
            "sync",
            "node-2",
            "twin:7f3a",
            "a",
            "x.y_z/w-1:2",
            &"a".repeat(64),
        ] {
            assert!(is_valid_attribute(ok), "{ok}");
        }
        for bad in [
            "",
            "and",
            "or",
            "of",
            "Sync",
            "2a",
            "-a",
            "a b",
            "a,b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_attribute(bad), "{bad}");
        }
    }

    #[test]
    fn sets_are_sorted_deduplicated_and_bounded() {
        let s = AttributeSet::new(["sync", "location", "sync"]).unwrap();
        assert_eq!(s.as_slice(), ["location", "sync"]);
        assert_eq!(s.position("sync"), Some(1));
        assert!(AttributeSet::new(Vec::<String>::new()).is_err());
        assert!(matches!(
            AttributeSet::new((0..33).map(|i| format!("a{i}"))),
            Err(Error::TooManyAttributes(33))
        ));
        assert!(AttributeSet::from_sorted(vec!["b".into(), "a".into()]).is_err());
        assert!(AttributeSet::from_sorted(vec!["a".into(), "a".into()]).is_err());
        assert!(matches!(
            AttributeSet::new(["OK"]),
            Err(Error::InvalidAttribute(_))
        ));
    }
}
