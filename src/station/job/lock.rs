//! The lock steps: `lock` enables the chip's readout/debug protection through the backend's
//! recipe, and `verify-lock` proves it: the chip reports itself locked and a debug read of the
//! config region is refused.

use serde_json::json;

use super::{StepFailure, StepResult, UnitJob};
use crate::device::TargetError;

impl UnitJob<'_> {
    pub(super) fn lock(&mut self) -> StepResult {
        self.retry(|target| target.lock())?;
        Ok(json!({ "locked": true }))
    }

    pub(super) fn verify_lock(&mut self) -> StepResult {
        if !self.retry(|target| target.is_locked())? {
            return Err(StepFailure("the chip does not report itself locked".to_string()));
        }
        let address = self.firmware()?.memory.config.address;
        let mut probe_bytes = [0u8; 16];
        match self.target.read_memory(address, &mut probe_bytes) {
            Ok(()) => {
                Err(StepFailure(format!("a debug read at {address:#010x} still succeeds after locking")))
            }
            Err(TargetError::Locked) => Ok(json!({ "debug_read_refused_at": address })),
            Err(other) => {
                Err(StepFailure(format!("expected the debug read to be refused as locked, got: {other}")))
            }
        }
    }
}
