//! The Factory Configurator Client (FCC) protocol: how a station provisions a device that runs
//! the Izuma (formerly Pelion) Device Management Client, as the closed Factory Configurator
//! Utility does, over FTCD frames on a TCP socket (Linux) or a UART (Mbed OS).
//!
//! Pure formats and transports: `frame` (FTCD framing), `bundle` (the request CBOR, typed
//! items, encoded with ciborium), `response` (the answer decoded), `status` (`fcc_status_e` and
//! `ftcd_comm_status_e` by name), `transport` (TCP and serial with deadlines), `session` (bundles
//! in order over one connection). The protocol as the real FCC implements it is in docs/fcc.md.
//!
//! **Invariant:** knows nothing of the station, the ledger or profiles; private keys, entropy
//! and RoT bytes are never printed (`Debug` redacts them).

mod bundle;
mod error;
mod frame;
mod response;
mod session;
mod status;
mod transport;

pub use bundle::{
    BundleItemDigest, Certificate, CertificateChain, ConfigParam, ConfigValue, CsrRequest,
    FCC_CSR_EXTENDED_KEY_USAGE_CLIENT_AUTH, FCC_CSR_KEY_USAGE_DIGITAL_SIGNATURE,
    FCC_CSR_MESSAGE_DIGEST_SHA256, FCC_ENTROPY_SIZE_BYTES, FCC_ROT_SIZE_BYTES, FCC_SCHEME_VERSION, FccBundle,
    Key, KeyType,
};
pub use error::FccError;
pub use frame::{
    FTCD_HASH_SIZE_BYTES, FTCD_TOKEN, encode_request_frame, request_frame_size_bytes,
    response_frame_size_bytes,
};
pub use response::{DeviceCsr, FccResponse};
pub use session::FccSession;
pub use status::{FccStatus, FtcdStatus};
pub use transport::{FccConnection, FccStream, FccTimeouts, connect_tcp, open_serial};
