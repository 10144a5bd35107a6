//! `imprint probes`: what a line could run on — attached debug probes (probe-rs), GDB endpoints
//! given on the command line, and the simulator — with the `--probe` selector for each.
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

/// How long to wait for a GDB endpoint to accept a connection.
const GDB_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(clap::Args)]
#[command(after_help = "Examples:
  imprint probes
  imprint probes --json
  imprint probes --gdb 127.0.0.1:3333 --gdb localhost:2331

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

#[derive(Serialize)]
struct GdbRow {
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
    gdb_endpoints: Vec<GdbRow>,
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

fn check_gdb_endpoint(endpoint: &str) -> anyhow::Result<GdbRow> {
    let addresses: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .with_context(|| format!("--gdb {endpoint:?}: expected HOST:PORT, e.g. 127.0.0.1:3333"))?
        .collect();
    let mut status = format!("{endpoint} resolves to no address");
    let mut reachable = false;
    for address in &addresses {
        match TcpStream::connect_timeout(address, GDB_CONNECT_TIMEOUT) {
            Ok(_) => {
                reachable = true;
                status = "reachable".to_string();
                break;
            }
            Err(error) => status = format!("unreachable: {error}"),
        }
    }
    Ok(GdbRow { selector: format!("gdb:{endpoint}"), endpoint: endpoint.to_string(), reachable, status })
}

pub fn run(args: ProbesArgs) -> anyhow::Result<ExitCode> {
    let listing = list_probes();
    let serial_ports = if listing.probes.is_empty() { Vec::new() } else { list_serial_ports() };
    let gdb_endpoints = args
        .gdb_endpoints
        .iter()
        .map(|endpoint| endpoint.trim())
        .filter(|endpoint| !endpoint.is_empty())
        .map(check_gdb_endpoint)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = ProbesReport {
        probes: listing.probes.iter().map(|probe| probe_row(probe, &serial_ports)).collect(),
        gdb_endpoints,
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
    for endpoint in &report.gdb_endpoints {
        rows.push([
            "gdb".into(),
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
        "{} probe-rs probe{} attached; {} GDB endpoint{} given{}",
        report.probes.len(),
        if report.probes.len() == 1 { "" } else { "s" },
        report.gdb_endpoints.len(),
        if report.gdb_endpoints.len() == 1 { "" } else { "s" },
        if report.gdb_endpoints.is_empty() { " (--gdb HOST:PORT)" } else { "" },
    );
}
