//! `[scanner]`: what a barcode scan is. A station's keyboard-wedge scanner reads serial labels,
//! work orders, operator badges and the fixture's slot labels into one field; the profile says,
//! with one regular expression per kind, which is which, so a serial label is never taken as a
//! work order (issue 18). Patterns are compiled when the profile loads (a bad one is a profile
//! problem naming `scanner.FIELD`) and match the whole scan.
//!
//! Without a `[scanner]` section the station behaves as before it had one: with
//! `serial.scheme = "scanned"` every scan is a serial label, otherwise a work order, and a scan
//! while nobody is logged in is the operator's badge. A slot label (`SLOT-12` by default) always
//! selects a slot, alone or as a prefix (`SLOT-12 DS1-000123`).
//!
//! Pure: no I/O; the window decides what a classified scan does (`gui::app::scan`).

use regex::Regex;

/// The fixture's slot labels when the profile names none: `SLOT-` and the slot's number from 1.
pub const DEFAULT_SLOT_PATTERN: &str = "SLOT-(?P<slot>[0-9]{1,2})";
/// Serial labels of a `scanned` profile without a `[scanner]` section: any text the ledger
/// accepts as a serial (1 to 64 printable ASCII characters without spaces).
pub const DEFAULT_SERIAL_PATTERN: &str = "[!-~]{1,64}";
/// Work orders of a `counter` profile without a `[scanner]` section: any text.
pub const DEFAULT_WORK_ORDER_PATTERN: &str = ".+";
/// What may follow a slot label in a scan that carries one as a prefix.
const SLOT_PREFIX_SEPARATORS: &[char] = &[' ', ':', '/', '\t'];

/// What a scan is, besides a slot label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// The serial number on a unit's label.
    SerialLabel,
    /// The work order the next units are provisioned for.
    WorkOrder,
    /// An operator's badge.
    OperatorBadge,
}

impl ScanKind {
    /// The kind in the operator's words.
    pub fn describe(self) -> &'static str {
        match self {
            ScanKind::SerialLabel => "serial label",
            ScanKind::WorkOrder => "work order",
            ScanKind::OperatorBadge => "operator badge",
        }
    }

    /// The `[scanner]` field of the kind's pattern.
    pub fn field(self) -> &'static str {
        match self {
            ScanKind::SerialLabel => "scanner.serial",
            ScanKind::WorkOrder => "scanner.work_order",
            ScanKind::OperatorBadge => "scanner.operator",
        }
    }
}

/// A pattern that must match a whole scan.
#[derive(Debug, Clone)]
pub struct ScanPattern {
    source: String,
    whole: Regex,
}

impl PartialEq for ScanPattern {
    fn eq(&self, other: &ScanPattern) -> bool {
        self.source == other.source
    }
}

impl ScanPattern {
    /// Compiles `source` to match whole scans; the error is the regex crate's reason.
    pub fn new(source: &str) -> Result<ScanPattern, String> {
        Ok(ScanPattern { source: source.to_string(), whole: compile(&format!("^(?:{source})$"))? })
    }

    /// The pattern as the profile wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.whole.is_match(text)
    }
}

/// The fixture's slot labels: a pattern with a group named `slot` holding the slot's number,
/// counted from 1 as the slots are numbered on screen.
#[derive(Debug, Clone)]
pub struct SlotPattern {
    source: String,
    whole: Regex,
    prefix: Regex,
}

impl PartialEq for SlotPattern {
    fn eq(&self, other: &SlotPattern) -> bool {
        self.source == other.source
    }
}

impl SlotPattern {
    /// Compiles `source`, which must have a capture group named `slot`.
    pub fn new(source: &str) -> Result<SlotPattern, String> {
        let whole = compile(&format!("^(?:{source})$"))?;
        if !whole.capture_names().any(|name| name == Some("slot")) {
            return Err("expected a capture group named slot for the slot's number, e.g. \
                        \"SLOT-(?P<slot>[0-9]{1,2})\""
                .to_string());
        }
        Ok(SlotPattern { source: source.to_string(), whole, prefix: compile(&format!("^(?:{source})"))? })
    }

    /// The pattern as the profile wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The slot number (from 1) of a scan that is a slot label and nothing else.
    fn whole_label(&self, text: &str) -> Option<Result<usize, String>> {
        self.whole
            .captures(text)
            .map(|captures| slot_number(captures.name("slot").map(|found| found.as_str())))
    }

    /// A slot label at the start of `text`, followed by a separator: its number and the rest.
    fn prefix_label<'t>(&self, text: &'t str) -> Option<(Result<usize, String>, &'t str)> {
        let captures = self.prefix.captures(text)?;
        let label_end = captures.get(0)?.end();
        let rest = &text[label_end..];
        if !rest.starts_with(SLOT_PREFIX_SEPARATORS) {
            return None;
        }
        let rest = rest.trim_start_matches(SLOT_PREFIX_SEPARATORS);
        Some((slot_number(captures.name("slot").map(|found| found.as_str())), rest))
    }
}

fn slot_number(digits: Option<&str>) -> Result<usize, String> {
    let digits = digits.unwrap_or_default();
    digits
        .parse::<usize>()
        .ok()
        .filter(|number| *number >= 1)
        .ok_or_else(|| format!("slot label's number {digits:?} is not a slot number from 1"))
}

/// Compiles a regular expression; the error is the regex crate's one-line reason (its full
/// message quotes the wrapped pattern back with a caret, over several lines).
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|error| match error {
        regex::Error::Syntax(text) => {
            let reason = text.lines().rev().find(|line| line.trim_start().starts_with("error:"));
            format!(
                "expected a regular expression, found a pattern the regex crate refuses ({})",
                reason.map(|line| line.trim()).unwrap_or("syntax error")
            )
        }
        other => format!("expected a regular expression of a usable size ({other})"),
    })
}

/// The profile's scanner patterns (or the defaults); [`ScannerSettings::classify`] says what a
/// scan is.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannerSettings {
    /// Serial labels; `None`: not a kind this station scans.
    pub serial: Option<ScanPattern>,
    /// Work orders; `None`: not a kind this station scans.
    pub work_order: Option<ScanPattern>,
    /// Operator badges; `None`: a scan while nobody is logged in is the badge (and a badge is
    /// not recognised otherwise).
    pub operator: Option<ScanPattern>,
    /// The fixture's slot labels; `None`: slots are not scanned.
    pub slot: Option<SlotPattern>,
}

/// What a scan is, once classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassifiedScan {
    /// A slot label alone: the slot (numbered from 1) the next serial or start goes to.
    Slot { slot_number: usize },
    /// A serial label, work order or badge, for the slot a slot-label prefix named (if any).
    Item { slot_number: Option<usize>, kind: ScanKind, text: String },
}

/// Why a scan is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanRefusal {
    #[error("scan {text:?} matches no pattern ({expected}): scan again")]
    NoMatch { text: String, expected: String },
    #[error("scan {text:?} is both a {first} and a {second} (scanner patterns overlap): not taken")]
    Ambiguous { text: String, first: &'static str, second: &'static str },
    #[error("scan {text:?}: {reason}")]
    BadSlot { text: String, reason: String },
}

impl ScannerSettings {
    /// The settings of a profile without `[scanner]`: serial labels (any serial text) when
    /// `serials_are_scanned`, else work orders (any text); no badge pattern; slot labels
    /// [`DEFAULT_SLOT_PATTERN`].
    pub fn defaults(serials_are_scanned: bool) -> ScannerSettings {
        let pattern = |source: &str| ScanPattern::new(source).ok();
        ScannerSettings {
            serial: if serials_are_scanned { pattern(DEFAULT_SERIAL_PATTERN) } else { None },
            work_order: if serials_are_scanned { None } else { pattern(DEFAULT_WORK_ORDER_PATTERN) },
            operator: None,
            slot: SlotPattern::new(DEFAULT_SLOT_PATTERN).ok(),
        }
    }

    /// What `scan` (already trimmed) is. With no badge pattern and `nobody_logged_in`, the
    /// whole scan is the badge (the station's behaviour before `[scanner]`). A slot label comes
    /// first: alone it selects the slot, as a prefix it sends the rest to that slot.
    pub fn classify(&self, scan: &str, nobody_logged_in: bool) -> Result<ClassifiedScan, ScanRefusal> {
        if self.operator.is_none() && nobody_logged_in {
            return Ok(ClassifiedScan::Item {
                slot_number: None,
                kind: ScanKind::OperatorBadge,
                text: scan.to_string(),
            });
        }
        let bad_slot = |reason: String| ScanRefusal::BadSlot { text: scan.to_string(), reason };
        let (slot_number, rest) = match &self.slot {
            Some(slot) => {
                if let Some(number) = slot.whole_label(scan) {
                    return Ok(ClassifiedScan::Slot { slot_number: number.map_err(bad_slot)? });
                }
                match slot.prefix_label(scan) {
                    Some((number, rest)) => (Some(number.map_err(bad_slot)?), rest),
                    None => (None, scan),
                }
            }
            None => (None, scan),
        };
        let kinds = [
            (ScanKind::SerialLabel, &self.serial),
            (ScanKind::WorkOrder, &self.work_order),
            (ScanKind::OperatorBadge, &self.operator),
        ];
        let mut matching = kinds
            .iter()
            .filter(|(_, pattern)| pattern.as_ref().is_some_and(|pattern| pattern.matches(rest)))
            .map(|(kind, _)| *kind);
        match (matching.next(), matching.next()) {
            (Some(kind), None) => Ok(ClassifiedScan::Item { slot_number, kind, text: rest.to_string() }),
            (Some(first), Some(second)) => Err(ScanRefusal::Ambiguous {
                text: scan.to_string(),
                first: first.describe(),
                second: second.describe(),
            }),
            (None, _) => Err(ScanRefusal::NoMatch { text: scan.to_string(), expected: self.expected() }),
        }
    }

    /// The patterns in the operator's words, for a refusal.
    fn expected(&self) -> String {
        let mut kinds: Vec<String> = [
            (ScanKind::SerialLabel, &self.serial),
            (ScanKind::WorkOrder, &self.work_order),
            (ScanKind::OperatorBadge, &self.operator),
        ]
        .iter()
        .filter_map(|(kind, pattern)| {
            pattern.as_ref().map(|pattern| format!("{} {}", kind.describe(), pattern.as_str()))
        })
        .collect();
        if let Some(slot) = &self.slot {
            kinds.push(format!("slot label {}", slot.as_str()));
        }
        if kinds.is_empty() { "this profile scans nothing".to_string() } else { kinds.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(slot_number: Option<usize>, kind: ScanKind, text: &str) -> Result<ClassifiedScan, ScanRefusal> {
        Ok(ClassifiedScan::Item { slot_number, kind, text: text.to_string() })
    }

    fn patterns() -> ScannerSettings {
        ScannerSettings {
            serial: ScanPattern::new("DS1-[0-9]{6}").ok(),
            work_order: ScanPattern::new("WO-[0-9]+").ok(),
            operator: ScanPattern::new("OP-[A-Z]+").ok(),
            slot: SlotPattern::new(DEFAULT_SLOT_PATTERN).ok(),
        }
    }

    #[test]
    fn each_kind_is_recognised_by_its_whole_pattern() {
        let scanner = patterns();
        assert_eq!(scanner.classify("DS1-000123", false), item(None, ScanKind::SerialLabel, "DS1-000123"));
        assert_eq!(scanner.classify("WO-77", false), item(None, ScanKind::WorkOrder, "WO-77"));
        assert_eq!(scanner.classify("OP-ANNA", true), item(None, ScanKind::OperatorBadge, "OP-ANNA"));
        assert_eq!(scanner.classify("SLOT-12", false), Ok(ClassifiedScan::Slot { slot_number: 12 }));
        assert_eq!(
            scanner.classify("SLOT-9 DS1-000001", false),
            item(Some(9), ScanKind::SerialLabel, "DS1-000001")
        );
        assert_eq!(scanner.classify("SLOT-10:WO-1", false), item(Some(10), ScanKind::WorkOrder, "WO-1"));
        // Patterns match whole scans: a serial with a suffix is nothing.
        assert!(matches!(scanner.classify("DS1-000123X", false), Err(ScanRefusal::NoMatch { .. })));
        assert!(matches!(scanner.classify("SLOT-0", false), Err(ScanRefusal::BadSlot { .. })));
    }

    #[test]
    fn overlapping_patterns_refuse_the_scan() {
        let scanner = ScannerSettings { work_order: ScanPattern::new("[A-Z0-9-]+").ok(), ..patterns() };
        assert_eq!(
            scanner.classify("DS1-000123", false),
            Err(ScanRefusal::Ambiguous {
                text: "DS1-000123".to_string(),
                first: "serial label",
                second: "work order"
            })
        );
    }

    #[test]
    fn defaults_keep_the_behaviour_before_the_section() {
        let counter = ScannerSettings::defaults(false);
        assert_eq!(counter.classify("anna", true), item(None, ScanKind::OperatorBadge, "anna"));
        assert_eq!(counter.classify("DS1-000007", false), item(None, ScanKind::WorkOrder, "DS1-000007"));
        let scanned = ScannerSettings::defaults(true);
        assert_eq!(scanned.classify("DS1-000007", false), item(None, ScanKind::SerialLabel, "DS1-000007"));
        assert!(matches!(scanned.classify("two words", false), Err(ScanRefusal::NoMatch { .. })));
        assert_eq!(scanned.classify("SLOT-3", false), Ok(ClassifiedScan::Slot { slot_number: 3 }));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_one_line_reason() {
        let error = ScanPattern::new("DS1-[0-9").unwrap_err();
        assert!(error.contains("regex") && !error.contains('\n'), "{error}");
        let error = SlotPattern::new("SLOT-[0-9]+").unwrap_err();
        assert!(error.contains("named slot"), "{error}");
    }
}
