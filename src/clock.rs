//! Time for people and for trust decisions: the clock, durations (`90d`), points in time
//! (`2027-06-30`) and how both are printed.

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the time comes from for a trust decision: this host's clock, or a fixed time (to
/// replay a decision, or in tests). Expiry, maximum ages and "created in the future" are only
/// as good as the clock (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    System,
    /// Seconds since the Unix epoch.
    At(u64),
}

impl Clock {
    /// Seconds since the Unix epoch.
    pub fn now(self) -> u64 {
        match self {
            Clock::System => now(),
            Clock::At(t) => t,
        }
    }
}

/// A duration such as `90d`, `12h`, `2w` or `1h 30m`, in seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s.trim())
        .map(|d| d.as_secs())
        .map_err(|e| format!("{s:?} is not a duration such as 90d, 12h or 30m: {e}"))
}

/// A point in time: a duration from `now` (`90d`), a UTC date (`2027-06-30`, its midnight) or
/// an RFC 3339 UTC time (`2027-06-30T12:00:00Z`).
pub fn parse_when(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_add(d.as_secs()));
    }
    let time = if s.len() == 10 {
        humantime::parse_rfc3339(&format!("{s}T00:00:00Z"))
    } else {
        humantime::parse_rfc3339(s)
    };
    time.ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            format!("{s:?} is neither a duration (90d) nor a UTC date (2027-06-30) or time (2027-06-30T12:00:00Z)")
        })
}

/// 9999-12-31T23:59:59Z, in seconds since the epoch: the last time RFC 3339 can write.
const LAST_SECOND: u64 = 253_402_300_799;

/// `seconds` since the epoch as an RFC 3339 UTC time.
pub fn utc(seconds: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.min(LAST_SECOND));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    // Validated manifests keep times within 9999-12-31 (`format::MAX_CREATED`, the same
    // bound); anything else is shown raw rather than risk a panic in date arithmetic.
    if secs > LAST_SECOND {
        return format!("{secs} seconds after 1970 (out of range)");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// A duration for people, in its largest whole unit.
pub fn span(seconds: u64) -> String {
    match seconds {
        s if s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86400));
        assert_eq!(parse_duration("1h 30m"), Ok(5400));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_when("2d", 100), Ok(100 + 2 * 86400));
        assert_eq!(parse_when("2027-01-01", 0), Ok(1798761600));
        assert_eq!(parse_when("2027-01-01T00:00:10Z", 0), Ok(1798761610));
        assert!(parse_when("01/01/2027", 0).is_err());
        assert_eq!(utc(1798761600), "2027-01-01T00:00:00Z");
        assert_eq!(span(90 * 86400 + 3600 + 5), "90 days");
        assert_eq!(span(7199), "119 minutes");
    }
}
