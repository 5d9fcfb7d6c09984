//! The service's log lines, on standard error: `text` (the default, for people:
//! `2026-12-03T07:20:00.123Z info portcullis: bundle revision … loaded`) or `json` (one object
//! per line, for log pipelines: `{"ts": "…", "level": "info", "msg": "…"}`). The format is set
//! once, at start ([`set_format`]). No line ever holds a token or a secret: callers pass
//! messages made of the service's own words and sanitised names.

use std::sync::OnceLock;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `<time> <level> portcullis: <message>`.
    #[default]
    Text,
    /// `{"ts", "level", "msg"}`.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}`: use text or json")),
        }
    }
}

/// A line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation (a bundle loaded, keys fetched).
    Info,
    /// Something refused or failing that the service survives (a bad bundle, an IdP down).
    Warn,
    /// A failure that denies requests (the sandbox failed, the audit log cannot write).
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Set the format of every line from now on (once; later calls are ignored).
pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

/// Now, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        now.subsec_millis(),
    )
}

/// Write one line.
pub fn line(level: Level, message: &str) {
    let ts = now_rfc3339();
    match FORMAT.get().copied().unwrap_or_default() {
        Format::Text => eprintln!("{ts} {} portcullis: {message}", level.as_str()),
        Format::Json => eprintln!(
            "{}",
            serde_json::json!({"ts": ts, "level": level.as_str(), "msg": message})
        ),
    }
}

/// [`line()`] at [`Level::Info`].
pub fn info(message: &str) {
    line(Level::Info, message);
}

/// [`line()`] at [`Level::Warn`].
pub fn warn(message: &str) {
    line(Level::Warn, message);
}

/// [`line()`] at [`Level::Error`].
pub fn error(message: &str) {
    line(Level::Error, message);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix time `seconds` (UTC; the proleptic Gregorian calendar,
/// days from civil by Howard Hinnant's algorithm).
fn rfc3339(seconds: i64, millis: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc_3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_767_225_600, 999), "2026-01-01T00:00:00.999Z");
        assert_eq!(rfc3339(1_796_342_399, 0), "2026-12-03T23:59:59.000Z");
        assert_eq!(rfc3339(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }
}
