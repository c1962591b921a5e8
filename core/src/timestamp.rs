//! Daemon timestamps: the RFC 3339 prefix of every log frame, and the `since` of a reopen.
//!
//! The daemon prefixes each message with `2006-01-02T15:04:05.000000000Z` (nine fraction digits,
//! UTC) when asked for `timestamps=1`. Parsing accepts any RFC 3339 date-time with 0 to 9
//! fraction digits and a `Z` or `±HH:MM` offset, and reports malformed input as a typed
//! [`TimestampError`], never a panic.

use std::fmt;

/// Nanoseconds since the Unix epoch, as the daemon stamped a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Timestamp(pub u64);

/// The longest timestamp text accepted (`9999-12-31T23:59:59.999999999+23:59` is 35 bytes).
pub const MAX_TS_LEN: usize = 40;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Why a timestamp could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TimestampError {
    /// The text does not have the shape `YYYY-MM-DDTHH:MM:SS[.fffffffff](Z|±HH:MM)`.
    #[error("not an RFC 3339 timestamp")]
    Malformed,
    /// A field is out of its range (month 13, hour 25, February 30, ...).
    #[error("timestamp field out of range")]
    OutOfRange,
    /// The instant lies before 1970 or too far in the future for nanoseconds in 64 bits.
    #[error("timestamp outside 1970..2554")]
    Unrepresentable,
}

impl Timestamp {
    /// Seconds since the Unix epoch.
    pub fn secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// The nanoseconds within the second.
    pub fn subsec_nanos(self) -> u32 {
        (self.0 % NANOS_PER_SEC) as u32
    }

    /// This instant cut to its whole second (used only by the whole-second mutant).
    #[cfg(feature = "mutants")]
    pub fn floor_secs(self) -> Timestamp {
        Timestamp(self.secs() * NANOS_PER_SEC)
    }

    /// Parses an RFC 3339 date-time with up to nine fraction digits.
    pub fn parse_rfc3339(text: &[u8]) -> Result<Timestamp, TimestampError> {
        parse(text)
    }

    /// The value of the Engine API's `since` query parameter: `seconds.nanoseconds`.
    pub fn to_since(self) -> Since {
        Since(self)
    }
}

/// A `since` for `GET /containers/{id}/logs`, displayed as `seconds.nanoseconds` (nine digits).
///
/// The daemon treats it as inclusive at nanosecond precision: the message stamped exactly
/// `since` is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Since(pub Timestamp);

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0.secs(), self.0.subsec_nanos())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with nine fraction digits, the daemon's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.secs();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let sod = secs % 86_400;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            self.subsec_nanos()
        )
    }
}

fn digits(text: &[u8], at: usize, n: usize) -> Result<u64, TimestampError> {
    let field = text.get(at..at + n).ok_or(TimestampError::Malformed)?;
    field.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u64::from(b - b'0'))
        } else {
            Err(TimestampError::Malformed)
        }
    })
}

fn expect(text: &[u8], at: usize, want: &[u8]) -> Result<(), TimestampError> {
    match text.get(at) {
        Some(b) if want.contains(b) => Ok(()),
        _ => Err(TimestampError::Malformed),
    }
}

fn parse(text: &[u8]) -> Result<Timestamp, TimestampError> {
    if text.len() > MAX_TS_LEN {
        return Err(TimestampError::Malformed);
    }
    let year = digits(text, 0, 4)?;
    expect(text, 4, b"-")?;
    let month = digits(text, 5, 2)?;
    expect(text, 7, b"-")?;
    let day = digits(text, 8, 2)?;
    expect(text, 10, b"Tt")?;
    let hour = digits(text, 11, 2)?;
    expect(text, 13, b":")?;
    let minute = digits(text, 14, 2)?;
    expect(text, 16, b":")?;
    let second = digits(text, 17, 2)?;
    let mut at = 19;
    let mut nanos = 0u64;
    if text.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < text.len() && text[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if n == 0 || n > 9 {
            return Err(TimestampError::Malformed);
        }
        nanos = digits(text, start, n)? * 10u64.pow((9 - n) as u32);
    }
    let offset_secs: i64 = match text.get(at) {
        Some(b'Z' | b'z') if text.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if text.len() == at + 6 => {
            let oh = digits(text, at + 1, 2)?;
            expect(text, at + 3, b":")?;
            let om = digits(text, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimestampError::OutOfRange);
            }
            let off = (oh * 3600 + om * 60) as i64;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return Err(TimestampError::Malformed),
    };
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimestampError::OutOfRange);
    }
    // A leap second (60) is folded into the next second, as Go's time package does.
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let local = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    let utc = local - offset_secs;
    if utc < 0 {
        return Err(TimestampError::Unrepresentable);
    }
    (utc as u64)
        .checked_mul(NANOS_PER_SEC)
        .and_then(|ns| ns.checked_add(nanos))
        .map(Timestamp)
        .ok_or(TimestampError::Unrepresentable)
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
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
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse_rfc3339(s.as_bytes())
    }

    #[test]
    fn parses_the_daemon_format() {
        assert_eq!(ts("1970-01-01T00:00:00.000000000Z"), Ok(Timestamp(0)));
        assert_eq!(
            ts("2024-01-01T00:00:05.000000001Z"),
            Ok(Timestamp(1_704_067_205_000_000_001))
        );
        assert_eq!(
            ts("2026-11-28T04:24:36.688624174Z"),
            Ok(Timestamp(1_795_839_876_688_624_174))
        );
    }

    #[test]
    fn short_fractions_offsets_and_leap_days() {
        assert_eq!(ts("1970-01-01T00:00:01Z"), Ok(Timestamp(1_000_000_000)));
        assert_eq!(ts("1970-01-01T00:00:01.5Z"), Ok(Timestamp(1_500_000_000)));
        assert_eq!(ts("1970-01-01T01:00:00+01:00"), Ok(Timestamp(0)));
        assert_eq!(ts("1969-12-31T23:00:00-01:00"), Ok(Timestamp(0)));
        assert!(ts("2024-02-29T00:00:00Z").is_ok());
        assert_eq!(ts("2023-02-29T00:00:00Z"), Err(TimestampError::OutOfRange));
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        for bad in [
            "",
            "2024",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.0000000001Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-1a-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(ts(bad), Err(TimestampError::Malformed), "{bad:?}");
        }
        assert_eq!(ts("2024-13-01T00:00:00Z"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("2024-01-01T24:00:00Z"), Err(TimestampError::OutOfRange));
        assert_eq!(
            ts("1969-12-31T23:59:59Z"),
            Err(TimestampError::Unrepresentable)
        );
        assert_eq!(
            ts("9999-12-31T23:59:59Z"),
            Err(TimestampError::Unrepresentable)
        );
    }

    #[test]
    fn since_is_seconds_dot_nine_digit_nanoseconds() {
        assert_eq!(
            Timestamp(1_500_000_007).to_since().to_string(),
            "1.500000007"
        );
        assert_eq!(Timestamp(0).to_since().to_string(), "0.000000000");
    }

    #[test]
    fn display_round_trips() {
        for t in [0, 1, 1_704_067_205_000_000_001, 4_102_444_800_123_456_789] {
            let text = Timestamp(t).to_string();
            assert_eq!(ts(&text), Ok(Timestamp(t)), "{text}");
        }
    }
}
