//! Fuzz target: the GDB target-description and memory-map readers (src/device/gdb/features.rs),
//! fed directly rather than through `qXfer` packets so the fuzzer spends its time in the XML.
//!
//! The input is split at NUL bytes into documents: the first is `target.xml` and the memory
//! map; an `xi:include` of any name fetches the next document (round robin), so includes nest
//! and cycle. Neither reader may panic; includes stop at the client's depth limit.
#![no_main]

use imprint::device::gdb::error::GdbError;
use imprint::device::gdb::features::{DescriptionBuilder, parse_memory_map};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let documents: Vec<&str> = text.split('\0').collect();
    if let Ok(regions) = parse_memory_map(documents[0]) {
        for region in &regions {
            let _ = region.contains(region.start, region.length);
            let _ = region.contains(u64::MAX, 1);
        }
    }
    let mut next_document = 1;
    let mut fetch = |_annex: &str| -> Result<String, GdbError> {
        let document = documents[next_document % documents.len()].to_string();
        next_document += 1;
        Ok(document)
    };
    let mut builder = DescriptionBuilder::new();
    if builder.feed(documents[0], "target.xml", &mut fetch, 4).is_ok() {
        let description = builder.finish();
        for register in &description.registers {
            assert_eq!(
                description.register(register.number).map(|found| found.number),
                Some(register.number)
            );
        }
        let _ = description.register_number("pc");
    }
});
