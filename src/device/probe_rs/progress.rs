//! Turning the probe-rs flash loader's progress events into the station's byte counts.
//!
//! The flash loader reports phases (fill, erase, program, verify), each started, advanced by a
//! sector's or page's size, and finished or failed. The station's [`crate::device::Target`]
//! calls take one callback each: "bytes erased so far" for an erase, "bytes programmed so far"
//! for a program. [`FlashProgressTally`] follows one call's events, reports the tracked phase's
//! running total (monotonic, never above the request: pages are larger than the data in them),
//! remembers which phase failed for the error message, and checks that an erase covered the whole
//! request — probe-rs silently skips sectors that stick out of the range, which would otherwise
//! surface much later as a verify failure.
//!
//! Pure: the probe-rs event type is converted in `session.rs`.

use crate::device::TargetError;

/// A phase of the flash loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlashPhase {
    /// Reading back flash to keep bytes outside the data (not used by the station).
    Fill,
    /// Erasing sectors.
    Erase,
    /// Programming pages.
    Program,
    /// The loader's own read-back check (the station verifies again independently).
    Verify,
}

impl FlashPhase {
    /// The phase's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            FlashPhase::Fill => "fill",
            FlashPhase::Erase => "erase",
            FlashPhase::Program => "program",
            FlashPhase::Verify => "verify",
        }
    }

    fn index(self) -> usize {
        match self {
            FlashPhase::Fill => 0,
            FlashPhase::Erase => 1,
            FlashPhase::Program => 2,
            FlashPhase::Verify => 3,
        }
    }
}

/// One event of the flash loader, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashEvent {
    /// A phase started.
    Started(FlashPhase),
    /// A phase advanced by one sector or page.
    Progress { phase: FlashPhase, size_bytes: u64 },
    /// A phase ended successfully.
    Finished(FlashPhase),
    /// A phase failed (the loader returns its error afterwards).
    Failed(FlashPhase),
    /// A message from the flash algorithm.
    Message(String),
}

/// Follows the events of one erase or program call.
#[derive(Debug, Clone)]
pub struct FlashProgressTally {
    tracked_phase: FlashPhase,
    requested_bytes: u64,
    bytes_by_phase: [u64; 4],
    finished_by_phase: [bool; 4],
    failed_phase: Option<FlashPhase>,
    last_reported_bytes: u64,
    messages: Vec<String>,
}

impl FlashProgressTally {
    /// Tracks `tracked_phase` of a request of `requested_bytes`.
    pub fn new(tracked_phase: FlashPhase, requested_bytes: u64) -> FlashProgressTally {
        FlashProgressTally {
            tracked_phase,
            requested_bytes,
            bytes_by_phase: [0; 4],
            finished_by_phase: [false; 4],
            failed_phase: None,
            last_reported_bytes: 0,
            messages: Vec::new(),
        }
    }

    /// Takes one event; returns the new running total for the station's callback when it
    /// changed.
    pub fn observe(&mut self, event: FlashEvent) -> Option<u64> {
        match event {
            FlashEvent::Started(_) => None,
            FlashEvent::Progress { phase, size_bytes } => {
                let total = &mut self.bytes_by_phase[phase.index()];
                *total = total.saturating_add(size_bytes);
                if phase != self.tracked_phase {
                    return None;
                }
                let report = (*total).min(self.requested_bytes);
                (report > self.last_reported_bytes).then(|| {
                    self.last_reported_bytes = report;
                    report
                })
            }
            FlashEvent::Finished(phase) => {
                self.finished_by_phase[phase.index()] = true;
                None
            }
            FlashEvent::Failed(phase) => {
                self.failed_phase.get_or_insert(phase);
                None
            }
            FlashEvent::Message(message) => {
                self.messages.push(message);
                None
            }
        }
    }

    /// Bytes the loader reported for `phase` (sector or page sizes, so possibly more than the
    /// request).
    pub fn bytes_in(&self, phase: FlashPhase) -> u64 {
        self.bytes_by_phase[phase.index()]
    }

    /// Whether `phase` reported finishing.
    pub fn finished(&self, phase: FlashPhase) -> bool {
        self.finished_by_phase[phase.index()]
    }

    /// The first phase that failed, if any.
    pub fn failed_phase(&self) -> Option<FlashPhase> {
        self.failed_phase
    }

    /// The flash algorithm's messages, for the log.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// After a successful erase: every requested byte must have been erased. probe-rs erases
    /// only sectors lying wholly inside the range, so a profile whose sector size does not match
    /// the chip's sectors leaves parts unerased; say so instead of programming onto old data.
    pub fn check_erase_covered(&self, address: u64) -> Result<(), TargetError> {
        let erased = self.bytes_in(FlashPhase::Erase);
        if erased == self.requested_bytes {
            return Ok(());
        }
        Err(TargetError::Refused {
            operation: "erase",
            address,
            reason: format!(
                "the chip's sectors erased {erased} of the {} bytes requested; the profile's sector_size does not match the chip's sector layout here",
                self.requested_bytes
            ),
        })
    }

    /// After a successful program: the loader must have programmed at least the data (pages
    /// round up) and, when it verified, verified it.
    pub fn check_program_covered(&self, address: u64, loader_verified: bool) -> Result<(), TargetError> {
        let programmed = self.bytes_in(FlashPhase::Program);
        if programmed < self.requested_bytes {
            return Err(TargetError::Refused {
                operation: "program",
                address,
                reason: format!(
                    "the flash loader programmed {programmed} of the {} bytes requested",
                    self.requested_bytes
                ),
            });
        }
        if loader_verified && !self.finished(FlashPhase::Verify) {
            return Err(TargetError::Refused {
                operation: "program",
                address,
                reason: "the flash loader did not finish its verify phase".to_string(),
            });
        }
        Ok(())
    }

    /// Context for an error the loader returned: which phase failed and what the algorithm
    /// said.
    pub fn failure_context(&self) -> String {
        let mut context = match self.failed_phase {
            Some(phase) => format!("during the {} phase", phase.name()),
            None => String::new(),
        };
        if let Some(message) = self.messages.last() {
            if !context.is_empty() {
                context.push_str("; ");
            }
            context.push_str(&format!("flash algorithm said: {message}"));
        }
        context
    }
}
