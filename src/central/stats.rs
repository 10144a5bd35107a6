//! `imprint log stats --central`: the numbers of [`crate::ledger::Ledger::stats_filtered`] over
//! every station's runs in the central database, from one snapshot.
//!
//! The numbers mean what they mean locally (docs/ledger.md), computed by PostgreSQL so memory
//! does not grow with the database: medians are `percentile_disc(0.5)` (the lower middle value,
//! as locally), steps are read from each run's stored `steps` JSON. Two differences follow from
//! what the central database knows: a chip's first run is its first by finish time across
//! stations (locally: the first recorded), and retired identities are the serials issued to a
//! chip other than its latest one (`imprint.issued_serials`).

use postgres::Transaction;
use postgres::types::ToSql;

use super::read::{filter_conditions, snapshot};
use super::schema::check_schema;
use super::{CentralConfig, CentralError, query_failed};
use crate::ledger::{ExportFilter, FailingStepCount, LedgerStats, RunResult, StepStats};

/// The numbers of `imprint log stats` over the central runs `filter` selects.
pub fn stats_central(config: &CentralConfig, filter: &ExportFilter) -> Result<LedgerStats, CentralError> {
    let target = config.target();
    let mut client = config.connect()?;
    check_schema(&mut client, target)?;
    let mut transaction = snapshot(&mut client, target)?;
    let result_text = filter.result.map(RunResult::as_str);
    let (conditions, parameters) = filter_conditions(filter, &result_text);
    let selected = conditions.join(" AND ");
    let counts = transaction
        .query_one(
            &format!(
                "WITH selected AS (SELECT * FROM imprint.runs WHERE {selected}),
                 first_runs AS (
                     SELECT DISTINCT ON (chip_uid) station, station_sequence FROM imprint.runs
                     WHERE chip_uid IS NOT NULL AND result <> 'aborted'
                     ORDER BY chip_uid, finished_at COLLATE \"C\", station COLLATE \"C\", station_sequence)
                 SELECT
                     (SELECT count(*) FROM imprint.units),
                     (SELECT count(*) FROM imprint.issued_serials i
                        JOIN imprint.units u ON u.chip_uid = i.chip_uid WHERE i.serial <> u.serial),
                     (SELECT count(*) FROM selected),
                     (SELECT count(*) FROM selected WHERE result = 'pass'),
                     (SELECT count(*) FROM selected WHERE chip_uid IS NULL),
                     (SELECT count(*) FROM selected s JOIN first_runs f USING (station, station_sequence)),
                     (SELECT count(*) FROM selected s JOIN first_runs f USING (station, station_sequence)
                        WHERE s.result = 'pass'),
                     (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY round(extract(epoch FROM
                        (finished_at::timestamptz - started_at::timestamptz)) * 1000)::bigint)
                        FROM selected),
                     (SELECT count(*) FROM selected WHERE result = 'aborted')"
            ),
            &parameters,
        )
        .map_err(query_failed(target, "counting runs"))?;
    let number = |index: usize| -> Result<u64, CentralError> {
        let value: i64 = counts.try_get(index).map_err(query_failed(target, "counting runs"))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    let runs = number(2)?;
    let runs_passed = number(3)?;
    let runs_aborted = number(8)?;
    let chips_tested = number(5)?;
    let chips_passed_first_time = number(6)?;
    let median_run_ms: Option<i64> = counts.try_get(7).map_err(query_failed(target, "counting runs"))?;
    let stats = LedgerStats {
        filter: filter.clone(),
        units: number(0)?,
        retired_identities: number(1)?,
        runs,
        runs_passed,
        runs_failed: runs - runs_passed - runs_aborted,
        runs_aborted,
        runs_without_chip_uid: number(4)?,
        chips_tested,
        chips_passed_first_time,
        first_pass_yield_percent: (chips_tested > 0)
            .then(|| 100.0 * chips_passed_first_time as f64 / chips_tested as f64),
        median_run_ms: median_run_ms.map(|ms| u64::try_from(ms).unwrap_or(0)),
        steps: step_stats(&mut transaction, target, &selected, &parameters)?,
        failures_by_step: failures_by_step(&mut transaction, target, &selected, &parameters)?,
    };
    transaction.commit().map_err(query_failed(target, "ending the read snapshot"))?;
    Ok(stats)
}

fn step_stats(
    transaction: &mut Transaction<'_>,
    target: &str,
    selected: &str,
    parameters: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StepStats>, CentralError> {
    let rows = transaction
        .query(
            &format!(
                "SELECT step->>'name',
                     count(*) FILTER (WHERE step->>'status' = 'passed'),
                     count(*) FILTER (WHERE step->>'status' = 'failed'),
                     count(*) FILTER (WHERE step->>'status' = 'skipped'),
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY (step->>'duration_ms')::bigint)
                         FILTER (WHERE step->>'status' <> 'skipped')
                 FROM imprint.runs CROSS JOIN LATERAL jsonb_array_elements(steps::jsonb) AS step
                 WHERE {selected}
                 GROUP BY step->>'name'
                 ORDER BY min((step->>'ordinal')::bigint), (step->>'name') COLLATE \"C\""
            ),
            parameters,
        )
        .map_err(query_failed(target, "counting steps"))?;
    rows.iter()
        .map(|row| {
            let count =
                |index: usize| row.try_get::<_, i64>(index).map(|value| u64::try_from(value).unwrap_or(0));
            Ok(StepStats {
                name: row.try_get(0)?,
                passed: count(1)?,
                failed: count(2)?,
                skipped: count(3)?,
                median_duration_ms: row
                    .try_get::<_, Option<i64>>(4)?
                    .map(|duration_ms| u64::try_from(duration_ms).unwrap_or(0)),
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(query_failed(target, "counting steps"))
}

fn failures_by_step(
    transaction: &mut Transaction<'_>,
    target: &str,
    selected: &str,
    parameters: &[&(dyn ToSql + Sync)],
) -> Result<Vec<FailingStepCount>, CentralError> {
    let rows = transaction
        .query(
            &format!(
                "SELECT failing_step, count(*) AS failed FROM imprint.runs
                 WHERE {selected} AND result = 'fail'
                 GROUP BY failing_step ORDER BY failed DESC, failing_step COLLATE \"C\" NULLS FIRST"
            ),
            parameters,
        )
        .map_err(query_failed(target, "counting failures by step"))?;
    rows.iter()
        .map(|row| {
            Ok(FailingStepCount {
                failing_step: row.try_get(0)?,
                runs: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(query_failed(target, "counting failures by step"))
}
