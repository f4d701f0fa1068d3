//! Go's time formats, as the Go bench tools speak them: durations (`10s`, `1m30s`,
//! `250ms`) for flags and reports, the `--deadline` layout (`2006-01-02 15:04:05`, UTC like
//! Go's `time.Parse`), and the `log` package's `2006/01/02 15:04:05` timestamp.
//! Pure functions; no clock reads except in [`log_timestamp_now`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a Go duration: one or more `<decimal><unit>` parts, units `ns us µs ms s m h`,
/// or a bare `0`. Negative durations are rejected (nothing here wants one).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected a Go duration like 10s, 1m30s, 250ms)");
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s.as_bytes();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.split_first() {
            Some((b'.', tail)) => {
                let n = tail.iter().take_while(|b| b.is_ascii_digit()).count();
                tail.split_at(n)
            }
            _ => (&after[..0], after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .iter()
            .take_while(|b| !b.is_ascii_digit() && **b != b'.')
            .count();
        let (unit, tail) = after.split_at(unit_len);
        let unit_ns: u128 = match std::str::from_utf8(unit).map_err(|_| bad())? {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let int = digits_value(int_digits).ok_or_else(bad)?;
        total = total
            .checked_add(int.checked_mul(unit_ns).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        // Only the first 18 fraction digits can matter at nanosecond resolution.
        let frac = &frac_digits[..frac_digits.len().min(18)];
        if !frac.is_empty() {
            let scale = 10u128.pow(frac.len() as u32);
            total += digits_value(frac).ok_or_else(bad)? * unit_ns / scale;
        }
        rest = tail;
    }
    let nanos = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_nanos(nanos))
}

fn digits_value(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, d| {
        acc.checked_mul(10)?.checked_add(u128::from(d - b'0'))
    })
}

/// Formats like Go's `time.Duration.String`: `0s`, `750µs`, `1.5ms`, `10.000512s`, `1m0s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", decimal(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", decimal(ns, 6));
    }
    let secs = ns / 1_000_000_000;
    let frac_ns = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&decimal(s * 1_000_000_000 + frac_ns, 9));
    out.push('s');
    out
}

/// `value / 10^digits` written with the fraction's trailing zeros trimmed.
fn decimal(value: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Parses the Go tools' `--deadline` layout `2006-01-02 15:04:05` as UTC (Go's
/// `time.Parse` assumes UTC when the layout has no zone).
pub fn parse_deadline(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("invalid deadline {s:?} (expected \"2006-01-02 15:04:05\", UTC)");
    let b = s.trim().as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(digits_value(part).ok_or_else(bad)? as i64)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Go `log`'s default prefix timestamp `2006/01/02 15:04:05`, here always in UTC.
pub fn log_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}/{mo:02}/{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

pub fn log_timestamp_now() -> String {
    log_timestamp(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration(".5h"), Ok(ms(1_800_000)));
        assert_eq!(parse_duration("2µs3ns"), Ok(Duration::from_nanos(2_003)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1x", "-1s", "1..2s", "."] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_print_like_go() {
        let f = |ns: u64| format_duration(Duration::from_nanos(ns));
        assert_eq!(f(0), "0s");
        assert_eq!(f(42), "42ns");
        assert_eq!(f(750_000), "750µs");
        assert_eq!(f(1_500_000), "1.5ms");
        assert_eq!(f(10_000_512_000), "10.000512s");
        assert_eq!(f(60_000_000_000), "1m0s");
        assert_eq!(f(3_723_500_000_000), "1h2m3.5s");
    }

    #[test]
    fn deadline_is_utc_and_round_trips_through_log_timestamp() {
        let t = parse_deadline("2024-02-29 23:59:58").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_709_251_198
        );
        assert_eq!(log_timestamp(t), "2024/02/29 23:59:58");
        assert_eq!(log_timestamp(UNIX_EPOCH), "1970/01/01 00:00:00");
        for bad in [
            "2023-02-29 00:00:00",
            "2024-01-01T00:00:00",
            "2024-13-01 00:00:00",
            "x",
        ] {
            assert!(parse_deadline(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
