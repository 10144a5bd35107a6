//! The operator GUI driven like an operator would, through egui_kittest and the widgets'
//! accessibility labels (the names a screen reader speaks): the real app, the real line on
//! simulated slots, the real ledger in a temp dir. An export made from the window is checked by
//! the real `imprint log verify`.

mod common;
#[path = "support/reference_board.rs"]
mod reference_board;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui::{self, Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use imprint::gui::{GuiOptions, ImprintApp, log_channel};
use imprint::station::session::SimFaultSpec;
use tracing_subscriber::layer::SubscriberExt;

/// How long a test waits for the line or the ledger before it fails.
const PATIENCE: Duration = Duration::from_secs(90);

struct Gui {
    harness: Harness<'static, ImprintApp>,
    ledger_path: PathBuf,
    directory: tempfile::TempDir,
}

fn demo_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo.toml")
}

/// The window on `slots` simulated slots at full speed, with a fresh ledger. Each slot waits a
/// minute between units, so after its first unit a slot holds its result until the test stops
/// the line: what the slots show is decided by the test, not by thread timing.
fn gui(slots: usize, configure: impl FnOnce(&mut GuiOptions)) -> Gui {
    gui_with_log(slots, configure, None)
}

fn gui_with_log(
    slots: usize,
    configure: impl FnOnce(&mut GuiOptions),
    log_receiver: Option<imprint::gui::LogReceiver>,
) -> Gui {
    let directory = tempfile::tempdir().unwrap();
    let ledger_path = directory.path().join("ledger.db");
    let mut options = GuiOptions::new(ledger_path.clone(), "test-station".to_string());
    options.create_ledger = true;
    options.profile = Some(demo_profile());
    options.operator = Some("tester".to_string());
    options.sim_slot_count = Some(slots);
    options.sim_timing_zero = Some(true);
    options.unit_change_delay_ms = Some(60_000);
    options.sim_uid_seed = Some(11);
    options.remember_settings = false;
    // The supervisor view: the tests use the history, export, simulator and log.
    options.supervisor_view = Some(true);
    configure(&mut options);
    let harness = Harness::builder()
        .with_size(egui::Vec2::new(1280.0, 800.0))
        .build_eframe(move |creation| ImprintApp::new(creation, options, log_receiver));
    Gui { harness, ledger_path, directory }
}

impl Gui {
    /// Steps frames until `ready` holds; fails naming `what` after [`PATIENCE`].
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Harness<'static, ImprintApp>) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.harness.step();
            if ready(&self.harness) {
                return;
            }
            if Instant::now() > deadline {
                let labels: Vec<String> = self
                    .harness
                    .root()
                    .children_recursive()
                    .filter_map(|node| node.accesskit_node().label().or(node.accesskit_node().value()))
                    .collect();
                panic!("waited {PATIENCE:?} for {what}; the window shows: {labels:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for_label(&mut self, label: &str) {
        let label = label.to_string();
        self.wait_until(&format!("a widget labelled {label:?}"), |harness| {
            harness.query_by_label(&label).is_some()
        });
    }

    fn wait_for_label_containing(&mut self, part: &str) {
        let part = part.to_string();
        self.wait_until(&format!("a widget whose label contains {part:?}"), |harness| {
            harness.query_by_label_contains(&part).is_some()
        });
    }

    fn click(&mut self, label: &str) {
        self.harness.get_by_label(label).click();
        self.harness.step();
    }

    /// Starts the line, waits until every slot finished one unit, stops the line and waits
    /// until it has stopped.
    fn run_one_unit_per_slot(&mut self, slots: usize, start: impl FnOnce(&mut Gui)) {
        start(self);
        self.wait_until("every slot to finish its first unit", |harness| {
            (0..slots).all(|slot| {
                harness.query_by_label(&format!("slot {n} state: PASS", n = slot + 1)).is_some()
                    || harness
                        .query_by_label_contains(&format!("slot {n} state: FAIL", n = slot + 1))
                        .is_some()
            })
        });
        self.click("Stop line");
        self.wait_for_label_containing("line status: line finished");
    }

    fn history_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .harness
            .query_all_by_label_contains("history: ")
            .filter_map(|node| node.accesskit_node().label())
            .filter(|label| label.ends_with(" pass") || label.ends_with(" fail"))
            .collect();
        labels.sort();
        labels
    }
}

#[test]
fn two_slots_run_to_pass_and_the_units_appear_in_the_history() {
    let mut gui = gui(2, |_| {});
    gui.wait_for_label("slot 1 state: IDLE");
    gui.wait_for_label_containing("demo-sensor");
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));

    gui.harness.get_by_label("slot 1 state: PASS");
    gui.harness.get_by_label("slot 2 state: PASS");
    gui.harness.get_by_label_contains("slot 1 unit: serial DS1-00000");
    gui.harness.get_by_label("units: 2");
    gui.harness.get_by_label("pass: 2");
    gui.harness.get_by_label("fail: 0");
    gui.harness.get_by_label("first-pass yield: 100.0 %");
    gui.wait_until("both units in the history table", |harness| {
        harness.query_by_label("history: 2 rows").is_some()
    });
    assert_eq!(gui.history_labels(), ["history: DS1-000001 pass", "history: DS1-000002 pass"]);

    // A click on a row opens the unit's whole step history from the ledger.
    gui.click("history: DS1-000001 pass");
    gui.wait_for_label("step verify-lock: passed");
    for step in [
        "connect",
        "identify",
        "check-identity",
        "erase",
        "verify-flash",
        "allocate-identity",
        "self-test",
        "verify-lock",
    ] {
        gui.harness.get_by_label(&format!("step {step}: passed"));
    }

    // The search finds a unit by serial and by chip ID.
    let chip_uid = imprint::ledger::Ledger::open_read_only(&gui.ledger_path)
        .unwrap()
        .unit_history("DS1-000002")
        .unwrap()
        .unwrap()
        .chip_uid;
    for search in ["DS1-000002", chip_uid.as_str()] {
        let field = gui.harness.get_by_label("Search");
        field.focus();
        gui.harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
        gui.harness.get_by_label("Search").type_text(search);
        gui.harness.key_press(Key::Enter);
        gui.wait_until("the search result", |harness| harness.query_by_label("history: 1 rows").is_some());
        assert_eq!(gui.history_labels(), ["history: DS1-000002 pass"], "search {search}");
    }
}

#[test]
fn an_injected_fault_shows_fail_with_its_reason_in_the_slot_and_the_log() {
    let (layer, receiver) = log_channel();
    // tracing caches each callsite's interest for the whole process; while only one dispatcher
    // is registered, a sibling test's thread without a subscriber that reaches "unit failed"
    // first caches it as never (tokio-rs/tracing#3611). A second live dispatcher makes the
    // interest the union of both, so this test's capture sees the event.
    let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
    // The window logs unit results on its own thread, which is this test's thread.
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut gui = gui_with_log(2, |_| {}, Some(receiver));
    gui.wait_for_label("slot 2 state: IDLE");
    // The simulator panel arms its default fault (probe lost at erase) for slot 0's next unit.
    gui.click("Inject fault");
    // F5 starts the line.
    gui.run_one_unit_per_slot(2, |gui| gui.harness.key_press(Key::F5));

    gui.harness.get_by_label("slot 1 state: FAIL at erase: probe lost: sim-0 stopped answering");
    // The operator reads what to do in large type; the engineer's reason is one click away.
    gui.harness.get_by_label("slot 1 instruction: Set the board aside for rework");
    assert!(gui.harness.query_by_label_contains("slot 1 reason:").is_none(), "the reason is folded away");
    gui.click("slot 1 details");
    gui.harness.get_by_label("slot 1 reason: probe lost: sim-0 stopped answering");
    gui.harness.get_by_label("slot 2 state: PASS");
    gui.harness.get_by_label("units: 2");
    gui.harness.get_by_label("fail: 1");
    gui.harness.get_by_label("first-pass yield: 50.0 %");
    gui.wait_for_label_containing("log: WARN unit failed");
    gui.harness.get_by_label_contains("reason=probe lost: sim-0 stopped answering");
    // Filtered to errors only, the warning disappears from the log panel.
    gui.click("log level ERROR");
    assert!(gui.harness.query_by_label_contains("log: WARN unit failed").is_none());
    gui.wait_until("the failed run in the history", |harness| {
        harness.query_by_label("history: 2 rows").is_some()
    });
    assert_eq!(gui.history_labels().len(), 2);
}

#[test]
fn manual_start_waits_for_the_operator_and_the_scanner_starts_a_unit() {
    let mut gui = gui(2, |options| options.manual_start = Some(true));
    gui.click("Start line");
    gui.wait_for_label("slot 1 state: WAITING for start");
    gui.wait_for_label("slot 2 state: WAITING for start");
    gui.click("Start unit on slot 2");
    gui.wait_for_label("slot 2 state: PASS");
    gui.harness.get_by_label("slot 1 state: WAITING for start");
    // A keyboard-wedge scanner types into the focused scanner field and presses Enter.
    gui.wait_until("the scanner field to hold the focus", |harness| {
        harness.get_by_label("Scanner").is_focused()
    });
    gui.harness.get_by_label("Scanner").type_text("WO-2026-0042");
    gui.harness.key_press(Key::Enter);
    gui.wait_for_label("work order: WO-2026-0042");
    gui.wait_for_label("slot 1 state: PASS");
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 2 units, 2 pass");
}

#[test]
fn with_a_scanned_serial_profile_each_scan_starts_the_waiting_slot_with_that_serial() {
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("labelled.toml");
    std::fs::write(&profile, common::scanned_serials_profile_text()).unwrap();
    let mut gui = gui(2, |options| {
        options.manual_start = Some(true);
        options.profile = Some(profile);
    });
    gui.click("Start line");
    gui.wait_for_label("slot 1 state: WAITING for start");
    gui.wait_for_label("slot 2 state: WAITING for start");
    let scan = |gui: &mut Gui, serial: &str| {
        gui.wait_until("the scanner field to hold the focus", |harness| {
            harness.get_by_label("Scanner").is_focused()
        });
        gui.harness.get_by_label("Scanner").type_text(serial);
        gui.harness.key_press(Key::Enter);
    };
    // A scan starts the first slot waiting for its start, with the scanned serial.
    scan(&mut gui, "LBL-7001");
    gui.wait_for_label("slot 1 state: PASS");
    gui.harness.get_by_label_contains("slot 1 unit: serial LBL-7001");
    gui.harness.get_by_label("slot 2 state: WAITING for start");
    // A slot started by its button waits for the unit's label; the next scan is its serial.
    gui.click("Start unit on slot 2");
    gui.wait_for_label("slot 2 state: WAITING for serial scan");
    scan(&mut gui, "LBL-7002");
    gui.wait_for_label("slot 2 state: PASS");
    gui.harness.get_by_label_contains("slot 2 unit: serial LBL-7002");
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 2 units, 2 pass");
    drop(directory);
}

/// Issue 16: the window drives FCC slots like any other. Two real FCC example devices (built
/// from IMPRINT_FCC_SOURCE) on loopback, one `fcc:` probe each, profiles/fcc-linux.toml: both
/// cards end PASS with their serials, and each device's own verification of what it stored
/// succeeds.
#[test]
fn the_window_provisions_real_fcc_devices_given_as_probes() {
    let fcc_profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/fcc-linux.toml");
    let mut devices = common::fcc::start_fcc_devices(2);
    let probes: Vec<String> = devices.iter().map(|device| format!("fcc:{}", device.endpoint())).collect();
    let mut gui = gui(2, |options| {
        options.profile = Some(fcc_profile);
        options.probes = probes.clone();
        options.sim_slot_count = None;
    });
    gui.wait_for_label("Slots 2 (--probe)");
    gui.click("Start line");
    gui.wait_until("both FCC slots to finish their unit", |harness| {
        (1..=2).all(|slot| {
            harness.query_by_label(&format!("slot {slot} state: PASS")).is_some()
                || harness.query_by_label_contains(&format!("slot {slot} state: FAIL")).is_some()
        })
    });
    for slot in 1..=2 {
        assert!(
            gui.harness.query_by_label(&format!("slot {slot} state: PASS")).is_some(),
            "slot {slot} did not pass; devices:\n{}\n{}",
            devices[0].log(),
            devices[1].log()
        );
    }
    if gui.harness.query_by_label("Stop line").is_some() {
        gui.click("Stop line");
    }
    gui.wait_for_label_containing("line status: line finished: 2 units, 2 pass");
    for device in &mut devices {
        let report = device.verify_stored();
        assert!(report.success && report.status == 0, "fcc-verify: {report:?}\n{}", device.log());
    }
}

#[test]
fn the_window_runs_units_on_qemu_fixtures_given_as_probes_and_from_the_profile() {
    let qemu_profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/qemu-mps2-an385.toml");
    // `--probe qemu --probe qemu`: two slots, each unit a fresh QEMU running the reference
    // firmware, driven over the GDB remote protocol.
    let mut gui = gui(2, |options| {
        options.profile = Some(qemu_profile.clone());
        options.probes = vec!["qemu".to_string(), "qemu".to_string()];
        // No `--sim`: no simulated slots after the probes (the one slot rule).
        options.sim_slot_count = None;
    });
    gui.wait_for_label("Slots 2 (--probe)");
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));
    gui.harness.get_by_label("slot 1 state: PASS");
    gui.harness.get_by_label("slot 2 state: PASS");
    // Without --probe the profile's `[fixture] default = "qemu"` decides, one slot here.
    let mut gui = self::gui(1, |options| options.profile = Some(qemu_profile));
    gui.run_one_unit_per_slot(1, |gui| gui.click("Start line"));
    gui.harness.get_by_label("slot 1 state: PASS");
    gui.harness.get_by_label("units: 1");
}

/// Replaces a text field's content the way an operator does: select all, type.
fn retype(gui: &mut Gui, label: &str, text: &str) {
    gui.harness.get_by_label(label).focus();
    gui.harness.step();
    gui.harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    gui.harness.get_by_label(label).type_text(text);
    gui.harness.step();
}

/// Types into a text field of a bare harness after giving it the focus.
fn type_into(harness: &mut Harness<'static, ImprintApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

fn imprint_log_verify(file: &Path) -> (bool, String) {
    let output = common::imprint().args(["log", "verify"]).arg(file).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn export_from_the_window_passes_imprint_log_verify() {
    let mut gui = gui(2, |_| {});
    gui.wait_for_label("slot 1 state: IDLE");
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));
    gui.wait_until("both runs in the history", |harness| harness.query_by_label("history: 2 rows").is_some());

    let csv_path = gui.directory.path().join("runs.csv");
    retype(&mut gui, "Export to", &csv_path.display().to_string());
    gui.click("Export ledger");
    gui.wait_for_label(&format!("export status: exported 2 runs to {}", csv_path.display()));

    // JSON through the format list (the file name follows) and the Ctrl+E shortcut.
    gui.click("Export format");
    gui.wait_for_label("JSON");
    gui.click("JSON");
    let json_path = gui.directory.path().join("runs.json");
    gui.harness.key_press_modifiers(Modifiers::COMMAND, Key::E);
    gui.wait_for_label(&format!("export status: exported 2 runs to {}", json_path.display()));

    for path in [&csv_path, &json_path] {
        let (accepted, report) = imprint_log_verify(path);
        assert!(accepted, "imprint log verify refused {}:\n{report}", path.display());
        assert!(report.contains("2 runs") || report.contains("2 run"), "{report}");
    }
    // The check can fail: an export with one byte of a serial changed is refused.
    let tampered = gui.directory.path().join("tampered.json");
    let text = std::fs::read_to_string(&json_path).unwrap();
    assert!(text.contains("DS1-000002"));
    std::fs::write(&tampered, text.replacen("DS1-000002", "DS1-000003", 1)).unwrap();
    let (accepted, report) = imprint_log_verify(&tampered);
    assert!(!accepted, "a tampered export was accepted:\n{report}");
}

#[test]
fn out_of_the_box_it_picks_the_demo_profile_and_names_every_input() {
    // No profile given: the window lists the profiles folder and picks demo.toml.
    let mut gui = gui(4, |options| {
        options.profile = None;
        options.profiles_directory = Some(demo_profile().parent().unwrap().to_owned());
    });
    gui.wait_for_label_containing("demo-sensor");
    gui.harness.check_accessibility();
    gui.harness.get_by_label("Start line");
    // `--operator` logged the operator in.
    gui.harness.get_by_label("operator: tester");
    gui.harness.get_by_label("Log out");
    gui.harness.get_by_label("Scanner");
    gui.harness.get_by_label("Export ledger");
    gui.harness.get_by_label("station: test-station");
    for slot in 0..4 {
        gui.harness.get_by_label(&format!("slot {n} state: IDLE", n = slot + 1));
    }
}

/// An in-memory eframe storage.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }

    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }

    fn flush(&mut self) {}
}

#[test]
fn settings_are_remembered_between_runs() {
    let directory = tempfile::tempdir().unwrap();
    let options = || {
        let mut options = GuiOptions::new(directory.path().join("ledger.db"), "test-station".to_string());
        options.create_ledger = true;
        options.profile = Some(demo_profile());
        options
    };
    let first_options = options();
    // Tall enough that the side panel's station settings are on screen.
    let size = egui::Vec2::new(1280.0, 1600.0);
    let mut first = Harness::builder()
        .with_size(size)
        .build_eframe(move |creation| ImprintApp::new(creation, first_options, None));
    first.step();
    // The operator view hides the history, export, simulator, settings and log; with no PIN
    // set, the supervisor view opens at a click, and the choice is remembered.
    assert!(first.query_by_label("Export ledger").is_none());
    assert!(first.query_by_label("Station settings").is_none());
    first.get_by_label("Supervisor view").click();
    first.step();
    first.step();
    first.get_by_label("Export ledger");
    type_into(&mut first, "Operator ID", "operator-17");
    first.get_by_label("Log in").click();
    first.step();
    first.step();
    first.get_by_label("operator: operator-17");
    first.get_by_label("Manual start").click();
    first.step();
    let mut storage = MemoryStorage::default();
    eframe::App::save(first.state_mut(), &mut storage);

    // Leaked so the creation context may borrow it for the harness's lifetime.
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let second_options = options();
    let mut second = Harness::builder().with_size(size).build_eframe(move |creation| {
        creation.storage = Some(storage);
        ImprintApp::new(creation, second_options, None)
    });
    second.step();
    second.get_by_label("Operator view");
    assert_eq!(
        second.get_by_label("Manual start").accesskit_node().toggled(),
        Some(egui::accesskit::Toggled::True)
    );
    // The operator is not remembered: the next person logs in as themselves.
    assert_eq!(second.get_by_label("Operator ID").value().as_deref(), Some(""));
    assert!(second.query_by_label("operator: operator-17").is_none());

    // A station that wants it remembers the operator (a station setting), and a supervisor PIN
    // locks the station settings; the PIN itself is stored nowhere.
    second.get_by_label("Station settings").click();
    second.step();
    second.get_by_label("Remember the operator when the window reopens").click();
    type_into(&mut second, "Operator ID", "operator-18");
    second.get_by_label("Log in").click();
    second.step();
    second.step();
    type_into(&mut second, "Set a supervisor PIN", "4711");
    second.get_by_label("Set PIN").click();
    second.step();
    second.step();
    second.get_by_label("supervisor: supervisor PIN set: the station settings are locked");
    assert!(second.query_by_label("Remember the operator when the window reopens").is_none());
    let mut storage = MemoryStorage::default();
    eframe::App::save(second.state_mut(), &mut storage);
    assert!(storage.0.values().all(|stored| !stored.contains("4711")), "the PIN was stored: {:?}", storage.0);
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let third_options = options();
    let mut third = Harness::builder().with_size(size).build_eframe(move |creation| {
        creation.storage = Some(storage);
        ImprintApp::new(creation, third_options, None)
    });
    third.step();
    third.get_by_label("operator: operator-18");
    // With a PIN set the window reopens in the operator view, and the supervisor view asks for
    // the PIN (which also unlocks the station settings).
    assert!(third.query_by_label("Export ledger").is_none());
    assert!(third.query_by_label_contains("Station settings").is_none());
    third.get_by_label("Supervisor view").click();
    third.step();
    third.step();
    type_into(&mut third, "Supervisor PIN", "1234");
    third.get_by_label("Unlock").click();
    third.step();
    third.step();
    third.get_by_label("supervisor: wrong supervisor PIN");
    assert!(third.query_by_label("Export ledger").is_none());
    type_into(&mut third, "Supervisor PIN", "4711");
    third.get_by_label("Unlock").click();
    third.step();
    third.step();
    third.get_by_label("Export ledger");
    third.get_by_label("Station settings").click();
    third.step();
    third.get_by_label("Remember the operator when the window reopens");
}

/// The slots' fixture names as the window shows them, by slot.
fn window_slot_fixtures(gui: &Gui, slots: usize) -> std::collections::BTreeMap<u64, String> {
    (0..slots)
        .map(|slot| {
            let prefix = format!("slot {n} fixture: ", n = slot + 1);
            let node = gui.harness.get_by_label_contains(&prefix);
            let label = node.accesskit_node().label().or(node.accesskit_node().value()).unwrap_or_default();
            // After a unit started the card names its probe: `qemu-0 (qemu pid ...)`.
            let name = label.trim_start_matches(&prefix).split(' ').next().unwrap_or_default();
            (slot as u64, name.to_string())
        })
        .collect()
}

#[test]
fn the_window_and_imprint_run_open_the_same_slots_for_the_same_flags_and_profile() {
    let qemu_profile = common::repo_root().join("profiles/qemu-mps2-an385.toml");
    let demo = demo_profile();
    // (profile, --probe selectors, --sim N, the slots the one rule gives)
    let cases: [(&Path, &[&str], usize, &[&str]); 3] = [
        // No `[fixture] default`: N simulated slots.
        (&demo, &[], 3, &["sim-0", "sim-1", "sim-2"]),
        // `[fixture] default = "qemu"`: N QEMU slots.
        (&qemu_profile, &[], 2, &["qemu-0", "qemu-1"]),
        // `--probe` and `--sim`: the probe's slot, then N simulated slots.
        (&qemu_profile, &["qemu"], 2, &["qemu-0", "sim-1", "sim-2"]),
    ];
    for (profile, probes, sim, expected) in cases {
        let case = format!("{} --probe {probes:?} --sim {sim}", profile.display());
        let expected: std::collections::BTreeMap<u64, String> =
            expected.iter().enumerate().map(|(slot, name)| (slot as u64, name.to_string())).collect();
        let directory = tempfile::tempdir().unwrap();
        let (sim_text, count_text) = (sim.to_string(), expected.len().to_string());
        let mut arguments =
            vec!["--profile", profile.to_str().unwrap(), "--sim", &sim_text, "--count", &count_text];
        for probe in probes {
            arguments.extend(["--probe", probe]);
        }
        let (code, events) = common::run_json_events(&arguments, &directory.path().join("cli.db"));
        assert_eq!(code, 0, "{case}: imprint run failed: {events:?}");
        assert_eq!(common::slot_fixtures(&events), expected, "{case}: imprint run");

        let mut gui = gui(sim, |options| {
            options.profile = Some(profile.to_path_buf());
            options.probes = probes.iter().map(|probe| probe.to_string()).collect();
        });
        gui.run_one_unit_per_slot(expected.len(), |gui| gui.click("Start line"));
        assert_eq!(window_slot_fixtures(&gui, expected.len()), expected, "{case}: imprint gui");
        gui.harness.get_by_label(&format!("pass: {}", expected.len()));
    }
}

#[test]
fn the_window_and_imprint_run_take_the_same_fault_grammar() {
    // `hang=STEP`: the probe stops answering when the step begins; the step times out.
    let spec = "0.1:hang=erase";
    let directory = tempfile::tempdir().unwrap();
    let demo = demo_profile();
    let arguments = ["--profile", demo.to_str().unwrap(), "--sim", "2", "--count", "2", "--sim-fault", spec];
    let (code, events) = common::run_json_events(&arguments, &directory.path().join("cli.db"));
    assert_eq!(code, 1, "one unit fails: {events:?}");
    let failed = common::failed_units(&events);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (slot, step, reason) = &failed[0];
    assert_eq!((*slot, step.as_str()), (0, "erase"));
    assert!(reason.contains("timed out"), "{reason}");

    let mut gui = gui(2, |options| {
        options.sim_faults = vec![SimFaultSpec::parse(spec).expect("the station's grammar takes hang=STEP")];
    });
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));
    gui.harness.get_by_label(&format!("slot 1 state: FAIL at erase: {reason}"));
    gui.harness.get_by_label("slot 2 state: PASS");
}

/// The number a figure tile shows (`units: 12` -> 12).
fn figure(gui: &Gui, name: &str) -> Option<u64> {
    let prefix = format!("{name}: ");
    gui.harness
        .query_all_by_label_contains(&prefix)
        .filter_map(|node| node.accesskit_node().label().or(node.accesskit_node().value()))
        .find_map(|label| label.strip_prefix(&prefix).and_then(|number| number.parse().ok()))
}

/// The window on two slots at the demo profile's realistic timing (about 6 s a unit), so that
/// the test can act while units are in flight.
fn realistic_gui() -> Gui {
    gui(2, |options| options.sim_timing_zero = Some(false))
}

/// Waits until both slots are flashing their unit (their progress counts bytes).
fn wait_for_units_in_flight(gui: &mut Gui) {
    gui.wait_until("both slots to flash a unit", |harness| {
        (1..=2).all(|slot| {
            harness
                .query_by_label_contains(&format!("slot {slot} progress: "))
                .and_then(|node| node.accesskit_node().label())
                .is_some_and(|label| label.contains(" / ") && label.contains("KiB"))
        })
    });
}

#[test]
fn stop_lets_the_units_in_flight_finish_with_no_fail_and_no_abort() {
    let mut gui = realistic_gui();
    gui.click("Start line");
    wait_for_units_in_flight(&mut gui);
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: stopping");
    // While they finish, the button offers the (confirmed) abort, not a second stop.
    gui.harness.get_by_label("Abort units in flight");
    gui.wait_for_label_containing("line status: line finished: 2 units, 2 pass");
    gui.harness.get_by_label("slot 1 state: PASS");
    gui.harness.get_by_label("slot 2 state: PASS");
    assert_eq!(
        (figure(&gui, "units"), figure(&gui, "pass"), figure(&gui, "fail"), figure(&gui, "aborted")),
        (Some(2), Some(2), Some(0), Some(0))
    );
    gui.harness.get_by_label("first-pass yield: 100.0 %");
}

#[test]
fn abort_records_the_units_in_flight_aborted_and_leaves_the_yield_unchanged() {
    let mut gui = realistic_gui();
    // A first round passes: yield 100 %.
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));
    gui.harness.get_by_label("first-pass yield: 100.0 %");

    gui.click("Start line");
    wait_for_units_in_flight(&mut gui);
    gui.click("Stop line");
    gui.wait_for_label("Abort units in flight");
    gui.click("Abort units in flight");
    // Asked first; "Keep finishing" would let them finish.
    gui.wait_for_label("Abort now");
    gui.click("Abort now");
    gui.wait_for_label_containing("line status: line finished");
    for slot in 1..=2 {
        gui.harness.get_by_label_contains(&format!("slot {slot} state: ABORTED before "));
    }
    assert_eq!(
        (figure(&gui, "pass"), figure(&gui, "fail"), figure(&gui, "aborted")),
        (Some(2), Some(0), Some(2)),
        "aborted units are counted apart from failures"
    );
    gui.harness.get_by_label("first-pass yield: 100.0 %");
    // The ledger has each aborted run as aborted, not as a failure.
    let ledger = imprint::ledger::Ledger::open_read_only(&gui.ledger_path).unwrap();
    let stats = ledger.stats().unwrap();
    assert_eq!((stats.runs_passed, stats.runs_failed, stats.runs_aborted), (2, 0, 2), "{stats:?}");
}

#[test]
fn a_latched_fail_survives_ten_units_on_other_slots_until_acknowledged() {
    let mut gui = gui(2, |options| {
        // Slot 1 takes unit after unit at once; slot 0's first unit loses its probe at erase.
        options.unit_change_delay_ms = Some(0);
        options.sim_faults = vec![SimFaultSpec::parse("0.1:probe-lost=erase").unwrap()];
    });
    gui.click("Start line");
    // The frame that lists the first failed board builds the window once: the list's grid was
    // there, empty, from the line's start (egui runs a frame again for a new grid).
    let passes = std::cell::Cell::new(0);
    gui.wait_until("the first failed board listed", |harness| {
        let listed = harness.query_by_label("failed boards: 1 open of 1").is_some();
        if listed {
            passes.set(harness.output().platform_output.num_completed_passes);
        }
        listed
    });
    assert_eq!(passes.get(), 1, "passes of the UI in the frame that first lists a failed board");
    gui.wait_for_label("Acknowledge slot 1");
    gui.harness.get_by_label("slot 1 instruction: Set the board aside for rework");
    gui.wait_until("10 more units finished on slot 2", |harness| {
        let units = harness
            .query_all_by_label_contains("units: ")
            .filter_map(|node| node.accesskit_node().label().or(node.accesskit_node().value()))
            .find_map(|label| label.strip_prefix("units: ").and_then(|number| number.parse::<u64>().ok()));
        units.is_some_and(|units| units >= 11)
    });
    // Slot 0 took no unit meanwhile: its FAIL is still on the card, waiting for the operator.
    gui.harness.get_by_label("slot 1 state: FAIL at erase: probe lost: sim-0 stopped answering");
    gui.harness.get_by_label("Acknowledge slot 1");
    assert_eq!(figure(&gui, "fail"), Some(1));
    gui.harness.get_by_label("failed boards: 1 open of 1");

    gui.click("Acknowledge slot 1");
    gui.wait_until("slot 1 to take its next unit", |harness| {
        harness.query_by_label_contains("slot 1 state: FAIL").is_none()
    });
    assert!(gui.harness.query_by_label("Acknowledge slot 1").is_none());
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished");
    assert_eq!(figure(&gui, "fail"), Some(1), "the acknowledged slot went on to pass");
    gui.harness.get_by_label("failed boards: 1 open of 1");
}

#[test]
fn the_shift_list_keeps_each_failed_board_until_marked_done_and_no_scan_restarts_a_latched_slot() {
    let mut gui = gui(2, |options| {
        options.manual_start = Some(true);
        options.sim_faults = vec![SimFaultSpec::parse("0.1:probe-lost=erase").unwrap()];
    });
    gui.click("Start line");
    gui.wait_for_label("slot 1 state: WAITING for start");
    gui.wait_for_label("slot 2 state: WAITING for start");
    let enter_in_scanner = |gui: &mut Gui| {
        gui.wait_until("the scanner field to hold the focus", |harness| {
            harness.get_by_label("Scanner").is_focused()
        });
        gui.harness.key_press(Key::Enter);
    };
    // Enter starts the first waiting slot: slot 0, whose unit fails and latches the slot.
    enter_in_scanner(&mut gui);
    gui.wait_for_label("Acknowledge slot 1");
    gui.wait_for_label("slot 2 state: WAITING for start");
    // The next Enter passes over the latched slot 0 and starts slot 1.
    enter_in_scanner(&mut gui);
    gui.wait_for_label("slot 2 state: PASS");
    gui.wait_for_label("Start unit on slot 2");
    enter_in_scanner(&mut gui);
    gui.wait_until("slot 2's second unit", |harness| harness.query_by_label("pass: 2").is_some());
    gui.harness.get_by_label_contains("slot 1 state: FAIL at erase");
    assert!(gui.harness.query_by_label("Start unit on slot 1").is_none());

    // The failed board is on the shift's list by its chip ID (it failed before its serial).
    gui.harness.get_by_label("failed boards: 1 open of 1");
    let board = gui.harness.get_by_label_contains("failed board chip ");
    let board_label = board.accesskit_node().label().or(board.accesskit_node().value()).unwrap_or_default();
    assert!(board_label.contains(": flash-verify at ") && board_label.ends_with(", open"), "{board_label}");
    let key = board_label.trim_start_matches("failed board ").split(':').next().unwrap().to_string();
    gui.click(&format!("Mark done: {key}"));
    gui.wait_for_label("failed boards: 0 open of 1");
    let done_prefix = format!("failed board {key}:");
    let board = gui.harness.get_by_label_contains(&done_prefix);
    let board_label = board.accesskit_node().label().or(board.accesskit_node().value()).unwrap_or_default();
    assert!(board_label.ends_with(", done"), "{board_label}");

    // F8 acknowledges the oldest latched failure: slot 0 may be started again.
    gui.harness.key_press(Key::F8);
    gui.wait_for_label("Start unit on slot 1");
    assert!(gui.harness.query_by_label("Acknowledge slot 1").is_none());
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 3 units, 2 pass, 1 fail");
}

#[test]
fn log_in_and_log_out_reset_the_shift_counters() {
    let mut gui = gui(2, |options| options.operator = Some("alice".to_string()));
    gui.harness.get_by_label("operator: alice");
    gui.run_one_unit_per_slot(2, |gui| gui.click("Start line"));
    assert_eq!((figure(&gui, "units"), figure(&gui, "pass")), (Some(2), Some(2)));

    gui.click("Log out");
    gui.wait_for_label("start blocked: log in first: scan your badge or type your operator ID");
    assert!(gui.harness.get_by_label("Start line").accesskit_node().is_disabled());
    // The figures stay until the next shift begins.
    assert_eq!(figure(&gui, "units"), Some(2));
    retype(&mut gui, "Operator ID", "bob");
    gui.click("Log in");
    gui.wait_for_label("operator: bob");
    assert_eq!(
        (figure(&gui, "units"), figure(&gui, "pass"), figure(&gui, "fail"), figure(&gui, "aborted")),
        (Some(0), Some(0), Some(0), Some(0))
    );
    gui.harness.get_by_label("first-pass yield: –");

    // The cards still show the last shift's PASS: wait for the figures instead.
    gui.click("Start line");
    gui.wait_until("bob's two units", |harness| harness.query_by_label("units: 2").is_some());
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished");
    // Each shift's units are recorded under its operator (the repeatable chip IDs make the
    // second shift rework the first shift's two chips).
    let ledger = imprint::ledger::Ledger::open_read_only(&gui.ledger_path).unwrap();
    let mut operators: Vec<String> = ["DS1-000001", "DS1-000002"]
        .iter()
        .flat_map(|serial| ledger.unit_history(serial).unwrap().unwrap().runs)
        .map(|run| run.operator)
        .collect();
    operators.sort();
    assert_eq!(operators, ["alice", "alice", "bob", "bob"]);
}

#[test]
fn start_is_disabled_with_its_reason_until_the_profile_is_sound_and_an_operator_logged_in() {
    let directory = tempfile::tempdir().unwrap();
    let broken = directory.path().join("broken.toml");
    std::fs::write(&broken, common::demo_profile_text().replace("[serial]", "[serial]\nno_such_field = 1"))
        .unwrap();
    let mut gui = gui(1, |options| {
        options.operator = None;
        options.profile = Some(broken.clone());
    });
    gui.wait_for_label("start blocked: the profile has problems: fix them first");
    assert!(gui.harness.get_by_label("Start line").accesskit_node().is_disabled());
    // F5 does not start it either.
    gui.harness.key_press(Key::F5);
    gui.harness.step();
    gui.harness.get_by_label_contains("line status: stopped");

    // A sound profile, nobody logged in: the reason says so.
    let mut gui = self::gui(1, |options| options.operator = None);
    gui.wait_for_label("start blocked: log in first: scan your badge or type your operator ID");
    assert!(gui.harness.get_by_label("Start line").accesskit_node().is_disabled());
    gui.harness.key_press(Key::F5);
    gui.harness.step();
    gui.harness.get_by_label_contains("line status: stopped");
    // A badge scanned into the scanner field logs the operator in.
    gui.harness.get_by_label("Scanner").focus();
    gui.harness.step();
    gui.harness.get_by_label("Scanner").type_text("badge-0042");
    gui.harness.key_press(Key::Enter);
    gui.wait_for_label("operator: badge-0042");
    assert!(gui.harness.query_by_label_contains("start blocked:").is_none());
    assert!(!gui.harness.get_by_label("Start line").accesskit_node().is_disabled());
}

#[test]
fn a_pass_without_lock_shows_its_warning_on_the_card_and_before_the_start() {
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("unlocked.toml");
    let text = common::demo_profile_text();
    assert!(!text.contains("[steps]"), "the demo profile gained a [steps] section");
    std::fs::write(&profile, text + "\n[steps]\nskip = [\"lock\", \"negative-self-test\"]\n").unwrap();
    let mut gui = gui(1, |options| options.profile = Some(profile.clone()));
    gui.wait_for_label(
        "profile warning: this profile: units are NOT LOCKED, the forged-update test is skipped",
    );
    gui.run_one_unit_per_slot(1, |gui| gui.click("Start line"));
    gui.harness.get_by_label("slot 1 state: PASS");
    gui.harness.get_by_label("slot 1 warning: NOT LOCKED · forged-update test skipped");
    // A profile that locks shows no such warning.
    let mut locked = self::gui(1, |_| {});
    locked.run_one_unit_per_slot(1, |gui| gui.click("Start line"));
    locked.harness.get_by_label("slot 1 state: PASS");
    assert!(locked.harness.query_by_label_contains("slot 1 warning:").is_none());
    assert!(locked.harness.query_by_label_contains("profile warning:").is_none());
}

/// Builds the window at `size` with `slots` idle slots in the operator view.
fn operator_view(slots: usize, size: egui::Vec2) -> (Harness<'static, ImprintApp>, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let mut options = GuiOptions::new(directory.path().join("ledger.db"), "test-station".to_string());
    options.profile = Some(demo_profile());
    options.operator = Some("tester".to_string());
    options.sim_slot_count = Some(slots);
    options.remember_settings = false;
    options.supervisor_view = Some(false);
    let mut harness = Harness::builder()
        .with_size(size)
        .build_eframe(move |creation| ImprintApp::new(creation, options, None));
    harness.step();
    harness.step();
    (harness, directory)
}

/// For 1, 4, 16 and 64 slots on 1024x600, 1280x800 and 1920x1080 windows, as drawn: every card
/// lies inside the window below the figures, no two cards overlap, each card shows its number
/// (from 1) and its state inside itself, and 4 slots are 2 x 2.
#[test]
fn cards_fit_the_window_without_overlap_from_1_to_64_slots() {
    for (width, height) in [(1024.0, 600.0), (1280.0, 800.0), (1920.0, 1080.0)] {
        let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::Vec2::new(width, height));
        for slots in [1, 4, 16, 64] {
            let (harness, _directory) = operator_view(slots, window.size());
            let figures_bottom = harness.get_by_label("units: 0").rect().bottom();
            let cards: Vec<egui::Rect> = (0..slots)
                .map(|slot| harness.get_by_label(&format!("slot {n} card", n = slot + 1)).rect())
                .collect();
            let case = format!("{slots} slots in {width}x{height}");
            for (slot, card) in cards.iter().enumerate() {
                assert!(window.contains_rect(*card), "{case}: card {slot} at {card:?} leaves the window");
                assert!(card.top() >= figures_bottom, "{case}: card {slot} at {card:?} covers the figures");
                assert!(card.width() >= 60.0 && card.height() >= 30.0, "{case}: card {slot} is {card:?}");
                for label in [
                    format!("slot {n} number: {n}", n = slot + 1),
                    format!("slot {n} state: IDLE", n = slot + 1),
                ] {
                    let inner = harness.get_by_label(&label).rect();
                    assert!(
                        card.expand(1.0).contains_rect(inner),
                        "{case}: {label:?} at {inner:?} is outside {card:?}"
                    );
                }
                for (other, other_card) in cards.iter().enumerate().skip(slot + 1) {
                    assert!(!card.intersects(*other_card), "{case}: cards {slot} and {other} overlap");
                }
            }
            if slots == 4 {
                assert_eq!(cards[0].top(), cards[1].top(), "{case}: slots 1 and 2 share the first row");
                assert_eq!(cards[2].top(), cards[3].top(), "{case}: slots 3 and 4 share the second row");
                assert!(cards[2].top() > cards[0].bottom(), "{case}: 2 x 2, not 3 + 1");
            }
        }
    }
}

/// 64 slots at 1920x1080 each run a unit to PASS: every slot's number, state and serial show
/// on its (compact) card.
#[test]
fn a_64_slot_window_shows_every_slot_by_its_label() {
    let mut gui = gui(64, |options| options.supervisor_view = Some(false));
    gui.harness.set_size(egui::Vec2::new(1920.0, 1080.0));
    gui.harness.step();
    gui.run_one_unit_per_slot(64, |gui| gui.click("Start line"));
    for slot in 0..64 {
        gui.harness.get_by_label(&format!("slot {n} number: {n}", n = slot + 1));
        gui.harness.get_by_label(&format!("slot {n} state: PASS", n = slot + 1));
        let unit_label = format!("slot {n} unit: serial DS1-", n = slot + 1);
        assert!(gui.harness.get_by_label_contains(&unit_label).rect().width() > 0.0);
    }
    assert_eq!(figure(&gui, "pass"), Some(64));
}

/// The demo profile (or its scanned-serials variant) with `scanner` as its `[scanner]` section
/// and `rework` as its rework policy, written into `directory`.
fn profile_with_scanner(directory: &Path, scanned_serials: bool, rework: &str, scanner: &str) -> PathBuf {
    let text =
        if scanned_serials { common::scanned_serials_profile_text() } else { common::demo_profile_text() };
    let text = text
        .replace("[trust]", &format!("[scanner]\n{scanner}\n\n[trust]"))
        .replace("rework = \"reuse-identity\"", &format!("rework = \"{rework}\""));
    let path = directory.join("scanner.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Gui {
    /// Clicks through the accessibility tree (a widget low in the scrolled side panel may be
    /// outside the window, where a pointer click cannot reach it).
    fn click_by_name(&mut self, label: &str) {
        self.harness.get_by_label(label).click_accesskit();
        self.harness.step();
    }

    /// A keyboard-wedge scan: the text and Enter into the scanner field.
    fn scan(&mut self, text: &str) {
        type_into(&mut self.harness, "Scanner", text);
        self.harness.key_press(Key::Enter);
        self.harness.step();
    }

    /// The full chip ID a card shows for its unit (`slot N unit: serial S, chip C`).
    fn card_chip(&self, slot_number: usize) -> String {
        let prefix = format!("slot {slot_number} unit: ");
        let node = self.harness.get_by_label_contains(&prefix);
        let label = node.accesskit_node().label().or(node.accesskit_node().value()).unwrap_or_default();
        label.rsplit("chip ").next().unwrap_or_default().to_string()
    }
}

#[test]
fn scans_are_routed_by_what_they_are_and_a_slot_label_starts_a_slot_above_eight() {
    let directory = tempfile::tempdir().unwrap();
    let scanner = "serial = \"DS1-[0-9]{6}\"\nwork_order = \"WO-[0-9]+\"\noperator = \"OP-[A-Z]+\"";
    let profile = profile_with_scanner(directory.path(), false, "reuse-identity", scanner);
    let mut gui = gui(10, |options| {
        options.profile = Some(profile);
        options.operator = None;
        options.manual_start = Some(true);
    });
    gui.wait_for_label_containing("demo-sensor");
    // A badge logs in; nothing else is taken while nobody is logged in.
    gui.scan("WO-1234");
    gui.wait_for_label_containing("scan refused: scan \"WO-1234\": log in first");
    assert!(gui.harness.query_by_label_contains("work order: ").is_none());
    gui.scan("OP-ANNA");
    gui.wait_for_label("operator: OP-ANNA");
    gui.harness.get_by_label("scan taken: operator OP-ANNA logged in");
    gui.scan("WO-1234");
    gui.wait_for_label("work order: WO-1234");
    // A serial label is never taken as the work order of a counter profile, and a scan that
    // matches no pattern is refused beside the field; neither changes anything.
    gui.scan("DS1-000007");
    gui.wait_for_label_containing("scan refused: serial label DS1-000007: this profile issues its serials");
    gui.scan("hello-world");
    gui.wait_for_label_containing("scan refused: scan \"hello-world\" matches no pattern (serial label");
    gui.harness.get_by_label("work order: WO-1234");
    gui.harness.get_by_label("operator: OP-ANNA");

    // The fixture's slot label starts slot 10 (numbered from 1 on its barcode and on screen).
    gui.click("Start line");
    gui.wait_for_label("slot 10 state: WAITING for start");
    gui.scan("SLOT-10");
    gui.wait_for_label("slot 10 state: PASS");
    gui.harness.get_by_label_contains("slot 10 unit: serial DS1-000001");
    gui.harness.get_by_label("slot 1 state: WAITING for start");
    gui.scan("SLOT-11");
    gui.wait_for_label_containing("scan refused: slot label for slot 11: this line has slots 1 to 10");
    // Another operator's badge does not take over a running line.
    gui.scan("OP-BOB");
    gui.wait_for_label_containing(
        "scan refused: operator badge OP-BOB: OP-ANNA is logged in while the line runs",
    );
    gui.harness.get_by_label("operator: OP-ANNA");
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 1 units, 1 pass");
    // Stopped, the badge is a shift change.
    gui.scan("OP-BOB");
    gui.wait_for_label("operator: OP-BOB");

    // The ledger's export records the unit with the scanned work order and operator.
    let export = directory.path().join("export.jsonl");
    let exported = common::imprint()
        .args(["log", "export", "--format", "jsonl", "--db"])
        .arg(&gui.ledger_path)
        .arg("--output")
        .arg(&export)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let runs: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|record: &serde_json::Value| record.get("serial").is_some())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["serial"], "DS1-000001");
    assert_eq!(runs[0]["work_order"], "WO-1234");
    assert_eq!(runs[0]["operator"], "OP-ANNA");
}

#[test]
fn a_serial_label_goes_to_its_slot_and_shows_on_its_card_before_its_serial_is_issued() {
    let directory = tempfile::tempdir().unwrap();
    let profile = profile_with_scanner(directory.path(), true, "reuse-identity", "serial = \"LBL-[0-9]{4}\"");
    let mut gui = gui(10, |options| {
        options.profile = Some(profile);
        options.manual_start = Some(true);
        // The simulated nRF52840's own timing: a unit takes seconds, so the card is seen
        // while it runs.
        options.sim_timing_zero = Some(false);
    });
    gui.click("Start line");
    gui.wait_for_label("slot 9 state: WAITING for start");
    gui.scan("SLOT-9");
    gui.wait_for_label("scanner slot: 9");
    gui.scan("LBL-7001");
    // The label is on slot 9's card while its unit still runs its first steps (the serial is
    // issued at allocate-identity, after flashing).
    gui.wait_until("slot 9's card to show the label while its unit runs", |harness| {
        let state = harness
            .query_by_label_contains("slot 9 state: ")
            .and_then(|node| node.accesskit_node().label().or(node.accesskit_node().value()))
            .unwrap_or_default();
        let early = ["connect", "identify", "erase", "program"].iter().any(|step| state.contains(step));
        early && harness.query_by_label_contains("slot 9 unit: serial LBL-7001").is_some()
    });
    gui.harness.get_by_label("scan taken: serial label LBL-7001 to slot 9");
    // A label already on a card is refused at once.
    gui.scan("LBL-7001");
    gui.wait_for_label("scan refused: serial label LBL-7001 is already on slot 9");
    // A slot prefix sends a label to any slot.
    gui.scan("SLOT-12 LBL-7002");
    gui.wait_for_label_containing("scan refused: slot label for slot 12: this line has slots 1 to 10");
    gui.wait_for_label("slot 9 state: PASS");
    gui.harness.get_by_label_contains("slot 9 unit: serial LBL-7001");
    gui.harness.get_by_label("slot 1 state: WAITING for start");
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 1 units, 1 pass");
}

#[test]
fn a_duplicate_label_is_refused_at_the_scan_or_before_any_flash_step() {
    // Policy issue-new: a label issued before can never be a serial again, so the window
    // refuses it at the scan and no slot starts.
    let directory = tempfile::tempdir().unwrap();
    let issue_new = profile_with_scanner(directory.path(), true, "issue-new", "serial = \"LBL-[0-9]{4}\"");
    let mut gui = gui(2, |options| {
        options.profile = Some(issue_new);
        options.manual_start = Some(true);
    });
    gui.click("Start line");
    gui.wait_for_label("slot 2 state: WAITING for start");
    gui.scan("LBL-7001");
    gui.wait_for_label("slot 1 state: PASS");
    let first_chip = gui.card_chip(1);
    gui.scan("SLOT-2 LBL-7001");
    gui.wait_for_label_containing(&format!(
        "scan refused: serial label LBL-7001 refused: serial LBL-7001 was already issued (to chip {first_chip})"
    ));
    gui.harness.get_by_label("slot 2 state: WAITING for start");
    assert_eq!(figure(&gui, "units"), Some(1));
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 1 units");

    // Policy reuse-identity (the default): the label may be its own chip coming back, so the
    // scan is taken, and the station refuses another chip at check-identity, before erase.
    let directory = tempfile::tempdir().unwrap();
    let reuse = profile_with_scanner(directory.path(), true, "reuse-identity", "serial = \"LBL-[0-9]{4}\"");
    let mut gui = self::gui(2, |options| {
        options.profile = Some(reuse);
        options.manual_start = Some(true);
    });
    gui.click("Start line");
    gui.wait_for_label("slot 2 state: WAITING for start");
    gui.scan("LBL-7001");
    gui.wait_for_label("slot 1 state: PASS");
    let first_chip = gui.card_chip(1);
    gui.scan("SLOT-2 LBL-7001");
    gui.wait_for_label_containing(
        "slot 2 state: FAIL at check-identity: scanned serial label LBL-7001 refused before flashing",
    );
    let owner = format!("serial LBL-7001 was already issued (to chip {first_chip})");
    assert!(gui.harness.query_all_by_label_contains(&owner).next().is_some(), "the reason names the unit");
    let refused_chip = gui.card_chip(2);
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished: 2 units, 1 pass, 1 fail");
    let ledger = imprint::ledger::Ledger::open_read_only(&gui.ledger_path).unwrap();
    let history = ledger.unit_history(&refused_chip).unwrap().expect("the refused unit's run is recorded");
    assert!(history.current.is_none(), "the refused unit got no identity");
    let run = &history.runs[0];
    assert_eq!((run.result.as_str(), run.failing_step.as_deref()), ("fail", Some("check-identity")));
    let touched: Vec<&str> =
        run.steps.iter().filter(|step| step.status != "skipped").map(|step| step.name.as_str()).collect();
    assert_eq!(
        touched,
        ["connect", "identify", "check-identity"],
        "the refused unit was never erased or programmed"
    );
}

#[test]
fn removing_a_failed_board_from_its_fixture_acknowledges_the_latch() {
    // The log capture as in `an_injected_fault_shows_fail_with_its_reason_in_the_slot_and_the_log`.
    let (layer, receiver) = log_channel();
    let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut gui = gui_with_log(
        2,
        |options| options.sim_faults = vec![SimFaultSpec::parse("0.1:probe-lost=erase").unwrap()],
        Some(receiver),
    );
    gui.click("Start line");
    gui.wait_for_label("Acknowledge slot 1");
    gui.click_by_name("Remove board on slot 1");
    gui.wait_until("the latch released", |harness| harness.query_by_label("Acknowledge slot 1").is_none());
    gui.harness.get_by_label("boards removed: slot 1");
    gui.harness.get_by_label("Put board back on slot 1");
    // The board stays on the shift's list, and the acknowledgement is logged like a click.
    gui.harness.get_by_label("failed boards: 1 open of 1");
    gui.wait_for_label_containing("the failed board was removed: that acknowledges its failure");
    gui.wait_for_label_containing("failure acknowledged: the slot takes units again");
    gui.click_by_name("Put board back on slot 1");
    gui.wait_until("the board back", |harness| harness.query_by_label_contains("boards removed").is_none());
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished");
}

#[test]
fn taking_a_failed_board_off_a_gdb_fixture_acknowledges_its_latch() {
    use imprint::device::qemu::{QemuInstance, QemuOptions};

    // A GDB server with a board on it: QEMU running the reference firmware, its unique ID
    // programmed "at the factory". The identity profile with device-made keys fails every unit
    // at device-key (mps2-an385 has no entropy source), after flashing.
    let (instance, mut client) = QemuInstance::start(&QemuOptions::default()).unwrap();
    client.write_memory(reference_board::UNIQUE_ID_ADDRESS, &[0x5A; 12]).unwrap();
    drop(client);
    let profiles = common::repo_root().join("profiles");
    let text = std::fs::read_to_string(profiles.join("qemu-mps2-an385-identity.toml")).unwrap();
    let text = common::absolutize_profile_paths(&text, &profiles)
        .replace("key_origin = \"station\"", "key_origin = \"device\"")
        .replace("report = \"console\"", "report = \"mailbox\"");
    let directory = tempfile::tempdir().unwrap();
    let profile = common::write_profile(directory.path(), "qemu-device-keys.toml", &text);
    let selector = format!("gdb:{}", instance.gdb_address());
    let mut gui = gui(1, |options| {
        options.profile = Some(profile);
        options.probes = vec![selector.clone()];
        options.sim_slot_count = None;
        options.unit_change_delay_ms = Some(0);
    });
    gui.click("Start line");
    gui.wait_for_label("Acknowledge slot 1");
    gui.harness.get_by_label("failed boards: 1 open of 1");
    gui.harness.get_by_label_contains("slot 1 state: FAIL at device-key");
    // The latch holds while the failed board stays on the fixture (the slot asks its fixture
    // about it twice a second meanwhile).
    let held_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < held_until {
        gui.harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    gui.harness.get_by_label("Acknowledge slot 1");

    // The operator swaps the board: the server now answers with another unit's ID. Nobody
    // touches the window: the fixture's report acknowledges the failure, and the next board
    // runs (and fails the same way, latching the slot again).
    reference_board::program_unique_id(&instance.gdb_address(), &[0x5B; 12]);
    gui.wait_for_label("failed boards: 2 open of 2");
    gui.harness.get_by_label("Acknowledge slot 1");
    gui.click("Stop line");
    gui.wait_for_label_containing("line status: line finished");
    // The ledger: the swapped-out board, then the new one, each failed once at device-key.
    let runs = common::exported_runs(&gui.ledger_path, gui.directory.path());
    let boards: Vec<(String, String, String)> = runs
        .iter()
        .map(|run| {
            let field = |name: &str| run[name].as_str().unwrap_or_default().to_string();
            (field("chip_uid"), field("result"), field("failing_step"))
        })
        .collect();
    let failed_at_device_key = |chip: &str| (chip.to_string(), "fail".to_string(), "device-key".to_string());
    assert_eq!(boards, vec![failed_at_device_key(&"5a".repeat(12)), failed_at_device_key(&"5b".repeat(12))]);
}

#[test]
fn the_supervisor_pin_also_locks_manual_start_and_the_slot_count() {
    use egui::accesskit::Role;
    let mut gui = gui(2, |_| {});
    let slot_count_is_locked = |gui: &Gui| {
        gui.harness
            .query_all_by_label("Slots")
            .filter(|node| node.accesskit_node().role() == Role::SpinButton)
            .all(|node| node.accesskit_node().is_disabled())
    };
    gui.click_by_name("Station settings");
    assert!(!gui.harness.get_by_label("Manual start").accesskit_node().is_disabled());
    assert!(
        gui.harness.query_all_by_label("Slots").any(|node| node.accesskit_node().role() == Role::SpinButton)
    );
    assert!(!slot_count_is_locked(&gui));
    type_into(&mut gui.harness, "Set a supervisor PIN", "4711");
    gui.click_by_name("Set PIN");
    gui.harness.step();
    gui.wait_for_label("supervisor: supervisor PIN set: the station settings are locked");
    assert!(gui.harness.get_by_label("Manual start").accesskit_node().is_disabled());
    assert!(slot_count_is_locked(&gui));
    // A click on the locked switch changes nothing.
    gui.click("Manual start");
    assert_eq!(
        gui.harness.get_by_label("Manual start").accesskit_node().toggled(),
        Some(egui::accesskit::Toggled::False)
    );
    type_into(&mut gui.harness, "Supervisor PIN", "4711");
    gui.click_by_name("Unlock");
    gui.harness.step();
    gui.wait_until("the switch unlocked", |harness| {
        !harness.get_by_label("Manual start").accesskit_node().is_disabled()
    });
    assert!(!slot_count_is_locked(&gui));
}
