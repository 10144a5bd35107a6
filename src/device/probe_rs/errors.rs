//! One place that turns probe-rs errors into the station's [`TargetError`]s.
//!
//! probe-rs nests its errors (a flash error wrapping a core error wrapping a probe error wrapping
//! a USB I/O error), and the outermost layer rarely says what happened on the line. So
//! [`classify`] walks the whole `source()` chain, notes what each layer says, and picks the most
//! telling kind: a USB device that vanished beats the flash-loader error around it ("probe
//! unplugged mid-flash", not "page write failed"); a timeout under a flash-algorithm error is a
//! flash algorithm timeout. [`to_target_error`] then makes the [`TargetError`] the station
//! records, with the full chain in the reason.

use std::error::Error as StdError;

use probe_rs::architecture::arm::{ArmError, DapError};
use probe_rs::config::RegistryError;
use probe_rs::flashing::FlashError;
use probe_rs::probe::{DebugProbeError, ProbeCreationError};

use crate::device::TargetError;

/// What a probe-rs failure means on a factory line, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeFailureKind {
    /// The probe's USB device went away (unplugged, reset, cable).
    ProbeGone,
    /// No probe matches the selector.
    NoProbe,
    /// The probe exists but cannot be opened (used by another program, or no permission).
    ProbeUnavailable,
    /// Nothing answers on SWD/JTAG: the target is not powered, not there, or not wired.
    TargetNotResponding,
    /// The chip's debug access is locked (readout/access-port protection).
    Locked,
    /// The flash algorithm did not finish in time.
    FlashAlgorithmTimeout,
    /// Some other probe or core operation timed out.
    Timeout,
    /// The chip refused a memory access (bus fault / AP fault): a protected or absent address.
    AccessFault,
    /// A glitch on the wire (WAIT, parity, protocol error) that a retry may cure.
    Transient,
    /// The flash algorithm reported a failure, or the loader's own verify failed.
    FlashAlgorithm,
    /// probe-rs does not know the chip name, or the target description is broken.
    UnknownChip,
    /// Anything else.
    Other,
}

/// Classifies an error by every layer of its `source()` chain.
pub fn classify(error: &(dyn StdError + 'static)) -> ProbeFailureKind {
    let mut kinds = Vec::new();
    let mut saw_flash_error = false;
    let mut layer: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = layer {
        if let Some(kind) = classify_layer(current, &mut saw_flash_error) {
            kinds.push(kind);
        }
        // A registry (chip description) error may wrap a file I/O error: that is not the probe.
        if current.downcast_ref::<RegistryError>().is_some() {
            break;
        }
        layer = current.source();
    }
    let most_telling = kinds.into_iter().min().unwrap_or(ProbeFailureKind::Other);
    if most_telling == ProbeFailureKind::Timeout && saw_flash_error {
        ProbeFailureKind::FlashAlgorithmTimeout
    } else {
        most_telling
    }
}

fn classify_layer(layer: &(dyn StdError + 'static), saw_flash_error: &mut bool) -> Option<ProbeFailureKind> {
    use ProbeFailureKind as Kind;
    if let Some(error) = layer.downcast_ref::<probe_rs::Error>() {
        return match error {
            probe_rs::Error::MissingPermissions(_) => Some(Kind::Locked),
            probe_rs::Error::ChipNotFound(_) => Some(Kind::UnknownChip),
            probe_rs::Error::Timeout => Some(Kind::Timeout),
            _ => None,
        };
    }
    if let Some(error) = layer.downcast_ref::<ArmError>() {
        return match error {
            ArmError::MissingPermissions(_) => Some(Kind::Locked),
            ArmError::NoTargetResponse { .. } => Some(Kind::TargetNotResponding),
            ArmError::Timeout => Some(Kind::Timeout),
            ArmError::AccessPort { .. } | ArmError::OutOfBounds => Some(Kind::AccessFault),
            ArmError::ReAttachRequired => Some(Kind::Transient),
            _ => None,
        };
    }
    if let Some(error) = layer.downcast_ref::<DapError>() {
        return match error {
            DapError::NoAcknowledge => Some(Kind::TargetNotResponding),
            DapError::FaultResponse => Some(Kind::AccessFault),
            DapError::WaitResponse | DapError::IncorrectParity | DapError::Protocol(_) => {
                Some(Kind::Transient)
            }
        };
    }
    if let Some(error) = layer.downcast_ref::<DebugProbeError>() {
        return match error {
            DebugProbeError::Usb(_) => Some(Kind::ProbeGone),
            DebugProbeError::TargetNotFound => Some(Kind::TargetNotResponding),
            DebugProbeError::Timeout => Some(Kind::Timeout),
            _ => None,
        };
    }
    if let Some(error) = layer.downcast_ref::<ProbeCreationError>() {
        return match error {
            ProbeCreationError::NotFound => Some(Kind::NoProbe),
            ProbeCreationError::CouldNotOpen => Some(Kind::ProbeUnavailable),
            ProbeCreationError::Usb(_) => Some(Kind::ProbeGone),
            _ => None,
        };
    }
    if let Some(error) = layer.downcast_ref::<FlashError>() {
        *saw_flash_error = true;
        return match error {
            FlashError::RoutineCallFailed { .. }
            | FlashError::Verify
            | FlashError::FlashAlgorithmNotLoaded => Some(Kind::FlashAlgorithm),
            FlashError::NoSuitableNvm { .. } | FlashError::AddressNotInRegion { .. } => {
                Some(Kind::AccessFault)
            }
            _ => None,
        };
    }
    if layer.downcast_ref::<RegistryError>().is_some() {
        return Some(Kind::UnknownChip);
    }
    if let Some(error) = layer.downcast_ref::<std::io::Error>() {
        return Some(classify_io_error(error));
    }
    None
}

/// I/O errors below a probe error come from the USB link. A timeout or a refusal to open are
/// told apart; anything else (ENODEV, ESHUTDOWN, EPROTO from usbfs for an unplugged device, a
/// broken pipe) means the link to the probe is gone.
fn classify_io_error(error: &std::io::Error) -> ProbeFailureKind {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::TimedOut => ProbeFailureKind::Timeout,
        ErrorKind::PermissionDenied | ErrorKind::ResourceBusy => ProbeFailureKind::ProbeUnavailable,
        _ => ProbeFailureKind::ProbeGone,
    }
}

/// The error and all its sources, joined: `outer: middle: inner`, without repeating a layer whose
/// text is already contained in the one before.
pub fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut layer: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = layer {
        let text = current.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|previous| previous.contains(&text)) {
            parts.push(text);
        }
        layer = current.source();
    }
    parts.join(": ")
}

/// What the station records for a probe-rs failure of `operation` at `address` (the start of
/// the range, when there is one).
pub fn to_target_error(
    kind: ProbeFailureKind,
    operation: &'static str,
    address: Option<u64>,
    detail: &str,
) -> TargetError {
    let at = address.map(|address| format!(" at {address:#010x}")).unwrap_or_default();
    match kind {
        ProbeFailureKind::ProbeGone => TargetError::ProbeLost {
            reason: format!("the probe disconnected during {operation}{at}: {detail}"),
        },
        ProbeFailureKind::NoProbe => {
            TargetError::ProbeLost { reason: format!("no probe found for {operation}: {detail}") }
        }
        ProbeFailureKind::ProbeUnavailable => TargetError::ProbeLost {
            reason: format!(
                "the probe cannot be opened (used by another program, or no permission): {detail}"
            ),
        },
        ProbeFailureKind::TargetNotResponding => {
            tracing::warn!(operation, detail, "no target answers the probe: not powered, absent or miswired");
            TargetError::PowerLost
        }
        ProbeFailureKind::Locked => TargetError::Locked,
        ProbeFailureKind::FlashAlgorithmTimeout => {
            TargetError::Other(format!("{operation}{at}: the flash algorithm timed out: {detail}"))
        }
        ProbeFailureKind::Timeout => {
            TargetError::Other(format!("{operation}{at}: the probe reported a timeout: {detail}"))
        }
        ProbeFailureKind::AccessFault => TargetError::Refused {
            operation,
            address: address.unwrap_or(0),
            reason: format!("the chip refused the debug access: {detail}"),
        },
        ProbeFailureKind::Transient => {
            TargetError::Transient { reason: format!("{operation}{at}: {detail}") }
        }
        ProbeFailureKind::FlashAlgorithm => TargetError::Refused {
            operation,
            address: address.unwrap_or(0),
            reason: format!("the flash algorithm failed: {detail}"),
        },
        ProbeFailureKind::UnknownChip => TargetError::Other(format!(
            "probe-rs cannot use the chip description: {detail} (check chip.name, or add chip.target_description)"
        )),
        ProbeFailureKind::Other => TargetError::Other(format!("{operation}{at}: {detail}")),
    }
}

/// [`classify`] + [`to_target_error`] in one call, for the session code.
pub fn map_probe_rs_error(
    error: &(dyn StdError + 'static),
    operation: &'static str,
    address: Option<u64>,
) -> TargetError {
    to_target_error(classify(error), operation, address, &chain_text(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeFailureKind as Kind;

    fn usb_gone() -> std::io::Error {
        std::io::Error::from_raw_os_error(19)
    }

    fn check(error: &(dyn StdError + 'static), expected: Kind) {
        assert_eq!(classify(error), expected, "classifying {}", chain_text(error));
    }

    #[test]
    fn classifies_every_line_failure() {
        // No probe: the selector's probe is not on the bus.
        check(
            &probe_rs::Error::Probe(DebugProbeError::ProbeCouldNotBeCreated(ProbeCreationError::NotFound)),
            Kind::NoProbe,
        );
        check(
            &probe_rs::Error::Probe(DebugProbeError::ProbeCouldNotBeCreated(
                ProbeCreationError::CouldNotOpen,
            )),
            Kind::ProbeUnavailable,
        );
        // Probe unplugged mid-flash: the USB error deep inside a page-write error wins.
        let unplugged = FlashError::PageWrite {
            page_address: 0x8000,
            source: Box::new(probe_rs::Error::Probe(DebugProbeError::Usb(usb_gone()))),
        };
        check(&unplugged, Kind::ProbeGone);
        check(
            &probe_rs::Error::Probe(DebugProbeError::Usb(std::io::ErrorKind::BrokenPipe.into())),
            Kind::ProbeGone,
        );
        // Target not powered: nothing acknowledges on SWD.
        check(&probe_rs::Error::Arm(ArmError::Dap(DapError::NoAcknowledge)), Kind::TargetNotResponding);
        check(
            &probe_rs::Error::Arm(ArmError::NoTargetResponse {
                source: Box::new(ArmError::Dap(DapError::NoAcknowledge)),
            }),
            Kind::TargetNotResponding,
        );
        check(&probe_rs::Error::Probe(DebugProbeError::TargetNotFound), Kind::TargetNotResponding);
        // Chip locked: probe-rs wants the erase-all permission to get in.
        check(&probe_rs::Error::Arm(ArmError::MissingPermissions("erase_all".into())), Kind::Locked);
        check(&probe_rs::Error::MissingPermissions("erase_all".into()), Kind::Locked);
        // Flash algorithm timeout: the core timeout inside a flash error.
        check(&FlashError::Core(probe_rs::Error::Timeout), Kind::FlashAlgorithmTimeout);
        check(
            &FlashError::EraseFailed {
                sector_address: 0x1000,
                source: Box::new(FlashError::Core(probe_rs::Error::Timeout)),
            },
            Kind::FlashAlgorithmTimeout,
        );
        check(&probe_rs::Error::Timeout, Kind::Timeout);
        check(
            &FlashError::RoutineCallFailed { name: "erase_sector".into(), error_code: 1 },
            Kind::FlashAlgorithm,
        );
        check(&FlashError::Verify, Kind::FlashAlgorithm);
        // A bus fault on a memory read (an RDP level 1 flash read).
        check(&probe_rs::Error::Arm(ArmError::Dap(DapError::FaultResponse)), Kind::AccessFault);
        // Glitches that deserve a retry.
        check(&probe_rs::Error::Arm(ArmError::Dap(DapError::WaitResponse)), Kind::Transient);
        check(&probe_rs::Error::Arm(ArmError::Dap(DapError::IncorrectParity)), Kind::Transient);
        // Wrong or unknown chip name.
        check(&probe_rs::Error::ChipNotFound(RegistryError::ChipNotFound("nRF99".into())), Kind::UnknownChip);
        // A chip description that fails to load from a file is not a lost probe.
        check(
            &probe_rs::Error::ChipNotFound(RegistryError::Io(std::io::ErrorKind::NotFound.into())),
            Kind::UnknownChip,
        );
        check(&probe_rs::Error::Other("something".into()), Kind::Other);
    }

    #[test]
    fn maps_kinds_to_the_station_errors() {
        let mapped = |error: &(dyn StdError + 'static)| map_probe_rs_error(error, "program", Some(0x8000));
        assert!(matches!(
            mapped(&FlashError::PageWrite {
                page_address: 0x8000,
                source: Box::new(probe_rs::Error::Probe(DebugProbeError::Usb(usb_gone()))),
            }),
            TargetError::ProbeLost { reason } if reason.contains("disconnected during program at 0x00008000")
        ));
        assert_eq!(
            mapped(&probe_rs::Error::Arm(ArmError::Dap(DapError::NoAcknowledge))),
            TargetError::PowerLost
        );
        assert_eq!(mapped(&probe_rs::Error::MissingPermissions("erase_all".into())), TargetError::Locked);
        assert!(matches!(
            mapped(&FlashError::Core(probe_rs::Error::Timeout)),
            TargetError::Other(reason) if reason.contains("flash algorithm timed out")
        ));
        assert!(mapped(&probe_rs::Error::Arm(ArmError::Dap(DapError::WaitResponse))).is_transient());
        assert!(matches!(
            mapped(&probe_rs::Error::Arm(ArmError::Dap(DapError::FaultResponse))),
            TargetError::Refused { operation: "program", address: 0x8000, .. }
        ));
        assert!(matches!(
            mapped(&probe_rs::Error::ChipNotFound(RegistryError::ChipNotFound("nRF99".into()))),
            TargetError::Other(reason) if reason.contains("chip.name")
        ));
        // Only the wire glitch is retried: a lost probe, a lock or a timeout never is.
        for error in [
            mapped(&probe_rs::Error::Probe(DebugProbeError::Usb(usb_gone()))),
            mapped(&probe_rs::Error::Timeout),
            mapped(&probe_rs::Error::MissingPermissions("erase_all".into())),
        ] {
            assert!(!error.is_transient(), "{error} must not be retried");
        }
    }

    #[test]
    fn chain_text_names_every_layer_once() {
        let error = FlashError::PageWrite {
            page_address: 0x8000,
            source: Box::new(probe_rs::Error::Probe(DebugProbeError::Usb(usb_gone()))),
        };
        let text = chain_text(&error);
        assert!(text.starts_with("The page write of the page at address 0x00008000 failed."), "{text}");
        assert!(text.contains("No such device"), "{text}");
    }
}
