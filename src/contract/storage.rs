//! Update candidates on a block device the debug probe cannot reach (docs/device-contract.md,
//! section 9): the station hands the staged candidate to the application's update client with
//! mailbox command 4, store-candidate; the update client checks it as it checks a download
//! (section 3.3) and, when it accepts it, writes it to its block device behind an external
//! header (section 7.2) keyed from its root of trust. Its refusal carries the update status.

#[allow(unused_imports)]
use super::*;

/// Request command code: store a candidate on the device's update storage.
pub const COMMAND_STORE_CANDIDATE: u32 = 4;
/// Where the candidate's bytes start in the mailbox (after the identity layout's 1024 bytes).
pub const STORE_CANDIDATE_TRANSFER_OFFSET_BYTES: usize = IDENTITY_MAILBOX_SIZE_BYTES;

/// Writes the store-candidate parameters (the candidate's length) and returns the bytes that
/// follow the 1024-byte identity layout (the candidate).
pub(super) fn encode_store_parameters(parameters: &mut [u8], candidate: &[u8]) {
    parameters[0..4].copy_from_slice(&(candidate.len() as u32).to_le_bytes());
}

/// Reads a store-candidate request from the whole mailbox; `None` when the length is zero or
/// runs past the mailbox.
pub(super) fn decode_store_request(mailbox: &[u8], parameters: &[u8]) -> Option<IdentityCommand> {
    let length = read_u32(parameters, 0) as usize;
    if length == 0 {
        return None;
    }
    let candidate =
        mailbox.get(STORE_CANDIDATE_TRANSFER_OFFSET_BYTES..STORE_CANDIDATE_TRANSFER_OFFSET_BYTES + length)?;
    Some(IdentityCommand::StoreCandidate { candidate: candidate.to_vec() })
}

/// The data of an update-refused answer: the update status, u32 little-endian.
pub fn update_refusal_data(status: UpdateStatus) -> Vec<u8> {
    status.code().to_le_bytes().to_vec()
}

/// The update status an update-refused answer carries.
pub fn update_refusal_status(data: &[u8]) -> Option<UpdateStatus> {
    let code = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
    UpdateStatus::ALL.into_iter().find(|status| status.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_requests_carry_the_candidate_after_the_identity_layout() {
        let request = IdentityMailboxRequest {
            nonce: 9,
            command: IdentityCommand::StoreCandidate { candidate: vec![0x42; 3000] },
        };
        let mailbox = request.encode_mailbox();
        assert_eq!(mailbox.len(), STORE_CANDIDATE_TRANSFER_OFFSET_BYTES + 3000);
        assert_eq!(IdentityMailboxRequest::decode(&mailbox), Some(Ok(request)));
        // Cut short: the device refuses rather than read past its mailbox.
        let short = &mailbox[..STORE_CANDIDATE_TRANSFER_OFFSET_BYTES + 100];
        assert_eq!(
            IdentityMailboxRequest::decode(short).and_then(Result::err).map(|response| response.status),
            Some(IdentityStatus::BadParameters)
        );
        let data = update_refusal_data(UpdateStatus::SignatureInvalid);
        assert_eq!(update_refusal_status(&data), Some(UpdateStatus::SignatureInvalid));
        assert_eq!(update_refusal_status(&[1, 2]), None);
    }
}
