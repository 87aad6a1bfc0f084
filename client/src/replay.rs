//! The owner's side of history replay and device replacement (M3).
//!
//! - [`request_replay`]: an owner-signed `ReplayRequest { rk_id, from_epoch }` on `at.control.v1`;
//!   one worker re-encrypts the stored history for that re-key (reencrypt-worker/src/replay.rs).
//! - [`watch_replay`]: follows the worker's progress records for a request.
//! - [`replace_device`]: revokes the old device's re-keys, revokes its signing key in the registry
//!   with `last_valid_seq` = the last seq it stored (so receivers keep trusting its past changes and
//!   nothing after), and enrolls the new device; then the CLI requests the replay for the new
//!   device's re-key, from which it rebuilds the old device's state.

use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::envelope::parse_header;
use armored_crypto::history::issue_replay_request;
use armored_crypto::registry::record;
use armored_crypto::tokens::{issue_revocation, RevocationKind};
use armored_device::Card;
use armored_runtime::reader::{groupless_config, Assignment, Start};
use armored_schemas::v1::{self, control_record, registry_record::Record};
use armored_schemas::{decode_strict, limits::MAX_ENVELOPE_BYTES};
use rand_core::OsRng;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Headers, Message};

use crate::error::{parse, ClientError, ParseCause, Result};
use crate::kafka::Ctl;
use crate::owner::{control, EpochWindow, Owner};
use crate::when::utc_ms;

/// The worker's progress record: one definition for the worker and its readers.
pub use armored_schemas::replay::{ReplayStatus, STATUS_HEADER};

/// Parses `--from`: an epoch number, `@<unix seconds>`, a UTC time `YYYY-MM-DDTHH:MM[:SS]Z`, or a
/// time relative to now (`-90m`, `-2h`, `-3d`); times become the epoch containing them under
/// `epoch_len_ms`.
pub fn parse_from(s: &str, epoch_len_ms: u64, now_ms: u64) -> Result<u64> {
    let s = s.trim();
    let len = epoch_len_ms.max(1);
    if let Ok(e) = s.parse::<u64>() {
        return Ok(e);
    }
    let ms = if let Some(secs) = s.strip_prefix('@') {
        secs.parse::<u64>().map_err(parse("@ takes unix seconds"))? * 1000
    } else if let Some(rel) = s.strip_prefix('-') {
        let (n, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: u64 = n
            .parse()
            .map_err(parse("relative time: -<n>m, -<n>h or -<n>d"))?;
        let unit_ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(ClientError::Invalid(
                    "relative time unit is s, m, h or d".into(),
                ))
            }
        };
        now_ms.saturating_sub(n * unit_ms)
    } else {
        utc_ms(s).map_err(|why| ClientError::Parse {
            what: format!("--from {s:?}: an epoch, @unix-seconds, YYYY-MM-DDTHH:MM[:SS]Z or -2h"),
            source: ParseCause::Other(why.into()),
        })?
    };
    Ok(ms / len)
}

/// Asks the workers to replay the history of `rk_id_hex` from `from_epoch`; returns the request id.
pub async fn request_replay(
    owner: &Owner,
    ctl: &Ctl,
    rk_id_hex: &str,
    from_epoch: u64,
) -> Result<String> {
    let rk: [u8; 16] = hex::decode(rk_id_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ClientError::Invalid("an rk id is 32 hex digits".into()))?;
    let (id, signed) =
        issue_replay_request(owner.signing_key(), &rk, from_epoch, now_ms(), &mut OsRng);
    let id = hex::encode(id);
    ctl.send(
        &ctl.topics.control(),
        &id,
        &control(control_record::Record::ReplayRequest(signed)),
    )
    .await?;
    Ok(id)
}

/// Follows the workers' progress records for `request_id` until one is final or `timeout` passes;
/// `on` sees each new report. A request the worker refused comes back as state `refused` with the
/// dead letter's reason. Returns the last report seen.
pub async fn watch_replay(
    ctl: &Ctl,
    request_id: &str,
    timeout: Duration,
    mut on: impl FnMut(&ReplayStatus) + Send + 'static,
) -> Result<Option<ReplayStatus>> {
    let kafka = ctl.kafka.clone();
    let topic = ctl.topics.control();
    let dlq = ctl.topics.dlq();
    let id = request_id.to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = groupless_config(&kafka).create()?;
        let timeout_md = Duration::from_secs(10);
        let mut a = Assignment::new();
        a.add(&c, &topic, None, Start::Beginning, timeout_md)?;
        // A refused request shows up as a dead letter under its id: watch the last minutes of it.
        let since = now_ms().saturating_sub(600_000) as i64;
        a.add(&c, &dlq, None, Start::Time(since), timeout_md)?;
        a.assign(&c)?;
        let deadline = Instant::now() + timeout;
        let mut last: Option<ReplayStatus> = None;
        while Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            if m.key() != Some(id.as_bytes()) {
                continue;
            }
            let header = |name: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == name)
                        .map(|x| String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())
                })
            };
            if m.topic() == dlq {
                let s = ReplayStatus {
                    request_id: id.clone(),
                    state: "refused".into(),
                    detail: format!(
                        "{}: {}",
                        header("at-reason").unwrap_or_default(),
                        header("at-detail").unwrap_or_default()
                    ),
                    ..ReplayStatus::default()
                };
                on(&s);
                return Ok(Some(s));
            }
            if header(STATUS_HEADER).is_none() {
                continue;
            }
            let Ok(s) = serde_json::from_slice::<ReplayStatus>(m.payload().unwrap_or_default())
            else {
                continue;
            };
            if last.as_ref() != Some(&s) {
                on(&s);
            }
            let done = s.is_final();
            last = Some(s);
            if done {
                break;
            }
        }
        Ok(last)
    })
    .await?
}

/// The highest seq the device with signing key `writer` stored for `twin` (plain headers of
/// `at.sync.v1`), if any.
pub fn last_stored_seq(ctl: &Ctl, twin: &str, writer: &[u8]) -> Result<Option<u64>> {
    let recs = armored_runtime::reader::read_to_end(
        &ctl.kafka,
        &ctl.topics.sync(),
        Duration::from_secs(60),
    )?;
    Ok(recs
        .iter()
        .filter_map(|r| {
            decode_strict::<v1::Envelope>("Envelope", &r.payload, MAX_ENVELOPE_BYTES).ok()
        })
        .filter_map(|e| parse_header(&e.header).ok())
        .filter(|h| h.twin_id == twin && h.writer_key_id == writer)
        .map(|h| h.seq)
        .max())
}

/// What a device replacement did.
#[derive(Clone, Debug)]
pub struct Replacement {
    /// The old device's re-keys revoked.
    pub revoked_rekeys: usize,
    /// The old key's last trusted seq.
    pub last_valid_seq: u64,
    /// The new device's re-key.
    pub new_rk: String,
}

/// M3 without the replay: revokes the re-keys of `twin/old`, revokes its signing key with
/// `last_valid_seq` (given, or the last seq it stored), and enrolls the device of `card` in the
/// same twin. The old enrollment stays in the registry, so the twin's roster still names the old
/// key; the revocation bounds it to the changes up to `last_valid_seq`.
pub async fn replace_device(
    owner: &Owner,
    ctl: &Ctl,
    old: &str,
    card: &Card,
    last_valid_seq: Option<u64>,
) -> Result<Replacement> {
    let twin = card.twin_id.clone();
    if old == card.device_id {
        return Err(ClientError::Invalid(
            "the new device needs its own id (the old enrollment stays for its past changes)"
                .into(),
        ));
    }
    let reg = ctl.registry().await?;
    let entry = reg
        .enrollment(&twin, old)
        .ok_or_else(|| ClientError::NotFound(format!("{twin}/{old} is not enrolled")))?;
    let old_key = entry.enrollment.sig.key_id();
    if reg.twin_owner(&twin).map(|o| o.owner_id.as_str()) != Some(owner.owner_id.as_str()) {
        return Err(ClientError::Refused(format!(
            "twin {twin} belongs to another owner"
        )));
    }
    let last = match last_valid_seq {
        Some(s) => s,
        None => last_stored_seq(ctl, &twin, old_key.as_bytes())?.unwrap_or(0),
    };
    let revoked_rekeys = owner.revoke_receiver(ctl, &format!("{twin}/{old}")).await?;
    let r = issue_revocation(
        owner.signing_key(),
        RevocationKind::Device,
        old_key.as_bytes(),
        now_ms(),
        Some(last),
    );
    ctl.send(
        &ctl.topics.registry(),
        &format!("device:{twin}/{old}"),
        &record(Record::DeviceRevocation(r)),
    )
    .await?;
    let new_rk = owner.enroll_device(ctl, card).await?;
    Ok(Replacement {
        revoked_rekeys,
        last_valid_seq: last,
        new_rk,
    })
}

/// Phase 2 with history: grants `party` exactly `policy` (the upload names `history_from_epoch`)
/// and asks for the replay of the stored history from `from_epoch`. Returns (rk id, request id).
pub async fn grant_with_history(
    owner: &Owner,
    ctl: &Ctl,
    party: &str,
    policy: &str,
    from_epoch: u64,
) -> Result<(String, String)> {
    let window = EpochWindow {
        from_epoch: Some(from_epoch),
        until_epoch: None,
    };
    grant_window_with_history(owner, ctl, party, policy, window).await
}

/// A time-windowed grant with its history: grants `party` exactly `policy` for the epochs of
/// `window`, then asks for a replay from its first epoch (0 when open). The workers deliver only
/// the window's epochs, live and replayed.
pub async fn grant_window_with_history(
    owner: &Owner,
    ctl: &Ctl,
    party: &str,
    policy: &str,
    window: EpochWindow,
) -> Result<(String, String)> {
    let rk = owner.grant_window(ctl, party, policy, window).await?;
    let id = request_replay(owner, ctl, &rk, window.from_epoch.unwrap_or(0)).await?;
    Ok((rk, id))
}

/// An `--until`: an epoch number (fewer than 13 digits), or a time ([`crate::when::parse_until`]:
/// a duration from now, unix ms, `YYYY-MM-DDTHH:MM[:SS]Z`) turned into the first epoch that does
/// not end by it.
pub fn parse_until_epoch(s: &str, epoch_len_ms: u64, now_ms: u64) -> Result<u64> {
    let t = s.trim();
    if !t.is_empty() && t.len() < 13 && t.bytes().all(|c| c.is_ascii_digit()) {
        return t
            .parse()
            .map_err(|_| ClientError::Invalid(format!("--until {t:?}: not an epoch")));
    }
    let ms = crate::when::parse_until(t, now_ms)
        .map_err(|why| ClientError::Invalid(format!("--until {t:?}: {why}")))?;
    Ok(ms / epoch_len_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::{parse_from, parse_until_epoch};

    const H: u64 = 3_600_000;

    #[test]
    fn from_takes_epochs_times_and_relative_times() {
        let now = 1_795_611_600_000; // 2026-11-25T13:00:00Z
        assert_eq!(parse_from("42", H, now).ok(), Some(42));
        assert_eq!(parse_from("2026-11-25T13:00Z", H, now).ok(), Some(now / H));
        assert_eq!(
            parse_from("2024-02-29T23:59:59Z", 1000, now).ok(),
            Some(1_709_251_199)
        );
        assert_eq!(parse_from("@1795611600", H, now).ok(), Some(now / H));
        assert_eq!(parse_from("-2h", H, now).ok(), Some(now / H - 2));
        assert_eq!(
            parse_from("-90m", 60_000, now).ok(),
            Some(now / 60_000 - 90)
        );
        for bad in [
            "yesterday",
            "2026-13-01T00:00Z",
            "2026-11-25 13:00",
            "-2w",
            "@x",
        ] {
            assert!(parse_from(bad, H, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn until_takes_epochs_and_times_to_the_first_epoch_not_ending_by_it() {
        let now = 1_795_611_600_000; // 2026-11-25T13:00:00Z, an hour boundary
        assert_eq!(parse_until_epoch("42", H, now).ok(), Some(42));
        assert_eq!(parse_until_epoch("2h", H, now).ok(), Some(now / H + 2));
        assert_eq!(
            parse_until_epoch("2026-11-25T13:30:00Z", H, now).ok(),
            Some(now / H),
            "the epoch 13:00-14:00 does not end by 13:30"
        );
        assert_eq!(
            parse_until_epoch(&(now + H).to_string(), H, now).ok(),
            Some(now / H + 1)
        );
        for bad in ["", "soon", "2026-13-01T00:00:00Z", "-2h"] {
            assert!(parse_until_epoch(bad, H, now).is_err(), "{bad}");
        }
    }
}
