//! The two status codes an FCC device answers with, by name: the communication layer's
//! `ftcd_comm_status_e` in the response frame, and the bundle handler's `fcc_status_e`
//! (`ReturnStatus` in the response CBOR).
//!
//! Names and descriptions are those of the upstream headers
//! (`ftcd-comm-base/ftcd_comm_base.h`, `factory-configurator-client/fcc_status.h`, mbed-cloud-client
//! 4.13.x), so an operator reads the same words as in Izuma's documentation.

use std::fmt;

/// `fcc_status_e`: the device's verdict on a bundle (`ReturnStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FccStatus(pub u32);

/// Every `fcc_status_e` value: (code, name, the header's description).
const FCC_STATUS_TABLE: &[(u32, &str, &str)] = &[
    (0, "FCC_STATUS_SUCCESS", "Operation completed successfully"),
    (1, "FCC_STATUS_ERROR", "Operation ended with an unspecified error"),
    (2, "FCC_STATUS_MEMORY_OUT", "An out-of-memory condition occurred"),
    (3, "FCC_STATUS_INVALID_PARAMETER", "A parameter provided to the function was invalid"),
    (4, "FCC_STATUS_STORE_ERROR", "Internal storage error"),
    (5, "FCC_STATUS_INTERNAL_ITEM_ALREADY_EXIST", "Current item already exists in storage"),
    (6, "FCC_STATUS_CA_ERROR", "CA Certificate already exist in storage (currently only bootstrap CA)"),
    (7, "FCC_STATUS_ROT_ERROR", "ROT already exist in storage"),
    (8, "FCC_STATUS_ENTROPY_ERROR", "Entropy already exist in storage"),
    (9, "FCC_STATUS_FACTORY_DISABLED_ERROR", "FCC flow was disabled - denial of service error"),
    (10, "FCC_STATUS_INVALID_CERTIFICATE", "Invalid certificate found"),
    (11, "FCC_STATUS_INVALID_CERT_ATTRIBUTE", "Operation failed to get an attribute"),
    (12, "FCC_STATUS_INVALID_CA_CERT_SIGNATURE", "Invalid ca signature"),
    (13, "FCC_STATUS_EXPIRED_CERTIFICATE", "Certificate is expired"),
    (14, "FCC_STATUS_INVALID_LWM2M_CN_ATTR", "Invalid CN field of certificate"),
    (15, "FCC_STATUS_KCM_ERROR", "KCM basic functionality failed"),
    (16, "FCC_STATUS_KCM_STORAGE_ERROR", "KCM failed to read, write or get size of item from/to storage"),
    (17, "FCC_STATUS_KCM_FILE_EXIST_ERROR", "KCM tried to create existing storage item"),
    (
        18,
        "FCC_STATUS_KCM_CRYPTO_ERROR",
        "KCM returned error upon cryptographic check of an certificate or key",
    ),
    (19, "FCC_STATUS_NOT_INITIALIZED", "FCC failed or did not initialized"),
    (20, "FCC_STATUS_BUNDLE_ERROR", "Protocol layer general error"),
    (21, "FCC_STATUS_BUNDLE_RESPONSE_ERROR", "Protocol layer failed to create response buffer"),
    (
        22,
        "FCC_STATUS_BUNDLE_UNSUPPORTED_GROUP",
        "Protocol layer detected unsupported group was found in a message",
    ),
    (23, "FCC_STATUS_BUNDLE_INVALID_GROUP", "Protocol layer detected invalid group in a message"),
    (
        24,
        "FCC_STATUS_BUNDLE_INVALID_SCHEME",
        "The scheme version of a message in the protocol layer is wrong",
    ),
    (25, "FCC_STATUS_ITEM_NOT_EXIST", "Current item wasn't found in the storage"),
    (26, "FCC_STATUS_EMPTY_ITEM", "Current item's size is 0"),
    (27, "FCC_STATUS_WRONG_ITEM_DATA_SIZE", "Current item's size is different then expected"),
    (28, "FCC_STATUS_URI_WRONG_FORMAT", "Current URI is different than expected"),
    (
        29,
        "FCC_STATUS_FIRST_TO_CLAIM_NOT_ALLOWED",
        "Can't use first to claim without bootstrap or with account ID",
    ),
    (30, "FCC_STATUS_BOOTSTRAP_MODE_ERROR", "Wrong value of bootstrapUse mode"),
    (31, "FCC_STATUS_OUTPUT_INFO_ERROR", "The process failed in output info creation"),
    (32, "FCC_STATUS_WARNING_CREATE_ERROR", "The process failed in output info creation"),
    (33, "FCC_STATUS_UTC_OFFSET_WRONG_FORMAT", "Current UTC is wrong"),
    (
        34,
        "FCC_STATUS_CERTIFICATE_PUBLIC_KEY_CORRELATION_ERROR",
        "Certificate's public key failed do not matches to corresponding private key",
    ),
    (35, "FCC_STATUS_BUNDLE_INVALID_KEEP_ALIVE_SESSION_STATUS", "The message status is invalid"),
    (
        36,
        "FCC_STATUS_TOO_MANY_CSR_REQUESTS",
        "The message contained more than CSR_MAX_NUMBER_OF_CSRS CSR requests",
    ),
    (37, "FCC_STATUS_NOT_SUPPORTED", "Unsupported feature for current configuration"),
];

impl FccStatus {
    /// `FCC_STATUS_SUCCESS`.
    pub const SUCCESS: FccStatus = FccStatus(0);
    /// `FCC_STATUS_FACTORY_DISABLED_ERROR`: the device finished its factory process (`Disable`).
    pub const FACTORY_DISABLED: FccStatus = FccStatus(9);
    /// `FCC_STATUS_EXPIRED_CERTIFICATE`: a certificate expired by the device's clock.
    pub const EXPIRED_CERTIFICATE: FccStatus = FccStatus(13);
    /// `FCC_STATUS_KCM_FILE_EXIST_ERROR`: an item with that name is already stored.
    pub const ITEM_ALREADY_EXISTS: FccStatus = FccStatus(17);
    /// `FCC_STATUS_KCM_CRYPTO_ERROR`: a key or certificate the device's KCM cannot use (e.g.
    /// a curve other than P-256).
    pub const KCM_CRYPTO_ERROR: FccStatus = FccStatus(18);
    /// `FCC_STATUS_WRONG_ITEM_DATA_SIZE`.
    pub const WRONG_ITEM_DATA_SIZE: FccStatus = FccStatus(27);

    /// Every value `fcc_status_e` defines (`FCC_MAX_STATUS` aside), in order.
    pub fn all() -> impl Iterator<Item = FccStatus> {
        FCC_STATUS_TABLE.iter().map(|(code, _, _)| FccStatus(*code))
    }

    /// Whether the device reported success.
    pub fn is_success(self) -> bool {
        self.0 == 0
    }

    /// The upstream name (`FCC_STATUS_...`), or `FCC_STATUS_UNKNOWN` for a value the header lacks.
    pub fn name(self) -> &'static str {
        lookup(FCC_STATUS_TABLE, self.0).map_or("FCC_STATUS_UNKNOWN", |(name, _)| name)
    }

    /// The upstream header's description of the value.
    pub fn description(self) -> &'static str {
        lookup(FCC_STATUS_TABLE, self.0).map_or("a value fcc_status.h does not define", |(_, text)| text)
    }
}

impl fmt::Display for FccStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {} ({})", self.0, self.name(), self.description())
    }
}

/// `ftcd_comm_status_e`: the communication layer's status in the response frame. Anything but
/// success means the frame carries no CBOR response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FtcdStatus(pub u32);

/// Every `ftcd_comm_status_e` value: (code, name, description).
const FTCD_STATUS_TABLE: &[(u32, &str, &str)] = &[
    (0, "FTCD_COMM_STATUS_SUCCESS", "success"),
    (1, "FTCD_COMM_STATUS_ERROR", "generic error"),
    (2, "FTCD_COMM_INVALID_PARAMETER", "invalid parameter"),
    (3, "FTCD_COMM_MEMORY_OUT", "out of memory"),
    (4, "FTCD_COMM_FAILED_TO_READ_MESSAGE_SIZE", "failed to read the message size"),
    (5, "FTCD_COMM_FAILED_TO_READ_MESSAGE_BYTES", "failed to read the message bytes"),
    (6, "FTCD_COMM_FAILED_TO_READ_MESSAGE_SIGNATURE", "failed to read the message hash"),
    (7, "FTCD_COMM_FAILED_TO_CALCULATE_MESSAGE_SIGNATURE", "failed to calculate the message hash"),
    (8, "FTCD_COMM_INCONSISTENT_MESSAGE_SIGNATURE", "the message hash does not match"),
    (
        9,
        "FTCD_COMM_FAILED_TO_PROCESS_DATA",
        "the bundle handler produced no response (the factory flow is disabled, or the response could not be built)",
    ),
    (10, "FTCD_COMM_FAILED_TO_PROCESS_MESSAGE", "failed to process the message"),
    (11, "FTCD_COMM_FAILED_TO_SEND_VALID_RESPONSE", "failed to send a valid response"),
    (12, "FTCD_COMM_NETWORK_TIMEOUT", "socket timeout"),
    (13, "FTCD_COMM_NETWORK_CONNECTION_ERROR", "socket error"),
    (14, "FTCD_COMM_NETWORK_CONNECTION_CLOSED", "the connection was closed by the client"),
    (15, "FTCD_COMM_INTERNAL_ERROR", "internal error"),
];

impl FtcdStatus {
    /// `FTCD_COMM_STATUS_SUCCESS`.
    pub const SUCCESS: FtcdStatus = FtcdStatus(0);
    /// `FTCD_COMM_FAILED_TO_PROCESS_DATA`: what a factory-disabled device answers.
    pub const FAILED_TO_PROCESS_DATA: FtcdStatus = FtcdStatus(9);

    /// Every value `ftcd_comm_status_e` defines, in order.
    pub fn all() -> impl Iterator<Item = FtcdStatus> {
        FTCD_STATUS_TABLE.iter().map(|(code, _, _)| FtcdStatus(*code))
    }

    /// The upstream name (`FTCD_COMM_...`), or `FTCD_COMM_UNKNOWN`.
    pub fn name(self) -> &'static str {
        lookup(FTCD_STATUS_TABLE, self.0).map_or("FTCD_COMM_UNKNOWN", |(name, _)| name)
    }

    /// What the value means.
    pub fn description(self) -> &'static str {
        lookup(FTCD_STATUS_TABLE, self.0).map_or("a value ftcd_comm_base.h does not define", |(_, text)| text)
    }
}

impl fmt::Display for FtcdStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {} ({})", self.0, self.name(), self.description())
    }
}

fn lookup(
    table: &'static [(u32, &'static str, &'static str)],
    code: u32,
) -> Option<(&'static str, &'static str)> {
    table.iter().find(|(known, _, _)| *known == code).map(|(_, name, description)| (*name, *description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fcc_status_has_its_header_name_in_order() {
        let codes: Vec<u32> = FccStatus::all().map(|status| status.0).collect();
        assert_eq!(codes, (0..=37).collect::<Vec<u32>>());
        assert_eq!(FccStatus(17).name(), "FCC_STATUS_KCM_FILE_EXIST_ERROR");
        assert_eq!(FccStatus(24).name(), "FCC_STATUS_BUNDLE_INVALID_SCHEME");
        assert_eq!(FccStatus(25).name(), "FCC_STATUS_ITEM_NOT_EXIST");
        assert_eq!(FccStatus(27).name(), "FCC_STATUS_WRONG_ITEM_DATA_SIZE");
        assert_eq!(FccStatus(37).name(), "FCC_STATUS_NOT_SUPPORTED");
        assert_eq!(FccStatus(38).name(), "FCC_STATUS_UNKNOWN");
    }

    #[test]
    fn every_ftcd_status_has_its_header_name_in_order() {
        let codes: Vec<u32> = FtcdStatus::all().map(|status| status.0).collect();
        assert_eq!(codes, (0..=15).collect::<Vec<u32>>());
        assert_eq!(FtcdStatus(9).name(), "FTCD_COMM_FAILED_TO_PROCESS_DATA");
    }
}
