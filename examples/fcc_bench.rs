//! FCC benchmark: one full bundle exchange with the real device (the upstream
//! factory-configurator-client-example application on loopback, built from IMPRINT_FCC_SOURCE)
//! against the time the same bytes alone need on a 115200-baud UART (10 bits per byte: 8N1),
//! bundle exchanges per hour with 1 and 8 slots at once, and **units per hour through the
//! station**: whole lines of `fcc:` slots (profiles/fcc-linux.toml: allocate-identity,
//! issue-identity with a station-made key, fcc-inject with `Verify`, the run committed to a
//! SQLite ledger) with 1 and 8 slots, as `imprint run --probe fcc:...` runs them.
//!
//!     IMPRINT_FCC_SOURCE=/path/to/sources cargo run --release --example fcc_bench [ROUNDS [LINE_ROUNDS]]
//!
//! Results and the command are recorded in docs/performance.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The test device helpers of tests/common/fcc.rs (they use the two paths below).
#[path = "../tests/common/fcc.rs"]
#[allow(dead_code)]
mod fcc_device;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory (examples live in <target>/<profile>/examples/).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target"))
}

use fcc_device::{DevelopmentCredentials, FccDevice, Unit, full_bundle, start_fcc_devices};
use imprint::fcc::{FccSession, FccTimeouts, connect_tcp};
use imprint::station::session::SlotChoice;
use imprint::station::{CancelToken, EventSink, LinePlan, LineSession, StationEvent};

/// The line's events are not needed here: only its summary.
struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: StationEvent) {}
}

/// Runs `rounds` lines of `slots` fresh devices each through the station (the line opened, i.e.
/// the devices connected, before the clock starts: a real device's boot is not the station's);
/// returns the units that passed and the time the lines ran.
fn station_lines(slots: usize, rounds: usize, ledger: &Path) -> (u64, Duration) {
    let mut passed = 0;
    let mut running = Duration::ZERO;
    for _ in 0..rounds {
        let devices = start_fcc_devices(slots);
        let plan = LinePlan {
            profile_path: repo_root().join("profiles/fcc-linux.toml"),
            slots: SlotChoice {
                probes: devices.iter().map(|device| format!("fcc:{}", device.endpoint())).collect(),
                slot_count: None,
            },
            station_name: "fcc-bench".to_string(),
            operator: "bench".to_string(),
            ledger_path: ledger.to_path_buf(),
            create_ledger: true,
            unit_limit: Some(slots as u64),
            ..LinePlan::default()
        };
        let session = LineSession::open(plan).expect("open the line");
        let started = Instant::now();
        let report = session.run(std::sync::Arc::new(NoEvents), CancelToken::default());
        running += started.elapsed();
        assert_eq!(report.summary.passed(), slots as u64, "every unit passes: {:?}", report.summary);
        passed += report.summary.passed();
    }
    (passed, running)
}

const UART_BAUD: f64 = 115_200.0;
const UART_BITS_PER_BYTE: f64 = 10.0;

/// One exchange: the time from connecting to the decoded response, and the frame bytes both ways.
struct Exchange {
    elapsed: Duration,
    frame_bytes: usize,
}

fn exchange(device: &FccDevice, credentials: &DevelopmentCredentials, index: usize) -> Exchange {
    let unit = Unit::new(index);
    let bundle = full_bundle(credentials, &unit);
    let started = Instant::now();
    let connection = connect_tcp(&device.endpoint(), FccTimeouts::default()).expect("connect");
    let mut session = FccSession::new(connection, format!("bench-{index}"));
    let response = session.send(&bundle).expect("exchange");
    let elapsed = started.elapsed();
    assert!(response.return_status.is_success(), "device answered {}", response.return_status);
    let (bytes_written, bytes_read) = session.connection().byte_counts();
    Exchange { elapsed, frame_bytes: (bytes_written + bytes_read) as usize }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(20);
    let line_rounds: usize = std::env::args().nth(2).and_then(|text| text.parse().ok()).unwrap_or(5);
    let credentials = DevelopmentCredentials::new();

    let mut elapsed = Vec::with_capacity(rounds);
    let mut frame_bytes = 0;
    for index in 0..rounds {
        let device = FccDevice::start();
        let result = exchange(&device, &credentials, index);
        elapsed.push(result.elapsed);
        frame_bytes = result.frame_bytes;
    }
    let loopback = median(elapsed.clone());
    let uart_seconds = frame_bytes as f64 * UART_BITS_PER_BYTE / UART_BAUD;
    println!("full bundle exchange, {rounds} rounds (fresh device each)");
    println!("  frame bytes (request + response): {frame_bytes}");
    println!(
        "  loopback TCP: median {:.1} ms (min {:.1} ms, max {:.1} ms)",
        loopback.as_secs_f64() * 1e3,
        elapsed.iter().min().expect("rounds").as_secs_f64() * 1e3,
        elapsed.iter().max().expect("rounds").as_secs_f64() * 1e3
    );
    println!("  115200-baud UART, bytes alone: {:.1} ms", uart_seconds * 1e3);
    println!("  ratio UART bytes / loopback exchange: {:.2}", uart_seconds / loopback.as_secs_f64());

    for slots in [1usize, 8] {
        let devices = start_fcc_devices(slots);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for (slot, device) in devices.iter().enumerate() {
                let credentials = &credentials;
                scope.spawn(move || exchange(device, credentials, 1000 + slot));
            }
        });
        let wall = started.elapsed();
        println!(
            "  {slots} slot(s) at once: {:.1} ms wall, {:.0} bundle exchanges per hour (device start-up excluded)",
            wall.as_secs_f64() * 1e3,
            slots as f64 * 3600.0 / wall.as_secs_f64()
        );
    }

    let directory = tempfile::tempdir().expect("temp dir");
    println!("units through the station (profiles/fcc-linux.toml, {line_rounds} lines each)");
    for slots in [1usize, 8] {
        let ledger = directory.path().join(format!("bench-{slots}.db"));
        let (passed, running) = station_lines(slots, line_rounds, &ledger);
        println!(
            "  {slots} slot(s): {passed} units PASS in {:.1} ms of line time ({:.1} ms per line), {:.0} units per hour",
            running.as_secs_f64() * 1e3,
            running.as_secs_f64() * 1e3 / line_rounds as f64,
            passed as f64 * 3600.0 / running.as_secs_f64()
        );
    }
}
