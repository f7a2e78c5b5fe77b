//! Timestamps as the catalogue stores them.
//!
//! PostgreSQL keeps `timestamptz` (microsecond precision, UTC). SQLite has no date type, so
//! the same instant is stored as fixed-width RFC 3339 text in UTC,
//! `2026-11-25T19:37:23.123456Z`: fixed width means text order is time order, so indexes
//! and `ORDER BY` work unchanged. Both backends therefore round-trip to the microsecond,
//! and [`Ts::new`] truncates to that precision so a value reads back equal to what was
//! written.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};

/// SQLite text form: always 27 characters for years 0000..=9999.
const SQLITE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// A UTC instant truncated to microseconds, bindable and decodable on both backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts(DateTime<Utc>);

impl Ts {
    /// Truncates to whole microseconds (the precision both backends keep).
    pub(crate) fn new(t: DateTime<Utc>) -> Self {
        Ts(t.trunc_subsecs(6))
    }

    /// The instant.
    pub(crate) fn get(self) -> DateTime<Utc> {
        self.0
    }

    fn sqlite_text(self) -> String {
        self.0.format(SQLITE_FORMAT).to_string()
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(self.sqlite_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        let t = DateTime::parse_from_rfc3339(text)?;
        Ok(Ts(t.with_timezone(&Utc)))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Postgres> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<'r, Postgres>>::decode(value).map(Ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_text_is_fixed_width_and_sorts_by_time() {
        let a = Ts::new(Utc.with_ymd_and_hms(2026, 11, 25, 19, 37, 23).unwrap());
        let b = Ts::new(a.get() + chrono::Duration::nanoseconds(1_500));
        let c = Ts::new(a.get() + chrono::Duration::milliseconds(120));
        assert_eq!(a.sqlite_text(), "2026-11-25T19:37:23.000000Z");
        assert_eq!(b.sqlite_text(), "2026-11-25T19:37:23.000001Z");
        assert_eq!(c.sqlite_text(), "2026-11-25T19:37:23.120000Z");
        assert!(a.sqlite_text() < b.sqlite_text() && b.sqlite_text() < c.sqlite_text());
    }

    #[test]
    fn truncates_to_microseconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(Ts::new(t).get().timestamp_subsec_nanos(), 123_456_000);
    }
}
