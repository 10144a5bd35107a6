//! A GDB remote protocol client: the requests a provisioning station needs, on top of
//! [`Connection`].
//!
//! [`GdbClient::connect`] negotiates what the server offers (`qSupported`: packet size,
//! no-ack mode, `qXfer` documents, multiprocess), reads the target description (QEMU refuses
//! `p`/`P` until `target.xml` was read) and the memory map (which ranges are flash and take
//! `vFlash*` packets), and probes whether binary `X` writes work. Memory transfers are split to
//! the server's packet size and pipelined when the server allows it; everything else is one
//! request and one reply.
//!
//! The client keeps track of whether the target runs: a request sent to a running QEMU would
//! only stop it (QEMU drops the byte), so operations on a running target go through
//! [`GdbClient::interrupt`] first.

use std::time::{Duration, Instant};

use super::error::GdbError;
use super::features::{DescriptionBuilder, MemoryKind, MemoryMapRegion, TargetDescription, parse_memory_map};
use super::protocol::{
    Connection, ConnectionSettings, ConnectionStatistics, ReplyHandler, RequestMaker, decode_hex,
    decode_hex_into, escape_binary, parse_hex_u64, push_hex, push_run_length_encoded, unescape_binary,
};
use super::transport::Transport;

/// The packet size assumed when the server does not say (GDB's historical default).
const DEFAULT_PACKET_SIZE_BYTES: usize = 400;
/// The largest packet size taken from a server's `qSupported`: what real stubs announce is far
/// below (OpenOCD 0x3fff, QEMU 0x20000), and a larger one would only make the client allocate
/// request buffers of whatever size a faulty server names (found by the gdb_client fuzz target).
const PACKET_SIZE_MAX_BYTES: usize = 0x10_0000;
/// Room left in a packet for the command, address and length before the data.
const PACKET_HEADER_ROOM_BYTES: usize = 32;
/// Nesting limit for `xi:include` in target descriptions.
const INCLUDE_DEPTH_LIMIT: u32 = 4;

/// Monitor commands that reset and halt, by server: OpenOCD and pyOCD, J-Link GDB Server,
/// QEMU. Tried in this order after the configured one.
pub const RESET_MONITOR_COMMANDS: [&str; 3] = ["reset halt", "reset", "system_reset"];

/// Whether a monitor command's text output says the server did not take the command (QEMU:
/// "unknown command", OpenOCD: "invalid command name").
fn monitor_output_refuses(output: &str) -> bool {
    let lowercase = output.to_ascii_lowercase();
    lowercase.contains("unknown command") || lowercase.contains("invalid command")
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct GdbOptions {
    /// How long to wait for one reply.
    pub timeout_ms: u64,
    /// How long a flash erase or write may take (servers erase synchronously).
    pub flash_timeout_ms: u64,
    /// How many times one packet is sent again after a checksum error.
    pub retransmit_limit: u32,
    /// How many memory requests may be in flight at once (1 disables pipelining).
    pub pipeline_window: usize,
    /// The server reads requests without waiting for our acknowledgements (QEMU's system-mode
    /// stub does), so pipelining is safe even in acknowledged mode.
    pub server_ignores_acks: bool,
    /// Ask for `QStartNoAckMode` when the server offers it.
    pub request_no_ack_mode: bool,
    /// Run-length encode the hex data of `M` requests. The protocol defines run-length encoding
    /// for replies only; QEMU's stub decodes it in requests too.
    pub run_length_encode_requests: bool,
    /// The monitor command that resets the chip and leaves it halted (`reset halt` for OpenOCD
    /// and pyOCD, `reset` for J-Link, `system_reset` for QEMU).
    pub reset_monitor_command: String,
}

impl Default for GdbOptions {
    fn default() -> Self {
        GdbOptions {
            timeout_ms: 2_000,
            flash_timeout_ms: 60_000,
            retransmit_limit: 3,
            pipeline_window: 16,
            server_ignores_acks: false,
            request_no_ack_mode: true,
            run_length_encode_requests: false,
            reset_monitor_command: "reset halt".to_string(),
        }
    }
}

impl GdbOptions {
    /// The settings for QEMU's GDB stub (see docs/facts.md and docs/device-contract.md).
    pub fn qemu() -> GdbOptions {
        GdbOptions {
            server_ignores_acks: true,
            run_length_encode_requests: true,
            reset_monitor_command: "system_reset".to_string(),
            ..GdbOptions::default()
        }
    }
}

/// What the server announced in its `qSupported` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFeatures {
    /// The largest packet the server accepts.
    pub packet_size_bytes: usize,
    /// Features marked `+`.
    pub offered: Vec<String>,
}

impl ServerFeatures {
    /// Parses `PacketSize=1000;qXfer:features:read+;...`.
    pub fn parse(reply: &[u8]) -> ServerFeatures {
        let mut features =
            ServerFeatures { packet_size_bytes: DEFAULT_PACKET_SIZE_BYTES, offered: Vec::new() };
        for item in String::from_utf8_lossy(reply).split(';') {
            if let Some(value) = item.strip_prefix("PacketSize=") {
                if let Some(size) = parse_hex_u64(value.as_bytes()) {
                    features.packet_size_bytes =
                        usize::try_from(size).unwrap_or(usize::MAX).min(PACKET_SIZE_MAX_BYTES);
                }
            } else if let Some(name) = item.strip_suffix('+') {
                features.offered.push(name.to_string());
            }
        }
        features
    }

    /// Whether `name` was offered with `+`.
    pub fn offers(&self, name: &str) -> bool {
        self.offered.iter().any(|offered| offered == name)
    }
}

/// Why the target stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Stopped with a signal (5 = trap: breakpoint or step; 2 = interrupt).
    Signal(u8),
    /// The process exited with this code.
    Exited(u8),
    /// The process was terminated by this signal.
    Terminated(u8),
}

/// A stop reply (`S05`, `T05thread:01;`, `W00`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReply {
    /// What happened.
    pub reason: StopReason,
    /// The packet as received.
    pub raw: String,
}

impl StopReply {
    /// Parses a stop reply packet; `None` if it is not one.
    pub fn parse(payload: &[u8]) -> Option<StopReply> {
        let kind = *payload.first()?;
        let code = parse_hex_u64(payload.get(1..3)?)? as u8;
        let reason = match kind {
            b'S' | b'T' => StopReason::Signal(code),
            b'W' => StopReason::Exited(code),
            b'X' => StopReason::Terminated(code),
            _ => return None,
        };
        Some(StopReply { reason, raw: String::from_utf8_lossy(payload).into_owned() })
    }
}

/// Breakpoint and watchpoint kinds of `Z`/`z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakpointKind {
    /// `Z0`: the server patches a breakpoint instruction in.
    Software,
    /// `Z1`: a hardware comparator.
    Hardware,
    /// `Z2`: stop on a write.
    WriteWatchpoint,
    /// `Z3`: stop on a read.
    ReadWatchpoint,
    /// `Z4`: stop on any access.
    AccessWatchpoint,
}

impl BreakpointKind {
    fn digit(self) -> char {
        match self {
            BreakpointKind::Software => '0',
            BreakpointKind::Hardware => '1',
            BreakpointKind::WriteWatchpoint => '2',
            BreakpointKind::ReadWatchpoint => '3',
            BreakpointKind::AccessWatchpoint => '4',
        }
    }
}

/// Whether the target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Halted, with the last stop reply.
    Halted(StopReply),
    /// Running since a continue.
    Running,
    /// Exited or terminated: nothing more can be done.
    Gone(StopReply),
}

/// A connected GDB remote client.
pub struct GdbClient {
    connection: Connection,
    options: GdbOptions,
    features: ServerFeatures,
    description: Option<TargetDescription>,
    memory_map: Vec<MemoryMapRegion>,
    binary_writes: bool,
    multiprocess: bool,
    run_state: RunState,
    console_output: Vec<u8>,
}

impl std::fmt::Debug for GdbClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GdbClient")
            .field("endpoint", &self.connection.describe())
            .field("features", &self.features)
            .field("binary_writes", &self.binary_writes)
            .field("run_state", &self.run_state)
            .finish_non_exhaustive()
    }
}

fn is_error_reply(reply: &[u8]) -> bool {
    reply.len() == 3 && reply[0] == b'E' && reply[1..].iter().all(u8::is_ascii_hexdigit)
        || reply.starts_with(b"E.")
}

fn expect_ok(reply: &[u8], operation: &str, request: &str) -> Result<(), GdbError> {
    match reply {
        b"OK" => Ok(()),
        b"" => Err(GdbError::Unsupported { operation: operation.to_string(), request: request.to_string() }),
        _ if is_error_reply(reply) => Err(GdbError::ServerError {
            operation: operation.to_string(),
            code: String::from_utf8_lossy(reply).into_owned(),
        }),
        _ => Err(GdbError::unexpected(operation, "OK", reply)),
    }
}

impl GdbClient {
    /// Connects over `transport` and negotiates with the server. The target is expected to be
    /// halted (a server halts it on attach; QEMU is started with `-S`).
    pub fn connect(transport: Box<dyn Transport>, options: GdbOptions) -> Result<GdbClient, GdbError> {
        let settings = ConnectionSettings {
            timeout: Duration::from_millis(options.timeout_ms),
            retransmit_limit: options.retransmit_limit,
        };
        let mut connection = Connection::new(transport, settings);
        // GDB starts every session with a `+`, which also flushes a half-sent packet out of the
        // server's parser.
        connection.send_ack("start")?;
        connection.send_first_packet(
            b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=arm;vContSupported+",
            "qSupported",
        )?;
        // A server whose target was running when we connected may announce that it stopped it
        // (QEMU sends "T02..." on connect then, before or after its `+`): that is not the
        // answer to qSupported.
        let mut reply = connection.receive_packet("qSupported")?;
        while StopReply::parse(&reply).is_some() {
            reply = connection.receive_packet("qSupported")?;
        }
        let features = ServerFeatures::parse(&reply);
        if options.request_no_ack_mode && features.offers("QStartNoAckMode") {
            let reply = connection.request(b"QStartNoAckMode", "QStartNoAckMode")?;
            if reply == b"OK" {
                connection.disable_acks();
            }
        }
        let multiprocess = features.offers("multiprocess");
        let mut client = GdbClient {
            connection,
            options,
            features,
            description: None,
            memory_map: Vec::new(),
            binary_writes: false,
            multiprocess,
            run_state: RunState::Running,
            console_output: Vec::new(),
        };
        let stop = client.request_stop_reason()?;
        client.run_state = RunState::Halted(stop);
        if client.features.offers("qXfer:features:read") {
            client.description = Some(client.read_target_description()?);
        }
        if client.features.offers("qXfer:memory-map:read") {
            let document = client.read_xfer("memory-map", "")?;
            client.memory_map = parse_memory_map(&document)?;
        }
        client.binary_writes = client.probe_binary_writes()?;
        Ok(client)
    }

    /// What the server offered.
    pub fn features(&self) -> &ServerFeatures {
        &self.features
    }

    /// The target description, when the server offers one.
    pub fn target_description(&self) -> Option<&TargetDescription> {
        self.description.as_ref()
    }

    /// The server's memory map (empty when it has none).
    pub fn memory_map(&self) -> &[MemoryMapRegion] {
        &self.memory_map
    }

    /// The flash region covering `[address, address + length)`, if the server's map has one.
    pub fn flash_region(&self, address: u64, length: u64) -> Option<MemoryMapRegion> {
        self.memory_map
            .iter()
            .copied()
            .find(|region| region.kind == MemoryKind::Flash && region.contains(address, length))
    }

    /// Whether memory requests are pipelined on this connection.
    pub fn pipelines(&self) -> bool {
        self.options.pipeline_window > 1
            && self.connection.is_reliable()
            && (!self.connection.ack_mode() || self.options.server_ignores_acks)
    }

    /// Whether acknowledgements are still exchanged.
    pub fn ack_mode(&self) -> bool {
        self.connection.ack_mode()
    }

    /// Counters of the connection.
    pub fn statistics(&self) -> ConnectionStatistics {
        self.connection.statistics()
    }

    /// The connection's description.
    pub fn endpoint(&self) -> String {
        self.connection.describe()
    }

    /// The options in use.
    pub fn options(&self) -> &GdbOptions {
        &self.options
    }

    /// Changes how long the client waits for one reply.
    pub fn set_reply_timeout_ms(&mut self, timeout_ms: u64) {
        self.options.timeout_ms = timeout_ms;
        self.connection.set_timeout(Duration::from_millis(timeout_ms));
    }

    /// Whether the target runs, is halted, or is gone.
    pub fn run_state(&self) -> &RunState {
        &self.run_state
    }

    /// Text the target sent through `O` packets (semihosting, monitor output) since the last call.
    pub fn take_console_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.console_output)
    }

    fn request_stop_reason(&mut self) -> Result<StopReply, GdbError> {
        let reply = self.connection.request(b"?", "stop reason (?)")?;
        StopReply::parse(&reply)
            .ok_or_else(|| GdbError::unexpected("stop reason (?)", "a stop reply", &reply))
    }

    fn probe_binary_writes(&mut self) -> Result<bool, GdbError> {
        // GDB's own probe: a zero-length X write. An empty reply means "not implemented".
        let reply = self.connection.request(b"X0,0:", "probe X")?;
        Ok(reply == b"OK")
    }

    /// Reads a whole `qXfer` object (`features`/`target.xml`, `memory-map`/``).
    pub fn read_xfer(&mut self, object: &str, annex: &str) -> Result<String, GdbError> {
        let operation = format!("qXfer:{object}:read:{annex}");
        let chunk = self.features.packet_size_bytes.saturating_sub(PACKET_HEADER_ROOM_BYTES).max(64);
        let mut document = Vec::new();
        loop {
            let request = format!("qXfer:{object}:read:{annex}:{:x},{chunk:x}", document.len());
            let reply = self.connection.request(request.as_bytes(), &operation)?;
            match reply.first() {
                Some(b'l') | Some(b'm') => {
                    document.extend_from_slice(&unescape_binary(&reply[1..])?);
                    if reply[0] == b'l' {
                        break;
                    }
                    if reply.len() == 1 {
                        return Err(GdbError::unexpected(&operation, "data after 'm'", &reply));
                    }
                }
                None => return Err(GdbError::Unsupported { operation, request }),
                _ if is_error_reply(&reply) => {
                    return Err(GdbError::ServerError {
                        operation,
                        code: String::from_utf8_lossy(&reply).into_owned(),
                    });
                }
                _ => return Err(GdbError::unexpected(&operation, "'l' or 'm' and data", &reply)),
            }
        }
        String::from_utf8(document).map_err(|_| GdbError::Malformed {
            what: operation,
            reason: "the document is not UTF-8".to_string(),
        })
    }

    fn read_target_description(&mut self) -> Result<TargetDescription, GdbError> {
        let root = self.read_xfer("features", "target.xml")?;
        let mut builder = DescriptionBuilder::new();
        let mut fetch = |annex: &str| self.read_xfer("features", annex);
        builder.feed(&root, "target.xml", &mut fetch, INCLUDE_DEPTH_LIMIT)?;
        Ok(builder.finish())
    }

    fn require_halted(&self, operation: &str) -> Result<(), GdbError> {
        match &self.run_state {
            RunState::Halted(_) => Ok(()),
            RunState::Running => Err(GdbError::UnexpectedReply {
                operation: operation.to_string(),
                expected: "a halted target".to_string(),
                found: "the target is running (interrupt it first)".to_string(),
            }),
            RunState::Gone(stop) => Err(GdbError::TargetGone { reason: stop.raw.clone() }),
        }
    }

    /// The largest number of bytes one `m` request asks for.
    pub fn read_chunk_bytes(&self) -> usize {
        // The reply carries two hex digits per byte and must fit the server's packet buffer.
        (self.features.packet_size_bytes / 2).max(16) & !3
    }

    /// The largest number of data bytes one `M` request carries.
    pub fn write_chunk_bytes(&self) -> usize {
        (self.features.packet_size_bytes.saturating_sub(PACKET_HEADER_ROOM_BYTES) / 2).max(16) & !15
    }

    /// Reads target memory into `buffer` (`m`, pipelined when possible).
    pub fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), GdbError> {
        self.require_halted("read memory")?;
        let chunk = self.read_chunk_bytes();
        let total = buffer.len();
        let request_count = total.div_ceil(chunk);
        let mut make_request = |index: usize, out: &mut Vec<u8>| {
            let offset = index * chunk;
            let length = chunk.min(total - offset);
            out.extend_from_slice(format!("m{:x},{length:x}", address + offset as u64).as_bytes());
        };
        let mut on_reply = |index: usize, reply: &[u8]| -> Result<(), GdbError> {
            let offset = index * chunk;
            let length = chunk.min(total - offset);
            let chunk_address = address + offset as u64;
            if is_error_reply(reply) {
                return Err(GdbError::Refused {
                    operation: "read",
                    address: chunk_address,
                    reason: format!("the server answered {}", String::from_utf8_lossy(reply)),
                });
            }
            if reply.len() != length * 2 {
                return Err(GdbError::Refused {
                    operation: "read",
                    address: chunk_address + (reply.len() / 2) as u64,
                    reason: format!("asked for {length} bytes, the server returned {}", reply.len() / 2),
                });
            }
            decode_hex_into(reply, &mut buffer[offset..offset + length])
        };
        self.run_requests(request_count, &mut make_request, "read memory (m)", &mut on_reply)
    }

    /// Sends requests pipelined when this connection allows it, else one at a time.
    fn run_requests(
        &mut self,
        request_count: usize,
        make_request: &mut RequestMaker<'_>,
        operation: &str,
        on_reply: &mut ReplyHandler<'_>,
    ) -> Result<(), GdbError> {
        if self.pipelines() {
            let window = self.options.pipeline_window;
            return self.connection.pipeline(request_count, make_request, window, operation, on_reply);
        }
        let mut payload = Vec::new();
        for index in 0..request_count {
            payload.clear();
            make_request(index, &mut payload);
            let reply = self.connection.request(&payload, operation)?;
            on_reply(index, &reply)?;
        }
        Ok(())
    }

    /// Writes target memory (`X` when the server takes binary, else `M`; pipelined when
    /// possible).
    pub fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), GdbError> {
        self.require_halted("write memory")?;
        let on_reply_for = |chunk_address: u64, reply: &[u8]| -> Result<(), GdbError> {
            match reply {
                b"OK" => Ok(()),
                _ if is_error_reply(reply) => Err(GdbError::Refused {
                    operation: "write",
                    address: chunk_address,
                    reason: format!("the server answered {}", String::from_utf8_lossy(reply)),
                }),
                _ => Err(GdbError::unexpected("write memory", "OK", reply)),
            }
        };
        if self.binary_writes {
            let (requests, addresses) = self.binary_requests("X", address, data);
            let mut make_request = |index: usize, out: &mut Vec<u8>| out.extend_from_slice(&requests[index]);
            let mut on_reply = |index: usize, reply: &[u8]| on_reply_for(addresses[index], reply);
            return self.run_requests(requests.len(), &mut make_request, "write memory (X)", &mut on_reply);
        }
        let chunk = self.write_chunk_bytes();
        let run_length = self.options.run_length_encode_requests;
        let mut hex = Vec::with_capacity(chunk * 2);
        let mut make_request = |index: usize, out: &mut Vec<u8>| {
            let offset = index * chunk;
            let piece = &data[offset..data.len().min(offset + chunk)];
            out.extend_from_slice(format!("M{:x},{:x}:", address + offset as u64, piece.len()).as_bytes());
            if run_length {
                hex.clear();
                push_hex(piece, &mut hex);
                push_run_length_encoded(&hex, out);
            } else {
                push_hex(piece, out);
            }
        };
        let mut on_reply = |index: usize, reply: &[u8]| on_reply_for(address + (index * chunk) as u64, reply);
        self.run_requests(data.len().div_ceil(chunk), &mut make_request, "write memory (M)", &mut on_reply)
    }

    /// Splits `data` into `PREFIXaddr,len:escaped` requests filling the packet size.
    fn binary_requests(&self, prefix: &str, address: u64, data: &[u8]) -> (Vec<Vec<u8>>, Vec<u64>) {
        let capacity = self.features.packet_size_bytes.saturating_sub(PACKET_HEADER_ROOM_BYTES).max(32);
        let mut requests = Vec::new();
        let mut addresses = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            // Take as many bytes as fit once escaped.
            let mut escaped_length = 0;
            let mut end = offset;
            while end < data.len() {
                let cost = if matches!(data[end], b'$' | b'#' | b'}' | b'*') { 2 } else { 1 };
                if escaped_length + cost > capacity {
                    break;
                }
                escaped_length += cost;
                end += 1;
            }
            let chunk_address = address + offset as u64;
            let mut request = if prefix == "X" {
                format!("X{chunk_address:x},{:x}:", end - offset).into_bytes()
            } else {
                format!("{prefix}{chunk_address:x}:").into_bytes()
            };
            escape_binary(&data[offset..end], &mut request);
            requests.push(request);
            addresses.push(chunk_address);
            offset = end;
        }
        (requests, addresses)
    }

    /// Erases flash through the server (`vFlashErase`); the range must be whole blocks of the
    /// server's memory map.
    pub fn flash_erase(&mut self, address: u64, length: u64) -> Result<(), GdbError> {
        self.require_halted("vFlashErase")?;
        let request = format!("vFlashErase:{address:x},{length:x}");
        let reply = self.with_timeout(self.options.flash_timeout_ms, |client| {
            client.connection.request(request.as_bytes(), "vFlashErase")
        })?;
        expect_ok(&reply, "vFlashErase", &request)
    }

    /// Writes flash through the server (`vFlashWrite`, binary); finish with
    /// [`GdbClient::flash_done`].
    pub fn flash_write(&mut self, address: u64, data: &[u8]) -> Result<(), GdbError> {
        self.require_halted("vFlashWrite")?;
        let (requests, _) = self.binary_requests("vFlashWrite:", address, data);
        for request in requests {
            let reply = self.with_timeout(self.options.flash_timeout_ms, |client| {
                client.connection.request(&request, "vFlashWrite")
            })?;
            if reply.starts_with(b"E.memtype") {
                return Err(GdbError::Refused {
                    operation: "program",
                    address,
                    reason: "the server says this is not flash (E.memtype)".to_string(),
                });
            }
            expect_ok(&reply, "vFlashWrite", "vFlashWrite")?;
        }
        Ok(())
    }

    /// Tells the server the flash operations are complete (it programs what it buffered).
    pub fn flash_done(&mut self) -> Result<(), GdbError> {
        let reply = self.with_timeout(self.options.flash_timeout_ms, |client| {
            client.connection.request(b"vFlashDone", "vFlashDone")
        })?;
        expect_ok(&reply, "vFlashDone", "vFlashDone")
    }

    fn with_timeout<T>(&mut self, timeout_ms: u64, operation: impl FnOnce(&mut Self) -> T) -> T {
        let saved = self.connection.timeout();
        self.connection.set_timeout(Duration::from_millis(timeout_ms));
        let result = operation(self);
        self.connection.set_timeout(saved);
        result
    }

    /// Reads every general register (`g`), in the target's byte order.
    pub fn read_registers(&mut self) -> Result<Vec<u8>, GdbError> {
        self.require_halted("read registers (g)")?;
        let reply = self.connection.request(b"g", "read registers (g)")?;
        if is_error_reply(&reply) {
            return Err(GdbError::ServerError {
                operation: "read registers (g)".to_string(),
                code: String::from_utf8_lossy(&reply).into_owned(),
            });
        }
        // Unavailable registers read as `xx`; report them as zero rather than failing.
        let cleaned: Vec<u8> = reply.iter().map(|byte| if *byte == b'x' { b'0' } else { *byte }).collect();
        decode_hex(&cleaned)
    }

    /// Reads one register (`p`), in the target's byte order.
    pub fn read_register(&mut self, number: u32) -> Result<Vec<u8>, GdbError> {
        self.require_halted("read register (p)")?;
        let request = format!("p{number:x}");
        let reply = self.connection.request(request.as_bytes(), "read register (p)")?;
        if reply.is_empty() {
            return Err(GdbError::Unsupported { operation: "read register".to_string(), request });
        }
        if is_error_reply(&reply) {
            return Err(GdbError::ServerError {
                operation: format!("read register {number}"),
                code: String::from_utf8_lossy(&reply).into_owned(),
            });
        }
        decode_hex(&reply)
    }

    /// Writes one register (`P`), `value` in the target's byte order.
    pub fn write_register(&mut self, number: u32, value: &[u8]) -> Result<(), GdbError> {
        self.require_halted("write register (P)")?;
        let mut request = format!("P{number:x}=").into_bytes();
        push_hex(value, &mut request);
        let reply = self.connection.request(&request, "write register (P)")?;
        expect_ok(&reply, "write register (P)", &String::from_utf8_lossy(&request))
    }

    /// The number of the register called `name` in the target description.
    pub fn register_number(&self, name: &str) -> Result<u32, GdbError> {
        self.description.as_ref().and_then(|description| description.register_number(name)).ok_or_else(|| {
            GdbError::Malformed {
                what: "target description".to_string(),
                reason: format!("it names no register {name:?}"),
            }
        })
    }

    /// Reads a 32-bit little-endian register by name (`pc`, `sp`).
    pub fn read_register_u32(&mut self, name: &str) -> Result<u32, GdbError> {
        let number = self.register_number(name)?;
        let bytes = self.read_register(number)?;
        let bytes: [u8; 4] =
            bytes.get(..4).and_then(|slice| slice.try_into().ok()).ok_or_else(|| GdbError::Malformed {
                what: format!("register {name}"),
                reason: format!("{} bytes, expected 4", bytes.len()),
            })?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// Writes a 32-bit little-endian register by name.
    pub fn write_register_u32(&mut self, name: &str, value: u32) -> Result<(), GdbError> {
        let number = self.register_number(name)?;
        self.write_register(number, &value.to_le_bytes())
    }

    /// Sets a breakpoint or watchpoint (`Z`). `kind` is the breakpoint size (2 for Thumb) or
    /// the watched length.
    pub fn insert_breakpoint(
        &mut self,
        breakpoint: BreakpointKind,
        address: u64,
        kind: u32,
    ) -> Result<(), GdbError> {
        self.require_halted("insert breakpoint (Z)")?;
        let request = format!("Z{},{address:x},{kind:x}", breakpoint.digit());
        let reply = self.connection.request(request.as_bytes(), "insert breakpoint (Z)")?;
        expect_ok(&reply, "insert breakpoint (Z)", &request)
    }

    /// Removes a breakpoint or watchpoint (`z`).
    pub fn remove_breakpoint(
        &mut self,
        breakpoint: BreakpointKind,
        address: u64,
        kind: u32,
    ) -> Result<(), GdbError> {
        self.require_halted("remove breakpoint (z)")?;
        let request = format!("z{},{address:x},{kind:x}", breakpoint.digit());
        let reply = self.connection.request(request.as_bytes(), "remove breakpoint (z)")?;
        expect_ok(&reply, "remove breakpoint (z)", &request)
    }

    /// Runs a monitor command (`qRcmd`) and returns its text output.
    pub fn monitor(&mut self, command: &str) -> Result<String, GdbError> {
        let operation = format!("monitor {command}");
        self.require_halted(&operation)?;
        let mut request = b"qRcmd,".to_vec();
        push_hex(command.as_bytes(), &mut request);
        self.connection.send_packet(&request, &operation)?;
        let mut output = Vec::new();
        loop {
            let reply = self.connection.receive_packet(&operation)?;
            match reply.as_slice() {
                b"OK" => break,
                b"" => return Err(GdbError::Unsupported { operation, request: "qRcmd".to_string() }),
                _ if is_error_reply(&reply) => {
                    return Err(GdbError::ServerError {
                        operation,
                        code: String::from_utf8_lossy(&reply).into_owned(),
                    });
                }
                [b'O', hex @ ..] => output.extend_from_slice(&decode_hex(hex)?),
                // Some servers answer with the output as bare hex and no OK.
                hex => {
                    output.extend_from_slice(&decode_hex(hex)?);
                    break;
                }
            }
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// Resets the chip and leaves it halted: the configured monitor command first, then the
    /// other servers' spellings ([`RESET_MONITOR_COMMANDS`]) when the server does not know it
    /// (servers answer unknown monitor commands with text, not an error). The command that
    /// worked is kept for the next reset.
    pub fn reset_halt(&mut self) -> Result<String, GdbError> {
        let configured = self.options.reset_monitor_command.clone();
        let mut candidates = vec![configured.clone()];
        candidates.extend(
            RESET_MONITOR_COMMANDS
                .iter()
                .filter(|command| **command != configured)
                .map(|command| command.to_string()),
        );
        let mut refusals = Vec::new();
        for command in candidates {
            let output = match self.monitor(&command) {
                Ok(output) if !monitor_output_refuses(&output) => output,
                Ok(output) => {
                    refusals.push(format!("{command:?}: {}", output.trim()));
                    continue;
                }
                Err(GdbError::ServerError { code, .. }) => {
                    refusals.push(format!("{command:?}: error {code}"));
                    continue;
                }
                Err(other) => return Err(other),
            };
            self.options.reset_monitor_command = command;
            // Some servers report a fresh stop after a reset; asking keeps the state truthful.
            let stop = self.request_stop_reason()?;
            self.run_state = RunState::Halted(stop);
            return Ok(output);
        }
        Err(GdbError::UnexpectedReply {
            operation: "reset".to_string(),
            expected: "a monitor command that resets the chip".to_string(),
            found: refusals.join("; "),
        })
    }

    /// Lets the target run (`c`). Returns once the server took the request; the stop reply
    /// comes later ([`GdbClient::wait_for_stop`], [`GdbClient::interrupt`]).
    pub fn continue_execution(&mut self) -> Result<(), GdbError> {
        self.require_halted("continue (c)")?;
        self.connection.send_packet(b"c", "continue (c)")?;
        self.run_state = RunState::Running;
        Ok(())
    }

    /// Waits up to `wait` for the running target to stop; `None` when it still runs.
    pub fn wait_for_stop(&mut self, wait: Duration) -> Result<Option<StopReply>, GdbError> {
        match &self.run_state {
            RunState::Halted(stop) => return Ok(Some(stop.clone())),
            RunState::Gone(stop) => return Err(GdbError::TargetGone { reason: stop.raw.clone() }),
            RunState::Running => {}
        }
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let Some(packet) = self.connection.poll_packet(remaining, "wait for stop")? else {
                return Ok(None);
            };
            if let Some(stop) = self.accept_stop_packet(&packet)? {
                return Ok(Some(stop));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Handles a packet that arrived while the target ran: console output or a stop reply.
    fn accept_stop_packet(&mut self, packet: &[u8]) -> Result<Option<StopReply>, GdbError> {
        if let [b'O', hex @ ..] = packet
            && !hex.is_empty()
        {
            self.console_output.extend_from_slice(&decode_hex(hex)?);
            return Ok(None);
        }
        let stop = StopReply::parse(packet)
            .ok_or_else(|| GdbError::unexpected("wait for stop", "a stop reply", packet))?;
        self.run_state = match stop.reason {
            StopReason::Signal(_) => RunState::Halted(stop.clone()),
            StopReason::Exited(_) | StopReason::Terminated(_) => RunState::Gone(stop.clone()),
        };
        if let RunState::Gone(stop) = &self.run_state {
            return Err(GdbError::TargetGone { reason: stop.raw.clone() });
        }
        Ok(Some(stop))
    }

    /// Stops a running target (the interrupt byte) and returns its stop reply; a halted
    /// target's last stop reply is returned as is.
    pub fn interrupt(&mut self) -> Result<StopReply, GdbError> {
        match &self.run_state {
            RunState::Halted(stop) => return Ok(stop.clone()),
            RunState::Gone(stop) => return Err(GdbError::TargetGone { reason: stop.raw.clone() }),
            RunState::Running => {}
        }
        self.connection.send_interrupt()?;
        let timeout = self.connection.timeout();
        match self.wait_for_stop(timeout)? {
            Some(stop) => Ok(stop),
            None => Err(GdbError::Timeout {
                operation: "interrupt".to_string(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Detaches (`D;1` with multiprocess, else `D`): the server lets the target run on.
    pub fn detach(&mut self) -> Result<(), GdbError> {
        if matches!(self.run_state, RunState::Running) {
            self.interrupt()?;
        }
        let request: &[u8] = if self.multiprocess { b"D;1" } else { b"D" };
        let reply = self.connection.request(request, "detach (D)")?;
        expect_ok(&reply, "detach (D)", &String::from_utf8_lossy(request))?;
        self.run_state = RunState::Running;
        Ok(())
    }
}
