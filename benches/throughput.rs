//! Line throughput benchmark: `cargo bench --bench throughput`.
//!
//! Prints, each measured in this run (see docs/performance.md for recorded figures):
//! - station overhead per unit on the zero-latency sim (wall time minus time inside device
//!   calls), p50 and p99, against the 5 ms goal;
//! - efficiency at realistic timing = modelled hardware busy time / measured wall time per unit;
//! - throughput with 1, 2, 4, 8, 16, 32, 64 slots as a multiple of one slot (goal: 64 slots
//!   >= 60 x one slot);
//! - rework speed-up from skip-unchanged for a 512 KiB application;
//! - ledger commits per second with synchronous=FULL;
//! - peak RSS of a 16-slot run (measured in a child process).
//!
//! `IMPRINT_BENCH_QUICK=1` shrinks every phase (a smoke run, not for recording);
//! `IMPRINT_BENCH_ONLY=efficiency,scaling` runs only the phases named (`overhead`, `efficiency`,
//! `scaling`, `rework`, `commits`, `rss`), to repeat one figure without the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use imprint::device::sim::{FaultPlan, SimDevice, SimFixture, SimTarget};
use imprint::device::{ChipDescription, Fixture, Target, TargetError};
use imprint::identity::ChipUid;
use imprint::ledger::{Ledger, RunRecord, RunResult, StepRecord, StepStatus};
use imprint::profile::{Profile, SimTiming};
use imprint::station::{
    CancelToken, DiscardEvents, SelfTestMaterial, StationContext, UnitResult, provision_unit, run_line,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn quick() -> bool {
    std::env::var_os("IMPRINT_BENCH_QUICK").is_some()
}

/// Whether the phase `name` runs (all of them unless `IMPRINT_BENCH_ONLY` names some).
fn phase(name: &str) -> bool {
    std::env::var("IMPRINT_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|wanted| wanted.trim() == name))
}

fn context(profile: Profile, directory: &Path) -> Arc<StationContext> {
    Arc::new(StationContext {
        self_test: Some(Arc::new(SelfTestMaterial::prepare(&profile).expect("self-test material"))),
        ledger: Ledger::open(&directory.join(format!("bench-{}.db", rand_suffix()))).expect("ledger"),
        profile: Arc::new(profile),
        station_name: "bench".to_string(),
        operator: "bench".to_string(),
        events: Arc::new(DiscardEvents),
        cancel: CancelToken::default(),
        labels: Default::default(),
    })
}

fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("randomness");
    u64::from_le_bytes(bytes)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Wraps a target and adds up the time spent inside its calls.
struct TimedTarget<'a> {
    inner: &'a mut dyn Target,
    inside: Duration,
}

impl TimedTarget<'_> {
    fn time<T>(&mut self, call: impl FnOnce(&mut dyn Target) -> T) -> T {
        let started = Instant::now();
        let result = call(&mut *self.inner);
        self.inside += started.elapsed();
        result
    }
}

impl Target for TimedTarget<'_> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn probe_identifier(&self) -> String {
        self.inner.probe_identifier()
    }
    fn connect(&mut self) -> Result<ChipDescription, TargetError> {
        self.time(|target| target.connect())
    }
    fn read_unique_id(&mut self) -> Result<ChipUid, TargetError> {
        self.time(|target| target.read_unique_id())
    }
    fn read_memory(&mut self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.time(|target| target.read_memory(address, buffer))
    }
    fn write_ram(&mut self, address: u64, data: &[u8]) -> Result<(), TargetError> {
        self.time(|target| target.write_ram(address, data))
    }
    fn erase_flash(
        &mut self,
        address: u64,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.time(|target| target.erase_flash(address, size, progress))
    }
    fn program_flash(
        &mut self,
        address: u64,
        data: &[u8],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TargetError> {
        self.time(|target| target.program_flash(address, data, progress))
    }
    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.time(|target| target.reset_and_run())
    }
    fn halt(&mut self) -> Result<(), TargetError> {
        self.time(|target| target.halt())
    }
    fn lock(&mut self) -> Result<(), TargetError> {
        self.time(|target| target.lock())
    }
    fn is_locked(&mut self) -> Result<bool, TargetError> {
        self.time(|target| target.is_locked())
    }
    fn unlock_by_mass_erase(&mut self) -> Result<(), TargetError> {
        self.time(|target| target.unlock_by_mass_erase())
    }
    fn checksum_crc32(&mut self, address: u64, length: u64) -> Result<Option<u32>, TargetError> {
        self.time(|target| target.checksum_crc32(address, length))
    }
    fn take_console_lines(&mut self) -> Option<Vec<String>> {
        self.inner.take_console_lines()
    }
    fn has_debug_port(&self) -> bool {
        self.inner.has_debug_port()
    }
    fn note_step(&mut self, step_name: &str) {
        self.inner.note_step(step_name)
    }
}

fn fresh_target(profile: &Profile, timing: SimTiming, index: u64) -> SimTarget {
    let mut uid = vec![0xB0; 12];
    uid[..8].copy_from_slice(&(index ^ rand_suffix()).to_le_bytes());
    SimTarget::new(
        SimDevice::new(&profile.firmware.as_ref().expect("the profile flashes firmware").memory, uid),
        &profile.chip_name,
        "bench",
        timing,
        FaultPlan::default(),
    )
}

fn station_overhead(profile: &Profile, directory: &Path) {
    let units = if quick() { 30 } else { 500 };
    let context = context(profile.clone(), directory);
    let mut overheads_ms = Vec::with_capacity(units);
    let mut walls_ms = Vec::with_capacity(units);
    for index in 0..units {
        let mut sim = fresh_target(profile, SimTiming::default(), index as u64);
        let mut timed = TimedTarget { inner: &mut sim, inside: Duration::ZERO };
        let started = Instant::now();
        let outcome = provision_unit(&context, &mut timed, 0, index as u64 + 1);
        let wall = started.elapsed();
        assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
        overheads_ms.push((wall - timed.inside).as_secs_f64() * 1000.0);
        walls_ms.push(wall.as_secs_f64() * 1000.0);
    }
    overheads_ms.sort_by(f64::total_cmp);
    walls_ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&overheads_ms, 0.5), percentile(&overheads_ms, 0.99));
    println!("station overhead per unit (zero-latency sim, {units} units, 1 slot):");
    println!(
        "  p50 {p50:.2} ms  p99 {p99:.2} ms  (goal < 5 ms: p50 = {:.2} x goal, p99 = {:.2} x goal)",
        p50 / 5.0,
        p99 / 5.0
    );
    println!("  whole unit wall time p50 {:.2} ms (device calls included)", percentile(&walls_ms, 0.5));
}

fn efficiency(profile: &Profile, directory: &Path) {
    let units = if quick() { 2 } else { 8 };
    let context = context(profile.clone(), directory);
    let (mut busy, mut inside, mut wall) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for index in 0..units {
        let mut sim = fresh_target(profile, profile.sim_timing, 10_000 + index);
        let mut timed = TimedTarget { inner: &mut sim, inside: Duration::ZERO };
        let started = Instant::now();
        let outcome = provision_unit(&context, &mut timed, 0, index + 1);
        wall += started.elapsed();
        inside += timed.inside;
        busy += sim.modeled_busy();
        assert_eq!(outcome.result, UnitResult::Pass, "{outcome:?}");
    }
    let per_unit_ms = |duration: Duration| duration.as_secs_f64() * 1000.0 / units as f64;
    println!("efficiency at realistic timing ({units} units, 1 slot, profiles/demo.toml [sim]):");
    println!(
        "  modelled hardware time {:.1} ms / measured {:.1} ms per unit = {:.4} (goal >= 0.99)",
        per_unit_ms(busy),
        per_unit_ms(wall),
        busy.as_secs_f64() / wall.as_secs_f64()
    );
    // Where the rest goes: inside device calls beyond the modelled delays is the simulator's
    // own error (sleeps overshooting, its own CPU work); outside device calls is the station's.
    println!(
        "  of the {:.1} ms per unit beyond the model: simulator {:.1} ms (inside device calls), station {:.1} ms (outside device calls)",
        per_unit_ms(wall.saturating_sub(busy)),
        per_unit_ms(inside.saturating_sub(busy)),
        per_unit_ms(wall.saturating_sub(inside))
    );
}

fn slot_scaling(profile: &Profile, directory: &Path) {
    let units_per_slot = if quick() { 1 } else { 3 };
    println!(
        "throughput at realistic timing ({units_per_slot} units per slot; goal: 64 slots >= 60 x one slot):"
    );
    let mut one_slot_rate = 0.0;
    for slots in [1usize, 2, 4, 8, 16, 32, 64] {
        let context = context(profile.clone(), directory);
        let fixtures: Vec<Box<dyn Fixture>> = (0..slots)
            .map(|slot| {
                Box::new(SimFixture::new(
                    &format!("sim-{slot}"),
                    &profile.chip_name,
                    &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
                    profile.sim_timing,
                    None,
                )) as Box<dyn Fixture>
            })
            .collect();
        let summary = run_line(context, fixtures, Some((slots * units_per_slot) as u64));
        assert_eq!(summary.failed(), 0);
        let rate = summary.units_per_hour();
        if slots == 1 {
            one_slot_rate = rate;
        }
        println!(
            "  {slots:>2} slots: {rate:>8.0} units/hour = {:.2} x one slot (ideal {slots})",
            rate / one_slot_rate
        );
    }
}

/// A copy of the demo profile with a 512 KiB application and a self-test payload that is the
/// same build with only its version header changed (a release bump).
fn large_application_profile(directory: &Path) -> Profile {
    let size = 512 * 1024;
    let mut application = Vec::with_capacity(size);
    let mut counter = 0u32;
    while application.len() < size {
        application.extend_from_slice(&sha_block(counter));
        counter += 1;
    }
    application.truncate(size);
    let mut payload = application.clone();
    application[8..40].copy_from_slice(&pad32(b"IMPRINT BENCH APP 1.0.0"));
    payload[8..40].copy_from_slice(&pad32(b"IMPRINT BENCH APP 1.0.1"));
    std::fs::write(directory.join("app-512k.bin"), &application).expect("write app");
    std::fs::write(directory.join("app-512k-1.0.1.bin"), &payload).expect("write payload");
    let profiles = repo().join("profiles");
    let text = std::fs::read_to_string(profiles.join("demo.toml"))
        .expect("demo profile")
        .replace("\"../", &format!("\"{}/", repo().display()))
        .replace("\"demo-credentials/", &format!("\"{}/demo-credentials/", profiles.display()))
        .replace(
            &format!(
                "{{ path = \"{}/firmware-blobs/demo/application.hex\", version = \"1.0.0\" }}",
                repo().display()
            ),
            &format!(
                "{{ path = \"{}\", format = \"bin\", base_address = 0x8000, version = \"1.0.0\" }}",
                directory.join("app-512k.bin").display()
            ),
        )
        .replace(
            &format!("{}/firmware-blobs/demo/application-1.0.1.bin", repo().display()),
            &directory.join("app-512k-1.0.1.bin").display().to_string(),
        )
        // Room for 512 KiB slots: a 2 MiB part with the same sector geometry.
        .replace("size = 0x10_0000 }", "size = 0x20_0000 }")
        .replace(
            "application = { address = 0x0000_8000, size = 0x7_8000",
            "application = { address = 0x0000_8000, size = 0x9_0000",
        )
        .replace(
            "candidate   = { address = 0x0008_0000, size = 0x7_8000",
            "candidate   = { address = 0x0009_8000, size = 0x9_0000",
        )
        .replace("config      = { address = 0x000F_8000", "config      = { address = 0x0012_8000")
        // A rework reaches an unlocked unit (a locked one would need a mass erase first).
        .replace("[lock]\nenabled = true", "[lock]\nenabled = false");
    let path = directory.join("large-app.toml");
    std::fs::write(&path, text).expect("write profile");
    Profile::load(&path).expect("large-application profile")
}

fn sha_block(counter: u32) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(counter.to_le_bytes()).into()
}

fn pad32(text: &[u8]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..text.len()].copy_from_slice(text);
    bytes
}

fn rework(directory: &Path) {
    let profile = large_application_profile(directory);
    assert_eq!(
        profile.firmware.as_ref().expect("the profile flashes firmware").application_image.size_bytes(),
        512 * 1024
    );
    let context = context(profile.clone(), directory);
    let mut target = fresh_target(&profile, profile.sim_timing, 77);
    let started = Instant::now();
    let first = provision_unit(&context, &mut target, 0, 1);
    let fresh = started.elapsed();
    assert_eq!(first.result, UnitResult::Pass, "{first:?}");
    let device = target.into_device();
    let mut again =
        SimTarget::new(device, &profile.chip_name, "bench", profile.sim_timing, FaultPlan::default());
    let started = Instant::now();
    let second = provision_unit(&context, &mut again, 0, 2);
    let reworked = started.elapsed();
    assert_eq!(second.result, UnitResult::Pass, "{second:?}");
    println!("rework with skip-unchanged (512 KiB application, realistic timing):");
    println!(
        "  fresh unit {:.2} s, rework {:.2} s: {:.2} x faster (goal >= 5 x)",
        fresh.as_secs_f64(),
        reworked.as_secs_f64(),
        fresh.as_secs_f64() / reworked.as_secs_f64()
    );
}

fn ledger_commits(directory: &Path) {
    let commits = if quick() { 50 } else { 1_000 };
    let ledger = Ledger::open(&directory.join("commits.db")).expect("ledger");
    let steps: Vec<StepRecord> =
        ["connect", "identify", "erase", "program-bootloader", "program-application", "verify-flash"]
            .iter()
            .map(|name| StepRecord {
                name: name.to_string(),
                status: StepStatus::Passed,
                started_at: SystemTime::now(),
                duration_ms: 12,
                detail: serde_json::json!({ "bytes_written": 4096, "sha256": "00".repeat(32) }),
            })
            .collect();
    let started = Instant::now();
    for index in 0..commits {
        ledger
            .record_run(&RunRecord {
                station: "bench".to_string(),
                operator: "bench".to_string(),
                probe: "sim-0".to_string(),
                profile_name: "bench".to_string(),
                profile_sha256: "00".repeat(32),
                image_sha256s: vec![("application".to_string(), "11".repeat(32))],
                chip_uid_hex: Some(format!("{index:024x}")),
                serial: None,
                device_id: None,
                started_at: SystemTime::now(),
                finished_at: SystemTime::now(),
                result: RunResult::Fail,
                failing_step: Some("verify-flash".to_string()),
                reason: Some("bench".to_string()),
                steps: steps.clone(),
            })
            .expect("record run");
    }
    let elapsed = started.elapsed();
    println!("ledger commits with synchronous=FULL ({commits} single-run transactions, 6 steps each):");
    println!(
        "  {:.0} commits/s ({:.2} ms each) = {:.1} x the 16-slot line's need at realistic timing",
        commits as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / commits as f64,
        // 16 slots of ~6 s units need 16/6 commits per second.
        (commits as f64 / elapsed.as_secs_f64()) / (16.0 / 6.0)
    );
}

fn peak_rss_child() {
    // Runs in a child process: a 16-slot line at zero latency, then prints VmHWM.
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = Profile::load(&repo().join("profiles/demo.toml")).expect("demo profile");
    let context = context(profile.clone(), directory.path());
    let fixtures: Vec<Box<dyn Fixture>> = (0..16)
        .map(|slot| {
            Box::new(SimFixture::new(
                &format!("sim-{slot}"),
                &profile.chip_name,
                &profile.firmware.as_ref().expect("the profile flashes firmware").memory,
                SimTiming::default(),
                None,
            )) as Box<dyn Fixture>
        })
        .collect();
    let units = if quick() { 32 } else { 320 };
    let summary = run_line(context, fixtures, Some(units));
    assert_eq!(summary.failed(), 0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|line| line.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
    println!("  16 slots, {units} units: {}", peak.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
}

fn main() {
    if std::env::var_os("IMPRINT_BENCH_PEAK_RSS_CHILD").is_some() {
        peak_rss_child();
        return;
    }
    // `cargo bench` passes --bench. `cargo test --all-targets` runs this binary without it: then
    // only a short smoke run of the overhead phase, so the test suite does not run a benchmark.
    if !std::env::args().any(|argument| argument == "--bench") {
        let directory = tempfile::tempdir().expect("temp dir");
        let profile = Profile::load(&repo().join("profiles/demo.toml")).expect("demo profile");
        let context = context(profile.clone(), directory.path());
        for index in 0..3 {
            let mut target = fresh_target(&profile, SimTiming::default(), index);
            assert_eq!(provision_unit(&context, &mut target, 0, index + 1).result, UnitResult::Pass);
        }
        println!("throughput bench: smoke run only (use `cargo bench --bench throughput` to measure)");
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let profile = Profile::load(&repo().join("profiles/demo.toml")).expect("demo profile");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model()
    );
    if phase("overhead") {
        station_overhead(&profile, directory.path());
    }
    if phase("efficiency") {
        efficiency(&profile, directory.path());
    }
    if phase("scaling") {
        slot_scaling(&profile, directory.path());
    }
    if phase("rework") {
        rework(directory.path());
    }
    if phase("commits") {
        ledger_commits(directory.path());
    }
    if phase("rss") {
        println!("peak RSS (VmHWM) of a 16-slot run:");
        let status = std::process::Command::new(std::env::current_exe().expect("bench binary"))
            .env("IMPRINT_BENCH_PEAK_RSS_CHILD", "1")
            .status()
            .expect("run peak RSS child");
        assert!(status.success());
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
