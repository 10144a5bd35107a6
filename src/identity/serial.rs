//! Serial numbers: how a profile says they are made ([`SerialScheme`]), what happens when a chip
//! comes back ([`ReworkPolicy`]), what a serial may contain, and how a counter value becomes a
//! serial. One home for a serial's shape: the profile check, the ledger's allocation and the
//! central database's leases all ask this module, so what `profile check` accepts is exactly
//! what a line can issue.

use serde::{Deserialize, Serialize};

/// Longest serial, in characters (a serial is also a certificate CN and a label's text).
pub const SERIAL_LENGTH_MAX: usize = 64;
/// Widest counter: every value a ledger stores has at most 19 decimal digits.
pub const COUNTER_WIDTH_MAX: u32 = 19;
/// Largest counter value: counters are stored as signed 64-bit integers (SQLite, PostgreSQL's
/// bigint) together with the value after it, so the last value is 2^63 - 2.
pub const COUNTER_VALUE_MAX: u64 = i64::MAX as u64 - 1;

/// How a new serial number is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialScheme {
    /// `prefix` followed by a decimal counter zero-padded to `counter_width` digits. The counter
    /// is kept per prefix in the ledger and starts at `first_value` (or later if it already
    /// passed it). A value needing more than `counter_width` digits is an error, not a wider serial.
    Counter { prefix: String, counter_width: u32, first_value: u64 },
    /// The serial is the one scanned from the unit's label (the ledger's
    /// `IdentityRequest::scanned_serial`).
    Scanned,
}

/// What to do when a chip that already has an identity comes back to the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReworkPolicy {
    /// Give the unit the identity it already has (same serial and device ID).
    #[default]
    ReuseIdentity,
    /// Stop: the unit must not be provisioned again (the ledger's `ReworkRefused`).
    Refuse,
    /// Retire the old identity into the history and issue a new serial.
    IssueNew,
}

/// What is wrong with a serial scheme or a serial. `field` is the scheme's part
/// (`prefix`, `counter_width`, `first_value`) or where a serial came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialSchemeError {
    /// A part of the scheme or a serial is outside what is accepted.
    #[error("{field}: expected {expected}, found {found:?}")]
    Invalid { field: &'static str, expected: String, found: String },
    /// The counter has no value left for this width.
    #[error("serial counter {prefix:?} is exhausted: value {value} {reason}")]
    Exhausted { prefix: String, counter_width: u32, value: u64, reason: String },
}

/// Checks a serial's text: 1 to 64 printable ASCII characters without spaces.
pub fn check_serial_text(field: &'static str, serial: &str) -> Result<(), SerialSchemeError> {
    let is_valid = !serial.is_empty()
        && serial.len() <= SERIAL_LENGTH_MAX
        && serial.bytes().all(|byte| byte.is_ascii_graphic());
    if is_valid {
        Ok(())
    } else {
        Err(SerialSchemeError::Invalid {
            field,
            expected: format!("1 to {SERIAL_LENGTH_MAX} printable ASCII characters without spaces"),
            found: serial.to_string(),
        })
    }
}

/// The largest counter value `counter_width` digits hold (and a ledger stores).
pub fn counter_value_max(counter_width: u32) -> u64 {
    10u64.checked_pow(counter_width).map_or(COUNTER_VALUE_MAX, |limit| (limit - 1).min(COUNTER_VALUE_MAX))
}

/// `prefix` + `value` zero-padded to `counter_width` digits; a value past the counter's last
/// value (too many digits, or beyond what a ledger stores) means the counter is used up.
pub fn format_counter_serial(
    prefix: &str,
    counter_width: u32,
    value: u64,
) -> Result<String, SerialSchemeError> {
    let digits = value.to_string();
    let reason = if digits.len() > counter_width as usize {
        Some(format!("does not fit in {counter_width} digits"))
    } else if value > COUNTER_VALUE_MAX {
        Some(format!("is above {COUNTER_VALUE_MAX}, the last value a ledger stores (2^63 - 2)"))
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(SerialSchemeError::Exhausted { prefix: prefix.to_owned(), counter_width, value, reason });
    }
    Ok(format!("{prefix}{digits:0>width$}", width = counter_width as usize))
}

impl SerialScheme {
    /// Checks a counter scheme as a whole, so that every serial it can issue is a valid serial:
    /// a prefix of printable ASCII without spaces, a width of 1 to 19 digits, a first value the
    /// width holds, and prefix plus digits within 64 characters. Scanned serials are checked
    /// one by one as they are scanned.
    pub fn check(&self) -> Result<(), SerialSchemeError> {
        let SerialScheme::Counter { prefix, counter_width, first_value } = self else {
            return Ok(());
        };
        let invalid =
            |field, expected: String, found: String| SerialSchemeError::Invalid { field, expected, found };
        if !prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(invalid(
                "prefix",
                "printable ASCII characters without spaces".to_string(),
                prefix.clone(),
            ));
        }
        if !(1..=COUNTER_WIDTH_MAX).contains(counter_width) {
            return Err(invalid(
                "counter_width",
                format!("1 to {COUNTER_WIDTH_MAX} digits"),
                counter_width.to_string(),
            ));
        }
        if prefix.len() + *counter_width as usize > SERIAL_LENGTH_MAX {
            return Err(invalid(
                "prefix",
                format!(
                    "a prefix of at most {} characters with {counter_width} counter digits (serials are at most {SERIAL_LENGTH_MAX})",
                    SERIAL_LENGTH_MAX - *counter_width as usize
                ),
                prefix.clone(),
            ));
        }
        let last_value = counter_value_max(*counter_width);
        if *first_value > last_value {
            return Err(invalid(
                "first_value",
                format!("a value of at most {last_value} ({counter_width} digits, below 2^63 - 1)"),
                first_value.to_string(),
            ));
        }
        Ok(())
    }

    /// The longest serial the scheme can issue (the counter's last value), for checks of what
    /// is made from a serial (an endpoint name); `None` for scanned serials.
    pub fn longest_serial(&self) -> Option<String> {
        match self {
            SerialScheme::Counter { prefix, counter_width, .. } => {
                Some(format!("{prefix}{}", "9".repeat(*counter_width as usize)))
            }
            SerialScheme::Scanned => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(prefix: &str, counter_width: u32, first_value: u64) -> SerialScheme {
        SerialScheme::Counter { prefix: prefix.to_string(), counter_width, first_value }
    }

    #[test]
    fn schemes_are_checked_as_a_whole() {
        assert_eq!(counter("DS1-", 6, 1).check(), Ok(()));
        assert_eq!(counter("", 19, COUNTER_VALUE_MAX).check(), Ok(()));
        for (scheme, fragment) in [
            (counter("DS 1", 6, 1), "prefix"),
            (counter("DSé", 6, 1), "prefix"),
            (counter("D\tS", 6, 1), "prefix"),
            (counter(&"P".repeat(60), 6, 1), "at most 58 characters"),
            (counter("DS", 0, 1), "counter_width"),
            (counter("DS", 20, 1), "1 to 19 digits"),
            (counter("DS", 2, 100), "at most 99"),
            (counter("DS", 19, 1 << 63), "at most 9223372036854775806"),
        ] {
            let error = scheme.check().expect_err(fragment).to_string();
            assert!(error.contains(fragment), "{scheme:?}: {error}");
        }
    }

    #[test]
    fn counter_values_format_until_the_counter_is_used_up() {
        assert_eq!(format_counter_serial("DS1-", 6, 42).unwrap(), "DS1-000042");
        assert_eq!(
            format_counter_serial("N", 2, 100).unwrap_err().to_string(),
            "serial counter \"N\" is exhausted: value 100 does not fit in 2 digits"
        );
        // A 19-digit value fits 19 digits: the limit there is the ledger's, and says so.
        let error = format_counter_serial("N", 19, i64::MAX as u64).unwrap_err().to_string();
        assert!(
            error.contains("the last value a ledger stores") && !error.contains("does not fit"),
            "{error}"
        );
        assert_eq!(counter_value_max(19), COUNTER_VALUE_MAX);
        assert_eq!(counter_value_max(3), 999);
        assert_eq!(counter("AB", 3, 1).longest_serial().as_deref(), Some("AB999"));
    }
}
