//! HubSpot's dates and datetimes read as calendar days and timestamps. A leaf module:
//! templates' filters and the planner's transforms both use it.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::Date;

/// A HubSpot date or datetime (`2026-12-31`, ISO 8601 with time, or epoch
/// milliseconds) as the UTC calendar day `YYYY-MM-DD`.
pub fn to_date(text: &str) -> Result<String, String> {
    if let Ok(date) = Date::from_str(text.trim()) {
        return Ok(date.to_string());
    }
    let ts = to_timestamp(text)?;
    Ok(ts
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string())
}

/// A HubSpot datetime (ISO 8601 or epoch milliseconds) as a timestamp.
pub fn to_timestamp(text: &str) -> Result<Timestamp, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        let ms: i64 = t.parse().map_err(|_| format!("`{t}` is not a date"))?;
        return Timestamp::from_millisecond(ms)
            .map_err(|_| format!("`{t}` is out of range for a date"));
    }
    if let Ok(ts) = Timestamp::from_str(t) {
        return Ok(ts);
    }
    if let Ok(date) = Date::from_str(t) {
        return date
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "`{t}` is not a date (expected YYYY-MM-DD, ISO 8601 or epoch milliseconds)"
    ))
}
