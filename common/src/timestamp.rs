//! The one way a dynamic-mcp process writes a time for others to read:
//! RFC 3339 in UTC with exactly three fraction digits, so that the text
//! sorts like the time.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn rfc3339_millis(at: impl Into<OffsetDateTime>) -> String {
    at.into().to_offset(UtcOffset::UTC).format(FORMAT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(
            rfc3339_millis(datetime!(2026-01-02 03:04:05.678_9 UTC)),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            rfc3339_millis(datetime!(2026-01-02 03:04:05 +02:00)),
            "2026-01-02T01:04:05.000Z"
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(at), "2023-11-14T22:13:20.123Z");
    }
}
