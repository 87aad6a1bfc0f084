//! Owner key recovery (paper 5.4): `atctl owner backup` writes the owner's secrets (PRE and signing
//! keys, with the identity, the ledger of grants and the pinned parties they go with) either
//!
//! - as one password-protected file: Argon2id (m = 64 MiB, t = 3, p = 1) derives an AES-256-GCM key;
//!   the header lines are the associated data, so an edited header fails like a wrong password; or
//! - as Shamir shares k-of-n for trustees: a random 32-byte key seals the bundle (AES-256-GCM), the
//!   key is split over GF(2^8) with the `blahaj` crate (the maintained fork of `sharks`, which fixed
//!   its biased coefficients; `armored_mpc::shamir` is fixed to 3 parties and t = 1, so it does not
//!   fit k-of-n), and every share file carries the sealed bundle, its own index, k, n, the owner id, a
//!   set id and a checksum. A share is useless alone; k of them open the bundle, whose AEAD tag then
//!   proves the combination right.
//!
//! Both are text (hex lines), easy to print or copy. `atctl owner restore` recreates the owner
//! directory (key files 0600) from either, after checking that the keys match the signed identity.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use armored_crypto::identity::verify_owner_identity;
use armored_crypto::keyfile::{load_pre_key, load_signing_key, save_pre_key, save_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::sig::SigningKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Format version of backup and share files.
pub const BACKUP_VERSION: u32 = 1;
const PASSWORD_TITLE: &str = "ArmoredTwins owner backup (password, Argon2id + AES-256-GCM)";
const SHARE_TITLE: &str = "ArmoredTwins owner key share (Shamir, GF(2^8))";
const AAD_PASSWORD: &[u8] = b"at/v1/owner-backup\0";
const AAD_SHARES: &[u8] = b"at/v1/owner-shares\0";
/// Argon2id cost written into new backups (OWASP's 2023 guidance is at least m = 19 MiB, t = 2).
pub const ARGON2_M_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ARGON2_T: u32 = 3;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;
// Bounds on what a file may ask for, so that a crafted file cannot make restore allocate 100 GiB.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 16;
const MAX_P: u32 = 16;

/// Why a backup could not be written or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Not a backup or share file of this version, or a field is missing or malformed.
    #[error("{file}: not a valid ArmoredTwins backup: {reason}")]
    Format {
        /// Which file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The password does not open the file (or the file was altered: both fail the AEAD tag).
    #[error("wrong password, or the backup file was altered")]
    WrongPassword,
    /// A share's checksum does not match its content.
    #[error("{file}: share corrupted (checksum mismatch)")]
    ShareCorrupted {
        /// Which file.
        file: String,
    },
    /// Fewer distinct shares than the threshold.
    #[error("too few shares: {have} distinct of the {need} needed")]
    TooFewShares {
        /// Distinct shares given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Shares of different backups (owner, set, threshold or sealed bundle differ).
    #[error("the shares belong to different backups ({0})")]
    MixedShares(&'static str),
    /// The shares combine to a key that does not open the bundle (a share was altered consistently
    /// with its checksum, or shares of another set).
    #[error("the shares do not combine to this backup's key")]
    BadCombination,
    /// The bundle opened but its keys do not match the owner identity in it.
    #[error("backup content inconsistent: {0}")]
    Inconsistent(String),
    /// k and n out of range.
    #[error("invalid share parameters: need 1 <= k <= n <= 255 and k >= 2 (got {k}-of-{n})")]
    BadThreshold {
        /// Threshold.
        k: u8,
        /// Number of shares.
        n: u8,
    },
    /// The target directory already holds an owner.
    #[error("{0} already holds an owner identity; restore into an empty directory")]
    Exists(String),
    /// Key file or identity checks.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
    /// File system.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.display().to_string(), e)
}

/// What a backup holds: the owner's secrets and the public files that go with them. Zeroized on
/// drop; never printed.
pub struct Bundle {
    owner_id: String,
    pre: [u8; 32],
    sig: [u8; 32],
    identity: Vec<u8>,
    ledger: Vec<u8>,
    trusted: Vec<(String, Vec<u8>)>,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        self.pre.zeroize();
        self.sig.zeroize();
        // The ledger and party identities are public; only the keys are secret.
    }
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bundle({}, <redacted>)", self.owner_id)
    }
}

// The bundle's byte layout: fields `tag (1) || len (u32 BE) || bytes` in this order; trusted
// parties repeat tags 6 and 7.
const T_OWNER: u8 = 1;
const T_PRE: u8 = 2;
const T_SIG: u8 = 3;
const T_IDENTITY: u8 = 4;
const T_LEDGER: u8 = 5;
const T_PARTY: u8 = 6;
const T_PARTY_ID: u8 = 7;

impl Bundle {
    /// Reads an owner directory.
    pub fn from_dir(dir: &Path) -> Result<Self, BackupError> {
        let identity =
            std::fs::read(dir.join("owner.identity")).map_err(io(&dir.join("owner.identity")))?;
        let id = verify_owner_identity(&identity, None)?.into_inner();
        let pre = load_pre_key(&dir.join("pre.key"), &mut OsRng)?;
        let sig = load_signing_key(&dir.join("sig.key"))?;
        let ledger_path = dir.join("grants.json");
        let ledger = if ledger_path.exists() {
            std::fs::read(&ledger_path).map_err(io(&ledger_path))?
        } else {
            Vec::new()
        };
        let mut trusted = Vec::new();
        let tdir = dir.join("trusted");
        if tdir.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&tdir)
                .map_err(io(&tdir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in entries {
                let Some(name) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".identity"))
                else {
                    continue;
                };
                trusted.push((name.to_string(), std::fs::read(&p).map_err(io(&p))?));
            }
        }
        Ok(Self {
            owner_id: id.owner_id,
            pre: *pre.to_bytes(),
            sig: *sig.to_bytes(),
            identity,
            ledger,
            trusted,
        })
    }

    /// The owner id.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut fields: Vec<(u8, &[u8])> = vec![
            (T_OWNER, self.owner_id.as_bytes()),
            (T_PRE, &self.pre),
            (T_SIG, &self.sig),
            (T_IDENTITY, &self.identity),
            (T_LEDGER, &self.ledger),
        ];
        for (id, b) in &self.trusted {
            fields.push((T_PARTY_ID, id.as_bytes()));
            fields.push((T_PARTY, b));
        }
        // One allocation of the final size: no reallocation leaves copies of the keys behind.
        let len: usize = fields.iter().map(|(_, b)| 5 + b.len()).sum();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for (tag, b) in fields {
            out.push(tag);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, BackupError> {
        let bad = |r: &str| BackupError::Inconsistent(format!("bundle layout: {r}"));
        let mut rest = bytes;
        let mut next = |want: u8| -> Result<Option<&[u8]>, BackupError> {
            let Some((&tag, after)) = rest.split_first() else {
                return Ok(None);
            };
            if tag != want {
                return Ok(None);
            }
            let (len, after) = after
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("truncated length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if after.len() < len {
                return Err(bad("truncated field"));
            }
            let (v, after) = after.split_at(len);
            rest = after;
            Ok(Some(v))
        };
        let owner_id = std::str::from_utf8(next(T_OWNER)?.ok_or_else(|| bad("no owner id"))?)
            .map_err(|_| bad("owner id not UTF-8"))?
            .to_string();
        let pre: [u8; 32] = next(T_PRE)?
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("PRE key"))?;
        let sig: [u8; 32] = next(T_SIG)?
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signing key"))?;
        let identity = next(T_IDENTITY)?.ok_or_else(|| bad("identity"))?.to_vec();
        let ledger = next(T_LEDGER)?.ok_or_else(|| bad("ledger"))?.to_vec();
        let mut trusted = Vec::new();
        while let Some(id) = next(T_PARTY_ID)? {
            let id = std::str::from_utf8(id)
                .map_err(|_| bad("party id not UTF-8"))?
                .to_string();
            let b = next(T_PARTY)?
                .ok_or_else(|| bad("party identity"))?
                .to_vec();
            trusted.push((id, b));
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            owner_id,
            pre,
            sig,
            identity,
            ledger,
            trusted,
        })
    }

    /// Writes the bundle as an owner directory (key files 0600), after checking that its keys are
    /// the ones its signed identity names. Refuses a directory that holds an owner.
    pub fn restore_to(&self, dir: &Path) -> Result<(), BackupError> {
        if dir.join("owner.identity").exists() {
            return Err(BackupError::Exists(dir.display().to_string()));
        }
        let id = verify_owner_identity(&self.identity, None)?.into_inner();
        let pre = SecretKey::from_bytes(&self.pre, &mut OsRng)?;
        let sig = SigningKey::from_bytes(&self.sig)?;
        if id.owner_id != self.owner_id
            || id.pre.key_id() != pre.public().key_id()
            || id.sig.key_id() != sig.key_id()
        {
            return Err(BackupError::Inconsistent(
                "the keys are not the ones the owner identity names".into(),
            ));
        }
        for (party, _) in &self.trusted {
            armored_crypto::envelope::check_id(party, "trusted party id")?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let label = |what: &str| format!("owner {} {what} (restored)", self.owner_id);
        save_pre_key(&dir.join("pre.key"), &pre, &label("PRE"))?;
        save_signing_key(&dir.join("sig.key"), &sig, &label("signing"))?;
        if !self.ledger.is_empty() {
            let p = dir.join("grants.json");
            std::fs::write(&p, &self.ledger).map_err(io(&p))?;
        }
        if !self.trusted.is_empty() {
            let tdir = dir.join("trusted");
            std::fs::create_dir_all(&tdir).map_err(io(&tdir))?;
            for (party, b) in &self.trusted {
                let p = tdir.join(format!("{party}.identity"));
                std::fs::write(&p, b).map_err(io(&p))?;
            }
        }
        // The identity last: its presence is what makes the directory an owner.
        let p = dir.join("owner.identity");
        std::fs::write(&p, &self.identity).map_err(io(&p))
    }
}

// ---------------------------------------------------------------------------------------------
// Text files: a title line, then `name: value` lines.

struct Fields {
    file: String,
    title: String,
    map: BTreeMap<String, String>,
}

impl Fields {
    fn parse(file: &str, text: &str) -> Result<Self, BackupError> {
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

    fn get(&self, k: &str) -> Result<&str, BackupError> {
        self.map
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| BackupError::Format {
                file: self.file.clone(),
                reason: format!("missing field {k:?}"),
            })
    }

    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<T, BackupError> {
        self.get(k)?.parse().map_err(|_| BackupError::Format {
            file: self.file.clone(),
            reason: format!("field {k:?} is not a number"),
        })
    }

    fn hex(&self, k: &str) -> Result<Vec<u8>, BackupError> {
        hex::decode(self.get(k)?).map_err(|_| BackupError::Format {
            file: self.file.clone(),
            reason: format!("field {k:?} is not hex"),
        })
    }
}

fn render(title: &str, fields: &[(&str, String)]) -> String {
    let mut s = format!("{title}\n");
    for (k, v) in fields {
        let _ = writeln!(s, "{k}: {v}");
    }
    s
}

/// Writes `text` to a new file readable by its owner only (it is secret, or a share of a secret).
fn write_private(path: &Path, text: &str) -> Result<(), BackupError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))?;
    // create_new + mode is subject to the umask, which can only narrow it; make sure.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))
}

fn aes_seal(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(key.into());
    // Encryption fails only for messages over 64 GiB.
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap_or_default();
    [nonce.as_slice(), &ct].concat()
}

fn aes_open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ct) = sealed.split_at_checked(12)?;
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

// ---------------------------------------------------------------------------------------------
// Password file

fn argon2_key(
    password: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| BackupError::Format {
        file: "argon2".into(),
        reason: e.to_string(),
    })?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(password, salt, key.as_mut())
        .map_err(|e| BackupError::Format {
            file: "argon2".into(),
            reason: e.to_string(),
        })?;
    Ok(key)
}

fn password_header(
    owner: &str,
    m: u32,
    t: u32,
    p: u32,
    salt: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("version", BACKUP_VERSION.to_string()),
        ("owner", owner.to_string()),
        ("kdf", "argon2id".into()),
        ("m_kib", m.to_string()),
        ("t", t.to_string()),
        ("p", p.to_string()),
        ("salt", hex::encode(salt)),
    ]
}

/// Writes the owner in `dir` as a password-protected backup file at `out` (refuses to overwrite).
pub fn backup_password(dir: &Path, out: &Path, password: &[u8]) -> Result<(), BackupError> {
    if password.len() < 8 {
        return Err(BackupError::Format {
            file: "password".into(),
            reason: "a backup password has at least 8 characters".into(),
        });
    }
    let bundle = Bundle::from_dir(dir)?;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let header = password_header(&bundle.owner_id, ARGON2_M_KIB, ARGON2_T, ARGON2_P, &salt);
    let key = argon2_key(password, &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
    let aad = [AAD_PASSWORD, render(PASSWORD_TITLE, &header).as_bytes()].concat();
    let sealed = aes_seal(&key, &aad, &bundle.encode());
    let mut fields = header;
    fields.push(("sealed", hex::encode(sealed)));
    write_private(out, &render(PASSWORD_TITLE, &fields))
}

/// Opens a password-protected backup file.
pub fn open_password(path: &Path, password: &[u8]) -> Result<Bundle, BackupError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let f = Fields::parse(&path.display().to_string(), &text)?;
    if f.title != PASSWORD_TITLE {
        return Err(BackupError::Format {
            file: f.file.clone(),
            reason: "not a password backup (a share? use --share)".into(),
        });
    }
    if f.num::<u32>("version")? != BACKUP_VERSION || f.get("kdf")? != "argon2id" {
        return Err(BackupError::Format {
            file: f.file.clone(),
            reason: "unsupported version or KDF".into(),
        });
    }
    let (m, t, p) = (
        f.num::<u32>("m_kib")?,
        f.num::<u32>("t")?,
        f.num::<u32>("p")?,
    );
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P {
        return Err(BackupError::Format {
            file: f.file.clone(),
            reason: "Argon2 parameters beyond the accepted bounds".into(),
        });
    }
    let salt = f.hex("salt")?;
    let header = password_header(f.get("owner")?, m, t, p, &salt);
    let key = argon2_key(password, &salt, m, t, p)?;
    let aad = [AAD_PASSWORD, render(PASSWORD_TITLE, &header).as_bytes()].concat();
    let plain = aes_open(&key, &aad, &f.hex("sealed")?).ok_or(BackupError::WrongPassword)?;
    let b = Bundle::decode(&plain)?;
    if b.owner_id != f.get("owner")? {
        return Err(BackupError::Inconsistent(
            "owner id differs from the header".into(),
        ));
    }
    Ok(b)
}

// ---------------------------------------------------------------------------------------------
// Shamir shares

fn share_fields(
    owner: &str,
    set: &[u8],
    k: u8,
    n: u8,
    index: u8,
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
    hex::encode(&Sha256::digest(render(SHARE_TITLE, fields).as_bytes())[..8])
}

fn shares_aad(owner: &str, set: &[u8], k: u8, n: u8) -> Vec<u8> {
    [AAD_SHARES, owner.as_bytes(), b"\0", set, &[k, n]].concat()
}

/// Writes the owner in `dir` as `n` share files `out_prefix-<i>-of-<n>.share`, any `k` of which
/// restore it. Returns the paths.
pub fn backup_shares(
    dir: &Path,
    out_prefix: &Path,
    k: u8,
    n: u8,
) -> Result<Vec<PathBuf>, BackupError> {
    if k < 2 || k > n {
        return Err(BackupError::BadThreshold { k, n });
    }
    let bundle = Bundle::from_dir(dir)?;
    let mut set = [0u8; 8];
    OsRng.fill_bytes(&mut set);
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    let sealed = aes_seal(
        &key,
        &shares_aad(&bundle.owner_id, &set, k, n),
        &bundle.encode(),
    );
    let shares: Vec<Zeroizing<Vec<u8>>> = blahaj::Sharks(k)
        .dealer_rng(key.as_ref(), &mut OsRng)
        .take(usize::from(n))
        .map(|s| Zeroizing::new(Vec::from(&s)))
        .collect();
    let mut paths = Vec::new();
    for s in &shares {
        let index = s.first().copied().unwrap_or_default();
        let mut fields = share_fields(&bundle.owner_id, &set, k, n, index, s, &sealed);
        let sum = checksum(&fields);
        fields.push(("checksum", sum));
        let title = format!(
            "{SHARE_TITLE}\n# share {index} of {n}: any {k} shares restore owner {}; keep it apart from the others",
            bundle.owner_id
        );
        let name = format!(
            "{}-{index}-of-{n}.share",
            out_prefix
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("owner")
        );
        let path = out_prefix.with_file_name(name);
        write_private(&path, &render(&title, &fields))?;
        paths.push(path);
    }
    Ok(paths)
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
    if f.title != SHARE_TITLE {
        return Err(BackupError::Format {
            file: file.into(),
            reason: "not a key share (a password backup? use --file)".into(),
        });
    }
    if f.num::<u32>("version")? != BACKUP_VERSION {
        return Err(BackupError::Format {
            file: file.into(),
            reason: "unsupported version".into(),
        });
    }
    let (owner, set) = (f.get("owner")?.to_string(), f.hex("set")?);
    let (k, n, index) = (
        f.num::<u8>("threshold")?,
        f.num::<u8>("shares")?,
        f.num::<u8>("index")?,
    );
    let share = Zeroizing::new(f.hex("share")?);
    let sealed = f.hex("sealed")?;
    let fields = share_fields(&owner, &set, k, n, index, &share, &sealed);
    if checksum(&fields) != f.get("checksum")? {
        return Err(BackupError::ShareCorrupted { file: file.into() });
    }
    if share.len() != 33 || share.first() != Some(&index) || index == 0 {
        return Err(BackupError::Format {
            file: file.into(),
            reason: "share value does not match its index".into(),
        });
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

/// Combines share files into the backup's bundle.
pub fn open_shares(paths: &[PathBuf]) -> Result<Bundle, BackupError> {
    let mut parsed = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(io(p))?;
        parsed.push(parse_share(&p.display().to_string(), &text)?);
    }
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
        &shares_aad(&first.owner, &first.set, first.k, first.n),
        &first.sealed,
    )
    .ok_or(BackupError::BadCombination)?;
    let b = Bundle::decode(&plain)?;
    if b.owner_id != first.owner {
        return Err(BackupError::Inconsistent(
            "owner id differs from the shares".into(),
        ));
    }
    Ok(b)
}
