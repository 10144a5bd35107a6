//! A probe session on its own thread, called with a watchdog: the station never hangs on a probe.
//!
//! probe-rs calls block, and most have timeouts of their own — but not all (a probe that stops
//! answering in the middle of a USB transfer, a debug sequence that polls a register forever).
//! A factory line must turn every such case into a FAIL with a reason. So the session lives on
//! a worker thread, and every call is a job sent to it; the caller waits for the job's progress
//! and result with an inactivity timeout. Progress resets the timer (a 2 MiB erase may take a
//! minute, but it reports every sector). A job that goes silent past its timeout fails the call
//! with [`TargetError::Timeout`], and the worker is abandoned: every later call fails at once
//! with [`TargetError::ProbeLost`], since a thread stuck inside a probe driver cannot be trusted
//! with another request. The slot then gets a fresh worker for the next unit.
//!
//! It also keeps probe-rs types (which are not all `Send`, e.g. `FlashProgress`) on one thread:
//! jobs create them there.
//!
//! Generic over the state, so the watchdog is tested without a probe.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::device::TargetError;

/// A job: runs on the worker thread with the state; returns false when the state can no longer
/// be trusted (the job panicked) and the thread must end.
type Job<State> = Box<dyn FnOnce(&mut State) -> bool + Send>;

/// What a running job sends back.
enum Reply<T> {
    Progress(u64),
    Done(Result<T, TargetError>),
}

/// Reports progress from inside a job (bytes done so far); cheap to call often.
pub struct ProgressReporter<'a> {
    send: &'a dyn Fn(u64),
}

impl ProgressReporter<'_> {
    /// Reports `bytes_done` (also resets the caller's inactivity timer).
    pub fn report(&self, bytes_done: u64) {
        (self.send)(bytes_done);
    }
}

/// How long the worker may wait for the thread to let go of the probe on drop, so the next unit
/// can open it.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// The worker thread and its channel.
pub struct SessionWorker<State: 'static> {
    name: String,
    jobs: Option<Sender<Job<State>>>,
    finished: Receiver<()>,
    abandoned_reason: Option<String>,
}

impl<State: 'static> SessionWorker<State> {
    /// Starts a worker whose state `open` creates on the worker thread (opening the probe and
    /// attaching); waits at most `open_timeout` for it.
    pub fn start(
        name: &str,
        open_timeout: Duration,
        open: impl FnOnce() -> Result<State, TargetError> + Send + 'static,
    ) -> Result<SessionWorker<State>, TargetError> {
        let (jobs_sender, jobs) = crossbeam_channel::unbounded::<Job<State>>();
        let (opened_sender, opened) = crossbeam_channel::bounded::<Result<(), TargetError>>(1);
        let (finished_sender, finished) = crossbeam_channel::bounded::<()>(1);
        let thread_name = format!("probe {name}");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let mut state = match open() {
                    Ok(state) => {
                        let _ = opened_sender.send(Ok(()));
                        state
                    }
                    Err(error) => {
                        let _ = opened_sender.send(Err(error));
                        let _ = finished_sender.send(());
                        return;
                    }
                };
                while let Ok(job) = jobs.recv() {
                    if !job(&mut state) {
                        break;
                    }
                }
                // Dropping the state here closes the session and releases the probe.
                drop(state);
                let _ = finished_sender.send(());
            })
            .map_err(|error| TargetError::Other(format!("cannot start the probe thread: {error}")))?;
        let timeout_ms = open_timeout.as_millis() as u64;
        match opened.recv_timeout(open_timeout) {
            Ok(Ok(())) => Ok(SessionWorker {
                name: name.to_string(),
                jobs: Some(jobs_sender),
                finished,
                abandoned_reason: None,
            }),
            Ok(Err(error)) => Err(error),
            // The thread keeps its channel ends; once it returns from its stuck call it finds
            // nobody listening and exits.
            Err(RecvTimeoutError::Timeout) => Err(TargetError::Timeout { operation: "attach", timeout_ms }),
            Err(RecvTimeoutError::Disconnected) => {
                Err(TargetError::ProbeLost { reason: "the probe thread ended while attaching".to_string() })
            }
        }
    }

    /// Whether an earlier call timed out and the worker was given up.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned_reason.is_some()
    }

    /// Runs `job` on the worker thread. `inactivity_timeout` bounds the time between two
    /// progress reports (or the start and the result); `on_progress` receives the reports on the
    /// caller's thread.
    pub fn call<T: Send + 'static>(
        &mut self,
        operation: &'static str,
        inactivity_timeout: Duration,
        on_progress: &mut dyn FnMut(u64),
        job: impl FnOnce(&mut State, &ProgressReporter<'_>) -> Result<T, TargetError> + Send + 'static,
    ) -> Result<T, TargetError> {
        if let Some(reason) = &self.abandoned_reason {
            return Err(TargetError::ProbeLost { reason: reason.clone() });
        }
        let Some(jobs) = &self.jobs else {
            return Err(TargetError::ProbeLost { reason: "the probe session is closed".to_string() });
        };
        let (reply_sender, replies) = crossbeam_channel::unbounded::<Reply<T>>();
        let boxed: Job<State> = Box::new(move |state: &mut State| {
            let progress_sender = reply_sender.clone();
            let send = move |bytes: u64| {
                let _ = progress_sender.send(Reply::Progress(bytes));
            };
            let reporter = ProgressReporter { send: &send };
            // A panic inside a probe driver must not take the station down, nor leave the caller
            // waiting: report it as a lost probe and end the thread.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(state, &reporter)));
            let keep_going = outcome.is_ok();
            let result = outcome.unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(TargetError::ProbeLost {
                    reason: format!("the probe driver panicked during {operation}: {message}"),
                })
            });
            let _ = reply_sender.send(Reply::Done(result));
            keep_going
        });
        if jobs.send(boxed).is_err() {
            return Err(TargetError::ProbeLost { reason: "the probe thread has ended".to_string() });
        }
        loop {
            match replies.recv_timeout(inactivity_timeout) {
                Ok(Reply::Progress(bytes)) => on_progress(bytes),
                Ok(Reply::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) => {
                    let timeout_ms = inactivity_timeout.as_millis() as u64;
                    let reason = format!(
                        "probe {} stopped answering during {operation} ({timeout_ms} ms without progress); the probe is given up for this unit",
                        self.name
                    );
                    tracing::error!(probe = %self.name, operation, timeout_ms, "probe call timed out; abandoning the probe thread");
                    self.abandoned_reason = Some(reason);
                    // Let the stuck thread end on its own when (if) its call returns.
                    self.jobs = None;
                    return Err(TargetError::Timeout { operation, timeout_ms });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let reason =
                        format!("the probe thread of {} ended during {operation} (panic?)", self.name);
                    self.abandoned_reason = Some(reason.clone());
                    self.jobs = None;
                    return Err(TargetError::ProbeLost { reason });
                }
            }
        }
    }
}

impl<State: 'static> Drop for SessionWorker<State> {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop; wait (bounded) for it to release the
        // probe so the slot can reopen it for the next unit. An abandoned thread is not waited
        // for.
        let was_running = self.jobs.take().is_some();
        if was_running && self.finished.recv_timeout(RELEASE_WAIT).is_err() {
            tracing::warn!(probe = %self.name, "the probe thread did not release the probe in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    fn counter_worker() -> SessionWorker<u64> {
        SessionWorker::start("test", SHORT, || Ok(0u64)).expect("worker starts")
    }

    #[test]
    fn runs_jobs_in_order_on_one_state() {
        let mut worker = counter_worker();
        for expected in 1..=3 {
            let value = worker
                .call("count", SHORT, &mut |_| {}, |state, _| {
                    *state += 1;
                    Ok(*state)
                })
                .expect("job runs");
            assert_eq!(value, expected);
        }
    }

    #[test]
    fn forwards_progress_and_progress_keeps_a_long_job_alive() {
        let mut worker = counter_worker();
        let mut seen = Vec::new();
        // Ten steps of 50 ms: 500 ms in all, more than twice the 200 ms inactivity timeout.
        let result = worker.call("long", SHORT, &mut |bytes| seen.push(bytes), |_, progress| {
            for step in 1..=10u64 {
                std::thread::sleep(Duration::from_millis(50));
                progress.report(step * 100);
            }
            Ok("done")
        });
        assert_eq!(result, Ok("done"));
        assert_eq!(seen, (1..=10u64).map(|step| step * 100).collect::<Vec<_>>());
    }

    #[test]
    fn a_silent_job_times_out_and_the_worker_is_abandoned() {
        let mut worker = counter_worker();
        let release = Arc::new(AtomicBool::new(false));
        let release_in_job = release.clone();
        let started = Instant::now();
        let result = worker.call("erase", SHORT, &mut |_| {}, move |_, _| {
            while !release_in_job.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        assert_eq!(result, Err(TargetError::Timeout { operation: "erase", timeout_ms: 200 }));
        assert!(started.elapsed() < Duration::from_secs(2), "the timeout must bound the wait");
        // Every later call fails at once, without reaching the stuck thread.
        let later = worker.call("read", SHORT, &mut |_| {}, |_, _| Ok(()));
        assert!(
            matches!(later, Err(TargetError::ProbeLost { reason }) if reason.contains("stopped answering during erase"))
        );
        assert!(worker.is_abandoned());
        release.store(true, Ordering::SeqCst);
    }

    #[test]
    fn errors_from_the_job_pass_through() {
        let mut worker = counter_worker();
        let result: Result<(), _> =
            worker.call("halt", SHORT, &mut |_| {}, |_, _| Err(TargetError::PowerLost));
        assert_eq!(result, Err(TargetError::PowerLost));
        // An error is not a timeout: the worker stays usable.
        assert_eq!(worker.call("read", SHORT, &mut |_| {}, |state, _| Ok(*state)), Ok(0));
    }

    #[test]
    fn open_failures_and_open_timeouts_are_reported() {
        let failed = SessionWorker::<u64>::start("test", SHORT, || Err(TargetError::Locked));
        assert!(matches!(failed, Err(TargetError::Locked)));
        let stuck = SessionWorker::<u64>::start("test", SHORT, || {
            std::thread::sleep(Duration::from_secs(1));
            Ok(0)
        });
        assert!(matches!(stuck, Err(TargetError::Timeout { operation: "attach", timeout_ms: 200 })));
    }

    #[test]
    fn a_panicking_job_is_a_lost_probe_not_a_hang() {
        let mut worker = counter_worker();
        // Generous: printing the panic (with a backtrace, when enabled) takes a while.
        let patient = Duration::from_secs(10);
        let result: Result<(), _> = worker.call("read", patient, &mut |_| {}, |_, _| panic!("driver bug"));
        assert!(
            matches!(&result, Err(TargetError::ProbeLost { reason }) if reason.contains("panicked during read: driver bug")),
            "{result:?}"
        );
        // The thread ended: the next call fails at once.
        let later = worker.call("read", patient, &mut |_| {}, |state, _| Ok(*state));
        assert!(matches!(later, Err(TargetError::ProbeLost { .. })), "{later:?}");
    }

    #[test]
    fn dropping_the_worker_releases_the_state_on_its_thread() {
        struct Releases(Arc<AtomicBool>);
        impl Drop for Releases {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let worker = SessionWorker::start("test", SHORT, move || Ok(Releases(flag))).expect("starts");
        drop(worker);
        assert!(released.load(Ordering::SeqCst), "drop waits until the probe is released");
    }
}
