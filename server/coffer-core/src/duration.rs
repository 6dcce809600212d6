//! Durations as people write them in settings and requests: `"90s"`,
//! `"36h"`, `"3d"`, `"1w"`, or combinations (`"1d 12h"`), through humantime.
//! A bare number is seconds, so end-to-end tests can say `"2"`.

use std::time::Duration;

/// Parse `s`; the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write it like \"90s\", \"36h\", \"3d\" or \"1w\"")
    })
}

/// A duration as a short human string (`"3d"`, `"36h"`, `"90s"`).
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_as_people_do() {
        for (text, secs) in [
            ("90s", 90),
            ("36h", 129_600),
            ("3d", 259_200),
            ("1w", 604_800),
            ("1d 12h", 129_600),
            ("45", 45),
        ] {
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs), "{text}");
        }
        assert!(parse("soon").unwrap_err().contains("\"3d\""));
        assert_eq!(format(Duration::from_secs(259_200)), "3d");
        assert_eq!(format(Duration::from_secs(129_600)), "36h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
