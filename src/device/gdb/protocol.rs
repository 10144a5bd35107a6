//! The GDB remote serial protocol's wire layer: packets, checksums, acknowledgements, escapes,
//! run-length encoding, and a [`Connection`] that turns a byte stream into request/reply pairs.
//!
//! A packet is `$payload#cc`, where `cc` is the modulo-256 sum of the payload bytes in two hex
//! digits. In the default acknowledged mode each side answers every packet with `+` (good) or
//! `-` (checksum wrong: send it again). Servers may compress replies with run-length encoding
//! (`x*n` repeats `x` `n - 29` more times); binary data (`X`, `vFlashWrite`, `qXfer` replies)
//! escapes `$ # } *` as `}` followed by the byte XOR 0x20.
//!
//! This layer exists apart from the client so that framing can be tested byte for byte against
//! a fake server, and so that the client's speed comes from one place: [`Connection::pipeline`]
//! keeps several requests in flight (one write for many packets, large reads) instead of paying
//! a round trip, and a syscall, per packet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::GdbError;
use super::transport::Transport;

/// The byte that interrupts a running target (Ctrl-C).
pub const INTERRUPT_BYTE: u8 = 0x03;
/// The escape byte of binary data.
const ESCAPE_BYTE: u8 = b'}';
/// Run-length counts are encoded as `count + 29`.
const RUN_LENGTH_BIAS: u8 = 29;
/// How many bytes one transport read asks for: large reads keep syscalls per packet low.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The modulo-256 sum of a packet's payload.
pub fn checksum(payload: &[u8]) -> u8 {
    payload.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte))
}

/// Appends `$payload#cc` to `out`. The payload must already be escaped where needed.
pub fn frame_packet(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 4);
    out.push(b'$');
    out.extend_from_slice(payload);
    out.push(b'#');
    push_hex_byte(checksum(payload), out);
}

/// Appends binary `data` with `$ # } *` escaped (the form `X` and `vFlashWrite` carry).
pub fn escape_binary(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 32);
    for byte in data {
        if matches!(*byte, b'$' | b'#' | b'}' | b'*') {
            out.push(ESCAPE_BYTE);
            out.push(byte ^ 0x20);
        } else {
            out.push(*byte);
        }
    }
}

/// Reverses [`escape_binary`] (for binary replies such as `qXfer`).
pub fn unescape_binary(data: &[u8]) -> Result<Vec<u8>, GdbError> {
    let mut out = Vec::with_capacity(data.len());
    let mut bytes = data.iter();
    while let Some(byte) = bytes.next() {
        if *byte == ESCAPE_BYTE {
            let escaped = bytes.next().ok_or_else(|| GdbError::Malformed {
                what: "binary reply".to_string(),
                reason: "ends with an escape byte and nothing after it".to_string(),
            })?;
            out.push(escaped ^ 0x20);
        } else {
            out.push(*byte);
        }
    }
    Ok(out)
}

/// Appends `text` run-length encoded: a run of a character is sent once, followed by `*` and
/// the number of further repeats plus 29. Counts that would be `#` or `$` (6 and 7 repeats) are
/// avoided, as the protocol requires. The protocol defines this for replies; QEMU also accepts
/// it in requests, which makes the fill patterns of firmware images (and erases) cheap to send.
pub fn push_run_length_encoded(text: &[u8], out: &mut Vec<u8>) {
    /// The largest count: `~` (126) - 29.
    const MAX_REPEATS: usize = 97;
    out.reserve(text.len());
    let mut literal_start = 0;
    let mut index = 0;
    while index + 3 < text.len() {
        let character = text[index];
        // Encoding costs three bytes; below four equal characters it does not pay. Most
        // positions fail the first comparison, so literal text costs one compare per byte.
        if text[index + 1] != character || text[index + 2] != character || text[index + 3] != character {
            index += 1;
            continue;
        }
        out.extend_from_slice(&text[literal_start..index]);
        let mut run = 4;
        while index + run < text.len() && text[index + run] == character && run <= MAX_REPEATS {
            run += 1;
        }
        let mut repeats = run - 1;
        // Six and seven repeats would be encoded as '#' and '$'.
        if repeats == 6 || repeats == 7 {
            repeats = 5;
        }
        out.extend_from_slice(&[character, b'*', repeats as u8 + RUN_LENGTH_BIAS]);
        index += repeats + 1;
        literal_start = index;
    }
    out.extend_from_slice(&text[literal_start..]);
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut value = 0;
    while value < 256 {
        pairs[value] = [DIGITS[value >> 4], DIGITS[value & 0x0f]];
        value += 1;
    }
    pairs
};

/// Appends the lowercase hex digits of `data`.
pub fn push_hex(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len() * 2, 0);
    for (pair, byte) in out[start..].chunks_exact_mut(2).zip(data) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

fn push_hex_byte(byte: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&HEX_PAIRS[usize::from(byte)]);
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex digits into `out` (which must be exactly half as long as `text`).
pub fn decode_hex_into(text: &[u8], out: &mut [u8]) -> Result<(), GdbError> {
    if text.len() != out.len() * 2 {
        return Err(GdbError::Malformed {
            what: "hex data".to_string(),
            reason: format!("expected {} hex digits, found {}", out.len() * 2, text.len()),
        });
    }
    for (pair, slot) in text.chunks_exact(2).zip(out.iter_mut()) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *slot = high << 4 | low,
            _ => {
                return Err(GdbError::Malformed {
                    what: "hex data".to_string(),
                    reason: format!("found non-hex characters {:?}", String::from_utf8_lossy(pair)),
                });
            }
        }
    }
    Ok(())
}

/// Decodes a whole hex string.
pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>, GdbError> {
    if !text.len().is_multiple_of(2) {
        return Err(GdbError::Malformed {
            what: "hex data".to_string(),
            reason: format!("expected an even number of hex digits, found {}", text.len()),
        });
    }
    let mut out = vec![0u8; text.len() / 2];
    decode_hex_into(text, &mut out)?;
    Ok(out)
}

/// Parses a hex number (addresses, lengths, signal numbers) as the protocol writes them.
pub fn parse_hex_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |value, digit| Some(value << 4 | u64::from(hex_value(*digit)?)))
}

/// One thing the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `+`: the last packet arrived intact.
    Ack,
    /// `-`: the last packet arrived damaged; send it again.
    Nak,
    /// A packet whose checksum matched; the payload is run-length expanded, escapes kept.
    Packet(Vec<u8>),
    /// A packet whose checksum did not match.
    DamagedPacket {
        /// The checksum the packet carried.
        carried: u8,
        /// The checksum of what arrived.
        computed: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParserState {
    /// Between packets: waiting for `$`, `+` or `-`.
    Idle,
    /// Inside a payload.
    Payload,
    /// After `*`: the next byte is a run length.
    RunLength,
    /// After `#`: the first checksum digit.
    ChecksumHigh,
    /// The second checksum digit.
    ChecksumLow(u8),
}

/// Turns the server's byte stream into [`Incoming`] items, one byte at a time (no allocation
/// per byte; the payload buffer is reused).
#[derive(Debug)]
pub struct PacketParser {
    state: ParserState,
    payload: Vec<u8>,
    running_checksum: u8,
    /// Whether the bytes seen so far in the payload form a valid run-length encoding.
    malformed: bool,
}

impl Default for PacketParser {
    fn default() -> Self {
        PacketParser { state: ParserState::Idle, payload: Vec::new(), running_checksum: 0, malformed: false }
    }
}

impl PacketParser {
    /// Feeds one byte; returns an item when one is complete. Noise between packets (anything
    /// but `$ + -`) is ignored, as GDB does.
    pub fn push(&mut self, byte: u8) -> Option<Incoming> {
        match self.state {
            ParserState::Idle => match byte {
                b'+' => Some(Incoming::Ack),
                b'-' => Some(Incoming::Nak),
                b'$' => {
                    self.start_packet();
                    None
                }
                _ => None,
            },
            ParserState::Payload => {
                match byte {
                    b'#' => self.state = ParserState::ChecksumHigh,
                    // A `$` inside a payload means the previous packet was cut short: start over
                    // with the new one, as GDB's own reader does.
                    b'$' => self.start_packet(),
                    b'*' => {
                        self.running_checksum = self.running_checksum.wrapping_add(byte);
                        self.state = ParserState::RunLength;
                    }
                    _ => {
                        self.running_checksum = self.running_checksum.wrapping_add(byte);
                        self.payload.push(byte);
                    }
                }
                None
            }
            ParserState::RunLength => {
                self.running_checksum = self.running_checksum.wrapping_add(byte);
                match (self.payload.last().copied(), byte.checked_sub(RUN_LENGTH_BIAS)) {
                    (Some(repeated), Some(count)) if byte != b'#' && byte != b'$' => {
                        self.payload.extend(std::iter::repeat_n(repeated, usize::from(count)));
                    }
                    _ => self.malformed = true,
                }
                self.state = ParserState::Payload;
                None
            }
            ParserState::ChecksumHigh => {
                match hex_value(byte) {
                    Some(high) => self.state = ParserState::ChecksumLow(high),
                    None => {
                        self.state = ParserState::Idle;
                        return Some(Incoming::DamagedPacket { carried: 0, computed: self.running_checksum });
                    }
                }
                None
            }
            ParserState::ChecksumLow(high) => {
                self.state = ParserState::Idle;
                let Some(low) = hex_value(byte) else {
                    return Some(Incoming::DamagedPacket {
                        carried: high << 4,
                        computed: self.running_checksum,
                    });
                };
                let carried = high << 4 | low;
                if carried != self.running_checksum || self.malformed {
                    return Some(Incoming::DamagedPacket { carried, computed: self.running_checksum });
                }
                Some(Incoming::Packet(std::mem::take(&mut self.payload)))
            }
        }
    }

    fn start_packet(&mut self) {
        self.payload.clear();
        self.running_checksum = 0;
        self.malformed = false;
        self.state = ParserState::Payload;
    }
}

/// How the connection behaves; see [`super::GdbOptions`] for the user-facing settings.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// How long to wait for any reply before giving up.
    pub timeout: Duration,
    /// How many times one packet is sent again after a NAK or a damaged reply.
    pub retransmit_limit: u32,
}

/// Counters for diagnostics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStatistics {
    /// Packets sent (retransmissions included).
    pub packets_sent: u64,
    /// Packets received intact.
    pub packets_received: u64,
    /// Packets sent again after a NAK.
    pub retransmissions: u64,
    /// Damaged packets received (answered with a NAK, or re-requested when pipelined).
    pub damaged_packets_received: u64,
    /// Transport writes.
    pub writes: u64,
    /// Transport reads.
    pub reads: u64,
}

/// Appends the payload of pipelined request `index` to the buffer.
pub type RequestMaker<'a> = dyn FnMut(usize, &mut Vec<u8>) + 'a;

/// Receives each pipelined reply with the index of its request.
pub type ReplyHandler<'a> = dyn FnMut(usize, &[u8]) -> Result<(), GdbError> + 'a;

/// A byte stream to a GDB server, speaking packets.
pub struct Connection {
    transport: Box<dyn Transport>,
    settings: ConnectionSettings,
    parser: PacketParser,
    read_buffer: Vec<u8>,
    read_position: usize,
    read_length: usize,
    /// Whether acknowledgements are exchanged (false after `QStartNoAckMode`).
    ack_mode: bool,
    statistics: ConnectionStatistics,
    write_buffer: Vec<u8>,
}

impl Connection {
    /// Wraps a transport, in acknowledged mode.
    pub fn new(transport: Box<dyn Transport>, settings: ConnectionSettings) -> Connection {
        Connection {
            transport,
            settings,
            parser: PacketParser::default(),
            read_buffer: vec![0; READ_CHUNK_BYTES],
            read_position: 0,
            read_length: 0,
            ack_mode: true,
            statistics: ConnectionStatistics::default(),
            write_buffer: Vec::with_capacity(READ_CHUNK_BYTES),
        }
    }

    /// The transport's description (`tcp:127.0.0.1:1234`, `serial:/dev/ttyACM0`).
    pub fn describe(&self) -> String {
        self.transport.describe()
    }

    /// Whether the byte stream is reliable (TCP) rather than a raw serial line.
    pub fn is_reliable(&self) -> bool {
        self.transport.is_reliable()
    }

    /// Counters since the connection opened.
    pub fn statistics(&self) -> ConnectionStatistics {
        self.statistics
    }

    /// Whether acknowledgements are exchanged.
    pub fn ack_mode(&self) -> bool {
        self.ack_mode
    }

    /// Stops exchanging acknowledgements (after the server accepted `QStartNoAckMode`).
    pub fn disable_acks(&mut self) {
        self.ack_mode = false;
    }

    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Changes the reply timeout (a continue may wait longer than a memory read).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.settings.timeout = timeout;
    }

    fn write(&mut self, bytes: &[u8], operation: &str) -> Result<(), GdbError> {
        self.statistics.writes += 1;
        self.transport.write_all(bytes).map_err(|source| GdbError::Io {
            operation: operation.to_string(),
            endpoint: self.transport.describe(),
            source,
        })
    }

    /// Sends a bare `+` (GDB opens every session with one; it also flushes a half-received
    /// packet out of the server's parser).
    pub fn send_ack(&mut self, operation: &str) -> Result<(), GdbError> {
        self.write(b"+", operation)
    }

    /// Sends the interrupt byte (the target should stop and send a stop reply).
    pub fn send_interrupt(&mut self) -> Result<(), GdbError> {
        self.write(&[INTERRUPT_BYTE], "interrupt")
    }

    /// Sends one packet; in acknowledged mode waits for `+` and sends again on `-`.
    pub fn send_packet(&mut self, payload: &[u8], operation: &str) -> Result<(), GdbError> {
        self.send_packet_with(payload, operation, false)
    }

    /// Sends a session's first packet. A server whose target was running when the client
    /// connected may announce that it stopped the target before it acknowledges anything (QEMU
    /// sends `T02...` to a client that connects while its CPU runs): such a stop reply is
    /// received (acknowledged) and passed over while the `+` is awaited.
    pub fn send_first_packet(&mut self, payload: &[u8], operation: &str) -> Result<(), GdbError> {
        self.send_packet_with(payload, operation, true)
    }

    fn send_packet_with(
        &mut self,
        payload: &[u8],
        operation: &str,
        after_connect: bool,
    ) -> Result<(), GdbError> {
        let mut framed = std::mem::take(&mut self.write_buffer);
        framed.clear();
        frame_packet(payload, &mut framed);
        let result = self.send_framed(&framed, operation, after_connect);
        self.write_buffer = framed;
        result
    }

    fn send_framed(&mut self, framed: &[u8], operation: &str, after_connect: bool) -> Result<(), GdbError> {
        let mut attempts = 0;
        loop {
            self.write(framed, operation)?;
            self.statistics.packets_sent += 1;
            if !self.ack_mode {
                return Ok(());
            }
            let mut incoming = self.next_incoming(operation)?;
            while let Incoming::Packet(payload) = &incoming
                && after_connect
                && matches!(payload.first(), Some(b'T' | b'S'))
            {
                self.write(b"+", operation)?;
                incoming = self.next_incoming(operation)?;
            }
            match incoming {
                Incoming::Ack => return Ok(()),
                Incoming::Nak => {
                    attempts += 1;
                    if attempts > self.settings.retransmit_limit {
                        return Err(GdbError::RetransmitLimit { operation: operation.to_string(), attempts });
                    }
                    self.statistics.retransmissions += 1;
                }
                Incoming::Packet(payload) => {
                    return Err(GdbError::UnexpectedReply {
                        operation: operation.to_string(),
                        expected: "an acknowledgement (+)".to_string(),
                        found: String::from_utf8_lossy(&payload).into_owned(),
                    });
                }
                Incoming::DamagedPacket { .. } => {
                    return Err(GdbError::UnexpectedReply {
                        operation: operation.to_string(),
                        expected: "an acknowledgement (+)".to_string(),
                        found: "a damaged packet".to_string(),
                    });
                }
            }
        }
    }

    /// Receives the next packet. A damaged packet is answered with `-` so the server sends it
    /// again (acknowledged mode); an intact one with `+`. Stray acknowledgements are skipped.
    pub fn receive_packet(&mut self, operation: &str) -> Result<Vec<u8>, GdbError> {
        let mut damaged = 0;
        loop {
            match self.next_incoming(operation)? {
                Incoming::Ack | Incoming::Nak => {}
                Incoming::Packet(payload) => {
                    if self.ack_mode {
                        self.write(b"+", operation)?;
                    }
                    return Ok(payload);
                }
                Incoming::DamagedPacket { carried, computed } => {
                    self.statistics.damaged_packets_received += 1;
                    damaged += 1;
                    if !self.ack_mode || damaged > self.settings.retransmit_limit {
                        return Err(GdbError::DamagedReply {
                            operation: operation.to_string(),
                            carried,
                            computed,
                        });
                    }
                    self.write(b"-", operation)?;
                }
            }
        }
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, payload: &[u8], operation: &str) -> Result<Vec<u8>, GdbError> {
        self.send_packet(payload, operation)?;
        self.receive_packet(operation)
    }

    /// Waits for the next item from the server, up to the timeout.
    fn next_incoming(&mut self, operation: &str) -> Result<Incoming, GdbError> {
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            while self.read_position < self.read_length {
                let byte = self.read_buffer[self.read_position];
                self.read_position += 1;
                if let Some(incoming) = self.parser.push(byte) {
                    if matches!(incoming, Incoming::Packet(_)) {
                        self.statistics.packets_received += 1;
                    }
                    return Ok(incoming);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GdbError::Timeout {
                    operation: operation.to_string(),
                    timeout_ms: self.settings.timeout.as_millis() as u64,
                });
            }
            self.statistics.reads += 1;
            match self.transport.read(&mut self.read_buffer, deadline - now) {
                Ok(0) => {
                    return Err(GdbError::Disconnected {
                        operation: operation.to_string(),
                        endpoint: self.transport.describe(),
                    });
                }
                Ok(length) => {
                    self.read_position = 0;
                    self.read_length = length;
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(GdbError::Io {
                        operation: operation.to_string(),
                        endpoint: self.transport.describe(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits up to `wait` for a packet without treating silence as an error (used to wait for a
    /// stop reply while the target runs). Returns `None` when nothing complete arrived.
    pub fn poll_packet(&mut self, wait: Duration, operation: &str) -> Result<Option<Vec<u8>>, GdbError> {
        let saved = self.settings.timeout;
        self.settings.timeout = wait;
        let result = self.receive_packet(operation);
        self.settings.timeout = saved;
        match result {
            Ok(payload) => Ok(Some(payload)),
            Err(GdbError::Timeout { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Sends `request_count` requests with up to `window` in flight and hands each reply, in
    /// request order, to `on_reply(index, reply)`. `make_request(index, out)` appends request
    /// `index`'s payload to `out`; requests are made as the window opens, so encoding overlaps
    /// the server's work and no transfer is held in memory twice.
    ///
    /// Only for idempotent requests (`m`, `M`, `X`) on a reliable stream, and only to servers
    /// that read requests while replies are unacknowledged (no-ack mode, or QEMU, which never
    /// waits for acknowledgements). A request the server NAKed, or whose reply arrived damaged,
    /// is sent again on its own after the window drains, so one bad packet costs one round trip
    /// instead of a resynchronisation of the whole stream. Acknowledgements of replies ride
    /// along with the next write instead of costing a write each.
    pub fn pipeline(
        &mut self,
        request_count: usize,
        make_request: &mut RequestMaker<'_>,
        window: usize,
        operation: &str,
        on_reply: &mut ReplyHandler<'_>,
    ) -> Result<(), GdbError> {
        let window = window.max(1);
        // Requests sent whose acknowledgement (ack mode) has not arrived yet.
        let mut awaiting_ack: VecDeque<usize> = VecDeque::new();
        // Requests acknowledged (or sent, in no-ack mode) whose reply has not arrived yet.
        let mut awaiting_reply: VecDeque<usize> = VecDeque::new();
        let mut to_resend: Vec<usize> = Vec::new();
        let mut next_to_send = 0;
        let mut acks_owed = 0usize;
        let mut batch = std::mem::take(&mut self.write_buffer);
        let result = (|| {
            while next_to_send < request_count || !awaiting_ack.is_empty() || !awaiting_reply.is_empty() {
                batch.clear();
                batch.extend(std::iter::repeat_n(b'+', acks_owed));
                while next_to_send < request_count && awaiting_ack.len() + awaiting_reply.len() < window {
                    batch.push(b'$');
                    let payload_start = batch.len();
                    make_request(next_to_send, &mut batch);
                    let sum = checksum(&batch[payload_start..]);
                    batch.push(b'#');
                    push_hex_byte(sum, &mut batch);
                    if self.ack_mode {
                        awaiting_ack.push_back(next_to_send);
                    } else {
                        awaiting_reply.push_back(next_to_send);
                    }
                    self.statistics.packets_sent += 1;
                    next_to_send += 1;
                }
                // Owed acknowledgements wait for the next request unless nothing is left to send.
                if batch.len() > acks_owed || (next_to_send == request_count && acks_owed > 0) {
                    self.write(&batch, operation)?;
                    acks_owed = 0;
                }
                if awaiting_ack.is_empty() && awaiting_reply.is_empty() {
                    continue;
                }
                match self.next_incoming(operation)? {
                    Incoming::Ack => {
                        if let Some(index) = awaiting_ack.pop_front() {
                            awaiting_reply.push_back(index);
                        }
                    }
                    Incoming::Nak => {
                        if let Some(index) = awaiting_ack.pop_front() {
                            self.statistics.retransmissions += 1;
                            to_resend.push(index);
                        }
                    }
                    Incoming::Packet(payload) => {
                        let index = awaiting_reply.pop_front().ok_or_else(|| GdbError::UnexpectedReply {
                            operation: operation.to_string(),
                            expected: "no reply (nothing was asked)".to_string(),
                            found: String::from_utf8_lossy(&payload).into_owned(),
                        })?;
                        if self.ack_mode {
                            acks_owed += 1;
                        }
                        on_reply(index, &payload)?;
                    }
                    Incoming::DamagedPacket { .. } => {
                        self.statistics.damaged_packets_received += 1;
                        // A NAK would make the server resend its *latest* reply, which is not
                        // this one when several are in flight: acknowledge and ask again later.
                        if self.ack_mode {
                            acks_owed += 1;
                        }
                        if let Some(index) = awaiting_reply.pop_front() {
                            to_resend.push(index);
                        }
                    }
                }
            }
            if acks_owed > 0 {
                batch.clear();
                batch.extend(std::iter::repeat_n(b'+', acks_owed));
                self.write(&batch, operation)?;
            }
            Ok(())
        })();
        self.write_buffer = batch;
        result?;
        let mut payload = Vec::new();
        for index in to_resend {
            payload.clear();
            make_request(index, &mut payload);
            let reply = self.request(&payload, operation)?;
            on_reply(index, &reply)?;
        }
        Ok(())
    }
}
