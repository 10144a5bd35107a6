//! Checking the hash chain, in the database or in an export file, and naming the first record
//! that does not match and why.
//!
//! One [`ChainChecker`] serves both: records are fed in chain order (per station, by sequence),
//! each is re-hashed and linked to its predecessor, and at the end the last link of every
//! station is compared with the recorded head (the `stations` table, or the export's trailer)
//! and with any head the auditor supplies. Only one record per station is held in memory.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::canonical::{GENESIS_HASH, RecordedRun, parse_hash_hex};
use super::export::{ChainHead, EXPORT_FORMAT_VERSION, ExportFilter, chain_heads};
use super::query::for_each_run;
use super::{Ledger, LedgerError};

/// What to check beyond the chain's own consistency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Record hashes noted earlier (e.g. at the end of a shift); each must be a link of the
    /// chain, otherwise the ledger was truncated or rewritten after it was noted.
    pub expected_heads: Vec<[u8; 32]>,
}

/// Where an expected head was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadMatch {
    pub record_hash: String,
    pub station: String,
    pub station_sequence: u64,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Runs checked before the first problem (all of them when there is none).
    pub records_checked: u64,
    /// True for an export made with a filter: gaps in a station's sequence are then expected,
    /// and links are checked only between consecutive sequences.
    pub is_filtered: bool,
    /// The chain heads recorded in the ledger or the export trailer.
    pub chain_heads: Vec<ChainHead>,
    pub expected_heads_found: Vec<HeadMatch>,
    /// The first problem; `None` means the chain is intact.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first record that does not match, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProblem {
    /// Where: `run id 17` in a database, `line 17` / `element 17` / `row 17` in an export,
    /// `end of chain` for problems only visible at the end.
    pub location: String,
    pub station: Option<String>,
    pub station_sequence: Option<u64>,
    pub serial: Option<String>,
    pub kind: ProblemKind,
}

/// Why a record does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The record's content does not hash to its `record_hash`: it was edited.
    HashMismatch { stored: String, recomputed: String },
    /// The record's `prev_hash` is not its predecessor's `record_hash`.
    BrokenLink { previous_sequence: u64, expected_prev_hash: String, found_prev_hash: String },
    /// The first record of a station does not start from the genesis hash.
    BadGenesis { found_prev_hash: String },
    /// Sequence numbers skip: records were deleted or moved.
    SequenceGap { previous_sequence: Option<u64>, first_missing: u64, last_missing: u64 },
    /// A sequence number repeats or goes backwards: records were reordered or duplicated.
    OutOfOrder { previous_sequence: u64 },
    /// The chain ends before the recorded head: records were removed from the end.
    Truncated { last_present: Option<u64>, head_sequence: u64, head_hash: String },
    /// The last record is at the head's sequence but is not the head.
    HeadMismatch { head_hash: String, found_hash: String },
    /// The chain goes on past the recorded head.
    BeyondHead { head_sequence: u64, last_present: u64 },
    /// A station has runs but no recorded head.
    MissingHead,
    /// A head the auditor supplied is not a link of the chain.
    ExpectedHeadNotFound { expected: String, chain_ends: Vec<ChainHead> },
    /// The export's trailer counts a different number of runs.
    CountMismatch { declared: u64, found: u64 },
    /// The export ends without its trailer.
    MissingTrailer,
    /// A field derived from the hashed steps (the device certificate's fingerprint or serial)
    /// disagrees with them: the export's column was edited.
    DerivedFieldMismatch { field: String, found: Option<String>, from_steps: Option<String> },
    /// A record the export's header filter does not select: the header was edited.
    OutsideFilter { filter: String },
    /// The document claims an older format than its content has (which would check it less).
    Downgraded { declared_version: u32, reason: String },
    /// A current identity (`units`) disagrees with the hashed runs of its chip or serial: the
    /// identity table was edited.
    IdentityMismatch { chip_uid: String, unit_serial: String, run_serial: String },
    /// A record that cannot be read at all.
    Malformed { reason: String },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.location)?;
        if let Some(station) = &self.station {
            write!(formatter, ": station {station:?}")?;
        }
        if let Some(sequence) = self.station_sequence {
            write!(formatter, " sequence {sequence}")?;
        }
        if let Some(serial) = &self.serial {
            write!(formatter, " (serial {serial})")?;
        }
        write!(formatter, ": {}", self.kind)
    }
}

/// The chain check of [`Ledger::verify`] for records that live elsewhere (the central
/// database): feed runs in chain order (per station, by sequence) with [`ChainVerifier::check`],
/// then compare the ends with the recorded heads in [`ChainVerifier::finish`]. The same code
/// checks a local ledger, an export and the central copy, so all three agree on what intact means.
pub struct ChainVerifier {
    checker: ChainChecker,
}

impl ChainVerifier {
    /// A verifier for complete chains (no gaps expected).
    pub fn new(options: &VerifyOptions) -> ChainVerifier {
        // Central records are rebuilt from their columns (the derived certificate fields are
        // filled from the hashed steps), so there are no separately stored derived fields to check.
        ChainVerifier { checker: ChainChecker::new(false, 1, options) }
    }

    /// Checks the next record: its link to the station's previous record and its hash. Returns
    /// false once a problem was found (this one or an earlier one).
    pub fn check(&mut self, location: String, run: &RecordedRun) -> bool {
        self.checker.check(location, run)
    }

    /// Records a problem found outside the chain check (the first one reported wins).
    pub fn report(&mut self, problem: ChainProblem) {
        self.checker.fail(problem);
    }

    /// Compares every station's last record with its recorded head and ends the check.
    pub fn finish(self, chain_heads: Vec<ChainHead>) -> VerifyReport {
        self.checker.finish(chain_heads, None)
    }
}

struct StationProgress {
    last_sequence: u64,
    last_hash: [u8; 32],
    last_serial: Option<String>,
}

/// Checks records fed in chain order; stops at the first problem.
pub(super) struct ChainChecker {
    /// Gaps in a station's sequence are tolerated: a filtered export without `--head`.
    is_filtered: bool,
    /// The export's filter: every record must be one it selects (an edited header is found).
    pub(super) filter: Option<ExportFilter>,
    /// The export format version whose derived fields the records carry and that are checked
    /// against the steps (1: none; 2: the certificate fields; 3: also the work order).
    derived_fields_version: u32,
    expected_heads: Vec<[u8; 32]>,
    expected_heads_found: Vec<HeadMatch>,
    stations: HashMap<String, StationProgress>,
    records_checked: u64,
    pub(super) problem: Option<ChainProblem>,
}

impl ChainChecker {
    /// `is_filtered` tolerates gaps, except when the auditor supplied heads: a head proves
    /// what comes before it only through an unbroken chain, so then every gap is reported.
    pub(super) fn new(
        is_filtered: bool,
        derived_fields_version: u32,
        options: &VerifyOptions,
    ) -> ChainChecker {
        ChainChecker {
            is_filtered: is_filtered && options.expected_heads.is_empty(),
            filter: None,
            derived_fields_version,
            expected_heads: options.expected_heads.clone(),
            expected_heads_found: Vec::new(),
            stations: HashMap::new(),
            records_checked: 0,
            problem: None,
        }
    }

    pub(super) fn fail(&mut self, problem: ChainProblem) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
    }

    /// Checks one record; returns false once a problem was found.
    pub(super) fn check(&mut self, location: String, run: &RecordedRun) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let problem = |kind| ChainProblem {
            location: location.clone(),
            station: Some(run.station.clone()),
            station_sequence: Some(run.station_sequence),
            serial: run.serial.clone(),
            kind,
        };
        let Some(prev_hash) = parse_hash_hex(&run.prev_hash) else {
            self.fail(problem(ProblemKind::Malformed {
                reason: format!("prev_hash {:?} is not 64 hex digits", run.prev_hash),
            }));
            return false;
        };
        let Some(stored_hash) = parse_hash_hex(&run.record_hash) else {
            self.fail(problem(ProblemKind::Malformed {
                reason: format!("record_hash {:?} is not 64 hex digits", run.record_hash),
            }));
            return false;
        };
        if let Some(filter) = &self.filter
            && !filter.matches(run)
        {
            self.fail(problem(ProblemKind::OutsideFilter {
                filter: serde_json::to_string(filter).unwrap_or_default(),
            }));
            return false;
        }
        let sequence = run.station_sequence;
        let progress = self.stations.get(&run.station);
        let link_problem = match progress {
            None if sequence > 1 && !self.is_filtered => Some(ProblemKind::SequenceGap {
                previous_sequence: None,
                first_missing: 1,
                last_missing: sequence - 1,
            }),
            None if sequence == 1 && prev_hash != GENESIS_HASH => {
                Some(ProblemKind::BadGenesis { found_prev_hash: run.prev_hash.clone() })
            }
            None => None,
            Some(progress) if sequence <= progress.last_sequence => {
                Some(ProblemKind::OutOfOrder { previous_sequence: progress.last_sequence })
            }
            Some(progress) if sequence > progress.last_sequence + 1 => {
                (!self.is_filtered).then(|| ProblemKind::SequenceGap {
                    previous_sequence: Some(progress.last_sequence),
                    first_missing: progress.last_sequence + 1,
                    last_missing: sequence - 1,
                })
            }
            Some(progress) if prev_hash != progress.last_hash => Some(ProblemKind::BrokenLink {
                previous_sequence: progress.last_sequence,
                expected_prev_hash: hex::encode(progress.last_hash),
                found_prev_hash: run.prev_hash.clone(),
            }),
            Some(_) => None,
        };
        if let Some(kind) = link_problem {
            self.fail(problem(kind));
            return false;
        }
        let recomputed = super::canonical::chain_hash(&prev_hash, &run.canonical_json());
        if recomputed != stored_hash {
            self.fail(problem(ProblemKind::HashMismatch {
                stored: run.record_hash.clone(),
                recomputed: hex::encode(recomputed),
            }));
            return false;
        }
        if let Some(mismatch) = run.derived_field_mismatch(self.derived_fields_version) {
            self.fail(problem(ProblemKind::DerivedFieldMismatch {
                field: mismatch.field.to_owned(),
                found: mismatch.found,
                from_steps: mismatch.from_steps,
            }));
            return false;
        }
        if self.expected_heads.contains(&stored_hash) {
            self.expected_heads_found.push(HeadMatch {
                record_hash: hex::encode(stored_hash),
                station: run.station.clone(),
                station_sequence: sequence,
            });
        }
        self.stations.insert(
            run.station.clone(),
            StationProgress {
                last_sequence: sequence,
                last_hash: stored_hash,
                last_serial: run.serial.clone(),
            },
        );
        self.records_checked += 1;
        true
    }

    /// Compares the chain's ends with the recorded heads (and count, for exports).
    pub(super) fn finish(
        mut self,
        chain_heads: Vec<ChainHead>,
        declared_record_count: Option<u64>,
    ) -> VerifyReport {
        if self.problem.is_none() {
            self.check_heads(&chain_heads, declared_record_count);
        }
        VerifyReport {
            records_checked: self.records_checked,
            is_filtered: self.is_filtered,
            chain_heads,
            expected_heads_found: self.expected_heads_found,
            problem: self.problem,
        }
    }

    fn check_heads(&mut self, chain_heads: &[ChainHead], declared_record_count: Option<u64>) {
        for head in chain_heads {
            let progress = self.stations.get(&head.station);
            let last_present = progress.map(|progress| progress.last_sequence);
            let at_end = |kind, sequence: Option<u64>, serial: Option<String>| ChainProblem {
                location: "end of chain".to_owned(),
                station: Some(head.station.clone()),
                station_sequence: sequence,
                serial,
                kind,
            };
            let head_hash = parse_hash_hex(&head.record_hash);
            match progress {
                _ if head_hash.is_none() => {
                    self.fail(at_end(
                        ProblemKind::Malformed {
                            reason: format!("recorded head hash {:?} is not 64 hex digits", head.record_hash),
                        },
                        Some(head.station_sequence),
                        None,
                    ));
                }
                Some(progress) if progress.last_sequence > head.station_sequence => {
                    self.fail(at_end(
                        ProblemKind::BeyondHead {
                            head_sequence: head.station_sequence,
                            last_present: progress.last_sequence,
                        },
                        Some(head.station_sequence + 1),
                        None,
                    ));
                }
                Some(progress) if progress.last_sequence == head.station_sequence => {
                    if Some(progress.last_hash) != head_hash {
                        self.fail(at_end(
                            ProblemKind::HeadMismatch {
                                head_hash: head.record_hash.clone(),
                                found_hash: hex::encode(progress.last_hash),
                            },
                            Some(progress.last_sequence),
                            progress.last_serial.clone(),
                        ));
                    }
                }
                _ if self.is_filtered || head.station_sequence == 0 => {}
                _ => {
                    self.fail(at_end(
                        ProblemKind::Truncated {
                            last_present,
                            head_sequence: head.station_sequence,
                            head_hash: head.record_hash.clone(),
                        },
                        Some(last_present.unwrap_or(0) + 1),
                        None,
                    ));
                }
            }
        }
        let mut stations_without_head: Vec<&String> = self
            .stations
            .keys()
            .filter(|station| !chain_heads.iter().any(|head| head.station == **station))
            .collect();
        stations_without_head.sort();
        if let Some(station) = stations_without_head.first() {
            let problem = ChainProblem {
                location: "end of chain".to_owned(),
                station: Some((*station).clone()),
                station_sequence: None,
                serial: None,
                kind: ProblemKind::MissingHead,
            };
            self.fail(problem);
        }
        if let Some(declared) = declared_record_count
            && declared != self.records_checked
        {
            self.fail(ChainProblem {
                location: "trailer".to_owned(),
                station: None,
                station_sequence: None,
                serial: None,
                kind: ProblemKind::CountMismatch { declared, found: self.records_checked },
            });
        }
        let missing_expected: Vec<[u8; 32]> = self
            .expected_heads
            .iter()
            .filter(|expected| {
                !self.expected_heads_found.iter().any(|found| found.record_hash == hex::encode(expected))
            })
            .copied()
            .collect();
        if let Some(expected) = missing_expected.first() {
            let mut chain_ends: Vec<ChainHead> = self
                .stations
                .iter()
                .map(|(station, progress)| ChainHead {
                    station: station.clone(),
                    station_sequence: progress.last_sequence,
                    record_hash: hex::encode(progress.last_hash),
                })
                .collect();
            chain_ends.sort_by(|left, right| left.station.cmp(&right.station));
            self.fail(ChainProblem {
                location: "end of chain".to_owned(),
                station: None,
                station_sequence: None,
                serial: None,
                kind: ProblemKind::ExpectedHeadNotFound { expected: hex::encode(expected), chain_ends },
            });
        }
    }
}

impl Ledger {
    /// Verifies the chain of every station in the database against the heads recorded in the
    /// `stations` table and `options`. An unreadable stored record is reported as a problem,
    /// not an error; errors are for a database that cannot be read at all.
    pub fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
        self.read(|connection, path| {
            let mut checker = ChainChecker::new(false, EXPORT_FORMAT_VERSION, options);
            let walked = for_each_run(
                connection,
                path,
                "",
                "r.station_id, r.station_sequence, st.ordinal",
                &[],
                |run| Ok(checker.check(format!("run id {}", run.run_id), &run)),
            );
            match walked {
                Ok(()) => {}
                Err(LedgerError::Corrupt { what, .. }) => checker.fail(ChainProblem {
                    location: "database".to_owned(),
                    station: None,
                    station_sequence: None,
                    serial: None,
                    kind: ProblemKind::Malformed { reason: what },
                }),
                Err(error) => return Err(error),
            }
            let heads = chain_heads(connection, path)?;
            let mut report = checker.finish(heads, None);
            if report.problem.is_none() {
                report.problem = identity_problem(connection, path)?;
            }
            Ok(report)
        })
    }
}

/// Cross-checks the identity tables against the hashed runs: every run that names a chip and a
/// serial must match the chip's current identity (`units`: chip, serial, device ID) or one of
/// its retired ones (`identity_history`), for every unit row that shares the run's chip or
/// serial. An edit of a unit's serial, device ID or chip UID is then found as soon as the unit
/// has a recorded run (docs/ledger.md; an identity whose run was never recorded has nothing
/// hashed to compare with).
fn identity_problem(
    connection: &rusqlite::Connection,
    path: &Path,
) -> Result<Option<ChainProblem>, LedgerError> {
    use rusqlite::OptionalExtension;
    let mismatch = |join: &str| {
        format!(
            "SELECT r.id, st.name, r.station_sequence, u.chip_uid, u.serial, r.chip_uid, r.serial
             FROM units u JOIN runs r ON {join} JOIN stations st ON st.id = r.station_id
             WHERE r.serial IS NOT NULL AND r.chip_uid IS NOT NULL
               AND NOT (r.chip_uid = u.chip_uid AND r.serial = u.serial AND r.device_id IS u.device_id)
               AND NOT EXISTS (SELECT 1 FROM identity_history h WHERE h.chip_uid = r.chip_uid
                               AND h.serial = r.serial AND h.device_id IS r.device_id)"
        )
    };
    let sql = format!(
        "{} UNION ALL {} LIMIT 1",
        mismatch("r.chip_uid = u.chip_uid"),
        mismatch("r.serial = u.serial")
    );
    let found = connection
        .query_row(&sql, [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(6)?,
            ))
        })
        .optional()
        .map_err(super::database_error(path, "cross-checking identities against the runs"))?;
    Ok(found.map(|(run_id, station, sequence, chip_uid, unit_serial, run_serial)| ChainProblem {
        location: format!("units (against run id {run_id})"),
        station: Some(station),
        station_sequence: u64::try_from(sequence).ok(),
        serial: Some(unit_serial.clone()),
        kind: ProblemKind::IdentityMismatch { chip_uid, unit_serial, run_serial },
    }))
}
