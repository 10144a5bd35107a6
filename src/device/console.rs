//! A device's console on a serial port: a USB-UART on a real fixture, or the pseudo-terminal
//! QEMU connects the emulated UART0 to. Every backend with a console uses this one reader.
//!
//! Devices print whenever they like, and a UART drops bytes nobody reads, so a background
//! thread reads the port continuously and splits the stream into lines; the station takes the
//! complete lines whenever it wants ([`SerialConsole::take_lines`]) without ever blocking on
//! the port. Partial lines stay buffered until their newline arrives.
//!
//! **FCC over the console.** A device that runs the Izuma client's Factory Configurator Client
//! on its UART (an Mbed OS device on a probe slot with a console port) gets its FCC bundles on
//! this same port ([`SerialConsole::fcc_exchange`]): for the length of an FCC session the reader
//! thread stops and hands the port to the session, which skips console text around the
//! device's frames; when the session's last message is answered (or the exchange fails) the
//! port goes back to the reader.
//!
//! **Invariant:** the reader thread never holds the line buffer's lock while reading the port,
//! and it stops (and is joined) when the console is dropped or lends its port to an FCC session.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fcc::{FccBundle, FccConnection, FccError, FccResponse, FccSession, FccTimeouts};

/// How long one port read waits; bounds how long dropping the console takes.
const READ_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines kept before the oldest are dropped (a chatty device must not grow memory without end).
const LINE_CAPACITY: usize = 10_000;
/// A "line" longer than this is cut, so binary noise cannot grow the partial-line buffer.
const LINE_LENGTH_LIMIT_BYTES: usize = 64 * 1024;

/// Why a console could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The port could not be opened or configured.
    #[error("cannot open console port {port_name}: {reason}")]
    Open { port_name: String, reason: String },
    /// The reader thread could not be started.
    #[error("cannot start the reader thread for console {port_name}: {source}")]
    Thread {
        port_name: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Default)]
struct LineBuffer {
    complete: std::collections::VecDeque<String>,
    partial: Vec<u8>,
    dropped_lines: u64,
    /// Why the reader stopped, if it did (the port vanished, QEMU exited).
    stopped_because: Option<String>,
}

impl LineBuffer {
    fn push_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            match byte {
                b'\n' => self.finish_line(),
                _ => {
                    self.partial.push(*byte);
                    if self.partial.len() >= LINE_LENGTH_LIMIT_BYTES {
                        self.finish_line();
                    }
                }
            }
        }
    }

    fn finish_line(&mut self) {
        // Devices end lines with "\r\n" as often as with "\n".
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if self.complete.len() >= LINE_CAPACITY {
            self.complete.pop_front();
            self.dropped_lines += 1;
        }
        self.complete.push_back(line);
    }
}

/// A console port with its background reader.
pub struct SerialConsole {
    port_name: String,
    buffer: Arc<Mutex<LineBuffer>>,
    stop: Arc<AtomicBool>,
    /// The reader thread; it gives the port back when it stops.
    reader: Option<JoinHandle<Box<dyn serialport::SerialPort>>>,
    /// The FCC session that holds the port while it runs (the reader is stopped meanwhile).
    fcc_session: Option<FccSession<Box<dyn serialport::SerialPort>>>,
    /// How long the device's FCC may take to answer.
    fcc_timeouts: FccTimeouts,
    /// FCC sessions started on this console (names each session's `SID`).
    fcc_sessions_started: u64,
}

impl std::fmt::Debug for SerialConsole {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SerialConsole").field("port_name", &self.port_name).finish_non_exhaustive()
    }
}

impl SerialConsole {
    /// Opens `port_name` (`/dev/ttyUSB0`, `/dev/pts/3`, `COM4`) at `baud_rate` (8N1, no flow
    /// control) and starts reading.
    pub fn open(port_name: &str, baud_rate: u32) -> Result<SerialConsole, ConsoleError> {
        let port =
            serialport::new(port_name, baud_rate).timeout(READ_POLL_INTERVAL).open().map_err(|error| {
                ConsoleError::Open { port_name: port_name.to_string(), reason: error.to_string() }
            })?;
        SerialConsole::from_port(port, port_name)
    }

    /// Starts reading an already open port (a pty pair end in tests).
    pub fn from_port(
        mut port: Box<dyn serialport::SerialPort>,
        port_name: &str,
    ) -> Result<SerialConsole, ConsoleError> {
        port.set_timeout(READ_POLL_INTERVAL).map_err(|error| ConsoleError::Open {
            port_name: port_name.to_string(),
            reason: error.to_string(),
        })?;
        let mut console = SerialConsole {
            port_name: port_name.to_string(),
            buffer: Arc::new(Mutex::new(LineBuffer::default())),
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
            fcc_session: None,
            fcc_timeouts: FccTimeouts::default(),
            fcc_sessions_started: 0,
        };
        console.start_reader(port)?;
        Ok(console)
    }

    /// How long the device's FCC may take to answer one bundle (the profile's
    /// `fcc.response_timeout_ms`).
    pub fn with_fcc_timeouts(mut self, timeouts: FccTimeouts) -> SerialConsole {
        self.fcc_timeouts = timeouts;
        self
    }

    fn start_reader(&mut self, port: Box<dyn serialport::SerialPort>) -> Result<(), ConsoleError> {
        self.stop.store(false, Ordering::SeqCst);
        let buffer = self.buffer.clone();
        let stop = self.stop.clone();
        let reader = std::thread::Builder::new()
            .name(format!("console {}", self.port_name))
            .spawn(move || read_until_stopped(port, &buffer, &stop))
            .map_err(|source| ConsoleError::Thread { port_name: self.port_name.clone(), source })?;
        self.reader = Some(reader);
        Ok(())
    }

    /// Stops the reader and takes the port back from it; `None` when the reader is not running
    /// or ended with a panic.
    fn stop_reader(&mut self) -> Option<Box<dyn serialport::SerialPort>> {
        self.stop.store(true, Ordering::SeqCst);
        // The reader wakes at least every READ_POLL_INTERVAL.
        self.reader.take().and_then(|reader| reader.join().ok())
    }

    /// Sends one bundle to the device's Factory Configurator Client on this port and returns
    /// its answer. The first message of a session takes the port from the line reader; the
    /// session's last message (no `KpAlvSess`), or a failed exchange, gives it back.
    pub fn fcc_exchange(&mut self, bundle: &FccBundle) -> Result<FccResponse, FccError> {
        let mut session = match self.fcc_session.take() {
            Some(session) => session,
            None => {
                let port = self.stop_reader().ok_or_else(|| FccError::Io {
                    endpoint: self.port_name.clone(),
                    stage: "taking the console port for an FCC session",
                    source: std::io::Error::other(
                        self.stopped_because()
                            .unwrap_or_else(|| "the console reader is not running".to_string()),
                    ),
                })?;
                self.fcc_sessions_started += 1;
                let session_id = format!("imprint-console-{}", self.fcc_sessions_started);
                let connection = FccConnection::new(port, self.port_name.clone(), self.fcc_timeouts);
                FccSession::new(connection, session_id)
            }
        };
        let answer = session.send(bundle);
        if answer.is_ok() && bundle.is_keep_alive() {
            self.fcc_session = Some(session);
        } else {
            let mut port = session.into_connection().into_stream();
            // The reader polls; a port left with the FCC's long timeout would slow its stop.
            if let Err(error) = port.set_timeout(READ_POLL_INTERVAL) {
                tracing::warn!(port = %self.port_name, %error, "console port timeout not restored");
            }
            if let Err(error) = self.start_reader(port) {
                tracing::warn!(port = %self.port_name, %error, "console reader not restarted after FCC");
            }
        }
        answer
    }

    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// The complete lines received since the last call (line endings removed), oldest first.
    pub fn take_lines(&self) -> Vec<String> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buffer.complete.drain(..).collect()
    }

    /// Lines dropped because nobody took them before the buffer filled.
    pub fn dropped_lines(&self) -> u64 {
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).dropped_lines
    }

    /// Why the reader stopped (the port closed or failed), if it has.
    pub fn stopped_because(&self) -> Option<String> {
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).stopped_because.clone()
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        // A panic in the reader has nothing left to clean up.
        let _ = self.stop_reader();
    }
}

/// Reads lines until asked to stop (or the port fails); gives the port back.
fn read_until_stopped(
    mut port: Box<dyn serialport::SerialPort>,
    buffer: &Mutex<LineBuffer>,
    stop: &AtomicBool,
) -> Box<dyn serialport::SerialPort> {
    let mut chunk = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match port.read(&mut chunk) {
            Ok(0) => std::thread::sleep(READ_POLL_INTERVAL),
            Ok(length) => {
                buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_bytes(&chunk[..length]);
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).stopped_because =
                    Some(error.to_string());
                return port;
            }
        }
    }
    port
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::*;

    /// `TTYPort::pair` is not thread-safe: pty tests take this lock.
    static PTY_PAIR_LOCK: Mutex<()> = Mutex::new(());

    fn lines_within(console: &SerialConsole, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while lines.len() < count && Instant::now() < deadline {
            lines.extend(console.take_lines());
            std::thread::sleep(Duration::from_millis(5));
        }
        lines
    }

    /// Writes `chunks` to one end of a pty pair and checks the lines the console sees.
    fn check(chunks: &[&[u8]], expected: &[&str]) {
        let _guard = PTY_PAIR_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut device_side, station_side) = serialport::TTYPort::pair().unwrap();
        let console = SerialConsole::from_port(Box::new(station_side), "pty-pair").unwrap();
        for chunk in chunks {
            device_side.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let lines = lines_within(&console, expected.len(), Duration::from_secs(5));
        assert_eq!(lines, expected, "chunks {chunks:?}");
        // Nothing more arrives: a trailing partial line stays buffered.
        std::thread::sleep(Duration::from_millis(50));
        assert!(console.take_lines().is_empty());
    }

    #[test]
    fn lines_from_a_pty() {
        check(&[b"hello\n"], &["hello"]);
        check(
            &[b"IMPRINT-REP", b"ORT nonce=1\r\n", b"boot\nsecond line\npart"],
            &["IMPRINT-REPORT nonce=1", "boot", "second line"],
        );
        check(&[b"\n\n"], &["", ""]);
        check(&[b"caf\xc3\xa9 \xff\n"], &["caf\u{e9} \u{fffd}"]);
    }

    #[test]
    fn long_lines_are_cut_and_capacity_is_bounded() {
        let mut buffer = LineBuffer::default();
        buffer.push_bytes(&vec![b'x'; LINE_LENGTH_LIMIT_BYTES + 10]);
        buffer.push_bytes(b"\n");
        assert_eq!(buffer.complete.len(), 2);
        assert_eq!(buffer.complete[0].len(), LINE_LENGTH_LIMIT_BYTES);
        assert_eq!(buffer.complete[1], "x".repeat(10));
        for index in 0..LINE_CAPACITY + 5 {
            buffer.push_bytes(format!("{index}\n").as_bytes());
        }
        assert_eq!(buffer.complete.len(), LINE_CAPACITY);
        assert_eq!(buffer.dropped_lines, 7);
    }

    /// The device side of an FCC exchange on a pty: reads one request frame, answers with
    /// console text ahead of a response frame (ReturnStatus 0), then prints a console line.
    fn answer_one_fcc_request(mut device_side: serialport::TTYPort) {
        use sha2::Digest;
        serialport::SerialPort::set_timeout(&mut device_side, Duration::from_secs(10)).unwrap();
        let mut header = [0u8; 12];
        device_side.read_exact(&mut header).unwrap();
        assert_eq!(&header[..8], b"mbedprov");
        let length = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; length + 32];
        device_side.read_exact(&mut rest).unwrap();
        let response = ciborium::Value::Map(vec![
            (ciborium::Value::Text("SchemeVersion".into()), ciborium::Value::Text("0.0.1".into())),
            (ciborium::Value::Text("ReturnStatus".into()), ciborium::Value::Integer(0.into())),
        ]);
        let mut cbor = Vec::new();
        ciborium::into_writer(&response, &mut cbor).unwrap();
        let mut frame = b"boot text before the frame\r\nmbedprov".to_vec();
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&(cbor.len() as u32).to_le_bytes());
        frame.extend_from_slice(&cbor);
        frame.extend_from_slice(&sha2::Sha256::digest(&cbor));
        device_side.write_all(&frame).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        device_side.write_all(b"after the session\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }

    /// The console lends its port to an FCC session (console text ahead of the frame skipped)
    /// and reads lines again once the session's last message is answered.
    #[test]
    fn an_fcc_session_borrows_the_port_and_gives_it_back() {
        let _guard = PTY_PAIR_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut device_side, station_side) = serialport::TTYPort::pair().unwrap();
        let mut console = SerialConsole::from_port(Box::new(station_side), "pty-pair")
            .unwrap()
            .with_fcc_timeouts(FccTimeouts { response: Duration::from_secs(10), ..FccTimeouts::default() });
        device_side.write_all(b"before the session\n").unwrap();
        assert_eq!(lines_within(&console, 1, Duration::from_secs(5)), ["before the session"]);
        let device = std::thread::spawn(move || answer_one_fcc_request(device_side));
        let answer = console.fcc_exchange(&FccBundle::new().verify(true)).unwrap();
        assert!(answer.return_status.is_success(), "{answer:?}");
        assert_eq!(lines_within(&console, 1, Duration::from_secs(5)), ["after the session"]);
        device.join().unwrap();
    }

    #[test]
    fn open_names_the_port_when_it_does_not_exist() {
        let error = SerialConsole::open("/dev/imprint-no-such-port", 115_200).unwrap_err();
        assert!(error.to_string().contains("/dev/imprint-no-such-port"), "{error}");
    }
}
