//! The canonical encoding of a run and the hash chain over it.
//!
//! An auditor must be able to recompute every `record_hash` from an export with nothing but
//! docs/ledger.md and a SHA-256 (tests/data/ledger/verify_export.py does it in plain Python), so
//! the encoding is a published standard rather than whatever a serializer happens to emit:
//! JSON Canonicalization Scheme (RFC 8785) — object keys sorted by UTF-16 code units, no
//! whitespace, minimal string escaping, numbers in ECMAScript form — with one deliberate
//! difference: integers are written exactly (RFC 8785 would round integers beyond 2^53 through a
//! double; a ledger must not silently change a recorded value).
//!
//! `record_hash = SHA-256(prev_hash (32 raw bytes) || UTF-8 canonical JSON of the run)`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use super::LedgerError;

/// Names the canonical encoding inside every hashed record, so a future change of encoding is
/// visible in the data rather than a silent incompatibility.
pub const RUN_ENCODING: &str = "imprint-ledger-run-v1";

/// The `prev_hash` of the first run of every station.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// A run as the ledger stores and exports it: every recorded field, plus its place in the chain.
///
/// Field values are the stored text exactly (times as RFC 3339 UTC with milliseconds, hashes as
/// lowercase hex), so verifying an export never re-interprets anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRun {
    pub station: String,
    pub station_sequence: u64,
    /// Local row id (not hashed: a central database numbers runs its own way).
    pub run_id: i64,
    pub operator: String,
    pub probe: String,
    pub profile: String,
    pub profile_sha256: String,
    pub images: Vec<RecordedImage>,
    pub chip_uid: Option<String>,
    pub serial: Option<String>,
    pub device_id: Option<String>,
    /// SHA-256 fingerprint (hex) of the identity certificate issued in this run. Derived from
    /// the hashed `issue-identity` step detail, so not hashed on its own; verification checks
    /// that it agrees with the steps. Absent from version 1 exports.
    #[serde(default)]
    pub device_certificate_fingerprint: Option<String>,
    /// Serial number (hex) of that certificate; derived the same way.
    #[serde(default)]
    pub device_certificate_serial: Option<String>,
    /// The unit's work order, as the passed `allocate-identity` step's detail records it
    /// (`work_order`); derived and checked the same way. Absent from exports before version 3.
    #[serde(default)]
    pub work_order: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub result: String,
    pub failing_step: Option<String>,
    pub reason: Option<String>,
    pub steps: Vec<RecordedStep>,
    /// Hex of the previous run's `record_hash` in this station's chain (64 zeros for the first).
    pub prev_hash: String,
    pub record_hash: String,
    /// When the run was sent to a central database (not hashed: it changes after the fact).
    pub shipped_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedImage {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedStep {
    pub ordinal: u32,
    pub name: String,
    pub status: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub detail: Value,
}

/// The step whose detail records the identity certificate a run issued.
pub const ISSUE_IDENTITY_STEP: &str = "issue-identity";
/// The step that sends an FCC device its identity; a returning device under `reuse-identity`
/// that kept its items records `rework.certificate_installed: false` there.
pub const FCC_INJECT_STEP: &str = "fcc-inject";

/// The step whose detail records the unit's work order (when the line was given one).
pub const ALLOCATE_IDENTITY_STEP: &str = "allocate-identity";

/// A derived field of an export that disagrees with the hashed steps it repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFieldMismatch {
    pub field: &'static str,
    pub found: Option<String>,
    pub from_steps: Option<String>,
}

impl RecordedRun {
    /// The identity certificate's `(fingerprint, serial)` as the hashed steps record them: the
    /// detail of the passed `issue-identity` step, if the run has one.
    pub fn device_certificate_from_steps(&self) -> (Option<String>, Option<String>) {
        let detail = self
            .steps
            .iter()
            .rev()
            .find(|step| step.name == ISSUE_IDENTITY_STEP && step.status == "passed")
            .map(|step| &step.detail);
        let text =
            |key: &str| detail.and_then(|detail| detail.get(key)).and_then(Value::as_str).map(str::to_owned);
        (text("certificate_fingerprint"), text("certificate_serial"))
    }

    /// The work order as the hashed steps record it: the `work_order` of the passed
    /// `allocate-identity` step's detail, if the run has one.
    pub fn work_order_from_steps(&self) -> Option<String> {
        self.steps
            .iter()
            .rev()
            .find(|step| step.name == ALLOCATE_IDENTITY_STEP && step.status == "passed")
            .and_then(|step| step.detail.get("work_order"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Sets the derived fields (certificate, work order) from the steps.
    pub fn fill_derived_fields(&mut self) {
        let (fingerprint, serial) = self.device_certificate_from_steps();
        self.device_certificate_fingerprint = fingerprint;
        self.device_certificate_serial = serial;
        self.work_order = self.work_order_from_steps();
    }

    /// The first derived field that disagrees with the hashed steps, among those an export of
    /// `format_version` carries (version 2: the certificate fields; version 3: also the work
    /// order). Derived fields are not hashed, so this is what makes an edit of them evident.
    pub fn derived_field_mismatch(&self, format_version: u32) -> Option<DerivedFieldMismatch> {
        let mut derived: Vec<(&'static str, &Option<String>, Option<String>)> = Vec::new();
        if format_version >= 2 {
            let (fingerprint, serial) = self.device_certificate_from_steps();
            derived.push((
                "device_certificate_fingerprint",
                &self.device_certificate_fingerprint,
                fingerprint,
            ));
            derived.push(("device_certificate_serial", &self.device_certificate_serial, serial));
        }
        if format_version >= 3 {
            derived.push(("work_order", &self.work_order, self.work_order_from_steps()));
        }
        derived.into_iter().find(|(_, found, from_steps)| *found != from_steps).map(
            |(field, found, from_steps)| DerivedFieldMismatch { field, found: found.clone(), from_steps },
        )
    }

    /// The identity certificate (PEM) the hashed `issue-identity` step recorded, if any.
    pub fn device_certificate_pem(&self) -> Option<&str> {
        self.steps
            .iter()
            .rev()
            .find(|step| step.name == ISSUE_IDENTITY_STEP && step.status == "passed")
            .and_then(|step| step.detail.get("certificate_pem"))
            .and_then(Value::as_str)
    }

    /// Whether the device kept the certificate of an earlier run: an FCC device that still held
    /// its items (17) and was recorded with its reused identity; the certificate this run issued
    /// was not installed.
    pub fn kept_earlier_certificate(&self) -> bool {
        self.steps.iter().any(|step| {
            step.name == FCC_INJECT_STEP
                && step.status == "passed"
                && step.detail.pointer("/rework/certificate_installed") == Some(&Value::Bool(false))
        })
    }

    /// The hashed part of the run as a JSON value (everything but `run_id`, `prev_hash`,
    /// `record_hash` and `shipped_at`, plus the `encoding` marker).
    pub fn canonical_value(&self) -> Value {
        fn text(value: &str) -> Value {
            Value::String(value.to_owned())
        }
        fn optional(value: &Option<String>) -> Value {
            value.as_deref().map_or(Value::Null, text)
        }
        let images = self
            .images
            .iter()
            .map(|image| {
                let mut object = Map::new();
                object.insert("name".into(), text(&image.name));
                object.insert("sha256".into(), text(&image.sha256));
                Value::Object(object)
            })
            .collect();
        let steps = self
            .steps
            .iter()
            .map(|step| {
                let mut object = Map::new();
                object.insert("ordinal".into(), Value::from(step.ordinal));
                object.insert("name".into(), text(&step.name));
                object.insert("status".into(), text(&step.status));
                object.insert("started_at".into(), text(&step.started_at));
                object.insert("duration_ms".into(), Value::from(step.duration_ms));
                object.insert("detail".into(), step.detail.clone());
                Value::Object(object)
            })
            .collect();
        let mut object = Map::new();
        object.insert("encoding".into(), text(RUN_ENCODING));
        object.insert("station".into(), text(&self.station));
        object.insert("station_sequence".into(), Value::from(self.station_sequence));
        object.insert("operator".into(), text(&self.operator));
        object.insert("probe".into(), text(&self.probe));
        object.insert("profile".into(), text(&self.profile));
        object.insert("profile_sha256".into(), text(&self.profile_sha256));
        object.insert("images".into(), Value::Array(images));
        object.insert("chip_uid".into(), optional(&self.chip_uid));
        object.insert("serial".into(), optional(&self.serial));
        object.insert("device_id".into(), optional(&self.device_id));
        object.insert("started_at".into(), text(&self.started_at));
        object.insert("finished_at".into(), text(&self.finished_at));
        object.insert("result".into(), text(&self.result));
        object.insert("failing_step".into(), optional(&self.failing_step));
        object.insert("reason".into(), optional(&self.reason));
        object.insert("steps".into(), Value::Array(steps));
        Value::Object(object)
    }

    /// The canonical JSON text that is hashed.
    pub fn canonical_json(&self) -> String {
        canonical_json(&self.canonical_value())
    }

    /// Recomputes the record hash from the content and the stored `prev_hash`; `None` when
    /// `prev_hash` is not 64 hex digits.
    pub fn recompute_hash(&self) -> Option<[u8; 32]> {
        let prev_hash = parse_hash_hex(&self.prev_hash)?;
        Some(chain_hash(&prev_hash, &self.canonical_json()))
    }
}

/// `SHA-256(prev_hash || canonical_json)`.
pub fn chain_hash(prev_hash: &[u8; 32], canonical_json: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical_json.as_bytes());
    hasher.finalize().into()
}

/// Parses 64 hex digits (either case) into a hash.
pub fn parse_hash_hex(text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// The canonical (RFC 8785 style, exact integers) JSON text of a value.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            // RFC 8785 sorts by UTF-16 code units; for keys outside the Basic Multilingual Plane
            // that differs from sorting by code point (what serde_json's map does).
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_by(|(left, _), (right, _)| left.encode_utf16().cmp(right.encode_utf16()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            control if (control as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

fn write_number(number: &Number, out: &mut String) {
    if let Some(integer) = number.as_i64() {
        let _ = write!(out, "{integer}");
    } else if let Some(integer) = number.as_u64() {
        let _ = write!(out, "{integer}");
    } else if let Some(float) = number.as_f64() {
        out.push_str(&ecmascript_number(float));
    }
}

/// Formats a finite double the way ECMAScript's `Number.prototype.toString` does (RFC 8785
/// section 3.2.2.3): the shortest digits that round-trip, positional notation for decimal
/// exponents -6 < n <= 21, otherwise `d.ddde±x`.
pub fn ecmascript_number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        // JSON has no NaN or infinity (serde_json never holds them); -0 prints as 0.
        return "0".to_owned();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "1.2345e-7", "5e0".
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // ECMAScript's n: the value is 0.d1d2...dk * 10^n.
    let point_position = exponent + 1;
    let digit_count = digits.len() as i32;
    let mut text = String::new();
    if value < 0.0 {
        text.push('-');
    }
    if digit_count <= point_position && point_position <= 21 {
        text.push_str(&digits);
        text.extend(std::iter::repeat_n('0', (point_position - digit_count) as usize));
    } else if 0 < point_position && point_position <= 21 {
        text.push_str(&digits[..point_position as usize]);
        text.push('.');
        text.push_str(&digits[point_position as usize..]);
    } else if -6 < point_position && point_position <= 0 {
        text.push_str("0.");
        text.extend(std::iter::repeat_n('0', (-point_position) as usize));
        text.push_str(&digits);
    } else {
        text.push_str(&digits[..1]);
        if digit_count > 1 {
            text.push('.');
            text.push_str(&digits[1..]);
        }
        let shown_exponent = point_position - 1;
        let _ = write!(text, "e{}{}", if shown_exponent > 0 { '+' } else { '-' }, shown_exponent.abs());
    }
    text
}

/// Formats a time as the ledger stores it: RFC 3339 UTC with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (truncated to the millisecond), so text order is time order.
pub fn format_timestamp(field: &str, time: SystemTime) -> Result<String, LedgerError> {
    let out_of_range = || LedgerError::invalid(field, "a time between 1970 and 9999", format!("{time:?}"));
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| out_of_range())?;
    let nanoseconds = i128::try_from(since_epoch.as_nanos()).map_err(|_| out_of_range())?;
    let utc = time::OffsetDateTime::from_unix_timestamp_nanos(nanoseconds).map_err(|_| out_of_range())?;
    if utc.year() > 9999 {
        return Err(out_of_range());
    }
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.millisecond()
    ))
}

/// Parses a time bound given on the command line: RFC 3339 (any offset) or a bare
/// `YYYY-MM-DD` (midnight UTC that day, or the following midnight when `end_of_day`).
/// Returns the bound in the stored text form so it compares with stored times as text.
pub fn parse_time_bound(field: &str, text: &str, end_of_day: bool) -> Result<String, LedgerError> {
    let expected = "an RFC 3339 time (2026-11-26T10:00:00Z) or a date (2026-11-26)";
    let invalid = || LedgerError::invalid(field, expected, text);
    let instant = if let Ok(moment) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        moment
    } else {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, &format).map_err(|_| invalid())?;
        let date = if end_of_day { date.next_day().ok_or_else(invalid)? } else { date };
        date.midnight().assume_utc()
    };
    let nanoseconds = instant.unix_timestamp_nanos();
    let since_epoch = u128::try_from(nanoseconds).map_err(|_| invalid())?;
    let seconds = u64::try_from(since_epoch / 1_000_000_000).map_err(|_| invalid())?;
    let system_time = UNIX_EPOCH + std::time::Duration::new(seconds, (since_epoch % 1_000_000_000) as u32);
    format_timestamp(field, system_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_ecmascript_numbers() {
        fn check(value: f64, expected: &str) {
            assert_eq!(ecmascript_number(value), expected, "formatting {value:?}");
        }
        check(0.0, "0");
        check(-0.0, "0");
        check(1.0, "1");
        check(100.0, "100");
        check(0.1, "0.1");
        check(-1.5, "-1.5");
        check(1e21, "1e+21");
        check(1e20, "100000000000000000000");
        check(1e-6, "0.000001");
        check(1e-7, "1e-7");
        check(123456.789, "123456.789");
        check(1.7976931348623157e308, "1.7976931348623157e+308");
        check(5e-324, "5e-324");
    }

    #[test]
    fn check_canonical_json() {
        fn check(input: &str, expected: &str) {
            let value: Value = serde_json::from_str(input).unwrap();
            assert_eq!(canonical_json(&value), expected, "canonicalising {input}");
        }
        check(r#"{"b": 1, "a": [true, null, "x"]}"#, r#"{"a":[true,null,"x"],"b":1}"#);
        check(r#""\u0001\n\"\\/é""#, "\"\\u0001\\n\\\"\\\\/é\"");
        check("18446744073709551615", "18446744073709551615");
        check("-9223372036854775808", "-9223372036854775808");
        check("1.0E2", "100");
        // U+1F600 (surrogates D83D..) sorts before U+FFFD in UTF-16 order.
        check("{\"\u{fffd}\": 1, \"\u{1f600}\": 2}", "{\"\u{1f600}\":2,\"\u{fffd}\":1}");
    }

    #[test]
    fn check_timestamps() {
        fn check(seconds: u64, nanoseconds: u32, expected: &str) {
            let time = UNIX_EPOCH + std::time::Duration::new(seconds, nanoseconds);
            assert_eq!(format_timestamp("t", time).unwrap(), expected);
        }
        check(0, 0, "1970-01-01T00:00:00.000Z");
        // Expected value from Python: datetime.fromtimestamp(1795000000, timezone.utc).
        check(1_795_000_000, 999_999_999, "2026-11-18T11:06:40.999Z");
        assert_eq!(parse_time_bound("since", "2026-11-26", false).unwrap(), "2026-11-26T00:00:00.000Z");
        assert_eq!(parse_time_bound("until", "2026-11-26", true).unwrap(), "2026-11-27T00:00:00.000Z");
        assert_eq!(
            parse_time_bound("since", "2026-11-26T12:00:00.5+02:00", false).unwrap(),
            "2026-11-26T10:00:00.500Z"
        );
        assert!(parse_time_bound("since", "yesterday", false).is_err());
    }
}
