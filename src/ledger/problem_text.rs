//! How a verification problem reads to an auditor: one sentence per [`ProblemKind`] saying what
//! was found and what it means (kept apart from the checks in `verify.rs`).

use std::fmt;

use super::verify::ProblemKind;

impl fmt::Display for ProblemKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::HashMismatch { stored, recomputed } => write!(
                formatter,
                "hash mismatch: record_hash is {stored} but the content hashes to {recomputed} (the record was altered)"
            ),
            ProblemKind::BrokenLink { previous_sequence, expected_prev_hash, found_prev_hash } => write!(
                formatter,
                "broken link: prev_hash is {found_prev_hash}, expected the record_hash {expected_prev_hash} of sequence {previous_sequence} (that record was rewritten or replaced)"
            ),
            ProblemKind::BadGenesis { found_prev_hash } => write!(
                formatter,
                "broken link: the first record's prev_hash is {found_prev_hash}, expected 64 zeros"
            ),
            ProblemKind::SequenceGap { previous_sequence, first_missing, last_missing } => {
                let range = if first_missing == last_missing {
                    format!("record {first_missing} is")
                } else {
                    format!("records {first_missing} to {last_missing} are")
                };
                match previous_sequence {
                    Some(previous) => write!(
                        formatter,
                        "missing record: the sequence jumps from {previous} to {}; {range} missing (deleted or reordered)",
                        last_missing + 1
                    ),
                    None => write!(
                        formatter,
                        "missing record: the chain starts at sequence {}; {range} missing (deleted or reordered)",
                        last_missing + 1
                    ),
                }
            }
            ProblemKind::OutOfOrder { previous_sequence } => write!(
                formatter,
                "reordered: comes after sequence {previous_sequence} (records reordered or duplicated)"
            ),
            ProblemKind::Truncated { last_present, head_sequence, head_hash } => {
                let first_missing = last_present.map_or(1, |last| last + 1);
                write!(
                    formatter,
                    "truncated: the chain ends at sequence {} but the recorded head is sequence {head_sequence} ({head_hash}); records {first_missing} to {head_sequence} are missing at the end",
                    last_present.map_or_else(|| "0 (no records)".to_owned(), |last| last.to_string())
                )
            }
            ProblemKind::HeadMismatch { head_hash, found_hash } => write!(
                formatter,
                "head mismatch: the last record's hash is {found_hash}, the recorded head is {head_hash}"
            ),
            ProblemKind::BeyondHead { head_sequence, last_present } => write!(
                formatter,
                "the chain goes on to sequence {last_present} past its recorded head {head_sequence} (records added outside imprint, or the head was rewound)"
            ),
            ProblemKind::MissingHead => {
                write!(formatter, "the station has runs but no recorded chain head")
            }
            ProblemKind::ExpectedHeadNotFound { expected, chain_ends } => {
                write!(
                    formatter,
                    "truncated or rewritten: the expected head {expected} is not a record of the chain; the chain ends at"
                )?;
                if chain_ends.is_empty() {
                    write!(formatter, " nothing (no records)")?;
                }
                for (index, end) in chain_ends.iter().enumerate() {
                    let separator = if index == 0 { "" } else { "," };
                    write!(
                        formatter,
                        "{separator} station {:?} sequence {} ({})",
                        end.station, end.station_sequence, end.record_hash
                    )?;
                }
                Ok(())
            }
            ProblemKind::CountMismatch { declared, found } => write!(
                formatter,
                "record count mismatch: the trailer counts {declared} runs, the export holds {found} (runs deleted or added)"
            ),
            ProblemKind::MissingTrailer => {
                write!(formatter, "truncated: the export ends without its trailer")
            }
            ProblemKind::DerivedFieldMismatch { field, found, from_steps } => write!(
                formatter,
                "altered field: {field} is {} but the hashed steps record {} (the export was edited)",
                found.as_deref().unwrap_or("empty"),
                from_steps.as_deref().unwrap_or("none")
            ),
            ProblemKind::OutsideFilter { filter } => write!(
                formatter,
                "the export's header filter {filter} does not select this record (the header was edited)"
            ),
            ProblemKind::Downgraded { declared_version, reason } => write!(
                formatter,
                "the header declares export format version {declared_version}, but {reason} (the version was edited to weaken the check)"
            ),
            ProblemKind::IdentityMismatch { chip_uid, unit_serial, run_serial } => write!(
                formatter,
                "identity altered: unit {unit_serial} (chip {chip_uid}) does not match the hashed run recording serial {run_serial} with its chip and device id (the units table was edited)"
            ),
            ProblemKind::Malformed { reason } => write!(formatter, "unreadable record: {reason}"),
        }
    }
}
