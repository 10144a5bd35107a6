//! What a GDB server tells about its target in XML: the target description (`target.xml`, its
//! registers and their numbers) and the memory map (which ranges are flash, and their erase
//! block sizes).
//!
//! Both documents are small and machine-written, so a tag scanner is enough: no XML crate, no
//! DTDs, no entities beyond the five predefined ones. `xi:include` elements are reported so the
//! client can fetch the named annex and splice it in, as GDB does.

use super::error::GdbError;

/// One register from the target description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterDescription {
    /// Its name (`r0`, `sp`, `pc`, `xpsr`).
    pub name: String,
    /// Its number in `p`/`P` packets.
    pub number: u32,
    /// Its width.
    pub size_bits: u32,
}

/// The target description, with includes resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetDescription {
    /// `<architecture>` text (`arm`).
    pub architecture: Option<String>,
    /// Feature names in document order (`org.gnu.gdb.arm.m-profile`).
    pub features: Vec<String>,
    /// Registers in document order.
    pub registers: Vec<RegisterDescription>,
}

impl TargetDescription {
    /// The number of the register called `name`.
    pub fn register_number(&self, name: &str) -> Option<u32> {
        self.registers.iter().find(|register| register.name == name).map(|register| register.number)
    }

    /// The register numbered `number`.
    pub fn register(&self, number: u32) -> Option<&RegisterDescription> {
        self.registers.iter().find(|register| register.number == number)
    }
}

/// One region of the server's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapRegion {
    /// `ram`, `rom` or `flash`.
    pub kind: MemoryKind,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Erase block size (flash only).
    pub block_size_bytes: Option<u64>,
}

impl MemoryMapRegion {
    /// Whether `[address, address + length)` lies inside this region.
    pub fn contains(&self, address: u64, length: u64) -> bool {
        address >= self.start && address.saturating_add(length) <= self.start.saturating_add(self.length)
    }
}

/// The kind of a memory-map region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Plain read/write memory.
    Ram,
    /// Read-only memory.
    Rom,
    /// Flash, written through `vFlashErase`/`vFlashWrite`/`vFlashDone`.
    Flash,
}

/// One XML tag, as the scanner sees it.
#[derive(Debug)]
struct Tag<'a> {
    name: &'a str,
    attributes: Vec<(&'a str, String)>,
    is_closing: bool,
    /// Text between this tag and the next one.
    text_after: &'a str,
}

impl Tag<'_> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }
}

fn malformed(what: &str, reason: impl Into<String>) -> GdbError {
    GdbError::Malformed { what: what.to_string(), reason: reason.into() }
}

fn unescape_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Scans `document` into tags (comments, declarations and processing instructions skipped).
fn scan_tags<'a>(document: &'a str, what: &str) -> Result<Vec<Tag<'a>>, GdbError> {
    let mut tags = Vec::new();
    let mut rest = document;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or_else(|| malformed(what, "unterminated comment"))?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or_else(|| malformed(what, "unterminated tag"))?;
        let inside = &rest[1..end];
        rest = &rest[end + 1..];
        if inside.starts_with('?') || inside.starts_with('!') {
            continue;
        }
        let text_after = &rest[..rest.find('<').unwrap_or(rest.len())];
        let (is_closing, inside) = match inside.strip_prefix('/') {
            Some(stripped) => (true, stripped),
            None => (false, inside.trim_end_matches('/')),
        };
        let name_end = inside.find(|character: char| character.is_whitespace()).unwrap_or(inside.len());
        let name = &inside[..name_end];
        let attributes = parse_attributes(&inside[name_end..], what)?;
        tags.push(Tag { name, attributes, is_closing, text_after });
    }
    Ok(tags)
}

fn parse_attributes<'a>(mut text: &'a str, what: &str) -> Result<Vec<(&'a str, String)>, GdbError> {
    let mut attributes = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(attributes);
        }
        let equals = text
            .find('=')
            .ok_or_else(|| malformed(what, format!("attribute without a value in {text:?}")))?;
        let key = text[..equals].trim();
        let value_part = text[equals + 1..].trim_start();
        let quote = value_part.chars().next().filter(|quote| *quote == '"' || *quote == '\'');
        let quote = quote.ok_or_else(|| malformed(what, format!("unquoted attribute {key}")))?;
        let value_end = value_part[1..]
            .find(quote)
            .ok_or_else(|| malformed(what, format!("unterminated attribute {key}")))?;
        attributes.push((key, unescape_entities(&value_part[1..1 + value_end])));
        text = &value_part[value_end + 2..];
    }
}

fn parse_number(text: &str, what: &str, field: &str) -> Result<u64, GdbError> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| malformed(what, format!("{field} {text:?} is not a number")))
}

/// Builds a [`TargetDescription`] from `target.xml` and the annexes it includes, numbering
/// registers across documents in document order as GDB does.
pub struct DescriptionBuilder {
    description: TargetDescription,
    next_register_number: u32,
}

impl Default for DescriptionBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DescriptionBuilder {
    /// An empty description.
    pub fn new() -> Self {
        DescriptionBuilder { description: TargetDescription::default(), next_register_number: 0 }
    }

    /// Feeds one document; `fetch` is called for every `xi:include` (with the annex name) and
    /// must return that document's text. Includes nest at most `depth_left` levels.
    pub fn feed(
        &mut self,
        document: &str,
        annex: &str,
        fetch: &mut dyn FnMut(&str) -> Result<String, GdbError>,
        depth_left: u32,
    ) -> Result<(), GdbError> {
        let what = format!("target description {annex}");
        for tag in scan_tags(document, &what)? {
            if tag.is_closing {
                continue;
            }
            match tag.name {
                "architecture" => self.description.architecture = Some(tag.text_after.trim().to_string()),
                "feature" => {
                    if let Some(name) = tag.attribute("name") {
                        self.description.features.push(name.to_string());
                    }
                }
                "xi:include" => {
                    let href =
                        tag.attribute("href").ok_or_else(|| malformed(&what, "xi:include without href"))?;
                    if depth_left == 0 {
                        return Err(malformed(&what, format!("includes nest too deeply at {href}")));
                    }
                    let included = fetch(href)?;
                    self.feed(&included, href, fetch, depth_left - 1)?;
                }
                "reg" => {
                    let name = tag.attribute("name").ok_or_else(|| malformed(&what, "reg without name"))?;
                    let size_bits = parse_number(
                        tag.attribute("bitsize")
                            .ok_or_else(|| malformed(&what, format!("reg {name} without bitsize")))?,
                        &what,
                        "bitsize",
                    )?;
                    // Register numbers are u32 and the next register is numbered one up: a
                    // server's regnum at or past u32::MAX is refused, not truncated or
                    // overflowed (found by fuzz/fuzz_targets/gdb_xml.rs).
                    let number = match tag.attribute("regnum") {
                        Some(text) => {
                            let number = parse_number(text, &what, "regnum")?;
                            u32::try_from(number).map_err(|_| {
                                malformed(
                                    &what,
                                    format!("reg {name} regnum {number} is larger than {}", u32::MAX),
                                )
                            })?
                        }
                        None => self.next_register_number,
                    };
                    self.next_register_number = number.checked_add(1).ok_or_else(|| {
                        malformed(
                            &what,
                            format!("reg {name} regnum {number} leaves no number for the next register"),
                        )
                    })?;
                    self.description.registers.push(RegisterDescription {
                        name: name.to_string(),
                        number,
                        size_bits: size_bits as u32,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The finished description.
    pub fn finish(self) -> TargetDescription {
        self.description
    }
}

/// Parses a `qXfer:memory-map:read` document.
pub fn parse_memory_map(document: &str) -> Result<Vec<MemoryMapRegion>, GdbError> {
    let what = "memory map";
    let tags = scan_tags(document, what)?;
    let mut regions: Vec<MemoryMapRegion> = Vec::new();
    let mut inside_memory = false;
    for tag in &tags {
        match (tag.name, tag.is_closing) {
            ("memory", false) => {
                let kind = match tag.attribute("type") {
                    Some("ram") => MemoryKind::Ram,
                    Some("rom") => MemoryKind::Rom,
                    Some("flash") => MemoryKind::Flash,
                    other => {
                        return Err(malformed(
                            what,
                            format!("memory type {other:?}: expected ram, rom or flash"),
                        ));
                    }
                };
                let start = parse_number(tag.attribute("start").unwrap_or_default(), what, "start")?;
                let length = parse_number(tag.attribute("length").unwrap_or_default(), what, "length")?;
                regions.push(MemoryMapRegion { kind, start, length, block_size_bytes: None });
                inside_memory = true;
            }
            ("memory", true) => inside_memory = false,
            ("property", false) if inside_memory && tag.attribute("name") == Some("blocksize") => {
                let block_size = parse_number(tag.text_after, what, "blocksize")?;
                if let Some(region) = regions.last_mut() {
                    region.block_size_bytes = Some(block_size);
                }
            }
            _ => {}
        }
    }
    if let Some(region) = regions.iter().find(|region| {
        region.kind == MemoryKind::Flash && region.block_size_bytes.is_none_or(|size| size == 0)
    }) {
        return Err(malformed(what, format!("flash region at {:#x} has no blocksize", region.start)));
    }
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_description(
        documents: &[(&str, &str)],
        expected_registers: &[(&str, u32, u32)],
        expected_features: &[&str],
    ) {
        let mut builder = DescriptionBuilder::new();
        let mut fetch = |annex: &str| -> Result<String, GdbError> {
            documents
                .iter()
                .find(|(name, _)| *name == annex)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| malformed("test", format!("no annex {annex}")))
        };
        builder.feed(documents[0].1, documents[0].0, &mut fetch, 4).unwrap();
        let description = builder.finish();
        let registers: Vec<(&str, u32, u32)> = description
            .registers
            .iter()
            .map(|register| (register.name.as_str(), register.number, register.size_bits))
            .collect();
        assert_eq!(registers, expected_registers);
        assert_eq!(description.features, expected_features);
    }

    #[test]
    fn target_descriptions() {
        // The shape QEMU 7.2 sends for mps2-an385 (abridged).
        check_description(
            &[
                (
                    "target.xml",
                    r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>arm</architecture><xi:include href="arm-m-profile.xml"/><xi:include href="system-registers.xml"/></target>"#,
                ),
                (
                    "arm-m-profile.xml",
                    r#"<?xml version="1.0"?>
<!-- Copyright (C) 2010-2020 Free Software Foundation, Inc. -->
<feature name="org.gnu.gdb.arm.m-profile">
  <reg name="r0" bitsize="32"/>
  <reg name="sp" bitsize="32" type="data_ptr"/>
  <reg name="pc" bitsize="32" type="code_ptr"/>
  <reg name="xpsr" bitsize="32" regnum="25"/>
</feature>"#,
                ),
                (
                    "system-registers.xml",
                    r#"<feature name="org.qemu.gdb.arm.m-profile"><reg name='msp' bitsize="32"/></feature>"#,
                ),
            ],
            &[("r0", 0, 32), ("sp", 1, 32), ("pc", 2, 32), ("xpsr", 25, 32), ("msp", 26, 32)],
            &["org.gnu.gdb.arm.m-profile", "org.qemu.gdb.arm.m-profile"],
        );
    }

    #[test]
    fn register_numbers_at_the_end_of_u32_are_refused() {
        // Found by the gdb_xml fuzz target: `regnum` at u32::MAX overflowed the next number,
        // and one above it was silently truncated.
        for regnum in ["4294967295", "0xffffffff", "4294967296", "0x1ffffffff"] {
            let document = format!(r#"<target><reg name="x" bitsize="32" regnum="{regnum}"/></target>"#);
            let mut fetch = |annex: &str| -> Result<String, GdbError> { Err(malformed("test", annex)) };
            let result = DescriptionBuilder::new().feed(&document, "target.xml", &mut fetch, 4);
            assert!(matches!(result, Err(GdbError::Malformed { .. })), "regnum {regnum}: {result:?}");
        }
        check_description(
            &[("target.xml", r#"<target><reg name="x" bitsize="32" regnum="4294967294"/></target>"#)],
            &[("x", u32::MAX - 1, 32)],
            &[],
        );
    }

    /// `(kind, start, length, block size)` of each region, or `Err(())` for a rejected document.
    type Regions = Result<Vec<(MemoryKind, u64, u64, Option<u64>)>, ()>;

    fn check_memory_map(document: &str, expected: Regions) {
        let parsed = parse_memory_map(document).map(|regions| {
            regions
                .iter()
                .map(|region| (region.kind, region.start, region.length, region.block_size_bytes))
                .collect::<Vec<_>>()
        });
        assert_eq!(parsed.map_err(|_| ()), expected, "{document}");
    }

    #[test]
    fn memory_maps() {
        // What OpenOCD sends for a part with two flash banks.
        check_memory_map(
            r#"<?xml version="1.0"?>
<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">
<memory-map>
<memory type="flash" start="0x0" length="0x80000">
<property name="blocksize">0x1000</property>
</memory>
<memory type="ram" start="0x20000000" length="0x10000"/>
<memory type="flash" start="0x10000000" length="0x1000"><property name="blocksize">4096</property></memory>
</memory-map>"#,
            Ok(vec![
                (MemoryKind::Flash, 0, 0x80000, Some(0x1000)),
                (MemoryKind::Ram, 0x2000_0000, 0x10000, None),
                (MemoryKind::Flash, 0x1000_0000, 0x1000, Some(4096)),
            ]),
        );
        check_memory_map(
            r#"<memory-map><memory type="flash" start="0x0" length="0x100"/></memory-map>"#,
            Err(()),
        );
        check_memory_map(
            r#"<memory-map><memory type="eeprom" start="0x0" length="0x100"/></memory-map>"#,
            Err(()),
        );
        check_memory_map(
            r#"<memory-map><memory type="ram" start="zero" length="0x100"/></memory-map>"#,
            Err(()),
        );
        check_memory_map(
            r#"<memory-map><memory type="ram" start="0x0" length="0x100"</memory-map>"#,
            Err(()),
        );
    }
}
