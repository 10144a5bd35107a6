//! The station's link to the central database: one background thread that keeps the station's
//! serial blocks stocked and ships the outbox, reconnecting with backoff when the database is
//! unreachable. The line never waits on it: slots allocate from the local ledger and record
//! runs locally; the link only reads the outbox and records leased blocks, each in a short
//! local transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lease::{SerialCounterSpec, adopt_blocks, lease_block};
use super::ship::ship_batch;
use super::{CentralConfig, CentralError, migrate};
use crate::ledger::Ledger;

/// How the link behaves. [`LinkSettings::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// This station's name (blocks are leased to it and to its ledger).
    pub station: String,
    /// The counter schemes to keep serial blocks for (empty: no leasing).
    pub serial_counters: Vec<SerialCounterSpec>,
    /// Values per leased block.
    pub block_size: u64,
    /// Lease another block when fewer values than this remain for a prefix (lease ahead).
    pub low_water: u64,
    /// Runs per central transaction.
    pub batch_size: usize,
    /// How often an idle link looks at the outbox.
    pub idle_poll: Duration,
    /// First wait after a failure; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Default values per leased block.
pub const DEFAULT_BLOCK_SIZE: u64 = 100;
/// Default runs per central transaction.
pub const DEFAULT_BATCH_SIZE: usize = 100;

impl LinkSettings {
    /// Defaults: blocks of [`DEFAULT_BLOCK_SIZE`], leasing ahead when less than one block is
    /// left, batches of [`DEFAULT_BATCH_SIZE`], polling every 100 ms, backoff 100 ms to 2 s.
    pub fn new(station: String, serial_counters: Vec<SerialCounterSpec>) -> LinkSettings {
        LinkSettings {
            station,
            serial_counters,
            block_size: DEFAULT_BLOCK_SIZE,
            low_water: DEFAULT_BLOCK_SIZE,
            batch_size: DEFAULT_BATCH_SIZE,
            idle_poll: Duration::from_millis(100),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// What the link has done and where it stands; measured, for the operator and the tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStatus {
    pub is_connected: bool,
    /// Attempts to connect that failed (the database was unreachable or refused us).
    pub connection_failures: u64,
    pub connections: u64,
    /// Runs acknowledged by the central database and marked shipped.
    pub runs_shipped: u64,
    /// Of those, runs that were already stored centrally (re-delivery after a crash).
    pub runs_already_present: u64,
    pub batches_shipped: u64,
    /// Wall time spent in shipping batches (central transaction plus local mark), ms.
    pub shipping_ms_total: f64,
    /// Runs still waiting in the outbox, as last seen.
    pub outbox_pending: u64,
    pub blocks_leased: u64,
    pub blocks_adopted: u64,
    /// Each lease's wall time (central transaction plus local record), ms.
    pub lease_latencies_ms: Vec<f64>,
    /// True once every serial counter has at least `low_water` values in hand (or there is
    /// nothing to lease).
    pub serials_stocked: bool,
    pub last_error: Option<String>,
    /// An alarm stops shipping until an operator resolves it (docs/central.md).
    pub alarm: Option<String>,
    pub duplicate_serial_alarms: u64,
}

struct LinkShared {
    stop: AtomicBool,
    status: Mutex<LinkStatus>,
    status_changed: Condvar,
    wake: Mutex<bool>,
    woken: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running link; stop it with [`CentralLink::finish`] (dropping it stops it without waiting
/// for the outbox).
pub struct CentralLink {
    shared: Arc<LinkShared>,
    ledger: Ledger,
    thread: Option<JoinHandle<()>>,
}

impl CentralLink {
    /// Starts the link thread. From now on counter serials come only from leased blocks
    /// ([`Ledger::require_leased_serial_blocks`]) when `settings` names counter schemes.
    pub fn start(
        ledger: Ledger,
        config: CentralConfig,
        settings: LinkSettings,
    ) -> Result<CentralLink, CentralError> {
        if settings.block_size == 0 {
            return Err(CentralError::InvalidSetting {
                field: "central block size",
                expected: "at least 1",
                found: "0".to_owned(),
            });
        }
        if settings.batch_size == 0 {
            return Err(CentralError::InvalidSetting {
                field: "central batch size",
                expected: "at least 1",
                found: "0".to_owned(),
            });
        }
        let ledger_id = ledger.ledger_id()?;
        if !settings.serial_counters.is_empty() {
            ledger.require_leased_serial_blocks();
        }
        let shared = Arc::new(LinkShared {
            stop: AtomicBool::new(false),
            status: Mutex::new(LinkStatus::default()),
            status_changed: Condvar::new(),
            wake: Mutex::new(false),
            woken: Condvar::new(),
        });
        let worker = Worker { shared: shared.clone(), ledger: ledger.clone(), config, settings, ledger_id };
        let thread = std::thread::Builder::new()
            .name("imprint-central".to_owned())
            .spawn(move || worker.run())
            .map_err(|error| CentralError::InvalidSetting {
                field: "central link thread",
                expected: "a thread",
                found: error.to_string(),
            })?;
        Ok(CentralLink { shared, ledger, thread: Some(thread) })
    }

    /// A snapshot of the link's status.
    pub fn status(&self) -> LinkStatus {
        lock(&self.shared.status).clone()
    }

    /// Waits until the serial blocks are stocked, or the first attempt failed (the station
    /// then works from the blocks it has), or `timeout` passed. Returns the status.
    pub fn wait_until_ready(&self, timeout: Duration) -> LinkStatus {
        let deadline = Instant::now() + timeout;
        let mut status = lock(&self.shared.status);
        while !(status.serials_stocked || status.connection_failures > 0 || status.last_error.is_some()) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            status = self
                .shared
                .status_changed
                .wait_timeout(status, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        status.clone()
    }

    /// Asks the link to look at the outbox now rather than at its next poll.
    pub fn wake(&self) {
        *lock(&self.shared.wake) = true;
        self.shared.woken.notify_all();
    }

    /// Gives the link up to `drain_timeout` to ship what is in the outbox, then stops it and
    /// returns the final status. Runs not shipped stay in the outbox for the next start.
    pub fn finish(mut self, drain_timeout: Duration) -> LinkStatus {
        let deadline = Instant::now() + drain_timeout;
        let failures_before = self.status().connection_failures;
        self.wake();
        loop {
            let pending = self.ledger.unshipped_count().unwrap_or(u64::MAX);
            let status = self.status();
            // Offline, a failed reconnection during the drain ends it: the outbox keeps the
            // runs for the next start, and the operator need not wait out the timeout.
            let is_offline = !status.is_connected && status.connection_failures > failures_before;
            if pending == 0 || status.alarm.is_some() || is_offline || Instant::now() >= deadline {
                break;
            }
            let guard = lock(&self.shared.status);
            let _ = self.shared.status_changed.wait_timeout(guard, Duration::from_millis(50));
        }
        self.stop_thread();
        let mut status = self.status();
        status.outbox_pending = self.ledger.unshipped_count().unwrap_or(status.outbox_pending);
        status
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CentralLink {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A connected session: the client and what was checked on it.
struct Session {
    client: postgres::Client,
}

struct Worker {
    shared: Arc<LinkShared>,
    ledger: Ledger,
    config: CentralConfig,
    settings: LinkSettings,
    ledger_id: String,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn update(&self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut lock(&self.shared.status));
        self.shared.status_changed.notify_all();
    }

    /// Sleeps up to `duration`, waking early for [`CentralLink::wake`] or a stop.
    fn pause(&self, duration: Duration) {
        let mut woken = lock(&self.shared.wake);
        if !*woken && !self.stopping() {
            woken = self
                .shared
                .woken
                .wait_timeout(woken, duration)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        *woken = false;
    }

    fn connect(&self) -> Result<Session, CentralError> {
        let target = self.config.target();
        let mut client = self.config.connect()?;
        migrate(&mut client, target)?;
        let adopted = adopt_blocks(&mut client, target, &self.ledger, &self.ledger_id)?;
        self.update(|status| status.blocks_adopted += adopted as u64);
        Ok(Session { client })
    }

    fn run(self) {
        let mut session: Option<Session> = None;
        let mut backoff = self.settings.backoff_initial;
        let mut reported_alarm = false;
        // Warn once when the database goes away, not at every retry of a long outage.
        let mut reported_offline = false;
        while !self.stopping() {
            if session.is_none() {
                match self.connect() {
                    Ok(connected) => {
                        if reported_offline {
                            tracing::warn!(target = %self.config.target(), "central database reachable again");
                        } else {
                            tracing::info!(target = %self.config.target(), "connected to the central database");
                        }
                        reported_offline = false;
                        self.update(|status| {
                            status.is_connected = true;
                            status.connections += 1;
                        });
                        backoff = self.settings.backoff_initial;
                        session = Some(connected);
                    }
                    Err(error) => {
                        if reported_offline {
                            tracing::debug!(%error, "central database still unreachable");
                        } else {
                            tracing::warn!(%error, "central database unreachable; working from the local ledger");
                            reported_offline = true;
                        }
                        self.update(|status| {
                            status.is_connected = false;
                            status.connection_failures += 1;
                            status.last_error = Some(error.to_string());
                        });
                        self.pause(backoff);
                        backoff = (backoff * 2).min(self.settings.backoff_max);
                        continue;
                    }
                }
            }
            let Some(connected) = session.as_mut() else { continue };
            match self.serve(connected) {
                Ok(true) => {}
                Ok(false) => self.pause(self.settings.idle_poll),
                Err(error) => {
                    let is_alarm = matches!(error, CentralError::Alarm { .. });
                    if is_alarm && !reported_alarm {
                        tracing::error!(%error, "central ledger alarm");
                        reported_alarm = true;
                    } else if !is_alarm && !reported_offline {
                        tracing::warn!(%error, "central database link failed; reconnecting");
                        reported_offline = true;
                    }
                    self.update(|status| {
                        status.is_connected = false;
                        status.last_error = Some(error.to_string());
                        if is_alarm {
                            status.alarm = Some(error.to_string());
                        }
                    });
                    session = None;
                    self.pause(if is_alarm { self.settings.backoff_max } else { backoff });
                    backoff = (backoff * 2).min(self.settings.backoff_max);
                }
            }
        }
    }

    /// One round: stock the serial blocks, ship one batch. Returns true when it shipped
    /// something (more may be waiting).
    fn serve(&self, session: &mut Session) -> Result<bool, CentralError> {
        let target = self.config.target();
        let mut stocked = true;
        for spec in &self.settings.serial_counters {
            let mut remaining = self.ledger.leased_serials_remaining(&spec.prefix)?;
            while remaining < self.settings.low_water {
                let started = Instant::now();
                let block = lease_block(
                    &mut session.client,
                    target,
                    &self.settings.station,
                    &self.ledger_id,
                    spec,
                    self.settings.block_size,
                )?;
                self.ledger.record_serial_block(&block)?;
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::debug!(
                    prefix = %block.prefix,
                    first_value = block.first_value,
                    last_value = block.last_value,
                    latency_ms,
                    "leased a serial block"
                );
                remaining += block.last_value - block.first_value + 1;
                self.update(|status| {
                    status.blocks_leased += 1;
                    status.lease_latencies_ms.push(latency_ms);
                });
                if self.stopping() {
                    stocked = false;
                    break;
                }
            }
        }
        if stocked {
            self.update(|status| status.serials_stocked = true);
        }
        let started = Instant::now();
        let outcome =
            ship_batch(&mut session.client, target, &self.ledger, &self.ledger_id, self.settings.batch_size)?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let pending = self.ledger.unshipped_count()?;
        let acknowledged = outcome.runs_acknowledged();
        if acknowledged > 0 {
            tracing::debug!(
                runs_inserted = outcome.runs_inserted,
                runs_already_present = outcome.runs_already_present,
                outbox_pending = pending,
                elapsed_ms,
                "shipped a batch"
            );
        }
        self.update(|status| {
            status.is_connected = true;
            status.outbox_pending = pending;
            if acknowledged > 0 {
                status.runs_shipped += acknowledged as u64;
                status.runs_already_present += outcome.runs_already_present as u64;
                status.batches_shipped += 1;
                status.shipping_ms_total += elapsed_ms;
                status.duplicate_serial_alarms += outcome.duplicate_serial_alarms as u64;
            }
        });
        Ok(acknowledged > 0)
    }
}
