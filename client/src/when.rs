//! Points in time and durations on the command line: `90s`, `15m`, `2h`, `7d`, a Unix time in
//! milliseconds, or an RFC 3339 UTC time `2026-12-31T23:59:59Z`.

use std::time::Duration;

/// Parses a duration: a number with `ms`, `s`, `m`, `h` or `d` (no suffix: seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 15m, 2h, 7d)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a point in time relative to `now_ms`: a duration from now, a Unix time in ms (13+
/// digits), or RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn parse_until(s: &str, now_ms: u64) -> Result<u64, String> {
    let t = s.trim();
    if t.len() >= 13 && t.bytes().all(|c| c.is_ascii_digit()) {
        return t
            .parse()
            .map_err(|_| format!("{t:?} is not a Unix time in ms"));
    }
    if t.contains('T') {
        return parse_rfc3339_utc(t);
    }
    Ok(now_ms.saturating_add(parse_duration(t)?.as_millis() as u64))
}

fn parse_rfc3339_utc(t: &str) -> Result<u64, String> {
    utc_ms(t).map_err(|why| {
        format!("{t:?} is not an RFC 3339 UTC time like 2026-12-31T23:59:59Z: {why}")
    })
}

/// `YYYY-MM-DDTHH:MM[:SS]Z` to unix milliseconds (days from civil: Howard Hinnant's algorithm,
/// proleptic Gregorian); the error says what is wrong.
pub fn utc_ms(s: &str) -> Result<u64, &'static str> {
    let s = s.strip_suffix('Z').ok_or("UTC times end in Z")?;
    let (date, time) = s.split_once('T').ok_or("date and time are joined by T")?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| "the date is not YYYY-MM-DD")?;
    let t: Vec<i64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| "the time is not HH:MM[:SS]")?;
    let ([y, m, day], [hh, mm, rest @ ..]) = (d.as_slice(), t.as_slice()) else {
        return Err("want YYYY-MM-DDTHH:MM[:SS]Z");
    };
    let ss = rest.first().copied().unwrap_or(0);
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || ss > 60 {
        return Err("date or time out of range");
    }
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000).map_err(|_| "times before 1970 are out of range")
}

/// A point in time `back` ago, or a Unix time in ms, or RFC 3339 UTC (`--since 1h`).
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64, String> {
    match parse_duration(s.trim()) {
        Ok(d) => Ok(now_ms.saturating_sub(d.as_millis() as u64)),
        Err(_) => parse_until(s, now_ms),
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (civil from days: the inverse of [`utc_ms`]).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_times_parse_back() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T12:00:00Z",
            "2026-12-31T23:59:59Z",
            "2100-03-01T00:00:01Z",
        ] {
            let ms = utc_ms(t).unwrap_or(u64::MAX);
            assert_eq!(format_utc(ms), t);
        }
        assert_eq!(parse_since("1h", 7_200_000), Ok(3_600_000));
        assert_eq!(parse_since("1970-01-02T00:00:00Z", 0), Ok(86_400_000));
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_until("1m", 1000), Ok(61_000));
        assert_eq!(parse_until("1700000000000", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_until("1970-01-02T00:00:00Z", 0), Ok(86_400_000));
        assert_eq!(
            parse_until("2024-02-29T12:00:00Z", 0),
            Ok(1_709_208_000_000)
        );
        assert!(parse_until("2024-13-01T00:00:00Z", 0).is_err());
        // Seconds are optional; the zone is not.
        assert_eq!(utc_ms("1970-01-02T00:00Z"), Ok(86_400_000));
        assert!(utc_ms("1970-01-02T00:00").is_err());
        assert!(utc_ms("1969-12-31T23:59:59Z").is_err());
    }
}
