//! Which probe a slot owns: the `VID:PID[:SERIAL]` selector, the slot options that may follow it,
//! and the choice of exactly one attached probe.
//!
//! A factory line has several identical probes on one host, so "the first ST-Link" is not good
//! enough: a selector that matches more than one attached probe is refused (with the candidates
//! listed) rather than letting two slots fight over one probe, or one slot flash the wrong board.
//! Everything here is pure, so the rules are tested without USB.

use std::fmt;

/// One attached probe as a listing reports it (our own type, so that selection logic does not
/// depend on probe-rs and can be tested with made-up listings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeListing {
    /// The probe's product name (`STLink V2-1`, `J-Link`, `CMSIS-DAP`).
    pub identifier: String,
    /// USB vendor ID.
    pub vendor_id: u16,
    /// USB product ID.
    pub product_id: u16,
    /// USB serial number, when the probe has one.
    pub serial_number: Option<String>,
    /// The USB interface, for composite probes that expose one per interface.
    pub interface: Option<u8>,
    /// Which probe-rs driver found it (`ST-LINK`, `J-Link`, `CMSIS-DAP`).
    pub driver: String,
    /// Whether this process may open it (false: the device node's permissions refuse us).
    pub accessible: bool,
}

impl ProbeListing {
    /// `VID:PID` in lowercase hex, as `lsusb` prints it.
    pub fn vid_pid(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor_id, self.product_id)
    }

    /// The selector that names exactly this probe (`VID:PID:SERIAL`, or `VID:PID:` for a probe
    /// without serial number).
    pub fn exact_selector(&self) -> ProbeSelector {
        ProbeSelector {
            vendor_id: self.vendor_id,
            product_id: self.product_id,
            serial_number: Some(self.serial_number.clone().unwrap_or_default()),
        }
    }
}

/// `VID:PID[:SERIAL]`: which probe to open. VID and PID are hexadecimal (as `lsusb` prints them);
/// the serial number is everything after the second colon (it may itself contain colons). An
/// empty serial (`VID:PID:`) selects a probe that has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSelector {
    /// USB vendor ID.
    pub vendor_id: u16,
    /// USB product ID.
    pub product_id: u16,
    /// USB serial number; `None` matches any.
    pub serial_number: Option<String>,
}

/// Why a selector could not be parsed or matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The text is not `VID:PID[:SERIAL]`.
    #[error("probe selector {text:?}: {reason}")]
    Malformed { text: String, reason: String },
    /// No attached probe matches.
    #[error("no attached probe matches {selector}; attached: {}", list_or_none(attached))]
    NoMatch { selector: String, attached: Vec<String> },
    /// Several attached probes match: a slot must own exactly one.
    #[error(
        "probe selector {selector} is ambiguous: it matches {} probes ({}); add the serial number (VID:PID:SERIAL)",
        candidates.len(),
        candidates.join(", ")
    )]
    Ambiguous { selector: String, candidates: Vec<String> },
    /// The probe matched but this process may not open it.
    #[error(
        "probe {selector} is attached but this user may not open it (device permissions; see docs/probes.md, udev rules)"
    )]
    NoAccess { selector: String },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

impl ProbeSelector {
    /// Parses `VID:PID[:SERIAL]` (hex VID and PID, 1 to 4 digits each).
    pub fn parse(text: &str) -> Result<ProbeSelector, SelectorError> {
        let malformed = |reason: &str| SelectorError::Malformed {
            text: text.to_string(),
            reason: format!(
                "{reason}; expected VID:PID[:SERIAL] with hex IDs, e.g. 0483:374b:066DFF485550755187121931"
            ),
        };
        let mut parts = text.splitn(3, ':');
        let vendor_text = parts.next().unwrap_or_default();
        let Some(product_text) = parts.next() else {
            return Err(malformed("missing the product ID"));
        };
        let parse_hex_id = |field: &str, id_text: &str| {
            let digits = id_text.strip_prefix("0x").unwrap_or(id_text);
            if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(malformed(&format!("{field} {id_text:?} is not 1 to 4 hex digits")));
            }
            u16::from_str_radix(digits, 16).map_err(|_| malformed(&format!("{field} {id_text:?} is not hex")))
        };
        let vendor_id = parse_hex_id("vendor ID", vendor_text)?;
        let product_id = parse_hex_id("product ID", product_text)?;
        let serial_number = parts.next().map(str::to_string);
        if let Some(serial) = &serial_number
            && serial.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(malformed("the serial number contains whitespace"));
        }
        Ok(ProbeSelector { vendor_id, product_id, serial_number })
    }

    /// Whether `listing` is a probe this selector names. Serial numbers compare without regard
    /// to case, since most probes' serials are hex and both spellings get typed.
    pub fn matches(&self, listing: &ProbeListing) -> bool {
        if listing.vendor_id != self.vendor_id || listing.product_id != self.product_id {
            return false;
        }
        match (&self.serial_number, &listing.serial_number) {
            (None, _) => true,
            (Some(wanted), None) => wanted.is_empty(),
            (Some(wanted), Some(found)) => wanted.eq_ignore_ascii_case(found),
        }
    }
}

impl fmt::Display for ProbeSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04x}:{:04x}", self.vendor_id, self.product_id)?;
        if let Some(serial) = &self.serial_number {
            write!(formatter, ":{serial}")?;
        }
        Ok(())
    }
}

/// A short description of a listed probe for error messages: `STLink V2-1 0483:374b:SERIAL`.
pub fn describe_listing(listing: &ProbeListing) -> String {
    format!(
        "{} {}:{}{}",
        listing.identifier,
        listing.vid_pid(),
        listing.serial_number.as_deref().unwrap_or(""),
        listing.interface.map(|interface| format!(" (interface {interface})")).unwrap_or_default()
    )
}

/// Picks the one attached probe `selector` names: refuses no match, more than one match, and a
/// match this process may not open.
pub fn choose_probe<'a>(
    selector: &ProbeSelector,
    listings: &'a [ProbeListing],
) -> Result<&'a ProbeListing, SelectorError> {
    let matching: Vec<&ProbeListing> = listings.iter().filter(|listing| selector.matches(listing)).collect();
    match matching.as_slice() {
        [] => Err(SelectorError::NoMatch {
            selector: selector.to_string(),
            attached: listings.iter().map(describe_listing).collect(),
        }),
        [only] if !only.accessible => Err(SelectorError::NoAccess { selector: selector.to_string() }),
        [only] => Ok(only),
        several => Err(SelectorError::Ambiguous {
            selector: selector.to_string(),
            candidates: several.iter().map(|listing| describe_listing(listing)).collect(),
        }),
    }
}

/// Where the device's console is, for a probe-rs slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsolePortSelector {
    /// A serial port by name (`/dev/ttyACM0`, `COM3`).
    Name(String),
    /// A USB serial adapter by `VID:PID[:SERIAL]`.
    Usb(ProbeSelector),
    /// The probe's own virtual COM port (ST-Link V2-1/V3, J-Link OB and DAPLink expose one on
    /// the same USB device): the serial port with the probe's VID:PID:serial.
    ProbeVirtualComPort,
}

/// The console's default baud rate (the reference firmware's UART setting).
pub const DEFAULT_CONSOLE_BAUD_RATE: u32 = 115_200;

/// How units arrive on a probe-rs slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitArrival {
    /// A production fixture: after a unit, wait until the target disappears (unit removed) and
    /// a target appears again (next unit) before handing out the next one.
    WaitForSwap,
    /// A bench or HIL setup with one board that stays connected: each unit is the same board,
    /// handed out as soon as the target answers.
    SameBoard,
}

/// A whole `probe-rs:` slot specification after the prefix:
/// `VID:PID[:SERIAL][,console=PORT][,baud=N][,swap=no]`, where PORT is a port name,
/// `usb:VID:PID[:SERIAL]`, or `probe` (the probe's own virtual COM port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSlotSpec {
    /// Which probe.
    pub probe: ProbeSelector,
    /// The device console, when the slot has one.
    pub console: Option<ConsolePortSelector>,
    /// The console's baud rate.
    pub console_baud_rate: u32,
    /// How units arrive.
    pub unit_arrival: UnitArrival,
}

impl ProbeSlotSpec {
    /// Parses the text after `probe-rs:`. Options follow the selector after commas (a serial
    /// number never contains a comma).
    pub fn parse(text: &str) -> Result<ProbeSlotSpec, SelectorError> {
        let mut pieces = text.split(',');
        let probe = ProbeSelector::parse(pieces.next().unwrap_or_default())?;
        let mut spec = ProbeSlotSpec {
            probe,
            console: None,
            console_baud_rate: DEFAULT_CONSOLE_BAUD_RATE,
            unit_arrival: UnitArrival::WaitForSwap,
        };
        let malformed = |reason: String| SelectorError::Malformed { text: text.to_string(), reason };
        for option in pieces {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                malformed(format!("option {option:?}: expected KEY=VALUE (console=, baud=, swap=)"))
            })?;
            match key {
                "console" => {
                    spec.console = Some(match value {
                        "" => {
                            return Err(malformed(
                                "console= needs a port name, usb:VID:PID[:SERIAL] or probe".into(),
                            ));
                        }
                        "probe" => ConsolePortSelector::ProbeVirtualComPort,
                        usb if usb.starts_with("usb:") => {
                            ConsolePortSelector::Usb(ProbeSelector::parse(&usb["usb:".len()..])?)
                        }
                        name => ConsolePortSelector::Name(name.to_string()),
                    })
                }
                "baud" => {
                    spec.console_baud_rate = value
                        .parse::<u32>()
                        .ok()
                        .filter(|rate| *rate > 0)
                        .ok_or_else(|| malformed(format!("baud={value:?}: expected a positive number")))?
                }
                "swap" => {
                    spec.unit_arrival = match value {
                        "wait" | "yes" => UnitArrival::WaitForSwap,
                        "no" => UnitArrival::SameBoard,
                        other => {
                            return Err(malformed(format!("swap={other:?}: expected \"wait\" or \"no\"")));
                        }
                    }
                }
                other => {
                    return Err(malformed(format!(
                        "unknown option {other:?}; expected console=, baud= or swap="
                    )));
                }
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for ProbeSlotSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.probe)?;
        match &self.console {
            None => {}
            Some(ConsolePortSelector::Name(name)) => write!(formatter, ",console={name}")?,
            Some(ConsolePortSelector::Usb(selector)) => write!(formatter, ",console=usb:{selector}")?,
            Some(ConsolePortSelector::ProbeVirtualComPort) => write!(formatter, ",console=probe")?,
        }
        if self.console.is_some() && self.console_baud_rate != DEFAULT_CONSOLE_BAUD_RATE {
            write!(formatter, ",baud={}", self.console_baud_rate)?;
        }
        if self.unit_arrival == UnitArrival::SameBoard {
            write!(formatter, ",swap=no")?;
        }
        Ok(())
    }
}
