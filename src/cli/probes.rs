//! `imprint probes`: what a line could run on — attached debug probes (probe-rs), GDB endpoints
//! and FCC devices given on the command line, and the simulator — with the `--probe` selector
//! for each. An endpoint is checked by opening a TCP connection and closing it unused: the FCC
//! (the upstream example application) keeps listening after such a connection, no session
//! starts (docs/fcc.md).
//!
//! Listing never fails for lack of probes: an empty list is an answer. When the host cannot see
//! USB at all, or a probe is there but not accessible, a note on stderr says so.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use imprint::device::probe_rs::console_port::{SerialPortListing, choose_console_port, list_serial_ports};
use imprint::device::probe_rs::{ConsolePortSelector, ProbeListing, list_probes};
use serde::Serialize;

/// How long to wait for a GDB or FCC endpoint to accept a connection.
const ENDPOINT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(clap::Args)]
#[command(after_help = "Examples:
  imprint probes
  imprint probes --json
  imprint probes --gdb 127.0.0.1:3333 --gdb localhost:2331
  imprint probes --probe fcc:10.0.0.7:7000 --probe fcc:10.0.0.8:7000

Use a listed selector with `imprint run --probe SELECTOR`, e.g.
  imprint run --profile profiles/nucleo-f429zi.toml --probe probe-rs:0483:374b:066DFF485550755187121931,console=probe")]
pub struct ProbesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// A GDB remote endpoint (HOST:PORT) to check and list, e.g. OpenOCD, J-Link GDB Server,
    /// pyOCD or QEMU; repeatable (or comma-separated in IMPRINT_GDB_ENDPOINTS).
    #[arg(long = "gdb", value_name = "HOST:PORT", env = "IMPRINT_GDB_ENDPOINTS", value_delimiter = ',')]
    gdb_endpoints: Vec<String>,
    /// An FCC device (a Linux device that runs the Izuma client's Factory Configurator Client)
    /// at HOST:PORT to check and list; repeatable (or comma-separated in IMPRINT_FCC_ENDPOINTS).
    #[arg(long = "fcc", value_name = "HOST:PORT", env = "IMPRINT_FCC_ENDPOINTS", value_delimiter = ',')]
    fcc_endpoints: Vec<String>,
    /// A selector as `imprint run --probe` takes it, for endpoints: `fcc:HOST:PORT` or
    /// `gdb:HOST:PORT`; repeatable.
    #[arg(long = "probe", value_name = "SELECTOR")]
    selectors: Vec<String>,
}

#[derive(Serialize)]
struct ProbeRow {
    selector: String,
    identifier: String,
    vid_pid: String,
    serial_number: Option<String>,
    interface: Option<u8>,
    driver: String,
    accessible: bool,
    /// The probe's own virtual COM port (`console=probe`), when it has one.
    console_port: Option<String>,
}

/// A GDB or FCC endpoint and whether it accepts a connection.
#[derive(Serialize)]
struct EndpointRow {
    selector: String,
    endpoint: String,
    reachable: bool,
    status: String,
}

#[derive(Serialize)]
struct SimulatorRow {
    selector: &'static str,
    available: bool,
}

#[derive(Serialize)]
struct ProbesReport {
    probes: Vec<ProbeRow>,
    gdb_endpoints: Vec<EndpointRow>,
    fcc_endpoints: Vec<EndpointRow>,
    simulator: SimulatorRow,
    notes: Vec<String>,
}

fn probe_row(listing: &ProbeListing, serial_ports: &[SerialPortListing]) -> ProbeRow {
    ProbeRow {
        selector: format!("probe-rs:{}", listing.exact_selector()),
        identifier: listing.identifier.clone(),
        vid_pid: listing.vid_pid(),
        serial_number: listing.serial_number.clone(),
        interface: listing.interface,
        driver: listing.driver.clone(),
        accessible: listing.accessible,
        console_port: choose_console_port(&ConsolePortSelector::ProbeVirtualComPort, listing, serial_ports)
            .ok(),
    }
}

/// Connects to `endpoint` (`kind` is `gdb` or `fcc`) and closes the connection unused.
fn check_endpoint(kind: &str, endpoint: &str) -> anyhow::Result<EndpointRow> {
    let addresses: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .with_context(|| format!("{kind}:{endpoint}: expected HOST:PORT, e.g. 127.0.0.1:3333"))?
        .collect();
    let mut status = format!("{endpoint} resolves to no address");
    let mut reachable = false;
    for address in &addresses {
        match TcpStream::connect_timeout(address, ENDPOINT_CONNECT_TIMEOUT) {
            Ok(_) => {
                reachable = true;
                status = "reachable".to_string();
                break;
            }
            Err(error) => status = format!("unreachable: {error}"),
        }
    }
    Ok(EndpointRow {
        selector: format!("{kind}:{endpoint}"),
        endpoint: endpoint.to_string(),
        reachable,
        status,
    })
}

/// The endpoints to check, `(kind, HOST:PORT)`, from `--gdb`, `--fcc` and `--probe` in order.
fn requested_endpoints(args: &ProbesArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut endpoints: Vec<(&'static str, String)> = Vec::new();
    endpoints.extend(args.gdb_endpoints.iter().map(|endpoint| ("gdb", endpoint.trim().to_string())));
    endpoints.extend(args.fcc_endpoints.iter().map(|endpoint| ("fcc", endpoint.trim().to_string())));
    for selector in &args.selectors {
        let endpoint = if let Some(endpoint) = selector.strip_prefix("fcc:") {
            ("fcc", endpoint.to_string())
        } else if let Some(endpoint) = selector.strip_prefix("gdb:") {
            ("gdb", endpoint.to_string())
        } else {
            anyhow::bail!(
                "--probe {selector:?}: expected an endpoint selector, fcc:HOST:PORT or gdb:HOST:PORT (attached probes and the simulator are always listed)"
            );
        };
        endpoints.push(endpoint);
    }
    endpoints.retain(|(_, endpoint)| !endpoint.is_empty());
    Ok(endpoints)
}

pub fn run(args: ProbesArgs) -> anyhow::Result<ExitCode> {
    let listing = list_probes();
    let serial_ports = if listing.probes.is_empty() { Vec::new() } else { list_serial_ports() };
    let mut gdb_endpoints = Vec::new();
    let mut fcc_endpoints = Vec::new();
    for (kind, endpoint) in requested_endpoints(&args)? {
        let row = check_endpoint(kind, &endpoint)?;
        if kind == "fcc" { fcc_endpoints.push(row) } else { gdb_endpoints.push(row) }
    }
    let report = ProbesReport {
        probes: listing.probes.iter().map(|probe| probe_row(probe, &serial_ports)).collect(),
        gdb_endpoints,
        fcc_endpoints,
        simulator: SimulatorRow { selector: "sim", available: true },
        notes: listing.notes.clone(),
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &ProbesReport) {
    let mut rows: Vec<[String; 7]> = vec![[
        "KIND".into(),
        "SELECTOR".into(),
        "IDENTIFIER".into(),
        "VID:PID".into(),
        "SERIAL".into(),
        "CONSOLE".into(),
        "STATUS".into(),
    ]];
    for probe in &report.probes {
        rows.push([
            "probe-rs".into(),
            probe.selector.clone(),
            format!("{} ({})", probe.identifier, probe.driver),
            probe.vid_pid.clone(),
            probe.serial_number.clone().unwrap_or_else(|| "-".into()),
            probe.console_port.clone().unwrap_or_else(|| "-".into()),
            if probe.accessible { "ready".into() } else { "no access (udev rules?)".into() },
        ]);
    }
    let endpoints = report.gdb_endpoints.iter().map(|row| ("gdb", row));
    for (kind, endpoint) in endpoints.chain(report.fcc_endpoints.iter().map(|row| ("fcc", row))) {
        rows.push([
            kind.into(),
            endpoint.selector.clone(),
            endpoint.endpoint.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            endpoint.status.clone(),
        ]);
    }
    rows.push([
        "sim".into(),
        report.simulator.selector.into(),
        "simulated device".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "ready".into(),
    ]);
    let widths: Vec<usize> =
        (0..7).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!();
    println!(
        "{} probe-rs probe{} attached; {} GDB endpoint{} given{}; {} FCC endpoint{} given{}",
        report.probes.len(),
        if report.probes.len() == 1 { "" } else { "s" },
        report.gdb_endpoints.len(),
        if report.gdb_endpoints.len() == 1 { "" } else { "s" },
        if report.gdb_endpoints.is_empty() { " (--gdb HOST:PORT)" } else { "" },
        report.fcc_endpoints.len(),
        if report.fcc_endpoints.len() == 1 { "" } else { "s" },
        if report.fcc_endpoints.is_empty() { " (--probe fcc:HOST:PORT)" } else { "" },
    );
}
