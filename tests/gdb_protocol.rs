//! The GDB remote protocol layer against a small fake server on TCP: framing and checksums,
//! NAK and retransmission both ways, run-length encoded and escaped replies, timeouts,
//! no-ack mode, pipelining, `qXfer` documents, vFlash, registers, execution control, monitor
//! commands and detach.
//!
//! The fake server has its own packet reader (not the library's), so a framing bug cannot hide
//! by being the same on both sides. Byte strings marked "from QEMU 7.2" were captured from
//! `qemu-system-arm -M mps2-an385 -S -gdb tcp:...` with a Python socket client on this machine;
//! the run-length example is the one in the GDB manual ("Overview" of the remote protocol).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use imprint::device::gdb::protocol::{
    Incoming, PacketParser, checksum, escape_binary, frame_packet, push_run_length_encoded, unescape_binary,
};
use imprint::device::gdb::{
    BreakpointKind, GdbClient, GdbError, GdbOptions, GdbTarget, GdbTargetConfig, RunState, SerialTransport,
    StopReason, TcpTransport,
};
use imprint::device::{Target, TargetError};
use imprint::profile::{FlashRegion, MemoryMap, RamSpan};

// ---------------------------------------------------------------------------------------------
// Wire-format vectors.

fn check_frame(payload: &[u8], expected: &[u8]) {
    let mut framed = Vec::new();
    frame_packet(payload, &mut framed);
    assert_eq!(framed, expected, "framing {:?}", String::from_utf8_lossy(payload));
    let mut parser = PacketParser::default();
    let items: Vec<Incoming> = expected.iter().filter_map(|byte| parser.push(*byte)).collect();
    assert_eq!(items, vec![Incoming::Packet(payload.to_vec())]);
}

#[test]
fn framing_matches_what_qemu_sends() {
    // From QEMU 7.2.
    check_frame(b"OK", b"$OK#9a");
    check_frame(b"T05thread:01;", b"$T05thread:01;#07");
    check_frame(b"E22", b"$E22#a9");
    check_frame(b"", b"$#00");
    assert_eq!(checksum(b"PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+"), 0x92);
}

fn check_parse(stream: &[u8], expected: &[Incoming]) {
    let mut parser = PacketParser::default();
    let items: Vec<Incoming> = stream.iter().filter_map(|byte| parser.push(*byte)).collect();
    assert_eq!(items, expected, "stream {:?}", String::from_utf8_lossy(stream));
}

#[test]
fn parser_handles_acks_run_lengths_and_damage() {
    check_parse(b"+$OK#9a", &[Incoming::Ack, Incoming::Packet(b"OK".to_vec())]);
    check_parse(b"-", &[Incoming::Nak]);
    // The GDB manual's example: "0* " means "0000" (a space is 32, 32 - 29 = 3 repeats).
    let mut framed = Vec::new();
    frame_packet(b"0* ", &mut framed);
    check_parse(&framed, &[Incoming::Packet(b"0000".to_vec())]);
    check_parse(b"$OK#9b", &[Incoming::DamagedPacket { carried: 0x9b, computed: 0x9a }]);
    check_parse(b"$OK#zz", &[Incoming::DamagedPacket { carried: 0, computed: 0x9a }]);
    // A run length without a character before it is damage, whatever the checksum says.
    let mut framed = Vec::new();
    frame_packet(b"* ", &mut framed);
    check_parse(&framed, &[Incoming::DamagedPacket { carried: checksum(b"* "), computed: checksum(b"* ") }]);
    // Noise between packets is skipped; a '$' inside a payload restarts the packet.
    check_parse(b"xx\r\n$O$OK#9a", &[Incoming::Packet(b"OK".to_vec())]);
}

/// Run-length encodes `text`, frames it, and checks the parser (which decodes run lengths as
/// GDB and QEMU do) gets `text` back, and that the encoding is `expected_length` long.
fn check_run_length(text: &[u8], expected_length: usize) {
    let mut encoded = Vec::new();
    push_run_length_encoded(text, &mut encoded);
    assert_eq!(
        encoded.len(),
        expected_length,
        "{:?} -> {:?}",
        String::from_utf8_lossy(text),
        String::from_utf8_lossy(&encoded)
    );
    assert!(!encoded.iter().any(|byte| matches!(byte, b'#' | b'$')), "{encoded:?}");
    let mut framed = Vec::new();
    frame_packet(&encoded, &mut framed);
    check_parse(&framed, &[Incoming::Packet(text.to_vec())]);
}

#[test]
fn run_length_encoding_round_trips() {
    check_run_length(b"", 0);
    check_run_length(b"0123456789abcdef", 16);
    check_run_length(b"000", 3);
    // "0000" is "0* " (the manual's example).
    check_run_length(b"0000", 3);
    // Six and seven repeats would be '#' and '$': sent as five repeats and the rest.
    check_run_length(&[b'f'; 7], 4);
    check_run_length(&[b'f'; 8], 5);
    check_run_length(&[b'f'; 98], 3);
    check_run_length(&[b'f'; 99], 4);
    check_run_length(&[b'f'; 4064], 3 * 41 + 3);
    let mixed: Vec<u8> = b"ab".iter().chain(&[b'0'; 50]).chain(b"cd").chain(&[b'f'; 9]).copied().collect();
    check_run_length(&mixed, 2 + 3 + 2 + 3);
}

#[test]
fn binary_escapes_round_trip() {
    for data in [&b""[..], b"plain", b"$#}*", b"\x7d\x5d", &(0..=255).collect::<Vec<u8>>()] {
        let mut escaped = Vec::new();
        escape_binary(data, &mut escaped);
        assert!(!escaped.iter().any(|byte| matches!(byte, b'$' | b'#' | b'*')), "{escaped:?}");
        assert_eq!(unescape_binary(&escaped).unwrap(), data);
    }
    let mut escaped = Vec::new();
    escape_binary(b"a$b#c}d*e", &mut escaped);
    assert_eq!(escaped, b"a}\x04b}\x03c}]d}\x0ae");
    assert!(unescape_binary(b"abc}").is_err());
}

// ---------------------------------------------------------------------------------------------
// The fake server.

const MEMORY_SIZE_BYTES: usize = 64 * 1024;
const FLASH_START: u64 = 0x8000;
const FLASH_SIZE_BYTES: u64 = 0x4000;
const REGISTER_COUNT: usize = 17;

/// How the fake server misbehaves, and what it offers.
#[derive(Clone, Default)]
struct Behaviour {
    packet_size: usize,
    offer_no_ack: bool,
    offer_binary_writes: bool,
    offer_memory_map: bool,
    /// Answer the first receipt of a packet starting with one of these with `-`.
    nak_first: Vec<&'static str>,
    /// The first reply to a packet starting with one of these carries a wrong checksum.
    damage_first_reply: Vec<&'static str>,
    /// Run-length encode memory reads.
    run_length_replies: bool,
    /// Never answer packets starting with these.
    ignore: Vec<&'static str>,
    /// Close the connection on packets starting with these.
    close_on: Vec<&'static str>,
    /// Announce a stop (`T02`) as soon as a client connects, before reading anything: what
    /// QEMU does when a client connects while its CPU runs.
    stop_reply_on_connect: bool,
}

/// What the fake server saw.
#[derive(Default, Debug)]
struct Log {
    /// Every intact packet received, in order (retransmissions included).
    packets: Vec<String>,
    /// `-` received from the client.
    naks_received: u32,
    /// `+` received from the client.
    acks_received: u32,
    /// Whether an ack arrived after no-ack mode started.
    acks_after_no_ack: u32,
    /// Interrupt bytes received.
    interrupts: u32,
    /// Reads the server did on the socket that returned more than one packet.
    multi_packet_reads: u32,
}

struct FakeServer {
    port: u16,
    log: Arc<Mutex<Log>>,
    memory: Arc<Mutex<Vec<u8>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The fake server's side of a connection: TCP or one end of a pty pair.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// `TTYPort::pair` is not thread-safe: tests that make pty pairs hold this.
static PTY_PAIR_LOCK: Mutex<()> = Mutex::new(());

impl FakeServer {
    /// A server on a loopback port; it serves one connection after another (a GDB fixture
    /// reconnects for every unit), each session sharing memory and log.
    fn start(behaviour: Behaviour) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let memory = Arc::new(Mutex::new(vec![0u8; MEMORY_SIZE_BYTES]));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (log, memory, stop) = (log.clone(), memory.clone(), stop.clone());
            std::thread::spawn(move || {
                while let Ok((stream, _)) = listener.accept() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    // Like QEMU, the fake writes '+' and the reply separately; without this,
                    // Nagle's algorithm would hold every reply back for a delayed ACK.
                    stream.set_nodelay(true).unwrap();
                    Session::new(Box::new(stream), behaviour.clone(), log.clone(), memory.clone()).run();
                }
            })
        };
        FakeServer { port, log, memory, stop, thread: Some(thread) }
    }

    /// A server on one end of a pty pair; returns the other end for the client.
    fn start_serial(behaviour: Behaviour) -> (FakeServer, serialport::TTYPort) {
        let (server_end, client_end) = {
            let _guard = PTY_PAIR_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            serialport::TTYPort::pair().unwrap()
        };
        let mut server_end = server_end;
        serialport::SerialPort::set_timeout(&mut server_end, Duration::from_secs(30)).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let memory = Arc::new(Mutex::new(vec![0u8; MEMORY_SIZE_BYTES]));
        let thread = {
            let (log, memory) = (log.clone(), memory.clone());
            std::thread::spawn(move || Session::new(Box::new(server_end), behaviour, log, memory).run())
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
        (FakeServer { port: 0, log, memory, stop, thread: Some(thread) }, client_end)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client(&self, options: GdbOptions) -> Result<GdbClient, GdbError> {
        let transport = TcpTransport::connect(&self.address(), Duration::from_secs(2))?;
        GdbClient::connect(Box::new(transport), options)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    fn count_packets(&self, prefix: &str) -> usize {
        self.log().packets.iter().filter(|packet| packet.starts_with(prefix)).count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A session ends when its client goes away; a connection after the stop flag ends
            // the accept loop.
            if !self.stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = TcpStream::connect(self.address());
            }
            let _ = thread.join();
        }
    }
}

struct Session {
    stream: Box<dyn Stream>,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    memory: Arc<Mutex<Vec<u8>>>,
    registers: Vec<u32>,
    no_ack: bool,
    expect_final_ack: bool,
    running: bool,
    seen_prefixes: HashMap<&'static str, u32>,
    damaged_prefixes: HashMap<&'static str, u32>,
    last_reply: Vec<u8>,
    flash_buffer: Vec<(u64, Vec<u8>)>,
}

const TARGET_XML: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>arm</architecture><xi:include href="core.xml"/></target>"#;
const CORE_XML: &str = r#"<feature name="org.gnu.gdb.arm.m-profile"><reg name="r0" bitsize="32"/><reg name="r1" bitsize="32"/><reg name="r2" bitsize="32"/><reg name="r3" bitsize="32"/><reg name="r4" bitsize="32"/><reg name="r5" bitsize="32"/><reg name="r6" bitsize="32"/><reg name="r7" bitsize="32"/><reg name="r8" bitsize="32"/><reg name="r9" bitsize="32"/><reg name="r10" bitsize="32"/><reg name="r11" bitsize="32"/><reg name="r12" bitsize="32"/><reg name="sp" bitsize="32"/><reg name="lr" bitsize="32"/><reg name="pc" bitsize="32"/><reg name="xpsr" bitsize="32" regnum="16"/></feature>"#;

fn memory_map_xml() -> String {
    format!(
        r#"<?xml version="1.0"?><memory-map><memory type="ram" start="0x0" length="{FLASH_START:#x}"/><memory type="flash" start="{FLASH_START:#x}" length="{FLASH_SIZE_BYTES:#x}"><property name="blocksize">0x1000</property></memory></memory-map>"#
    )
}

fn hex_number(text: &str) -> u64 {
    u64::from_str_radix(text, 16).unwrap()
}

impl Session {
    fn new(
        stream: Box<dyn Stream>,
        behaviour: Behaviour,
        log: Arc<Mutex<Log>>,
        memory: Arc<Mutex<Vec<u8>>>,
    ) -> Session {
        Session {
            stream,
            behaviour,
            log,
            memory,
            registers: (0..REGISTER_COUNT as u32).map(|index| 0x1000 + index).collect(),
            no_ack: false,
            expect_final_ack: false,
            running: false,
            seen_prefixes: HashMap::new(),
            damaged_prefixes: HashMap::new(),
            last_reply: Vec::new(),
            flash_buffer: Vec::new(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn reply(&mut self, payload: &[u8], damage: bool) {
        let mut framed = b"$".to_vec();
        framed.extend_from_slice(payload);
        let sum = payload.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        framed
            .extend_from_slice(format!("#{:02x}", if damage { sum.wrapping_add(1) } else { sum }).as_bytes());
        self.send_raw(&framed);
        // Keep the intact form for a retransmission after '-'.
        let mut intact = b"$".to_vec();
        intact.extend_from_slice(payload);
        intact.extend_from_slice(format!("#{sum:02x}").as_bytes());
        self.last_reply = intact;
    }

    fn run(mut self) {
        if self.behaviour.stop_reply_on_connect {
            self.reply(b"T02thread:01;", false);
        }
        let mut buffer = vec![0u8; 65536];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let length = match self.stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(length) => length,
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            };
            pending.extend_from_slice(&buffer[..length]);
            if buffer[..length].iter().filter(|byte| **byte == b'$').count() > 1 {
                self.log.lock().unwrap().multi_packet_reads += 1;
            }
            // An independent reader: '+', '-', 0x03, or "$...#xx".
            while let Some(&first) = pending.first() {
                match first {
                    b'+' => {
                        let mut log = self.log.lock().unwrap();
                        log.acks_received += 1;
                        // The client still acknowledges the OK that answered QStartNoAckMode.
                        if self.no_ack && !std::mem::take(&mut self.expect_final_ack) {
                            log.acks_after_no_ack += 1;
                        }
                        pending.remove(0);
                    }
                    b'-' => {
                        self.log.lock().unwrap().naks_received += 1;
                        pending.remove(0);
                        let last = self.last_reply.clone();
                        self.send_raw(&last);
                    }
                    0x03 => {
                        self.log.lock().unwrap().interrupts += 1;
                        pending.remove(0);
                        if self.running {
                            self.running = false;
                            self.reply(b"T02thread:01;", false);
                        }
                    }
                    b'$' => {
                        let Some(hash) = pending.iter().position(|byte| *byte == b'#') else { break };
                        if pending.len() < hash + 3 {
                            break;
                        }
                        let payload = pending[1..hash].to_vec();
                        let carried = u8::from_str_radix(
                            std::str::from_utf8(&pending[hash + 1..hash + 3]).unwrap(),
                            16,
                        )
                        .unwrap();
                        pending.drain(..hash + 3);
                        let sum = payload.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
                        if sum != carried {
                            self.send_raw(b"-");
                            continue;
                        }
                        if self.behaviour.close_on.iter().any(|prefix| payload.starts_with(prefix.as_bytes()))
                        {
                            return;
                        }
                        self.handle(&payload);
                    }
                    _ => {
                        pending.remove(0);
                    }
                }
            }
        }
    }

    fn first_time(map: &mut HashMap<&'static str, u32>, prefixes: &[&'static str], text: &str) -> bool {
        for prefix in prefixes {
            if text.starts_with(prefix) {
                let seen = map.entry(prefix).or_insert(0);
                *seen += 1;
                return *seen == 1;
            }
        }
        false
    }

    fn handle(&mut self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload).into_owned();
        if Session::first_time(&mut self.seen_prefixes, &self.behaviour.nak_first.clone(), &text) {
            self.send_raw(b"-");
            return;
        }
        self.log.lock().unwrap().packets.push(text.clone());
        if !self.no_ack {
            self.send_raw(b"+");
        }
        if self.behaviour.ignore.iter().any(|prefix| text.starts_with(prefix)) {
            return;
        }
        let damage = Session::first_time(
            &mut self.damaged_prefixes,
            &self.behaviour.damage_first_reply.clone(),
            &text,
        );
        let reply: Option<Vec<u8>> = self.answer(payload, &text);
        if let Some(reply) = reply {
            self.reply(&reply, damage);
        }
        if text == "QStartNoAckMode" && self.behaviour.offer_no_ack {
            self.no_ack = true;
            self.expect_final_ack = true;
        }
    }

    fn answer(&mut self, payload: &[u8], text: &str) -> Option<Vec<u8>> {
        let hex =
            |bytes: &[u8]| bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>().into_bytes();
        if text.starts_with("qSupported") {
            let mut features =
                format!("PacketSize={:x};qXfer:features:read+;multiprocess+", self.behaviour.packet_size);
            if self.behaviour.offer_no_ack {
                features.push_str(";QStartNoAckMode+");
            }
            if self.behaviour.offer_memory_map {
                features.push_str(";qXfer:memory-map:read+");
            }
            return Some(features.into_bytes());
        }
        if text == "QStartNoAckMode" {
            return Some(if self.behaviour.offer_no_ack { b"OK".to_vec() } else { Vec::new() });
        }
        if text == "?" {
            return Some(b"S05".to_vec());
        }
        if let Some(rest) = text.strip_prefix("qXfer:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let document = match (parts[0], parts[2]) {
                ("features", "target.xml") => TARGET_XML.to_string(),
                ("features", "core.xml") => CORE_XML.to_string(),
                ("memory-map", "") if self.behaviour.offer_memory_map => memory_map_xml(),
                _ => return Some(b"E00".to_vec()),
            };
            let (offset, length) = parts[3].split_once(',').unwrap();
            let (offset, length) = (hex_number(offset) as usize, hex_number(length) as usize);
            // Small chunks, to make the client loop over 'm' replies.
            let length = length.min(100);
            let end = (offset + length).min(document.len());
            let mut reply = vec![if end == document.len() { b'l' } else { b'm' }];
            escape_binary(&document.as_bytes()[offset.min(end)..end], &mut reply);
            return Some(reply);
        }
        if let Some(rest) = text.strip_prefix('m') {
            let (address, length) = rest.split_once(',').unwrap();
            let (address, length) = (hex_number(address) as usize, hex_number(length) as usize);
            let memory = self.memory.lock().unwrap();
            if address + length > memory.len() {
                return Some(b"E14".to_vec());
            }
            let data = hex(&memory[address..address + length]);
            return Some(if self.behaviour.run_length_replies { run_length_encode(&data) } else { data });
        }
        if let Some(rest) = text.strip_prefix('M') {
            let (header, data) = rest.split_once(':').unwrap();
            let address = hex_number(header.split_once(',').unwrap().0) as usize;
            let bytes: Vec<u8> =
                (0..data.len()).step_by(2).map(|index| hex_number(&data[index..index + 2]) as u8).collect();
            let mut memory = self.memory.lock().unwrap();
            if address + bytes.len() > memory.len() {
                return Some(b"E14".to_vec());
            }
            memory[address..address + bytes.len()].copy_from_slice(&bytes);
            return Some(b"OK".to_vec());
        }
        if payload.starts_with(b"X") {
            if !self.behaviour.offer_binary_writes {
                return Some(Vec::new());
            }
            let colon = payload.iter().position(|byte| *byte == b':').unwrap();
            let header = std::str::from_utf8(&payload[1..colon]).unwrap();
            let (address, length) = header.split_once(',').unwrap();
            let (address, length) = (hex_number(address) as usize, hex_number(length) as usize);
            let data = unescape_binary(&payload[colon + 1..]).unwrap();
            assert_eq!(data.len(), length, "X length field");
            let mut memory = self.memory.lock().unwrap();
            memory[address..address + length].copy_from_slice(&data);
            return Some(b"OK".to_vec());
        }
        if let Some(rest) = text.strip_prefix("vFlashErase:") {
            let (address, length) = rest.split_once(',').unwrap();
            let (address, length) = (hex_number(address) as usize, hex_number(length) as usize);
            self.memory.lock().unwrap()[address..address + length].fill(0xFF);
            return Some(b"OK".to_vec());
        }
        if payload.starts_with(b"vFlashWrite:") {
            let rest = &payload[b"vFlashWrite:".len()..];
            let colon = rest.iter().position(|byte| *byte == b':').unwrap();
            let address = hex_number(std::str::from_utf8(&rest[..colon]).unwrap());
            self.flash_buffer.push((address, unescape_binary(&rest[colon + 1..]).unwrap()));
            return Some(b"OK".to_vec());
        }
        if text == "vFlashDone" {
            let mut memory = self.memory.lock().unwrap();
            for (address, data) in self.flash_buffer.drain(..) {
                for (offset, byte) in data.iter().enumerate() {
                    memory[address as usize + offset] &= byte;
                }
            }
            return Some(b"OK".to_vec());
        }
        if text == "g" {
            let bytes: Vec<u8> = self.registers.iter().flat_map(|value| value.to_le_bytes()).collect();
            return Some(hex(&bytes));
        }
        if let Some(rest) = text.strip_prefix('p') {
            let number = hex_number(rest) as usize;
            return Some(match self.registers.get(number) {
                Some(value) => hex(&value.to_le_bytes()),
                None => b"E01".to_vec(),
            });
        }
        if let Some(rest) = text.strip_prefix('P') {
            let (number, value) = rest.split_once('=').unwrap();
            let bytes: Vec<u8> =
                (0..8).step_by(2).map(|index| hex_number(&value[index..index + 2]) as u8).collect();
            self.registers[hex_number(number) as usize] = u32::from_le_bytes(bytes.try_into().unwrap());
            return Some(b"OK".to_vec());
        }
        if text == "c" {
            self.running = true;
            return None;
        }
        if text.starts_with('Z') || text.starts_with('z') {
            return Some(if text.starts_with("Z0") || text.starts_with("z0") {
                b"OK".to_vec()
            } else {
                Vec::new()
            });
        }
        if let Some(rest) = text.strip_prefix("qRcmd,") {
            let command: Vec<u8> =
                (0..rest.len()).step_by(2).map(|index| hex_number(&rest[index..index + 2]) as u8).collect();
            let mut output = b"O".to_vec();
            output.extend(hex(format!("ran {}\n", String::from_utf8_lossy(&command)).as_bytes()));
            self.reply(&output, false);
            return Some(b"OK".to_vec());
        }
        if text == "D;1" || text == "D" {
            return Some(b"OK".to_vec());
        }
        Some(Vec::new())
    }
}

/// Run-length encodes hex text the way gdbserver does (runs of 4+ identical characters, never
/// producing '#' or '$' as a count).
fn run_length_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = 0;
    while index < data.len() {
        let byte = data[index];
        let mut run = 1;
        while index + run < data.len() && data[index + run] == byte && run < 98 {
            run += 1;
        }
        let repeats = run - 1;
        if repeats >= 3 && !matches!(repeats as u8 + 29, b'#' | b'$' | b'+' | b'-') {
            out.push(byte);
            out.push(b'*');
            out.push(repeats as u8 + 29);
        } else {
            out.extend(std::iter::repeat_n(byte, run));
        }
        index += run;
    }
    out
}

fn options(pipeline_window: usize) -> GdbOptions {
    GdbOptions { timeout_ms: 1_000, pipeline_window, ..GdbOptions::default() }
}

fn behaviour() -> Behaviour {
    Behaviour { packet_size: 0x1000, ..Behaviour::default() }
}

fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index * 7 + index / 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Behaviour against the fake server.

/// Writes and reads back `length` bytes with `behaviour`/`options`; returns the server's log.
fn check_round_trip(behaviour: Behaviour, options: GdbOptions, length: usize) -> Log {
    let server = FakeServer::start(behaviour);
    let mut client = server.client(options).unwrap();
    let data = pattern(length);
    client.write_memory(0x100, &data).unwrap();
    assert_eq!(&server.memory.lock().unwrap()[0x100..0x100 + length], &data[..]);
    let mut read = vec![0u8; length];
    client.read_memory(0x100, &mut read).unwrap();
    assert_eq!(read, data);
    drop(client);
    // Let the session read everything the client sent before looking at the log.
    let log = server.log.clone();
    drop(server);
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn memory_round_trips_in_every_mode() {
    // Acknowledged, one request at a time.
    let log = check_round_trip(behaviour(), options(1), 20_000);
    assert_eq!(log.naks_received, 0);
    assert!(log.packets.iter().any(|packet| packet.starts_with('M')), "M writes when X is not offered");
    // No-ack mode, pipelined: the server sees several packets per read.
    let log = check_round_trip(Behaviour { offer_no_ack: true, ..behaviour() }, options(16), 40_000);
    assert!(log.packets.contains(&"QStartNoAckMode".to_string()));
    assert_eq!(log.acks_after_no_ack, 0, "no '+' after no-ack mode started");
    assert!(log.multi_packet_reads > 0, "pipelined requests arrive together");
    // Acknowledged mode, pipelined (as with QEMU, whose stub never waits for acknowledgements):
    // every reply is still acknowledged, several to a write.
    let log = check_round_trip(behaviour(), GdbOptions { server_ignores_acks: true, ..options(16) }, 40_000);
    // One '+' opens the session; then one per reply.
    let replies = log.packets.len();
    assert_eq!(log.acks_received as usize, replies + 1, "{} acks for {replies} replies", log.acks_received);
    assert!(log.multi_packet_reads > 0, "pipelined requests arrive together");
    // Binary writes with every byte value (escapes included).
    let log = check_round_trip(Behaviour { offer_binary_writes: true, ..behaviour() }, options(1), 5_000);
    assert!(
        log.packets.iter().any(|packet| packet.starts_with('X') && packet != "X0,0:"),
        "X writes when offered"
    );
    assert!(!log.packets.iter().any(|packet| packet.starts_with('M')));
    // Run-length encoded replies.
    check_round_trip(Behaviour { run_length_replies: true, ..behaviour() }, options(1), 3_000);
    // A small packet size splits transfers into many packets.
    let log = check_round_trip(Behaviour { packet_size: 0x100, ..behaviour() }, options(1), 1_000);
    assert!(log.packets.iter().filter(|packet| packet.starts_with('m')).count() >= 1_000 / 128);
}

#[test]
fn an_absurd_packet_size_is_capped_rather_than_allocated() {
    // A faulty server announcing PacketSize=fffffffff0 once made the client allocate a 64 GiB
    // request buffer (found by the gdb_client fuzz target): the size is capped at 1 MiB.
    let server = FakeServer::start(Behaviour { packet_size: 0xff_ffff_fff0, ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    assert_eq!(client.features().packet_size_bytes, 0x10_0000);
    let data = pattern(3_000);
    client.write_memory(0x100, &data).unwrap();
    let mut read = vec![0u8; data.len()];
    client.read_memory(0x100, &mut read).unwrap();
    assert_eq!(read, data);
}

#[test]
fn zeros_read_back_through_run_lengths() {
    let server = FakeServer::start(Behaviour { run_length_replies: true, ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    let mut read = vec![0xAAu8; 4000];
    client.read_memory(0, &mut read).unwrap();
    assert!(read.iter().all(|byte| *byte == 0));
}

#[test]
fn damaged_replies_are_naked_and_retransmitted() {
    let server = FakeServer::start(Behaviour { damage_first_reply: vec!["m"], ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    server.memory.lock().unwrap()[..4].copy_from_slice(b"\x01\x02\x03\x04");
    let mut read = [0u8; 4];
    client.read_memory(0, &mut read).unwrap();
    assert_eq!(read, [1, 2, 3, 4]);
    assert_eq!(server.log().naks_received, 1, "one '-' for the damaged reply");
    assert_eq!(server.count_packets("m0,4"), 1, "the server retransmitted; the client did not ask again");
    assert_eq!(client.statistics().damaged_packets_received, 1);
}

#[test]
fn damaged_replies_in_a_pipeline_are_asked_again() {
    let server = FakeServer::start(Behaviour {
        offer_no_ack: true,
        damage_first_reply: vec!["m1000,"],
        ..behaviour()
    });
    let mut client = server.client(options(8)).unwrap();
    let data = pattern(16_000);
    server.memory.lock().unwrap()[..data.len()].copy_from_slice(&data);
    let mut read = vec![0u8; data.len()];
    client.read_memory(0, &mut read).unwrap();
    assert_eq!(read, data);
    assert_eq!(server.count_packets("m1000,"), 2, "the damaged chunk was requested again");
}

#[test]
fn naked_requests_are_retransmitted() {
    let server = FakeServer::start(Behaviour { nak_first: vec!["M"], ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    client.write_memory(0x40, b"abcd").unwrap();
    assert_eq!(&server.memory.lock().unwrap()[0x40..0x44], b"abcd");
    assert_eq!(client.statistics().retransmissions, 1);
}

#[test]
fn endless_naks_end_in_a_transient_error() {
    let server = FakeServer::start(Behaviour { nak_first: vec!["M"], ..behaviour() });
    // The fake NAKs the first M only; a retransmit limit of zero makes that one NAK too many.
    let mut client = server.client(GdbOptions { retransmit_limit: 0, ..options(1) }).unwrap();
    let error = client.write_memory(0x40, b"abcd").unwrap_err();
    assert!(matches!(error, GdbError::RetransmitLimit { .. }), "{error}");
    assert!(TargetError::from(error).is_transient());
}

#[test]
fn silence_is_a_timeout() {
    let server = FakeServer::start(Behaviour { ignore: vec!["m"], ..behaviour() });
    let mut client = server.client(GdbOptions { timeout_ms: 200, ..options(1) }).unwrap();
    let started = Instant::now();
    let error = client.read_memory(0, &mut [0u8; 4]).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, GdbError::Timeout { timeout_ms: 200, .. }), "{error}");
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(matches!(TargetError::from(error), TargetError::Timeout { timeout_ms: 200, .. }));
}

#[test]
fn server_errors_are_refusals_with_the_address() {
    let server = FakeServer::start(behaviour());
    let mut client = server.client(options(1)).unwrap();
    let error = client.read_memory(MEMORY_SIZE_BYTES as u64, &mut [0u8; 4]).unwrap_err();
    assert!(
        matches!(error, GdbError::Refused { operation: "read", address, .. } if address == MEMORY_SIZE_BYTES as u64),
        "{error}"
    );
}

#[test]
fn a_closed_connection_is_a_lost_probe() {
    let server = FakeServer::start(Behaviour { close_on: vec!["m"], ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    let error = client.read_memory(0, &mut [0u8; 4]).unwrap_err();
    assert!(matches!(error, GdbError::Disconnected { .. } | GdbError::Io { .. }), "{error}");
    assert!(matches!(TargetError::from(error), TargetError::ProbeLost { .. }));
    let refused = TcpTransport::connect("127.0.0.1:1", Duration::from_millis(200)).err().unwrap();
    assert!(refused.to_string().contains("tcp:127.0.0.1:1"), "{refused}");
    assert!(matches!(TargetError::from(refused), TargetError::ProbeLost { .. }));
}

#[test]
fn registers_by_name_from_the_target_description() {
    let server = FakeServer::start(behaviour());
    let mut client = server.client(options(1)).unwrap();
    let description = client.target_description().unwrap();
    assert_eq!(description.architecture.as_deref(), Some("arm"));
    assert_eq!(description.register_number("pc"), Some(15));
    assert_eq!(description.register_number("xpsr"), Some(16));
    assert_eq!(client.read_register_u32("pc").unwrap(), 0x1000 + 15);
    client.write_register_u32("r3", 0xDEAD_BEEF).unwrap();
    assert_eq!(client.read_register_u32("r3").unwrap(), 0xDEAD_BEEF);
    let all = client.read_registers().unwrap();
    assert_eq!(all.len(), REGISTER_COUNT * 4);
    assert_eq!(&all[12..16], &0xDEAD_BEEFu32.to_le_bytes());
    assert!(server.count_packets("qXfer:features:read:core.xml") >= 2, "read in several chunks");
}

#[test]
fn execution_breakpoints_monitor_and_detach() {
    let server = FakeServer::start(behaviour());
    let mut client = server.client(options(1)).unwrap();
    client.insert_breakpoint(BreakpointKind::Software, 0x1234, 2).unwrap();
    let unsupported = client.insert_breakpoint(BreakpointKind::Hardware, 0x1234, 2).unwrap_err();
    assert!(matches!(unsupported, GdbError::Unsupported { .. }), "{unsupported}");
    client.remove_breakpoint(BreakpointKind::Software, 0x1234, 2).unwrap();
    assert_eq!(client.monitor("reset halt").unwrap(), "ran reset halt\n");
    client.continue_execution().unwrap();
    assert_eq!(client.run_state(), &RunState::Running);
    assert_eq!(client.wait_for_stop(Duration::from_millis(50)).unwrap(), None);
    let stop = client.interrupt().unwrap();
    assert_eq!(stop.reason, StopReason::Signal(2));
    assert!(matches!(client.run_state(), RunState::Halted(_)));
    client.detach().unwrap();
    assert_eq!(server.log().interrupts, 1);
    assert!(server.count_packets("D;1") == 1, "multiprocess servers detach with D;1");
    assert!(server.count_packets("Z0,1234,2") == 1 && server.count_packets("z0,1234,2") == 1);
}

fn flash_target_config() -> GdbTargetConfig {
    let region = |address: u64, size_bytes: u64| FlashRegion {
        address,
        size_bytes,
        sector_size_bytes: 0x1000,
        write_alignment_bytes: 4,
        erased_value: 0xFF,
    };
    let memory = MemoryMap {
        chip_flash: RamSpan { address: 0, size_bytes: FLASH_START + FLASH_SIZE_BYTES },
        chip_ram: RamSpan { address: 0xF000, size_bytes: 0x1000 },
        bootloader: region(0x0, 0x2000),
        application: region(0x2000, 0x4000),
        candidate: region(FLASH_START, 0x2000),
        config: region(FLASH_START + 0x2000, 0x2000),
        mailbox: RamSpan { address: 0xF000, size_bytes: 0x100 },
    };
    GdbTargetConfig {
        chip_name: "fake".to_string(),
        memory,
        unique_id_location: Some(RamSpan { address: 0xFF00, size_bytes: 12 }),
    }
}

fn flash_target(server: &FakeServer, options: GdbOptions) -> GdbTarget {
    GdbTarget::new(server.client(options).unwrap(), flash_target_config(), "fake-server")
}

#[test]
fn flash_goes_through_vflash_where_the_server_maps_flash() {
    let server =
        FakeServer::start(Behaviour { offer_memory_map: true, offer_binary_writes: true, ..behaviour() });
    let mut target = flash_target(&server, options(1));
    server.memory.lock().unwrap()[FLASH_START as usize..(FLASH_START + FLASH_SIZE_BYTES) as usize].fill(0x00);
    target.erase_flash(FLASH_START, 0x2000, &mut |_| {}).unwrap();
    let data = pattern(0x1800);
    target.program_flash(FLASH_START, &data, &mut |_| {}).unwrap();
    let mut read = vec![0u8; data.len()];
    target.read_memory(FLASH_START, &mut read).unwrap();
    assert_eq!(read, data);
    assert_eq!(server.count_packets("vFlashErase:8000,2000"), 1);
    assert!(server.count_packets("vFlashWrite:") >= 2);
    assert_eq!(server.count_packets("vFlashDone"), 2);
}

#[test]
fn ram_backed_flash_keeps_nor_rules() {
    let server = FakeServer::start(Behaviour { offer_no_ack: true, ..behaviour() });
    let mut target = flash_target(&server, options(16));
    let mut progress = Vec::new();
    target.erase_flash(0x2000, 0x2000, &mut |bytes| progress.push(bytes)).unwrap();
    assert_eq!(progress.last(), Some(&0x2000));
    let writes_before = server.count_packets("M");
    let reads_before = server.count_packets("m");
    target.program_flash(0x2000, &pattern(0x100), &mut |_| {}).unwrap();
    assert_eq!(server.count_packets("m"), reads_before, "erased by the backend itself: no read needed");
    // The erase is deferred: the programmed bytes crossed the link once, and the rest of the
    // erased range is written when something could see it (this read).
    assert_eq!(server.count_packets("M2000,"), 1);
    assert!(server.memory.lock().unwrap()[0x2100..0x4000].iter().all(|byte| *byte == 0x00));
    let mut read = vec![0u8; 0x2000];
    target.read_memory(0x2000, &mut read).unwrap();
    assert_eq!(&read[..0x100], &pattern(0x100)[..]);
    assert!(read[0x100..].iter().all(|byte| *byte == 0xFF));
    assert!(server.memory.lock().unwrap()[0x2100..0x4000].iter().all(|byte| *byte == 0xFF));
    assert!(server.count_packets("M") > writes_before + 1);
    for (address, length, expected_reason) in [
        (0x2000, 4, "is not erased"),
        (0x2102, 4, "write alignment"),
        (0x2100, 6, "write alignment"),
        (0x5ffc, 8, "crosses the end"),
        (0xC000, 4, "no flash region"),
    ] {
        let error = target.program_flash(address, &vec![0u8; length], &mut |_| {}).unwrap_err();
        assert!(
            matches!(&error, TargetError::Refused { reason, .. } if reason.contains(expected_reason)),
            "{address:#x}: {error}"
        );
    }
    let error = target.erase_flash(0x2800, 0x1000, &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("sector size"), "{error}");
    // Bytes the backend did not erase itself are read and checked.
    server.memory.lock().unwrap()[0x4000..0x6000].fill(0xFF);
    target.program_flash(0x4000, &[1, 2, 3, 4], &mut |_| {}).unwrap();
    assert!(server.count_packets("m4000,4") == 1, "unknown bytes are read before programming");
    assert!(matches!(target.lock(), Err(TargetError::Other(reason)) if reason.contains("not supported")));
    assert!(!target.is_locked().unwrap());
    let unprogrammed = target.read_unique_id().unwrap_err();
    assert!(unprogrammed.to_string().contains("never programmed"), "{unprogrammed}");
}

#[test]
fn the_client_works_over_a_serial_line() {
    let (server, client_end) =
        FakeServer::start_serial(Behaviour { damage_first_reply: vec!["m"], ..behaviour() });
    let transport = SerialTransport::from_port(Box::new(client_end), "serial:pty-pair".to_string());
    let mut client = GdbClient::connect(Box::new(transport), options(16)).unwrap();
    assert!(!client.pipelines(), "a serial line is not reliable enough to pipeline");
    let data = pattern(6_000);
    client.write_memory(0x200, &data).unwrap();
    let mut read = vec![0u8; data.len()];
    client.read_memory(0x200, &mut read).unwrap();
    assert_eq!(read, data);
    assert_eq!(server.log().naks_received, 1, "the damaged reply was NAKed and sent again");
    assert_eq!(client.endpoint(), "serial:pty-pair");
    drop(client);
}

#[test]
fn a_stop_announced_before_the_first_acknowledgement_is_passed_over() {
    // QEMU 7.2, connected to while its CPU runs (the last unit detached and let it run), sends
    // "$T02thread:p01.01;#.." before the `+` for qSupported (tests/qemu.rs meets it for real).
    let server = FakeServer::start(Behaviour { stop_reply_on_connect: true, ..behaviour() });
    let mut client = server.client(options(1)).unwrap();
    let mut word = [0u8; 4];
    client.read_memory(0x100, &mut word).unwrap();
    assert!(server.log().packets[0].starts_with("qSupported"));
    // The announcement was acknowledged like any packet received, and the session went on.
    assert!(server.log().acks_received >= 2);
}

#[test]
fn a_gdb_fixture_presents_a_new_unit_when_the_unique_id_changes() {
    use imprint::device::Fixture;
    use imprint::device::gdb::{GdbAddress, GdbFixture};

    let server = FakeServer::start(behaviour());
    server.memory.lock().unwrap()[0xFF00..0xFF0C].copy_from_slice(&[0x11; 12]);
    let config = flash_target_config();
    let mut fixture = GdbFixture::new(GdbAddress::parse(&server.address()).unwrap(), options(1), config);
    assert_eq!(fixture.name(), format!("gdb:{}", server.address()));
    let mut first = fixture.next_unit(&|| true).unwrap().expect("the unit on the fixture");
    assert_eq!(first.read_unique_id().unwrap().as_bytes(), &[0x11; 12]);
    drop(first);
    // The same unit is still there: the fixture keeps looking until told to stop.
    let polls = std::sync::atomic::AtomicU32::new(0);
    let keep_waiting = || polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2;
    assert!(fixture.next_unit(&keep_waiting).unwrap().is_none());
    assert!(polls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    // A different unit arrives.
    server.memory.lock().unwrap()[0xFF00..0xFF0C].copy_from_slice(&[0x22; 12]);
    let mut second = fixture.next_unit(&|| true).unwrap().expect("the new unit");
    assert_eq!(second.read_unique_id().unwrap().as_bytes(), &[0x22; 12]);
    assert_eq!(second.probe_identifier(), format!("gdb:{}", server.address()));
}
