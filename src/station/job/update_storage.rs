//! Staging a self-test candidate on a device whose update storage is a block device the probe
//! cannot reach (docs/device-contract.md, section 9): the station hands the candidate to the
//! application's update client (mailbox command 4, store-candidate), which checks it as a
//! download, erases every candidate location (so a rework starts from clean storage) and writes
//! it behind an external header keyed from its root of trust. The next reset lets the bootloader
//! install it from the block device; the report of that boot is the self-test's.
//!
//! A candidate the update client refuses never reaches the storage: its refusal (the update
//! status in the answer) is the verdict, and the report of a plain reset after it shows the
//! application unchanged.

use super::{StepFailure, StepName, UnitJob};
use crate::contract::{self, IdentityCommand, IdentityStatus, MailboxRequest, SelfTestReport};
use crate::station::self_test::StagedCandidate;

impl UnitJob<'_> {
    pub(super) fn stage_on_update_storage(
        &mut self,
        step: StepName,
        candidate: &StagedCandidate,
    ) -> Result<SelfTestReport, StepFailure> {
        let mailbox = self.firmware()?.memory.mailbox;
        let needed = contract::STORE_CANDIDATE_TRANSFER_OFFSET_BYTES + candidate.candidate_bytes.len();
        if needed as u64 > mailbox.size_bytes {
            return Err(StepFailure(format!(
                "candidate '{}' needs {needed} mailbox bytes to reach the device's update client, memory.mailbox.size is {}",
                candidate.name, mailbox.size_bytes
            )));
        }
        let response = self.mailbox_exchange(IdentityCommand::StoreCandidate {
            candidate: candidate.candidate_bytes.clone(),
        })?;
        let refusal = match response.status {
            IdentityStatus::Done => None,
            IdentityStatus::UpdateRefused => {
                Some(contract::update_refusal_status(&response.data).ok_or_else(|| {
                    StepFailure(format!(
                        "the device's update client refused candidate '{}' without a known update status",
                        candidate.name
                    ))
                })?)
            }
            status => {
                return Err(StepFailure(format!(
                    "the device refused store-candidate for '{}': {} (identity status {})",
                    candidate.name,
                    status.describe(),
                    status.code()
                )));
            }
        };
        tracing::debug!(step = %step, candidate = %candidate.name, ?refusal, "candidate handed to the update client");
        let mut nonce_bytes = [0u8; 4];
        getrandom::fill(&mut nonce_bytes)
            .map_err(|error| StepFailure(format!("no randomness for the mailbox nonce: {error}")))?;
        let request = MailboxRequest { nonce: u32::from_le_bytes(nonce_bytes) | 1 };
        let _ = self.target.take_console_lines();
        let mailbox_image = request.encode_mailbox();
        self.retry(|target| target.write_ram(mailbox.address, &mailbox_image))?;
        self.retry(|target| target.reset_and_run())?;
        let mut report = self.wait_for_report(request.nonce)?;
        if let Some(status) = refusal {
            report.update_status = status;
        }
        Ok(report)
    }
}
