//! The two write paths the station drives: identity allocation and run recording. Each
//! function runs inside the caller's `BEGIN IMMEDIATE` transaction (see [`super::Ledger`]), so
//! an error anywhere leaves the database exactly as it was.

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, Transaction, params};

use super::canonical::{
    RecordedImage, RecordedRun, RecordedStep, canonical_json, chain_hash, format_timestamp,
};
use super::model::{
    AllocatedIdentity, IdentityRequest, ReworkPolicy, RunReceipt, RunRecord, SerialScheme, UnitIdentity,
};
use super::{LedgerError, database_error};
use crate::identity::serial::{SerialSchemeError, format_counter_serial};

/// Longest chip UID accepted, in hex digits (64 bytes; real UIDs are 8 to 16 bytes).
const CHIP_UID_HEX_DIGITS_MAX: usize = 128;

/// What allocation does for a chip that already has an identity, as the rework policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReworkAction {
    /// Keep the identity the chip has ([`ReworkPolicy::ReuseIdentity`]).
    ReuseIdentity,
    /// Retire it into the history and issue a new one ([`ReworkPolicy::IssueNew`]).
    IssueNew,
}

/// The one place the rework policy is decided: what to do with chip `chip_uid_hex`, which
/// already has serial `existing_serial`. [`ReworkPolicy::Refuse`] answers
/// [`LedgerError::ReworkRefused`]. The station asks when it identifies the chip (so a refused
/// unit is not flashed); the allocation asks again inside its transaction.
pub fn decide_rework(
    policy: ReworkPolicy,
    chip_uid_hex: &str,
    existing_serial: &str,
) -> Result<ReworkAction, LedgerError> {
    match policy {
        ReworkPolicy::Refuse => Err(LedgerError::ReworkRefused {
            chip_uid: chip_uid_hex.to_string(),
            serial: existing_serial.to_string(),
        }),
        ReworkPolicy::ReuseIdentity => Ok(ReworkAction::ReuseIdentity),
        ReworkPolicy::IssueNew => Ok(ReworkAction::IssueNew),
    }
}

/// Checks a chip UID (hex, whole bytes) and returns it lowercase, the stored form.
pub(crate) fn normalize_chip_uid(field: &str, chip_uid_hex: &str) -> Result<String, LedgerError> {
    let is_valid = !chip_uid_hex.is_empty()
        && chip_uid_hex.len() <= CHIP_UID_HEX_DIGITS_MAX
        && chip_uid_hex.len().is_multiple_of(2)
        && chip_uid_hex.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !is_valid {
        return Err(LedgerError::invalid(field, "an even number (2 to 128) of hex digits", chip_uid_hex));
    }
    Ok(chip_uid_hex.to_ascii_lowercase())
}

/// Checks a serial number's text: 1 to 64 printable ASCII characters without spaces (`field`
/// names where it came from in the error); the rule is [`crate::identity::serial`]'s.
pub fn check_serial_text(field: &str, serial: &str) -> Result<(), LedgerError> {
    crate::identity::serial::check_serial_text("serial", serial)
        .map_err(|_| LedgerError::invalid(field, "1 to 64 printable ASCII characters without spaces", serial))
}

/// A serial-scheme refusal as a ledger error.
fn serial_error(error: SerialSchemeError) -> LedgerError {
    match error {
        SerialSchemeError::Exhausted { prefix, counter_width, value, reason } => {
            LedgerError::SerialCounterExhausted { prefix, counter_width, value, reason }
        }
        invalid @ SerialSchemeError::Invalid { .. } => LedgerError::InvalidSerialScheme(invalid),
    }
}

fn normalize_sha256(field: &str, sha256_hex: &str) -> Result<String, LedgerError> {
    if sha256_hex.len() == 64 && sha256_hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(sha256_hex.to_ascii_lowercase())
    } else {
        Err(LedgerError::invalid(field, "a SHA-256 digest as 64 hex digits", sha256_hex))
    }
}

/// Checks a name that goes into the record and onto operators' terminals (station, operator,
/// probe): not empty, and no control characters (an escape sequence in an operator name would
/// be replayed by every terminal that shows the ledger).
pub fn check_name_text(field: &str, value: &str) -> Result<(), LedgerError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        Err(LedgerError::invalid(field, "a non-empty name without control or escape characters", value))
    } else {
        Ok(())
    }
}

fn check_not_empty(field: &str, value: &str) -> Result<(), LedgerError> {
    if value.is_empty() { Err(LedgerError::invalid(field, "a non-empty name", value)) } else { Ok(()) }
}

fn now(field: &str) -> Result<String, LedgerError> {
    format_timestamp(field, SystemTime::now())
}

/// The unit row of a chip, if any.
struct ExistingUnit {
    id: i64,
    serial: String,
    device_id: String,
    profile: String,
    created_at: String,
}

pub(crate) fn allocate_identity(
    transaction: &Transaction<'_>,
    path: &Path,
    request: &IdentityRequest,
    leased_blocks_required: bool,
) -> Result<AllocatedIdentity, LedgerError> {
    let chip_uid = normalize_chip_uid("chip_uid_hex", &request.chip_uid_hex)?;
    check_not_empty("profile_name", &request.profile_name)?;
    match (&request.serial_scheme, &request.scanned_serial) {
        (SerialScheme::Scanned, None) => {
            return Err(LedgerError::invalid(
                "scanned_serial",
                "a scanned serial (the profile's serial scheme is \"scanned\")",
                "nothing",
            ));
        }
        (SerialScheme::Scanned, Some(scanned)) => check_serial_text("scanned_serial", scanned)?,
        (SerialScheme::Counter { .. }, Some(scanned)) => {
            return Err(LedgerError::invalid(
                "scanned_serial",
                "no scanned serial (the profile's serial scheme is a counter)",
                scanned.as_str(),
            ));
        }
        (SerialScheme::Counter { .. }, None) => {}
    }
    let device_id_text = request.device_id.hyphenated().to_string();
    let created_at = now("created_at")?;

    let existing = transaction
        .prepare_cached("SELECT id, serial, device_id, profile, created_at FROM units WHERE chip_uid = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([&chip_uid], |row| {
                    Ok(ExistingUnit {
                        id: row.get(0)?,
                        serial: row.get(1)?,
                        device_id: row.get(2)?,
                        profile: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })
                .optional()
        })
        .map_err(database_error(path, "looking up the chip's unit"))?;

    let Some(existing) = existing else {
        let serial = issue_serial(transaction, path, request, leased_blocks_required)?;
        ensure_device_id_free(transaction, path, &device_id_text, None)?;
        transaction
            .prepare_cached(
                "INSERT INTO units (chip_uid, serial, device_id, profile, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![chip_uid, serial, device_id_text, request.profile_name, created_at])
            })
            .map_err(database_error(path, "inserting the unit"))?;
        return Ok(AllocatedIdentity {
            identity: UnitIdentity {
                chip_uid_hex: chip_uid,
                serial,
                device_id: request.device_id,
                profile_name: request.profile_name.clone(),
            },
            is_rework: false,
            retired_serial: None,
        });
    };

    match decide_rework(request.rework_policy, &chip_uid, &existing.serial)? {
        ReworkAction::ReuseIdentity => reuse_identity(path, request, chip_uid, existing),
        ReworkAction::IssueNew => {
            let rework = Rework { chip_uid, existing, device_id_text, created_at };
            issue_new_identity(transaction, path, request, leased_blocks_required, rework)
        }
    }
}

/// Policy `reuse-identity`: the chip keeps the identity it has, if it comes back under the
/// same profile and (with scanned serials) with the same label.
fn reuse_identity(
    path: &Path,
    request: &IdentityRequest,
    chip_uid: String,
    existing: ExistingUnit,
) -> Result<AllocatedIdentity, LedgerError> {
    if existing.profile != request.profile_name {
        return Err(LedgerError::ReworkProfileChanged {
            chip_uid,
            serial: existing.serial,
            issued_profile: existing.profile,
            requested_profile: request.profile_name.clone(),
        });
    }
    if let Some(scanned) = &request.scanned_serial
        && *scanned != existing.serial
    {
        return Err(LedgerError::ScannedSerialMismatch {
            chip_uid,
            serial: existing.serial,
            scanned: scanned.clone(),
        });
    }
    let device_id = uuid::Uuid::parse_str(&existing.device_id).map_err(|_| LedgerError::Corrupt {
        path: path.to_owned(),
        what: format!("unit {} has device_id {:?}, not a UUID", existing.serial, existing.device_id),
    })?;
    Ok(AllocatedIdentity {
        identity: UnitIdentity {
            chip_uid_hex: chip_uid,
            serial: existing.serial,
            device_id,
            profile_name: existing.profile,
        },
        is_rework: true,
        retired_serial: None,
    })
}

/// A chip coming back under policy `issue-new`, with what the allocation already read.
struct Rework {
    chip_uid: String,
    existing: ExistingUnit,
    device_id_text: String,
    created_at: String,
}

/// Policy `issue-new`: the old identity goes into `identity_history` and the unit gets a new
/// serial and device ID.
fn issue_new_identity(
    transaction: &Transaction<'_>,
    path: &Path,
    request: &IdentityRequest,
    leased_blocks_required: bool,
    rework: Rework,
) -> Result<AllocatedIdentity, LedgerError> {
    let Rework { chip_uid, existing, device_id_text, created_at } = rework;
    let serial = issue_serial(transaction, path, request, leased_blocks_required)?;
    ensure_device_id_free(transaction, path, &device_id_text, Some(existing.id))?;
    transaction
        .prepare_cached(
            "INSERT INTO identity_history (unit_id, chip_uid, serial, device_id, profile,
                     created_at, retired_at, replaced_by_serial)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                existing.id,
                chip_uid,
                existing.serial,
                existing.device_id,
                existing.profile,
                existing.created_at,
                created_at,
                serial
            ])
        })
        .map_err(database_error(path, "retiring the old identity"))?;
    transaction
        .prepare_cached(
            "UPDATE units SET serial = ?2, device_id = ?3, profile = ?4, created_at = ?5
                 WHERE id = ?1",
        )
        .and_then(|mut statement| {
            statement.execute(params![existing.id, serial, device_id_text, request.profile_name, created_at])
        })
        .map_err(database_error(path, "updating the unit's identity"))?;
    Ok(AllocatedIdentity {
        identity: UnitIdentity {
            chip_uid_hex: chip_uid,
            serial,
            device_id: request.device_id,
            profile_name: request.profile_name.clone(),
        },
        is_rework: true,
        retired_serial: Some(existing.serial),
    })
}

/// Makes the new serial: the next counter value (and advances the counter) or the scanned one;
/// refuses a serial that was ever issued before, current or retired.
///
/// A counter takes its values from the blocks leased from a central database when
/// `leased_blocks_required` is set (the station runs with a central database) or when any
/// block was ever leased for the prefix: once a station has joined the central numbering,
/// going back to its local counter could hand out a value another station's block holds.
fn issue_serial(
    transaction: &Transaction<'_>,
    path: &Path,
    request: &IdentityRequest,
    leased_blocks_required: bool,
) -> Result<String, LedgerError> {
    let serial = match &request.serial_scheme {
        SerialScheme::Scanned => request.scanned_serial.clone().unwrap_or_default(),
        SerialScheme::Counter { prefix, counter_width, first_value } => {
            // The whole scheme is checked where the profile is (exit 2 before a unit is touched);
            // a request that bypassed the profile is refused here the same way.
            request.serial_scheme.check().map_err(serial_error)?;
            let first_value_stored = i64::try_from(*first_value).map_err(|_| {
                LedgerError::invalid(
                    "serial_scheme.first_value",
                    "a value below 2^63",
                    first_value.to_string(),
                )
            })?;
            if leased_blocks_required || super::outbox::has_serial_blocks(transaction, path, prefix)? {
                let value = super::outbox::take_leased_serial(transaction, path, prefix)?;
                let serial = counter_serial(prefix, *counter_width, value)?;
                return check_new_serial(transaction, path, serial);
            }
            transaction
                .prepare_cached(
                    "INSERT INTO serial_counters (prefix, next_value) VALUES (?1, ?2)
                     ON CONFLICT (prefix) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![prefix, first_value_stored]))
                .map_err(database_error(path, "creating the serial counter"))?;
            let stored_next: i64 = transaction
                .prepare_cached("SELECT next_value FROM serial_counters WHERE prefix = ?1")
                .and_then(|mut statement| statement.query_row([prefix], |row| row.get(0)))
                .map_err(database_error(path, "reading the serial counter"))?;
            // A profile may raise first_value later (a new range): honour it, never go back.
            let value = stored_next.max(first_value_stored) as u64;
            let serial = counter_serial(prefix, *counter_width, value)?;
            // `counter_serial` refused every value above 2^63 - 2, so the next value is stored.
            let next_value = i64::try_from(value + 1).map_err(|_| {
                serial_error(SerialSchemeError::Exhausted {
                    prefix: prefix.clone(),
                    counter_width: *counter_width,
                    value,
                    reason: "has no next value a ledger stores".to_string(),
                })
            })?;
            transaction
                .prepare_cached("UPDATE serial_counters SET next_value = ?2 WHERE prefix = ?1")
                .and_then(|mut statement| statement.execute(params![prefix, next_value]))
                .map_err(database_error(path, "advancing the serial counter"))?;
            serial
        }
    };
    check_new_serial(transaction, path, serial)
}

/// `prefix` + `value` zero-padded to `counter_width` digits ([`format_counter_serial`]).
fn counter_serial(prefix: &str, counter_width: u32, value: u64) -> Result<String, LedgerError> {
    format_counter_serial(prefix, counter_width, value).map_err(serial_error)
}

/// Refuses a malformed serial or one that was ever issued before, current or retired.
fn check_new_serial(
    transaction: &Transaction<'_>,
    path: &Path,
    serial: String,
) -> Result<String, LedgerError> {
    check_serial_text("serial", &serial)?;
    let previous_owner: Option<String> = transaction
        .prepare_cached(
            "SELECT chip_uid FROM units WHERE serial = ?1
             UNION ALL SELECT chip_uid FROM identity_history WHERE serial = ?1 LIMIT 1",
        )
        .and_then(|mut statement| statement.query_row([&serial], |row| row.get(0)).optional())
        .map_err(database_error(path, "checking the serial is new"))?;
    match previous_owner {
        Some(chip_uid) => Err(LedgerError::SerialAlreadyIssued { serial, chip_uid }),
        None => Ok(serial),
    }
}

fn ensure_device_id_free(
    transaction: &Transaction<'_>,
    path: &Path,
    device_id: &str,
    own_unit_id: Option<i64>,
) -> Result<(), LedgerError> {
    let owner: Option<(i64, String, String)> = transaction
        .prepare_cached("SELECT id, chip_uid, serial FROM units WHERE device_id = ?1")
        .and_then(|mut statement| {
            statement.query_row([device_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()
        })
        .map_err(database_error(path, "checking the device id is free"))?;
    match owner {
        Some((unit_id, chip_uid, serial)) if Some(unit_id) != own_unit_id => {
            Err(LedgerError::DeviceIdTaken {
                device_id: uuid::Uuid::parse_str(device_id).unwrap_or_default(),
                chip_uid,
                serial,
            })
        }
        _ => Ok(()),
    }
}

/// Inserts a name into a `(id, name UNIQUE)` table if missing and returns its id.
fn name_id(
    transaction: &Transaction<'_>,
    path: &Path,
    table: &'static str,
    name: &str,
) -> Result<i64, LedgerError> {
    let (insert, select) = match table {
        "stations" => (
            "INSERT INTO stations (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            "SELECT id FROM stations WHERE name = ?1",
        ),
        _ => (
            "INSERT INTO operators (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            "SELECT id FROM operators WHERE name = ?1",
        ),
    };
    transaction
        .prepare_cached(insert)
        .and_then(|mut statement| statement.execute([name]))
        .and_then(|_| transaction.prepare_cached(select))
        .and_then(|mut statement| statement.query_row([name], |row| row.get(0)))
        .map_err(database_error(path, "recording a station or operator name"))
}

fn to_stored_integer(field: &str, value: u64) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| LedgerError::invalid(field, "a value below 2^63", value.to_string()))
}

/// Empty optional text is recorded as absent, so the CSV export (which cannot tell `""` from
/// a missing value) reproduces the hashed record exactly.
fn optional_text(value: &Option<String>) -> Option<String> {
    value.clone().filter(|text| !text.is_empty())
}

/// Checks and converts a [`RunRecord`] into the stored form, without its chain link yet.
fn recorded_form(run: &RunRecord) -> Result<RecordedRun, LedgerError> {
    check_not_empty("station", &run.station)?;
    check_not_empty("profile_name", &run.profile_name)?;
    let profile_sha256 = normalize_sha256("profile_sha256", &run.profile_sha256)?;
    let images = run
        .image_sha256s
        .iter()
        .map(|(name, sha256)| {
            Ok(RecordedImage {
                name: name.clone(),
                sha256: normalize_sha256(&format!("image {name:?} sha256"), sha256)?,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    let chip_uid = run
        .chip_uid_hex
        .as_deref()
        .map(|chip_uid| normalize_chip_uid("chip_uid_hex", chip_uid))
        .transpose()?;
    if let Some(serial) = &run.serial {
        check_serial_text("serial", serial)?;
    }
    let steps = run
        .steps
        .iter()
        .enumerate()
        .map(|(ordinal, step)| {
            check_not_empty("step name", &step.name)?;
            to_stored_integer("step duration_ms", step.duration_ms)?;
            Ok(RecordedStep {
                ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                name: step.name.clone(),
                status: step.status.as_str().to_owned(),
                started_at: format_timestamp(&format!("step {:?} started_at", step.name), step.started_at)?,
                duration_ms: step.duration_ms,
                detail: step.detail.clone(),
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    let mut recorded = RecordedRun {
        station: run.station.clone(),
        station_sequence: 0,
        run_id: 0,
        operator: run.operator.clone(),
        probe: run.probe.clone(),
        profile: run.profile_name.clone(),
        profile_sha256,
        images,
        chip_uid,
        serial: run.serial.clone(),
        device_id: run.device_id.map(|id| id.hyphenated().to_string()),
        device_certificate_fingerprint: None,
        device_certificate_serial: None,
        work_order: None,
        started_at: format_timestamp("started_at", run.started_at)?,
        finished_at: format_timestamp("finished_at", run.finished_at)?,
        result: run.result.as_str().to_owned(),
        failing_step: optional_text(&run.failing_step),
        reason: optional_text(&run.reason),
        steps,
        prev_hash: String::new(),
        record_hash: String::new(),
        shipped_at: None,
    };
    recorded.fill_derived_fields();
    Ok(recorded)
}

pub(crate) fn record_run(
    transaction: &Transaction<'_>,
    path: &Path,
    run: &RunRecord,
) -> Result<RunReceipt, LedgerError> {
    check_name_text("station", &run.station)?;
    check_name_text("operator", &run.operator)?;
    check_name_text("probe", &run.probe)?;
    let mut recorded = recorded_form(run)?;
    let station_id = name_id(transaction, path, "stations", &recorded.station)?;
    let operator_id = name_id(transaction, path, "operators", &recorded.operator)?;
    let images_json = canonical_json(&serde_json::to_value(&recorded.images).unwrap_or_default());
    transaction
        .prepare_cached(
            "INSERT INTO profiles (name, profile_sha256, images) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, profile_sha256, images) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![recorded.profile, recorded.profile_sha256, images_json])
        })
        .map_err(database_error(path, "recording the profile"))?;
    let profile_id: i64 = transaction
        .prepare_cached("SELECT id FROM profiles WHERE name = ?1 AND profile_sha256 = ?2 AND images = ?3")
        .and_then(|mut statement| {
            statement
                .query_row(params![recorded.profile, recorded.profile_sha256, images_json], |row| row.get(0))
        })
        .map_err(database_error(path, "looking up the profile"))?;

    let (head_sequence, head_hash): (i64, Vec<u8>) = transaction
        .prepare_cached("SELECT head_sequence, head_hash FROM stations WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([station_id], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(database_error(path, "reading the station's chain head"))?;
    let prev_hash: [u8; 32] = head_hash.as_slice().try_into().map_err(|_| LedgerError::Corrupt {
        path: path.to_owned(),
        what: format!("station {:?} head_hash is {} bytes, not 32", recorded.station, head_hash.len()),
    })?;
    let station_sequence = head_sequence + 1;
    recorded.station_sequence = station_sequence as u64;
    let record_hash = chain_hash(&prev_hash, &recorded.canonical_json());

    transaction
        .prepare_cached(
            "INSERT INTO runs (station_id, station_sequence, chip_uid, serial, device_id,
                 operator_id, probe, profile_id, started_at, finished_at, result, failing_step,
                 reason, prev_hash, record_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                station_id,
                station_sequence,
                recorded.chip_uid,
                recorded.serial,
                recorded.device_id,
                operator_id,
                recorded.probe,
                profile_id,
                recorded.started_at,
                recorded.finished_at,
                recorded.result,
                recorded.failing_step,
                recorded.reason,
                prev_hash.as_slice(),
                record_hash.as_slice()
            ])
        })
        .map_err(database_error(path, "inserting the run"))?;
    let run_id = transaction.last_insert_rowid();
    {
        let mut insert_step = transaction
            .prepare_cached(
                "INSERT INTO steps (run_id, ordinal, name, status, started_at, duration_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(database_error(path, "preparing the step insert"))?;
        for step in &recorded.steps {
            insert_step
                .execute(params![
                    run_id,
                    step.ordinal,
                    step.name,
                    step.status,
                    step.started_at,
                    step.duration_ms as i64,
                    canonical_json(&step.detail)
                ])
                .map_err(database_error(path, "inserting a step"))?;
        }
    }
    transaction
        .prepare_cached("UPDATE stations SET head_sequence = ?2, head_hash = ?3 WHERE id = ?1")
        .and_then(|mut statement| {
            statement.execute(params![station_id, station_sequence, record_hash.as_slice()])
        })
        .map_err(database_error(path, "advancing the station's chain head"))?;
    Ok(RunReceipt { run_id, station_sequence: station_sequence as u64, record_hash })
}
