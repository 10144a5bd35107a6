//! Fuzz target: the GDB remote protocol's wire layer (src/device/gdb/protocol.rs): the
//! byte-at-a-time packet parser (`PacketParser`: framing, checksums, run-length encoding,
//! acknowledgements, noise), the binary-escape and hex decoders, and a `Connection` reading
//! requests' replies from a server that sends arbitrary bytes.
//!
//! The server on the other end is not ours (OpenOCD, a J-Link server, QEMU, pyOCD, or a serial
//! line with noise), so nothing it sends may panic the station. Round trips check the encoders
//! against the decoders: a framed payload parses back to itself, escaped binary unescapes to
//! itself, hex decodes to itself.
#![no_main]

use std::time::Duration;

use imprint::device::gdb::client::{ServerFeatures, StopReply};
use imprint::device::gdb::protocol::{
    Connection, ConnectionSettings, Incoming, PacketParser, decode_hex, escape_binary, frame_packet,
    parse_hex_u64, push_hex, unescape_binary,
};
use imprint_fuzz::{ScriptedTransport, gdb_server_script};
use libfuzzer_sys::fuzz_target;

fn check_reply_parsers(payload: &[u8]) {
    let _ = ServerFeatures::parse(payload);
    let _ = StopReply::parse(payload);
    let _ = unescape_binary(payload);
    let _ = decode_hex(payload);
    let _ = parse_hex_u64(payload);
}

fuzz_target!(|data: &[u8]| {
    // 1. The parser over the raw stream; everything it yields goes through the reply parsers.
    let mut parser = PacketParser::default();
    for byte in data {
        if let Some(Incoming::Packet(payload)) = parser.push(*byte) {
            check_reply_parsers(&payload);
        }
    }
    check_reply_parsers(data);

    // 2. Round trips. A payload free of the framing bytes (`$ # *`; `}` is kept, escapes are
    // the caller's business) frames and parses back to itself, after any noise in between.
    let payload: Vec<u8> = data.iter().copied().filter(|byte| !matches!(byte, b'$' | b'#' | b'*')).collect();
    let mut framed = b"+-\x03".to_vec();
    frame_packet(&payload, &mut framed);
    let mut parser = PacketParser::default();
    let items: Vec<Incoming> = framed.iter().filter_map(|byte| parser.push(*byte)).collect();
    assert_eq!(items, vec![Incoming::Ack, Incoming::Nak, Incoming::Packet(payload)], "framing round trip");
    let mut escaped = Vec::new();
    escape_binary(data, &mut escaped);
    assert!(!escaped.iter().any(|byte| matches!(byte, b'$' | b'#' | b'*')), "escape left a framing byte");
    match unescape_binary(&escaped) {
        Ok(unescaped) => assert_eq!(unescaped, data, "escape round trip"),
        Err(error) => panic!("escaped data does not unescape: {error}"),
    }
    let mut hex = Vec::new();
    push_hex(data, &mut hex);
    match decode_hex(&hex) {
        Ok(decoded) => assert_eq!(decoded, data, "hex round trip"),
        Err(error) => panic!("hex does not decode: {error}"),
    }

    // 3. A connection whose server sends the input: requests until the stream runs out.
    let settings = ConnectionSettings { timeout: Duration::from_secs(5), retransmit_limit: 3 };
    let mut connection = Connection::new(Box::new(ScriptedTransport::new(gdb_server_script(data))), settings);
    for _ in 0..64 {
        match connection.request(b"m8000000,10", "fuzz request") {
            Ok(reply) => check_reply_parsers(&reply),
            Err(_) => break,
        }
    }
    let statistics = connection.statistics();
    assert!(statistics.packets_received <= data.len() as u64, "more packets than bytes");
});
