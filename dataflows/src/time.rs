//! Event time as integer milliseconds since the Unix epoch (UTC): parsing RFC 3339,
//! formatting for PostgreSQL, and tumbling-window arithmetic.
//!
//! Owns every conversion between text and `Millis`; knows nothing of events or I/O.

/// Milliseconds since 1970-01-01T00:00:00Z. All event-time arithmetic uses this.
pub type Millis = i64;

/// Why an RFC 3339 timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub &'static str);

/// Parses an RFC 3339 timestamp with an offset (`2026-11-01T08:15:30.123Z`,
/// `2026-11-01T09:15:30+01:00`) into UTC milliseconds; digits finer than a millisecond
/// are truncated. Years 0001–9999; leap seconds (`:60`) are refused.
pub fn parse_rfc3339(s: &str) -> Result<Millis, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(TimeError("too short for RFC 3339 (YYYY-MM-DDTHH:MM:SSZ)"));
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(TimeError("date or time separators are not '-' and ':'"));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(TimeError("date and time are not separated by 'T'"));
    }
    if year == 0 {
        return Err(TimeError("year 0000 is out of range"));
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(TimeError("no such calendar date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TimeError("time of day out of range"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(TimeError("no digits after the decimal point"));
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimeError("offset out of range"));
            }
            let m = oh * 60 + om;
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return Err(TimeError("missing or malformed offset (Z or ±HH:MM)")),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, TimeError> {
    let mut v = 0i64;
    for &c in b.get(at..at + n).ok_or(TimeError("truncated timestamp"))? {
        if !c.is_ascii_digit() {
            return Err(TimeError("expected a digit"));
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
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

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Formats as RFC 3339 in UTC with milliseconds: `2026-11-01T08:15:30.123Z`.
/// `i64::MAX` (the watermark after a bounded input ends) formats as `infinity`,
/// which PostgreSQL reads as the infinite timestamp.
pub fn format_rfc3339(t: Millis) -> String {
    if t == Millis::MAX {
        return "infinity".to_owned();
    }
    if t == Millis::MIN {
        return "-infinity".to_owned();
    }
    let days = t.div_euclid(86_400_000);
    let ms = t.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Start of the tumbling window of length `len` (aligned to the epoch) holding `t`.
pub fn window_start(t: Millis, len: Millis) -> Millis {
    t.div_euclid(len) * len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_with_and_without_fraction() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_rfc3339("2026-11-01T08:15:30.123Z"), Ok(1_793_520_930_123));
    }

    #[test]
    fn truncates_below_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.123999999Z"), Ok(123));
    }

    #[test]
    fn normalises_offsets_to_utc() {
        assert_eq!(parse_rfc3339("2026-11-01T09:15:30.123+01:00"), parse_rfc3339("2026-11-01T08:15:30.123Z"));
        assert_eq!(parse_rfc3339("2026-10-31T23:00:00-09:15"), parse_rfc3339("2026-11-01T08:15:00Z"));
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-11-01",
            "2026-11-01T08:15:30",
            "2026-11-01T08:15:30+0100",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T08:15:60Z",
            "2026-11-01T08:15:30.Z",
            "0000-01-01T00:00:00Z",
            "2026-11-01T08:15:30Zjunk",
            "2026/11/01T08:15:30Z",
            "２026-11-01T08:15:30Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn formats_round_trip() {
        for t in [0, 1_793_520_930_123, -1, 253_402_300_799_999, -62_135_596_800_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t), "{}", format_rfc3339(t));
        }
        assert_eq!(format_rfc3339(i64::MAX), "infinity");
    }

    #[test]
    fn windows_are_half_open_and_epoch_aligned() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
    }
}
