//! The history panel's store: the ledger's runs as table rows, the search and scope they
//! answer, the bound an incremental refresh reads from, and the unit whose details are open.
//! Plain data filled from the chore thread's replies (the line's own store, folded from events,
//! is `super`).

use crate::ledger::{LedgerStats, RecordedRun, UnitHistory};

/// Which runs the history table lists when no search is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum HistoryScope {
    /// Runs started since the window opened.
    Session,
    /// Runs started in the last 24 hours.
    #[default]
    LastDay,
    /// Every run in the ledger.
    All,
}

impl HistoryScope {
    pub const ALL: [HistoryScope; 3] = [HistoryScope::Session, HistoryScope::LastDay, HistoryScope::All];

    pub fn label(self) -> &'static str {
        match self {
            HistoryScope::Session => "this session",
            HistoryScope::LastDay => "last 24 h",
            HistoryScope::All => "all runs",
        }
    }
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The ledger's row id (distinguishes runs when refreshes overlap).
    pub run_id: i64,
    pub started_at: String,
    pub serial: Option<String>,
    pub chip_uid: Option<String>,
    pub result: String,
    pub failing_step: Option<String>,
    pub reason: Option<String>,
    pub probe: String,
    pub operator: String,
    pub duration_ms: u64,
}

impl HistoryRow {
    /// The row for a recorded run.
    pub fn from_run(run: &RecordedRun) -> HistoryRow {
        HistoryRow {
            run_id: run.run_id,
            started_at: run.started_at.clone(),
            serial: run.serial.clone(),
            chip_uid: run.chip_uid.clone(),
            result: run.result.clone(),
            failing_step: run.failing_step.clone(),
            reason: run.reason.clone(),
            probe: run.probe.clone(),
            operator: run.operator.clone(),
            duration_ms: run.steps.iter().map(|step| step.duration_ms).sum(),
        }
    }

    /// The key a unit's details are looked up by: its serial, else its chip UID.
    pub fn lookup_key(&self) -> Option<&str> {
        self.serial.as_deref().or(self.chip_uid.as_deref())
    }
}

/// The history panel's data.
#[derive(Debug, Clone, Default)]
pub struct HistoryStore {
    /// Newest first.
    pub rows: Vec<HistoryRow>,
    /// What the rows answer: the search text, or empty for the scope's recent runs.
    pub shown_search: String,
    /// True while a query is on its way.
    pub is_loading: bool,
    /// The last query's error.
    pub error: Option<String>,
    /// The ledger's totals.
    pub ledger_stats: Option<LedgerStats>,
    /// The rows were read in full once (not only incrementally) and hold no search result.
    pub is_full: bool,
    /// The earliest start a run not yet listed can have (as of the last request): the next
    /// incremental refresh reads from here.
    pub refresh_bound: Option<String>,
    /// The unit whose details are open.
    pub details: Option<UnitDetails>,
    /// The last export's outcome, for the status line.
    pub export_message: Option<String>,
}

/// A unit's details window.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitDetails {
    Loading { key: String },
    Found(Box<UnitHistory>),
    NotFound { key: String },
    Failed { key: String, error: String },
}

impl HistoryStore {
    /// Merges the rows of an incremental refresh: newest first, each run once, at most `limit`.
    pub fn merge(&mut self, newer: Vec<HistoryRow>, limit: usize) {
        let mut rows = newer;
        rows.append(&mut self.rows);
        rows.sort_by(|left, right| {
            right.started_at.cmp(&left.started_at).then(right.run_id.cmp(&left.run_id))
        });
        rows.dedup_by_key(|row| row.run_id);
        rows.truncate(limit);
        self.rows = rows;
    }

    /// Where an incremental refresh may start, or `None` when only a full refresh will do.
    pub fn incremental_since(&self) -> Option<String> {
        if !self.is_full || !self.shown_search.trim().is_empty() {
            return None;
        }
        self.refresh_bound.clone()
    }

    /// Notes a request made now: a run it does not return finishes after the request, so it
    /// started after `now_minus_margin` or belongs to a unit already running (`running_unit_starts`).
    pub fn requested(&mut self, now_minus_margin: String, running_unit_starts: impl Iterator<Item = String>) {
        self.refresh_bound =
            Some(running_unit_starts.fold(now_minus_margin, |earliest, start| earliest.min(start)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run_id: i64, started_at: &str) -> HistoryRow {
        HistoryRow {
            run_id,
            started_at: started_at.to_string(),
            serial: None,
            chip_uid: None,
            result: "pass".to_string(),
            failing_step: None,
            reason: None,
            probe: "sim-0".to_string(),
            operator: "tester".to_string(),
            duration_ms: 0,
        }
    }

    #[test]
    fn incremental_history_merges_newest_first_without_repeats() {
        let mut history = HistoryStore::default();
        history.requested("2026-01-01T00:00:05.000Z".into(), std::iter::empty());
        assert_eq!(history.incremental_since(), None, "nothing read in full yet");
        history.rows = vec![row(2, "2026-01-01T00:00:02.000Z"), row(1, "2026-01-01T00:00:01.000Z")];
        history.is_full = true;
        assert_eq!(history.incremental_since().as_deref(), Some("2026-01-01T00:00:05.000Z"));
        // A unit running at the time of the request moves the bound back to its start.
        let running = ["2026-01-01T00:00:00.500Z".to_string()];
        history.requested("2026-01-01T00:00:05.000Z".into(), running.into_iter());
        assert_eq!(history.incremental_since().as_deref(), Some("2026-01-01T00:00:00.500Z"));
        history.merge(vec![row(3, "2026-01-01T00:00:00.500Z"), row(2, "2026-01-01T00:00:02.000Z")], 3);
        let ids: Vec<i64> = history.rows.iter().map(|row| row.run_id).collect();
        assert_eq!(ids, [2, 1, 3]);
        history.merge(vec![row(4, "2026-01-01T00:00:03.000Z")], 3);
        let ids: Vec<i64> = history.rows.iter().map(|row| row.run_id).collect();
        assert_eq!(ids, [4, 2, 1]);
        history.shown_search = "DS1".to_string();
        assert_eq!(history.incremental_since(), None, "search results refresh in full");
    }
}
