//! When messages were sent: XEP-0082 timestamps read into milliseconds since the Unix epoch
//! (UTC), and those shown in the reader's own local time and locale.
//!
//! Reading and writing timestamps is plain arithmetic, unit-tested natively; only the display
//! asks the browser (its time zone and locale are the reader's, and no crate needs to carry
//! time-zone tables into the app).

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count [`days_from_civil`] gave (its inverse).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    // Both in range by construction: 1..=31 and 1..=12.
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A run of exactly `len` ASCII digits at the start of `s`, and what follows.
fn digits(s: &str, len: usize) -> Option<(u32, &str)> {
    let head = s.get(..len)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[len..]))
}

/// Reads an XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss]TZD`, TZD `Z` or `±hh:mm`) as
/// XEP-0203 delay stamps and the archive (XEP-0313) carry it. Anything else, including dates
/// that do not exist, is `None`: the caller then falls back to the time it received the message.
pub fn parse_datetime(s: &str) -> Option<Millis> {
    if s.len() > 64 {
        return None;
    }
    let (year, s) = digits(s, 4)?;
    let (month, s) = digits(s.strip_prefix('-')?, 2)?;
    let (day, s) = digits(s.strip_prefix('-')?, 2)?;
    let (hour, s) = digits(s.strip_prefix('T')?, 2)?;
    let (minute, s) = digits(s.strip_prefix(':')?, 2)?;
    let (second, mut s) = digits(s.strip_prefix(':')?, 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        // A leap second is read as the last second of its minute.
        || second > 60
    {
        return None;
    }
    let mut millis = 0;
    if let Some(rest) = s.strip_prefix('.') {
        let len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        // Milliseconds are all a message time needs: further digits are dropped, missing ones
        // are zeros.
        for digit in rest[..len].bytes().chain(std::iter::repeat(b'0')).take(3) {
            millis = millis * 10 + i64::from(digit - b'0');
        }
        s = &rest[len..];
    }
    let offset_minutes = match s {
        "Z" => 0,
        _ => {
            let sign = match s.chars().next()? {
                '+' => 1,
                '-' => -1,
                _ => return None,
            };
            let (off_hour, rest) = digits(&s[1..], 2)?;
            let (off_minute, rest) = digits(rest.strip_prefix(':')?, 2)?;
            if !rest.is_empty() || off_hour > 23 || off_minute > 59 {
                return None;
            }
            sign * i64::from(off_hour * 60 + off_minute)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second.min(59))
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// `at` as an XEP-0082 DateTime in UTC with milliseconds (the `datetime` of the `<time>`
/// element each message shows).
pub fn format_datetime(at: Millis) -> String {
    let days = at.div_euclid(86_400_000);
    let in_day = at.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// When a received message was sent: its delay stamp when it has one the clock allows (a stamp
/// in the future is the sender's clock, not a time), else `now`.
pub fn sent_at(stamp: Option<&str>, now: Millis) -> Millis {
    stamp
        .and_then(parse_datetime)
        .map_or(now, |stamped| stamped.min(now))
}

/// Display in the reader's time zone and locale (the browser's).
#[cfg(target_arch = "wasm32")]
mod local {
    use std::cell::OnceCell;

    use js_sys::{Array, Date, Function, Intl, Object, Reflect};
    use wasm_bindgen::JsValue;

    use super::Millis;

    thread_local! {
        static CLOCK: OnceCell<Function> = const { OnceCell::new() };
        static DAY: OnceCell<Function> = const { OnceCell::new() };
        static MOMENT: OnceCell<Function> = const { OnceCell::new() };
    }

    type Options = &'static [(&'static str, &'static str)];

    /// The `format` function of an `Intl.DateTimeFormat` of the reader's locale with
    /// `options`; made once, since making one costs far more than using it.
    fn formatter(
        cell: &'static std::thread::LocalKey<OnceCell<Function>>,
        options: Options,
    ) -> Function {
        cell.with(|cell| {
            cell.get_or_init(|| {
                let object = Object::new();
                for (option, value) in options {
                    // Setting a property on a fresh plain object cannot fail.
                    let _ = Reflect::set(&object, &(*option).into(), &(*value).into());
                }
                Intl::DateTimeFormat::new(&Array::new(), &object).format()
            })
            .clone()
        })
    }

    fn format(
        cell: &'static std::thread::LocalKey<OnceCell<Function>>,
        options: Options,
        at: Millis,
    ) -> String {
        let date = Date::new(&JsValue::from_f64(at as f64));
        formatter(cell, options)
            .call1(&JsValue::NULL, &date)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default()
    }

    /// The time of day, short ("14:05", "2:05 PM").
    pub fn clock_time(at: Millis) -> String {
        format(&CLOCK, &[("timeStyle", "short")], at)
    }

    /// The whole date ("Monday, 7 December 2026").
    pub fn full_date(at: Millis) -> String {
        format(&DAY, &[("dateStyle", "full")], at)
    }

    /// The date and time ("Monday, 7 December 2026 at 14:05").
    pub fn full_date_time(at: Millis) -> String {
        format(
            &MOMENT,
            &[("dateStyle", "full"), ("timeStyle", "short")],
            at,
        )
    }

    /// The local calendar day of `at`, as a number that orders days.
    pub fn local_day(at: Millis) -> i64 {
        let date = Date::new(&JsValue::from_f64(at as f64));
        i64::from(date.get_full_year()) * 10_000
            + i64::from(date.get_month()) * 100
            + i64::from(date.get_date())
    }
}

#[cfg(target_arch = "wasm32")]
pub use local::{clock_time, full_date, full_date_time, local_day};

/// The browser is the only place that knows the reader's time zone; natively (unit tests)
/// times are shown in UTC.
#[cfg(not(target_arch = "wasm32"))]
mod local {
    use super::Millis;

    pub fn clock_time(at: Millis) -> String {
        super::format_datetime(at)[11..16].to_owned()
    }

    pub fn full_date(at: Millis) -> String {
        super::format_datetime(at)[..10].to_owned()
    }

    pub fn full_date_time(at: Millis) -> String {
        super::format_datetime(at)[..16].replace('T', " ")
    }

    pub fn local_day(at: Millis) -> i64 {
        at.div_euclid(86_400_000)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use local::{clock_time, full_date, full_date_time, local_day};

/// The heading of the day `at` is on, relative to `now`: today, yesterday, or the full date.
pub fn day_heading(at: Millis, now: Millis) -> String {
    let day = local_day(at);
    if day == local_day(now) {
        crate::text::TODAY.to_owned()
    } else if day == local_day(now - 86_400_000) {
        crate::text::YESTERDAY.to_owned()
    } else {
        full_date(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xep_0082_datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        // XEP-0082's own examples.
        assert_eq!(
            parse_datetime("1969-07-21T02:56:15Z"),
            Some(-14_159_025_000)
        );
        assert_eq!(
            parse_datetime("1969-07-20T21:56:15-05:00"),
            Some(-14_159_025_000)
        );
        assert_eq!(
            parse_datetime("2026-12-07T10:42:05.123Z"),
            Some(1_796_640_125_123)
        );
        // Fractions: one digit is tenths; digits past milliseconds are dropped.
        assert_eq!(
            parse_datetime("2026-12-07T10:42:05.1Z"),
            Some(1_796_640_125_100)
        );
        assert_eq!(
            parse_datetime("2026-12-07T10:42:05.123456Z"),
            Some(1_796_640_125_123)
        );
        assert_eq!(
            parse_datetime("2026-12-07T12:42:05+02:00"),
            parse_datetime("2026-12-07T10:42:05Z")
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        // A leap second counts as the minute's last second.
        assert_eq!(
            parse_datetime("2016-12-31T23:59:60Z"),
            parse_datetime("2016-12-31T23:59:59Z")
        );
    }

    #[test]
    fn refuses_what_is_not_a_datetime() {
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T10:42Z",
            "2026-12-07T10:42:05",
            "2026-12-07 10:42:05Z",
            "2026-13-07T10:42:05Z",
            "2026-00-07T10:42:05Z",
            "2026-02-29T10:42:05Z",
            "1900-02-29T10:42:05Z",
            "2026-04-31T10:42:05Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T10:60:05Z",
            "2026-12-07T10:42:61Z",
            "2026-12-07T10:42:05.Z",
            "2026-12-07T10:42:05+0200",
            "2026-12-07T10:42:05+24:00",
            "2026-12-07T10:42:05Zjunk",
            "+2026-12-07T10:42:05Z",
            "2026-1２-07T10:42:05Z",
            "20261207T10:42:05",
            "２026-12-07T10:42:05Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
        assert_eq!(parse_datetime(&"9".repeat(100_000)), None);
    }

    #[test]
    fn writes_what_it_reads() {
        for at in [
            0,
            -1,
            951_782_400_000,
            1_796_640_125_123,
            -14_159_025_000,
            253_402_300_799_999,
        ] {
            assert_eq!(parse_datetime(&format_datetime(at)), Some(at), "{at}");
        }
        assert_eq!(
            format_datetime(1_796_640_125_123),
            "2026-12-07T10:42:05.123Z"
        );
        // Every day of four centuries, through both directions of the day arithmetic.
        for days in -146_097..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn a_message_time_is_its_stamp_unless_that_is_in_the_future() {
        let now = parse_datetime("2026-12-07T10:00:00Z").unwrap();
        let earlier = parse_datetime("2026-12-06T09:00:00Z").unwrap();
        assert_eq!(sent_at(Some("2026-12-06T09:00:00Z"), now), earlier);
        assert_eq!(sent_at(Some("2027-01-01T00:00:00Z"), now), now);
        assert_eq!(sent_at(Some("yesterday"), now), now);
        assert_eq!(sent_at(None, now), now);
    }

    #[test]
    fn day_headings() {
        let now = parse_datetime("2026-12-07T10:00:00Z").unwrap();
        assert_eq!(day_heading(now - 3_600_000, now), crate::text::TODAY);
        assert_eq!(
            day_heading(parse_datetime("2026-12-06T23:59:59Z").unwrap(), now),
            crate::text::YESTERDAY
        );
        assert_eq!(
            day_heading(parse_datetime("2026-12-05T12:00:00Z").unwrap(), now),
            "2026-12-05"
        );
    }
}
