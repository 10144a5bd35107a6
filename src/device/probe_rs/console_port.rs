//! Which serial port is a probe-rs slot's device console, and opening it through the shared
//! console reader ([`crate::device::console::SerialConsole`]).
//!
//! Fixtures name the port three ways: by name (`/dev/ttyACM0`), by the USB-UART's
//! `VID:PID[:SERIAL]` (port names change with plug order; USB serial numbers do not), or as the
//! probe's own virtual COM port — ST-LINK/V2-1 and V3, J-Link OB and DAPLink put a CDC-ACM UART on
//! the same USB device as the probe, so the port with the probe's VID:PID:serial is the board's
//! console. As with probes, a description that matches several ports is refused. The matching is
//! pure; listing uses the serialport crate (without libudev, from sysfs).

use std::path::Path;

use super::selector::{ConsolePortSelector, ProbeListing, ProbeSelector};
use crate::device::console::SerialConsole;

/// One serial port as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortListing {
    /// The name to open (`/dev/ttyACM0`, `COM4`).
    pub port_name: String,
    /// USB identity when it is a USB serial port.
    pub usb: Option<UsbSerialIdentity>,
}

/// The USB identity of a serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbSerialIdentity {
    /// USB vendor ID.
    pub vendor_id: u16,
    /// USB product ID.
    pub product_id: u16,
    /// USB serial number.
    pub serial_number: Option<String>,
}

/// Why a console port could not be chosen or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsolePortError {
    /// No port matches.
    #[error("no serial port matches {wanted}; serial ports: {}", if ports.is_empty() { "none".to_string() } else { ports.join(", ") })]
    NoMatch { wanted: String, ports: Vec<String> },
    /// Several ports match.
    #[error("{wanted} matches {} serial ports ({}); name the port instead (console=/dev/tty...)", ports.len(), ports.join(", "))]
    Ambiguous { wanted: String, ports: Vec<String> },
    /// The port exists but could not be opened.
    #[error("{0}")]
    Open(String),
}

fn describe_port(port: &SerialPortListing) -> String {
    match &port.usb {
        Some(usb) => format!(
            "{} ({:04x}:{:04x}:{})",
            port.port_name,
            usb.vendor_id,
            usb.product_id,
            usb.serial_number.as_deref().unwrap_or("")
        ),
        None => port.port_name.clone(),
    }
}

fn usb_matches(selector: &ProbeSelector, usb: &UsbSerialIdentity) -> bool {
    selector.matches(&ProbeListing {
        identifier: String::new(),
        vendor_id: usb.vendor_id,
        product_id: usb.product_id,
        serial_number: usb.serial_number.clone(),
        interface: None,
        driver: String::new(),
        accessible: true,
    })
}

/// The port name for `selector`, on a slot whose probe is `probe`, among `ports`.
pub fn choose_console_port(
    selector: &ConsolePortSelector,
    probe: &ProbeListing,
    ports: &[SerialPortListing],
) -> Result<String, ConsolePortError> {
    let (wanted_usb, wanted) = match selector {
        ConsolePortSelector::Name(name) => return Ok(name.clone()),
        ConsolePortSelector::Usb(usb) => (usb.clone(), format!("USB serial port {usb}")),
        ConsolePortSelector::ProbeVirtualComPort => {
            // The probe's exact identity: with a serial number when it has one.
            let exact = probe.exact_selector();
            let wanted = format!("the virtual COM port of probe {exact}");
            (exact, wanted)
        }
    };
    let matching: Vec<&SerialPortListing> = ports
        .iter()
        .filter(|port| port.usb.as_ref().is_some_and(|usb| usb_matches(&wanted_usb, usb)))
        .collect();
    match matching.as_slice() {
        [] => Err(ConsolePortError::NoMatch { wanted, ports: ports.iter().map(describe_port).collect() }),
        [only] => Ok(only.port_name.clone()),
        several => Err(ConsolePortError::Ambiguous {
            wanted,
            ports: several.iter().map(|port| describe_port(port)).collect(),
        }),
    }
}

/// Lists serial ports through the serialport crate. Never fails: where the system has no
/// serial port class (some containers), the list is empty.
pub fn list_serial_ports() -> Vec<SerialPortListing> {
    // serialport's sysfs scan (without libudev) panics when /sys/class/tty is missing.
    if cfg!(target_os = "linux") && !Path::new("/sys/class/tty").exists() {
        return Vec::new();
    }
    let ports = match serialport::available_ports() {
        Ok(ports) => ports,
        Err(error) => {
            tracing::warn!(%error, "cannot list serial ports");
            return Vec::new();
        }
    };
    ports
        .into_iter()
        .map(|port| SerialPortListing {
            usb: match port.port_type {
                serialport::SerialPortType::UsbPort(usb) => Some(UsbSerialIdentity {
                    vendor_id: usb.vid,
                    product_id: usb.pid,
                    serial_number: usb.serial_number,
                }),
                _ => None,
            },
            port_name: port.port_name,
        })
        .collect()
}

/// Chooses and opens a slot's console.
pub fn open_console(
    selector: &ConsolePortSelector,
    probe: &ProbeListing,
    baud_rate: u32,
) -> Result<SerialConsole, ConsolePortError> {
    let port_name = choose_console_port(selector, probe, &list_serial_ports())?;
    SerialConsole::open(&port_name, baud_rate).map_err(|error| ConsolePortError::Open(error.to_string()))
}
