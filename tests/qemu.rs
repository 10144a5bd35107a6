//! The QEMU harness and the GDB backend against a real QEMU (`qemu-system-arm -M mps2-an385`,
//! installed by scripts/test): units start with a programmed unique ID, run code loaded through
//! the stub, print on the console pty, stop at breakpoints, keep NOR rules, and several run at
//! once. `tests/data/qemu/hello.bin` (made with GNU binutils, see its README) is the code.

mod common;
#[path = "support/reference_board.rs"]
mod reference_board;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use imprint::device::gdb::{BreakpointKind, GdbTarget, RunState, StopReason};
use imprint::device::qemu::{QemuFixture, QemuOptions, qemu_version};
use imprint::device::{Fixture, Target, TargetError};

const HELLO_LINE: &str = "HELLO-FROM-STUB";
/// `done:` in hello.S, where the program spins after printing.
const HELLO_DONE_ADDRESS: u64 = 0x22;

fn hello_program() -> Vec<u8> {
    let mut bytes = std::fs::read(common::repo_root().join("tests/data/qemu/hello.bin")).unwrap();
    bytes.resize(bytes.len().next_multiple_of(4), 0xFF);
    bytes
}

fn fixture(name: &str) -> QemuFixture {
    QemuFixture::new(name, reference_board::target_config(), QemuOptions::default()).unwrap_or_else(|error| {
        panic!("the QEMU harness needs qemu-system-arm (scripts/test installs it): {error}")
    })
}

fn unit(name: &str) -> GdbTarget {
    fixture(name).start_unit().unwrap()
}

fn wait_for_line(target: &mut GdbTarget, wanted: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen.extend(target.take_console_lines().unwrap());
        if seen.iter().any(|line| line == wanted) {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no console line {wanted:?} within {timeout:?}; saw {seen:?}");
}

fn load_hello(target: &mut GdbTarget) {
    let program = hello_program();
    target.erase_flash(0, 0x1000, &mut |_| {}).unwrap();
    target.program_flash(0, &program, &mut |_| {}).unwrap();
}

#[test]
fn qemu_is_installed() {
    let version = qemu_version(Path::new("qemu-system-arm")).unwrap();
    assert!(version.contains("QEMU emulator version"), "{version}");
}

#[test]
fn units_get_distinct_programmed_unique_ids_and_run_side_by_side() {
    // Three fixtures at once, as three slots of a line would run them.
    let handles: Vec<_> = (0..3)
        .map(|slot| {
            std::thread::spawn(move || {
                let mut fixture = fixture(&format!("qemu-{slot}"));
                let mut target = fixture.next_unit(&|| true).unwrap().unwrap();
                let chip = target.connect().unwrap();
                assert_eq!(chip.chip_name, "mps2-an385");
                assert!(!target.is_locked().unwrap());
                let unique_id = target.read_unique_id().unwrap();
                assert_eq!(unique_id.as_bytes().len(), 12);
                (unique_id.to_hex(), target.probe_identifier())
            })
        })
        .collect();
    let results: Vec<(String, String)> = handles.into_iter().map(|handle| handle.join().unwrap()).collect();
    let unique_ids: HashSet<&String> = results.iter().map(|(unique_id, _)| unique_id).collect();
    assert_eq!(unique_ids.len(), 3, "{results:?}");
    assert!(results.iter().all(|(_, probe)| probe.contains("qemu pid")), "{results:?}");
}

#[test]
fn seeded_unique_ids_repeat() {
    let read = |seed| {
        let mut fixture = fixture("qemu-seeded").with_uid_seed(seed);
        fixture.start_unit().unwrap().read_unique_id().unwrap()
    };
    assert_eq!(read(7), read(7));
    assert_ne!(read(7), read(8));
}

#[test]
fn the_process_is_killed_with_its_unit() {
    let target = unit("qemu-kill");
    let probe = target.probe_identifier();
    let process_id: u32 =
        probe.split("qemu pid ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let process_path = format!("/proc/{process_id}");
    assert!(Path::new(&process_path).exists());
    drop(target);
    // Killed and reaped on drop: the process entry is gone.
    assert!(!Path::new(&process_path).exists(), "qemu pid {process_id} still exists");
}

#[test]
fn code_loaded_through_the_stub_prints_on_the_console() {
    let mut target = unit("qemu-hello");
    target.connect().unwrap();
    load_hello(&mut target);
    // Nothing runs until reset: QEMU was started halted and with nothing loaded.
    assert!(target.take_console_lines().unwrap().is_empty());
    target.reset_and_run().unwrap();
    wait_for_line(&mut target, HELLO_LINE, Duration::from_secs(5));
    // A debug read of a running core interrupts it, reads, and lets it run on.
    let mut vectors = [0u8; 8];
    target.read_memory(0, &mut vectors).unwrap();
    assert_eq!(&vectors, &hello_program()[..8]);
    assert_eq!(target.client().unwrap().run_state(), &RunState::Running);
    // Reset again: the program prints again; RAM survives system_reset (the mailbox relies on it).
    target.write_ram(0x2000_0100, b"kept").unwrap();
    target.reset_and_run().unwrap();
    wait_for_line(&mut target, HELLO_LINE, Duration::from_secs(5));
    let mut kept = [0u8; 4];
    target.read_memory(0x2000_0100, &mut kept).unwrap();
    assert_eq!(&kept, b"kept");
}

#[test]
fn breakpoints_registers_and_interrupts() {
    let mut target = unit("qemu-break");
    load_hello(&mut target);
    let client = target.client().unwrap();
    client.reset_halt().unwrap();
    // After reset the core sits at the reset vector, as the vector table says.
    assert_eq!(client.read_register_u32("pc").unwrap(), 0x08);
    assert_eq!(client.read_register_u32("sp").unwrap(), 0x2000_1000);
    client.insert_breakpoint(BreakpointKind::Hardware, HELLO_DONE_ADDRESS, 2).unwrap();
    client.continue_execution().unwrap();
    let stop = client.wait_for_stop(Duration::from_secs(5)).unwrap().expect("stops at the breakpoint");
    assert_eq!(stop.reason, StopReason::Signal(5), "{stop:?}");
    assert_eq!(client.read_register_u32("pc").unwrap() as u64, HELLO_DONE_ADDRESS);
    client.remove_breakpoint(BreakpointKind::Hardware, HELLO_DONE_ADDRESS, 2).unwrap();
    // r1 was the string's terminating zero when the loop ended.
    assert_eq!(client.read_register_u32("r1").unwrap(), 0);
    client.write_register_u32("r7", 0x1234_5678).unwrap();
    assert_eq!(client.read_register_u32("r7").unwrap(), 0x1234_5678);
    assert_eq!(client.read_registers().unwrap()[28..32], 0x1234_5678u32.to_le_bytes());
    // Spinning at `done`: an interrupt stops it with SIGINT.
    client.continue_execution().unwrap();
    assert_eq!(client.wait_for_stop(Duration::from_millis(100)).unwrap(), None);
    let stop = client.interrupt().unwrap();
    assert_eq!(stop.reason, StopReason::Signal(2), "{stop:?}");
    assert_eq!(client.read_register_u32("pc").unwrap() as u64, HELLO_DONE_ADDRESS);
    assert!(client.monitor("info version").unwrap().contains("7."), "monitor output");
    wait_for_line(&mut target, HELLO_LINE, Duration::from_secs(2));
}

#[test]
fn ram_backed_code_memory_keeps_nor_rules() {
    let mut target = unit("qemu-nor");
    let application = reference_board::memory_map().application;
    let data: Vec<u8> = (0..0x3000u32).map(|index| (index * 13) as u8).collect();
    target.erase_flash(application.address, 0x3000, &mut |_| {}).unwrap();
    target.program_flash(application.address, &data, &mut |_| {}).unwrap();
    let mut read = vec![0u8; data.len()];
    target.read_memory(application.address, &mut read).unwrap();
    assert_eq!(read, data);
    let refused = target.program_flash(application.address + 0x100, &[0; 4], &mut |_| {}).unwrap_err();
    assert!(
        matches!(&refused, TargetError::Refused { reason, .. } if reason.contains("not erased")),
        "{refused}"
    );
    let misaligned = target.program_flash(application.address + 0x3002, &[0; 4], &mut |_| {}).unwrap_err();
    assert!(misaligned.to_string().contains("alignment"), "{misaligned}");
    let outside = target.write_ram(application.address, &[0; 4]).unwrap_err();
    assert!(outside.to_string().contains("not RAM"), "{outside}");
    // QEMU starts with code memory zeroed, not erased: programming a fresh unit without
    // erasing is refused, as on a part whose flash holds something.
    let candidate = reference_board::memory_map().candidate;
    let unerased = target.program_flash(candidate.address, &[1, 2, 3, 4], &mut |_| {}).unwrap_err();
    assert!(unerased.to_string().contains("not erased (reads 0x00)"), "{unerased}");
    let lock = target.lock().unwrap_err();
    assert!(lock.to_string().contains("skip = [\"lock\"]"), "{lock}");
}

#[test]
fn imprint_run_provisions_three_qemu_units_and_the_uart_report_names_them() {
    let directory = tempfile::tempdir().unwrap();
    let output = common::imprint()
        .args(["run", "--profile", "profiles/qemu-mps2-an385.toml", "--count", "3", "--json"])
        .arg("--db")
        .arg(directory.path().join("ledger.db"))
        .args(["--log", "warn,imprint::console=info"])
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let finished: Vec<&serde_json::Value> =
        events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(finished.len(), 3, "{stdout}");
    for unit in &finished {
        assert_eq!(unit["result"], "pass", "{unit}");
        let serial = unit["serial"].as_str().unwrap();
        let device_id = unit["device_id"].as_str().unwrap();
        // The station read the report from the firmware's UART (report = "console").
        let self_test = events
            .iter()
            .find(|event| {
                event["event"] == "step-finished"
                    && event["step"] == "self-test"
                    && event["unit"] == unit["unit"]
            })
            .unwrap();
        assert_eq!(self_test["detail"]["reported_serial"], serial);
        assert_eq!(self_test["detail"]["reported_device_id"], device_id);
        assert_eq!(self_test["detail"]["installed_version"], "1.0.1");
        // And the UART line itself, as logged, carries the identifiers.
        let device_hex = device_id.replace('-', "");
        assert!(
            stderr.lines().any(|line| line.contains("IMPRINT-REPORT")
                && line.contains("update=0x01")
                && line.contains(&format!("device={device_hex}"))
                && line.contains(&format!("serial={serial}"))),
            "no UART report for {serial} in the log:\n{stderr}"
        );
        let skipped: Vec<&str> = events
            .iter()
            .filter(|event| event["event"] == "step-skipped" && event["unit"] == unit["unit"])
            .map(|event| event["step"].as_str().unwrap())
            .collect();
        assert_eq!(skipped, ["lock", "verify-lock"]);
    }
    let probes: HashSet<&str> = events
        .iter()
        .filter(|event| event["event"] == "unit-started")
        .map(|event| event["probe"].as_str().unwrap())
        .collect();
    assert_eq!(probes.len(), 3, "each unit is a fresh QEMU process: {probes:?}");
}

#[test]
fn run_length_encoded_writes_reach_qemu_intact() {
    let mut target = unit("qemu-rle");
    assert!(
        target.client().unwrap().options().run_length_encode_requests,
        "QEMU options use run-length encoding"
    );
    // Runs of every length around the encoding's corner cases (3, 6 and 7 repeats, 97+).
    let mut data = Vec::new();
    for (index, run) in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 50, 97, 98, 99, 200, 4100].iter().enumerate() {
        data.extend(std::iter::repeat_n([0x00u8, 0xFF, 0x11, 0xA5][index % 4], *run));
    }
    data.resize(data.len().next_multiple_of(4), 0xFF);
    let address = reference_board::memory_map().candidate.address;
    target.erase_flash(address, 0x2000, &mut |_| {}).unwrap();
    target.program_flash(address, &data, &mut |_| {}).unwrap();
    let mut read = vec![0u8; 0x2000];
    target.read_memory(address, &mut read).unwrap();
    assert_eq!(&read[..data.len()], &data[..]);
    assert!(read[data.len()..].iter().all(|byte| *byte == 0xFF), "the deferred erase reached the rest");
}

/// Runs gdb-multiarch against a QEMU stub with `commands`, leaving without detaching.
fn gdb_multiarch(gdb_address: &str, commands: &[String]) -> String {
    let mut command = std::process::Command::new("gdb-multiarch");
    command.args(["-nx", "-batch", "-ex", &format!("target remote {gdb_address}")]);
    for line in commands {
        command.args(["-ex", line]);
    }
    let output = command
        .args(["-ex", "disconnect"])
        .output()
        .unwrap_or_else(|error| panic!("gdb-multiarch is needed (scripts/test installs it): {error}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn gdb_multiarch_agrees_with_the_backend_about_memory() {
    use imprint::device::gdb::{GdbClient, GdbTarget, TcpTransport};
    use imprint::device::qemu::QemuInstance;
    use imprint::image::{FirmwareImage, ImageFormat};

    let options = QemuOptions::default();
    let (instance, client) = QemuInstance::start(&options).unwrap();
    let connect =
        |client| GdbTarget::new(client, reference_board::target_config(), "interop").without_detach_on_drop();
    // The backend writes; gdb-multiarch reads it back with `dump binary memory`.
    let mut target = connect(client);
    let data: Vec<u8> = (0..0x3000u32).map(|index| (index ^ index >> 7) as u8).collect();
    target.erase_flash(0x2_0000, 0x3000, &mut |_| {}).unwrap();
    target.program_flash(0x2_0000, &data, &mut |_| {}).unwrap();
    drop(target);
    let directory = tempfile::tempdir().unwrap();
    let dump = directory.path().join("dump.bin");
    gdb_multiarch(
        &instance.gdb_address(),
        &[format!("dump binary memory {} 0x20000 0x23000", dump.display())],
    );
    assert_eq!(std::fs::read(&dump).unwrap(), data, "gdb-multiarch reads what the backend wrote");
    // gdb-multiarch loads the reference bootloader; the backend reads it back.
    let elf = common::repo_root().join("firmware-blobs/mps2-an385/bootloader.elf");
    let loaded = gdb_multiarch(&instance.gdb_address(), &[format!("load {}", elf.display())]);
    assert!(loaded.contains("Transfer rate"), "{loaded}");
    let transport = TcpTransport::connect(&instance.gdb_address(), Duration::from_secs(2)).unwrap();
    let mut target = connect(GdbClient::connect(Box::new(transport), options.gdb.clone()).unwrap());
    let image = FirmwareImage::load(&elf, ImageFormat::Elf, None).unwrap();
    for segment in &image.segments {
        let mut read = vec![0u8; segment.data.len()];
        target.read_memory(segment.address, &mut read).unwrap();
        assert!(
            read == segment.data,
            "segment at {:#x} differs from what gdb-multiarch loaded",
            segment.address
        );
    }
}

#[test]
fn a_gdb_selector_provisions_a_qemu_started_outside_the_harness() {
    use imprint::device::qemu::QemuInstance;

    // QEMU as a user would run any GDB server, with a unique ID programmed "at the factory".
    let (instance, mut client) = QemuInstance::start(&QemuOptions::default()).unwrap();
    client.write_memory(reference_board::UNIQUE_ID_ADDRESS, &[0x5A; 12]).unwrap();
    drop(client);
    // The reference profile, reading the report from the mailbox: a `gdb:` fixture has no console.
    let root = common::repo_root();
    let profiles = root.join("profiles");
    let text = std::fs::read_to_string(profiles.join("qemu-mps2-an385.toml")).unwrap();
    let text = text
        .replace("\"../firmware-blobs/", &format!("\"{}/firmware-blobs/", root.display()))
        .replace("\"demo-credentials/", &format!("\"{}/demo-credentials/", profiles.display()))
        .replace("report = \"console\"", "report = \"mailbox\"");
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("qemu-over-gdb.toml");
    std::fs::write(&profile, text).unwrap();
    let selector = format!("gdb:{}", instance.gdb_address());
    let output = common::imprint()
        .args(["run", "--count", "1", "--json", "--probe", &selector])
        .arg("--profile")
        .arg(&profile)
        .arg("--db")
        .arg(directory.path().join("ledger.db"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let finished = events.iter().find(|event| event["event"] == "unit-finished").unwrap();
    assert_eq!(finished["result"], "pass", "{finished}");
    assert_eq!(finished["chip_uid"], "5a".repeat(12));
    let started = events.iter().find(|event| event["event"] == "unit-started").unwrap();
    assert_eq!(started["probe"], selector.as_str());
    let self_test = events
        .iter()
        .find(|event| event["event"] == "step-finished" && event["step"] == "self-test")
        .unwrap();
    assert_eq!(self_test["detail"]["reported_serial"], finished["serial"]);
}

#[test]
fn a_gdb_fixture_tells_its_board_on_the_fixture_from_a_swapped_one_and_from_a_gone_server() {
    use imprint::device::gdb::{GdbAddress, GdbFixture, GdbOptions};
    use imprint::device::qemu::QemuInstance;

    let (mut instance, client) = QemuInstance::start(&QemuOptions::default()).unwrap();
    drop(client);
    reference_board::program_unique_id(&instance.gdb_address(), &[0x5A; 12]);
    let address = GdbAddress::parse(&instance.gdb_address()).unwrap();
    let mut fixture = GdbFixture::new(address, GdbOptions::default(), reference_board::target_config());
    let mut unit = fixture.next_unit(&|| true).unwrap().expect("the board on the fixture");
    // A program that spins, to run when the unit is let go as a provisioned board runs its
    // firmware (QEMU aborts on a lockup running empty memory): a vector table (stack top,
    // reset at 0x8 in Thumb state) and `b .` there.
    let spin: Vec<u8> =
        [0x2000_1000u32, 0x0000_0009, 0xE7FE_E7FE].iter().flat_map(|word| word.to_le_bytes()).collect();
    unit.erase_flash(0, 0x1000, &mut |_| {}).unwrap();
    unit.program_flash(0, &spin, &mut |_| {}).unwrap();
    unit.reset_and_run().unwrap();
    drop(unit);
    // The unit handed out is still there, asked as often as a latched slot asks.
    for _ in 0..3 {
        assert_eq!(fixture.board_present(), Some(true));
    }
    // Another board on the same server: the one handed out was taken off.
    reference_board::program_unique_id(&instance.gdb_address(), &[0x5B; 12]);
    assert_eq!(fixture.board_present(), Some(false));
    // The new board is the next unit.
    let mut unit = fixture.next_unit(&|| true).unwrap().expect("the swapped board");
    assert_eq!(unit.read_unique_id().unwrap().to_hex(), "5b".repeat(12));
    drop(unit);
    assert_eq!(fixture.board_present(), Some(true));
    // No server at all: nothing can be said about the board.
    assert!(instance.is_running(), "QEMU: {:?}", instance.output_tail());
    drop(instance);
    assert_eq!(fixture.board_present(), None);
}

#[test]
fn a_bad_default_fixture_is_a_profile_error() {
    let root = common::repo_root();
    let profiles = root.join("profiles");
    let text = std::fs::read_to_string(profiles.join("qemu-mps2-an385.toml"))
        .unwrap()
        .replace("default = \"qemu\"", "default = \"jtag\"");
    let profile = profiles.join(format!("test-bad-fixture-{}.toml", std::process::id()));
    std::fs::write(&profile, text).unwrap();
    let output = common::imprint().arg("profile").arg("check").arg(&profile).output();
    std::fs::remove_file(&profile).unwrap();
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fixture.default") && stderr.contains("\"jtag\""), "{stderr}");
}

/// `profiles/qemu-mps2-an385-identity.toml`'s factory CA (development only).
const DEMO_FACTORY_CA: &str = "profiles/demo-credentials/factory-ca.pem";

fn run_imprint(args: &[&str], database: &Path) -> (std::process::Output, Vec<serde_json::Value>) {
    let output = common::imprint()
        .args(args)
        .arg("--db")
        .arg(database)
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (output, events)
}

/// `profiles/qemu-mps2-an385-v1.toml`: the self-test stages v1 manifests (`manifest-tool
/// create-v1`'s schema); the reference firmware installs the signed one (its UART line says so)
/// and refuses each forgery with its reason code (contract section 3.5).
#[test]
fn imprint_run_self_tests_qemu_units_with_v1_manifests() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("ledger.db");
    let (output, events) = run_imprint(
        &[
            "run",
            "--profile",
            "profiles/qemu-mps2-an385-v1.toml",
            "--count",
            "2",
            "--json",
            "--log",
            "warn,imprint::console=info",
        ],
        &database,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{events:?}\n{stderr}", output.status);
    let finished: Vec<&serde_json::Value> =
        events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(finished.len(), 2, "{events:?}");
    for unit in &finished {
        assert_eq!(unit["result"], "pass", "{unit}");
        let step = |name: &str| {
            events
                .iter()
                .find(|event| {
                    event["event"] == "step-finished"
                        && event["step"] == name
                        && event["unit"] == unit["unit"]
                })
                .unwrap_or_else(|| panic!("no {name} for {unit}"))
        };
        assert_eq!(step("self-test")["detail"]["manifest_schema"], "v1");
        assert_eq!(step("self-test")["detail"]["installed_version"], "1.0.1");
        let refusals: Vec<(&str, u64)> = step("negative-self-test")["detail"]["refused"]
            .as_array()
            .unwrap()
            .iter()
            .map(|refusal| (refusal["candidate"].as_str().unwrap(), refusal["reason_code"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            refusals,
            [("untrusted-key", 0x14), ("unknown-certificate", 0x1F), ("wrong-class-id", 0x16)]
        );
        let serial = unit["serial"].as_str().unwrap();
        assert!(
            stderr.lines().any(|line| line.contains("IMPRINT-REPORT")
                && line.contains("update=0x01")
                && line.contains(&format!("serial={serial}"))),
            "no UART report of the v1 install for {serial}:\n{stderr}"
        );
    }
}

#[test]
fn imprint_run_gives_qemu_units_station_made_identities_the_firmware_proves() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("ledger.db");
    let (output, events) = run_imprint(
        &[
            "run",
            "--profile",
            "profiles/qemu-mps2-an385-identity.toml",
            "--count",
            "2",
            "--json",
            "--log",
            "warn,imprint::console=info",
        ],
        &database,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);
    let finished: Vec<&serde_json::Value> =
        events.iter().filter(|event| event["event"] == "unit-finished").collect();
    assert_eq!(finished.len(), 2, "{stdout}");
    let mut fingerprints = Vec::new();
    for unit in &finished {
        assert_eq!(unit["result"], "pass", "{unit}");
        let step = |name: &str| {
            events
                .iter()
                .find(|event| {
                    event["event"] == "step-finished"
                        && event["step"] == name
                        && event["unit"] == unit["unit"]
                })
                .unwrap_or_else(|| panic!("no step-finished {name} for {unit}"))
        };
        let issued = &step("issue-identity")["detail"];
        assert_eq!(issued["key_origin"], "station");
        // The firmware in QEMU signed the station's challenge with the key from its store.
        let verified = &step("verify-identity")["detail"];
        assert_eq!(verified["key_origin"], "station", "{verified}");
        assert_eq!(verified["challenge_signature_verified"], true, "{verified}");
        assert_eq!(verified["common_name"], unit["device_id"], "{verified}");
        assert_eq!(verified["certificate_fingerprint"], issued["certificate_fingerprint"]);
        assert_eq!(verified["challenge"].as_str().unwrap().len(), 64, "{verified}");
        fingerprints.push(issued["certificate_fingerprint"].as_str().unwrap().to_string());
    }
    assert!(
        stderr
            .lines()
            .filter(|line| line.contains("imprint application: identity command 2 status 0"))
            .count()
            >= 2,
        "the firmware's UART shows each sign-challenge answered:\n{stderr}"
    );
    // The bundle: each certificate the units hold, accepted by openssl against the factory CA.
    let bundle = directory.path().join("devices.pem");
    let (output, _) = run_imprint(&["log", "certificates", "-o", bundle.to_str().unwrap()], &database);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let bundle_text = std::fs::read_to_string(&bundle).unwrap();
    let ca = common::repo_root().join(DEMO_FACTORY_CA);
    let mut bundled = Vec::new();
    for (index, block) in bundle_text.split_inclusive("-----END CERTIFICATE-----\n").enumerate() {
        let path = directory.path().join(format!("device-{index}.pem"));
        std::fs::write(&path, block).unwrap();
        let verify = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca)
            .arg(&path)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(
            verify.status.success() && String::from_utf8_lossy(&verify.stdout).contains(": OK"),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        let certificate = imprint::trust::Certificate::from_pem(block).unwrap();
        bundled.push(certificate.fingerprint_hex());
    }
    bundled.sort();
    fingerprints.sort();
    assert_eq!(bundled, fingerprints, "the bundle holds exactly the issued certificates");
}

#[test]
fn device_made_keys_on_qemu_fail_at_device_key_for_want_of_entropy() {
    // mps2-an385 has no TRNG: the firmware answers make-key-and-csr with status 3 (no-entropy)
    // rather than make a predictable key.
    let root = common::repo_root();
    let profiles = root.join("profiles");
    let text = std::fs::read_to_string(profiles.join("qemu-mps2-an385-identity.toml"))
        .unwrap()
        .replace("\"../firmware-blobs/", &format!("\"{}/firmware-blobs/", root.display()))
        .replace("\"demo-credentials/", &format!("\"{}/demo-credentials/", profiles.display()))
        .replace("key_origin = \"station\"", "key_origin = \"device\"");
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("qemu-device-keys.toml");
    std::fs::write(&profile, text).unwrap();
    let (output, events) = run_imprint(
        &["run", "--profile", profile.to_str().unwrap(), "--count", "1", "--json"],
        &directory.path().join("ledger.db"),
    );
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let finished = events.iter().find(|event| event["event"] == "unit-finished").unwrap();
    assert_eq!(finished["result"], "fail", "{finished}");
    assert_eq!(finished["failing_step"], "device-key", "{finished}");
    let reason = finished["reason"].as_str().unwrap();
    assert!(reason.contains("no entropy source") && reason.contains("identity status 3"), "{reason}");
}

/// Sends one identity request to a running reference firmware and returns its response.
fn identity_exchange(
    target: &mut GdbTarget,
    command_code: u32,
    parameters: &[u8],
) -> imprint::contract::IdentityResponse {
    use imprint::contract::{self, IdentityResponse};

    let nonce = 0x5EED_0001 + command_code;
    let mut mailbox = vec![0u8; contract::IDENTITY_MAILBOX_SIZE_BYTES];
    mailbox[0..4].copy_from_slice(b"IMPQ");
    mailbox[4..8].copy_from_slice(&nonce.to_le_bytes());
    mailbox[8..12].copy_from_slice(&command_code.to_le_bytes());
    let start = contract::IDENTITY_PARAMETERS_OFFSET_BYTES;
    mailbox[start..start + parameters.len()].copy_from_slice(parameters);
    let mailbox_address = reference_board::memory_map().mailbox.address;
    target.write_ram(mailbox_address, &mailbox).unwrap();
    target.reset_and_run().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut bytes = vec![0u8; contract::IDENTITY_MAILBOX_SIZE_BYTES];
        target.read_memory(mailbox_address, &mut bytes).unwrap();
        if let Some(response) = IdentityResponse::decode_mailbox(&bytes)
            && response.nonce == nonce
        {
            assert_eq!(response.command_code, command_code);
            return response;
        }
        assert!(Instant::now() < deadline, "no identity response to command {command_code}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_firmware_signs_a_challenge_with_the_key_in_its_store_and_only_that_key() {
    use imprint::contract::{self, IdentityStatus};
    use imprint::store::{ConfigStore, StoreItem, keys};
    use imprint::trust::{self, Certificate, CertificateRequest, Signer};

    let root = common::repo_root();
    let memory = reference_board::memory_map();
    let mut target = unit("qemu-identity");
    target.connect().unwrap();
    let chip_uid = target.read_unique_id().unwrap();
    for (file, region) in
        [("bootloader.bin", memory.bootloader), ("application-1.0.0.bin", memory.application)]
    {
        let mut image = std::fs::read(root.join("firmware-blobs/mps2-an385").join(file)).unwrap();
        image.resize(image.len().next_multiple_of(4), 0xFF);
        target
            .erase_flash(
                region.address,
                (image.len() as u64).next_multiple_of(region.sector_size_bytes),
                &mut |_| {},
            )
            .unwrap();
        target.program_flash(region.address, &image, &mut |_| {}).unwrap();
    }
    for region in [memory.candidate, memory.config] {
        target.erase_flash(region.address, region.size_bytes, &mut |_| {}).unwrap();
    }
    let write_store = |target: &mut GdbTarget, private_key: Option<&[u8]>| {
        let mut store = ConfigStore::default();
        store.set(StoreItem::text(keys::SERIAL_NUMBER, "QRB-IDENTITY"));
        if let Some(private_key) = private_key {
            store.set(StoreItem::binary(keys::BOOTSTRAP_DEVICE_PRIVATE_KEY, private_key));
        }
        let bytes = store.encode(chip_uid.as_bytes(), &memory.store_layout()).unwrap();
        target.erase_flash(memory.config.address, memory.config.size_bytes, &mut |_| {}).unwrap();
        target.program_flash(memory.config.address, &bytes, &mut |_| {}).unwrap();
    };

    // The station's key in the store: the device signs with it, the same 64 bytes the station's
    // own signer (and so the simulated device) makes: RFC 6979 nonces, low s.
    let stored_key = trust::generate_device_key().unwrap();
    write_store(&mut target, Some(&trust::device_key_pkcs8_der(&stored_key).unwrap()));
    let challenge: [u8; 32] = std::array::from_fn(|index| (index * 7 + 1) as u8);
    let response = identity_exchange(&mut target, contract::COMMAND_SIGN_CHALLENGE, &challenge);
    assert_eq!(response.status, IdentityStatus::Done);
    let digest = contract::identity_challenge_digest(&challenge);
    assert_eq!(response.data, stored_key.sign_digest(&digest).unwrap().to_bytes().to_vec());

    // What verify-identity checks: the signature verifies with the certificate issued for the
    // stored key, and not with a certificate issued for another key (a unit whose stored key
    // does not match its certificate fails the step).
    let ca_certificate = Certificate::load(&root.join(DEMO_FACTORY_CA)).unwrap();
    let ca_key = trust::load_signing_key(&root.join("profiles/demo-credentials/factory-ca.key.pem")).unwrap();
    let issue = |key: &dyn Signer| {
        let request = CertificateRequest::device_identity("qemu-identity-test", 30);
        trust::issue_certificate(&ca_key, &ca_certificate, &key.verifying_key(), &request).unwrap()
    };
    trust::verify_challenge_signature(&issue(&stored_key), &digest, &response.data).unwrap();
    let other_key = trust::generate_device_key().unwrap();
    let mismatch =
        trust::verify_challenge_signature(&issue(&other_key), &digest, &response.data).unwrap_err();
    assert!(mismatch.to_string().contains("does not verify"), "{mismatch}");

    // No key in the store: no-key. Make-key: no-entropy. An unknown command: unsupported.
    write_store(&mut target, None);
    assert_eq!(
        identity_exchange(&mut target, contract::COMMAND_SIGN_CHALLENGE, &challenge).status,
        IdentityStatus::NoKey
    );
    let mut name = 5u32.to_le_bytes().to_vec();
    name.extend_from_slice(b"qemu1");
    let refused = identity_exchange(&mut target, contract::COMMAND_MAKE_KEY_AND_CSR, &name);
    assert_eq!((refused.status, refused.data.len()), (IdentityStatus::NoEntropy, 0));
    assert_eq!(
        identity_exchange(&mut target, contract::COMMAND_MAKE_KEY_AND_CSR, &0u32.to_le_bytes()).status,
        IdentityStatus::BadParameters
    );
    assert_eq!(identity_exchange(&mut target, 7, &[]).status, IdentityStatus::UnsupportedCommand);
}
