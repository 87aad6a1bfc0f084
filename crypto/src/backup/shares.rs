//! A backup split k-of-n for trustees: a random key seals the bundle (associated data
//! [`BACKUP_SHARES_AAD`] `|| owner id || 0x00 || set id || k || n`), and the key is split with
//! Shamir over GF(2^8). Each share file carries the whole sealed bundle, its share and a checksum
//! (the first 8 bytes of SHA-256 of its rendered fields) that catches a damaged copy before
//! combining.

use std::collections::BTreeMap;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::text::{render, Fields};
use super::{aes_open, aes_seal, BackupError, Bundle, BACKUP_VERSION};
use crate::domain::BACKUP_SHARES_AAD;

/// The title line of a share file.
pub const TITLE: &str = "ArmoredTwins owner key share (Shamir, GF(2^8))";

/// One share of a backup: its index (1..=n) and the text of its file. Never printed.
pub struct ShareFile {
    /// The share's index, as in its file name (`-<index>-of-<n>.share`).
    pub index: u8,
    /// The file's text.
    pub text: String,
}

impl std::fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareFile({}, <redacted>)", self.index)
    }
}

fn share_fields(
    owner: &str,
    set: &[u8],
    (k, n, index): (u8, u8, u8),
    share: &[u8],
    sealed: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("version", BACKUP_VERSION.to_string()),
        ("owner", owner.to_string()),
        ("set", hex::encode(set)),
        ("threshold", k.to_string()),
        ("shares", n.to_string()),
        ("index", index.to_string()),
        ("share", hex::encode(share)),
        ("sealed", hex::encode(sealed)),
    ]
}

fn checksum(fields: &[(&str, String)]) -> String {
    hex::encode(&Sha256::digest(render(TITLE, fields).as_bytes())[..8])
}

fn aad(owner: &str, set: &[u8], k: u8, n: u8) -> Vec<u8> {
    [BACKUP_SHARES_AAD, owner.as_bytes(), b"\0", set, &[k, n]].concat()
}

/// Seals `bundle` under a fresh key and splits the key into `n` shares, any `k` of which open it
/// (2 <= k <= n). Returns the share files, in index order.
pub fn split<R: RngCore + CryptoRng>(
    bundle: &Bundle,
    k: u8,
    n: u8,
    rng: &mut R,
) -> Result<Vec<ShareFile>, BackupError> {
    if k < 2 || k > n {
        return Err(BackupError::BadThreshold { k, n });
    }
    let owner = bundle.owner_id();
    let mut set = [0u8; 8];
    rng.fill_bytes(&mut set);
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    let sealed = aes_seal(&key, &aad(owner, &set, k, n), &bundle.encode(), rng);
    let shares: Vec<Zeroizing<Vec<u8>>> = blahaj::Sharks(k)
        .dealer_rng(key.as_ref(), rng)
        .take(usize::from(n))
        .map(|s| Zeroizing::new(Vec::from(&s)))
        .collect();
    Ok(shares
        .iter()
        .map(|s| {
            let index = s.first().copied().unwrap_or_default();
            let mut fields = share_fields(owner, &set, (k, n, index), s, &sealed);
            let sum = checksum(&fields);
            fields.push(("checksum", sum));
            let title = format!(
                "{TITLE}\n# share {index} of {n}: any {k} shares restore owner {owner}; keep it apart from the others"
            );
            ShareFile {
                index,
                text: render(&title, &fields),
            }
        })
        .collect())
}

struct ParsedShare {
    owner: String,
    set: Vec<u8>,
    k: u8,
    n: u8,
    share: Zeroizing<Vec<u8>>,
    sealed: Vec<u8>,
}

fn parse_share(file: &str, text: &str) -> Result<ParsedShare, BackupError> {
    let f = Fields::parse(file, text)?;
    if f.title != TITLE {
        return Err(f.bad("not a key share (a password backup? use --file)"));
    }
    if f.num::<u32>("version")? != BACKUP_VERSION {
        return Err(f.bad("unsupported version"));
    }
    let (owner, set) = (f.get("owner")?.to_string(), f.hex("set")?);
    let (k, n, index) = (
        f.num::<u8>("threshold")?,
        f.num::<u8>("shares")?,
        f.num::<u8>("index")?,
    );
    let share = Zeroizing::new(f.hex("share")?);
    let sealed = f.hex("sealed")?;
    let fields = share_fields(&owner, &set, (k, n, index), &share, &sealed);
    if checksum(&fields) != f.get("checksum")? {
        return Err(BackupError::ShareCorrupted { file: file.into() });
    }
    if share.len() != 33 || share.first() != Some(&index) || index == 0 {
        return Err(f.bad("share value does not match its index"));
    }
    if k < 2 || k > n {
        return Err(BackupError::BadThreshold { k, n });
    }
    Ok(ParsedShare {
        owner,
        set,
        k,
        n,
        share,
        sealed,
    })
}

/// Combines share files, given as (file name for errors, text), into the backup's bundle. The same
/// share twice counts once.
pub fn combine<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Bundle, BackupError> {
    let parsed = files
        .into_iter()
        .map(|(file, text)| parse_share(file, text))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = parsed.first() else {
        return Err(BackupError::TooFewShares { have: 0, need: 2 });
    };
    for s in &parsed[1..] {
        if s.owner != first.owner {
            return Err(BackupError::MixedShares("owner"));
        }
        if s.set != first.set || s.sealed != first.sealed {
            return Err(BackupError::MixedShares("set"));
        }
        if (s.k, s.n) != (first.k, first.n) {
            return Err(BackupError::MixedShares("threshold"));
        }
    }
    let mut by_index: BTreeMap<u8, &ParsedShare> = BTreeMap::new();
    for s in &parsed {
        by_index.insert(s.share[0], s);
    }
    if by_index.len() < usize::from(first.k) {
        return Err(BackupError::TooFewShares {
            have: by_index.len(),
            need: usize::from(first.k),
        });
    }
    let shares: Vec<blahaj::Share> = by_index
        .values()
        .filter_map(|s| blahaj::Share::try_from(s.share.as_slice()).ok())
        .collect();
    let key = Zeroizing::new(
        blahaj::Sharks(first.k)
            .recover(&shares)
            .map_err(|_| BackupError::BadCombination)?,
    );
    let key: Zeroizing<[u8; 32]> = Zeroizing::new(
        key.as_slice()
            .try_into()
            .map_err(|_| BackupError::BadCombination)?,
    );
    let plain = aes_open(
        &key,
        &aad(&first.owner, &first.set, first.k, first.n),
        &first.sealed,
    )
    .ok_or(BackupError::BadCombination)?;
    let b = Bundle::decode(&plain)?;
    if b.owner_id() != first.owner {
        return Err(BackupError::Inconsistent(
            "owner id differs from the shares".into(),
        ));
    }
    Ok(b)
}
