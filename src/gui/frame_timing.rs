//! Frame timing: how long the UI closure takes and how often frames are actually painted,
//! measured in the running app (not estimated), so "the UI stays responsive with 16 slots"
//! is a number in docs/performance.md.
//!
//! Three series are kept while the line runs (an idle egui app paints only on input, so idle
//! frames say nothing about load): the duration of each `App::ui` call (event folding and
//! layout, without the renderer); eframe's own measure of each frame's CPU time (`App::ui` plus
//! tessellation and rendering, without waiting for vsync); and the interval between the starts
//! of consecutive frames (everything, as the operator sees it).
//!
//! The UI closure is timed twice: by the wall clock (what the operator waits for) and by the UI
//! thread's own CPU time (what the closure costs; on a loaded machine the wall time also holds
//! the time the thread waited for a core). The slowest frames are kept with what they did, so a
//! spike in the report can be told apart: preemption, a burst of events, or the glyph atlas
//! being rebuilt. Where Linux says (`/proc/thread-self/schedstat`), each frame also records how
//! long the UI thread was ready to run but waited for a core during the closure, so preemption
//! is measured rather than inferred from the gap between the two clocks.

use std::time::{Duration, Instant};

use serde::Serialize;

/// At most this many samples per series are kept for the report (about an hour at 60 fps);
/// later samples replace earlier ones round-robin, so memory stays bounded.
const SAMPLES_MAX: usize = 200_000;
/// The status bar's rolling window.
const RECENT_FRAMES: usize = 240;
/// How many of the slowest frames the report describes.
const SLOWEST_KEPT: usize = 8;

/// Percentiles of one series, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What the app reports at exit (`imprint gui --frame-stats FILE`). Every series covers the
/// frames painted while the line ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameStats {
    /// Duration of the UI closure (`App::ui`), by the wall clock.
    pub ui_closure: Option<Percentiles>,
    /// The UI thread's CPU time during the closure (`None` where the system does not say).
    pub ui_closure_cpu: Option<Percentiles>,
    /// How long the UI thread was ready to run but waited for a core during the closure
    /// (`None` where the system does not say).
    pub ui_closure_waiting: Option<Percentiles>,
    /// eframe's CPU time of a whole frame (UI closure, tessellation, rendering; no vsync wait).
    pub whole_frame_cpu: Option<Percentiles>,
    /// Interval between frame starts.
    pub frame_interval: Option<Percentiles>,
    /// Frames painted in all.
    pub frames: u64,
    /// Slots on the line when the report was made.
    pub slots: usize,
    /// Station events folded into the stores.
    pub events: u64,
    /// The counted frames with the longest UI closures, slowest first.
    pub slowest_frames: Vec<FrameSample>,
}

/// One frame's UI closure and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameSample {
    /// The frame's number (from 0, counted since the window opened).
    pub frame: u64,
    /// Milliseconds since the first counted frame.
    pub at_ms: f64,
    /// The closure by the wall clock.
    pub closure_ms: f64,
    /// The closure's CPU time on the UI thread.
    pub closure_cpu_ms: Option<f64>,
    /// Time the UI thread was ready to run but waited for a core during the closure.
    pub waiting_ms: Option<f64>,
    /// Station events folded in this frame.
    pub events: u64,
    /// Milliseconds of the closure spent folding them (and the other workers' replies).
    pub folding_ms: f64,
    /// How full egui's glyph atlas was at the end of the frame (egui empties it above 0.8, and
    /// every glyph is then rasterized again).
    pub glyph_atlas_fill: f32,
}

/// What one frame measured, handed to [`FrameTimer::frame_finished`].
#[derive(Debug, Clone, Copy)]
pub struct FrameWork {
    pub closure: Duration,
    /// The part of `closure` spent folding the workers' messages into the stores.
    pub folding: Duration,
    pub closure_cpu: Option<Duration>,
    /// Time the UI thread waited, runnable, for a core during the closure.
    pub waiting: Option<Duration>,
    pub glyph_atlas_fill: f32,
}

/// The calling thread's CPU time so far (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, which
/// counts the running slice up to now; `/proc/thread-self/schedstat` lags by up to a scheduler
/// tick). `None` where the system has no such clock.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let seconds = u64::try_from(time.tv_sec).ok()?;
        let nanos = u32::try_from(time.tv_nsec).ok()?;
        Some(Duration::new(seconds, nanos))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The calling thread's time so far spent ready to run but waiting for a core (the second
/// field of `/proc/thread-self/schedstat`, brought up to date whenever the thread gets a core,
/// so it is current while the thread runs). `None` where the system does not say.
pub fn thread_run_delay() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_ascii_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Collects both series.
#[derive(Debug, Default)]
pub struct FrameTimer {
    ui_closure_ms: Vec<f32>,
    ui_closure_cpu_ms: Vec<f32>,
    ui_closure_waiting_ms: Vec<f32>,
    whole_frame_cpu_ms: Vec<f32>,
    intervals_ms: Vec<f32>,
    recent_ui_closure_ms: std::collections::VecDeque<f32>,
    frames: u64,
    events: u64,
    /// Events folded since the frame started.
    frame_events: u64,
    slowest: Vec<FrameSample>,
    first_counted_frame: Option<Instant>,
    previous_frame_start: Option<Instant>,
    /// Whether the frame being drawn counts (the line runs).
    is_counting: bool,
}

impl FrameTimer {
    /// Call at the start of a frame; `line_running` says whether the frame counts, and
    /// `previous_frame_cpu` is eframe's CPU time of the previous frame.
    pub fn frame_started(&mut self, now: Instant, line_running: bool, previous_frame_cpu: Option<Duration>) {
        // Both samples describe the previous frame: they count if that frame did.
        if self.is_counting {
            if let Some(previous) = self.previous_frame_start {
                push_bounded(&mut self.intervals_ms, self.frames, millis(now.duration_since(previous)));
            }
            if let Some(cpu) = previous_frame_cpu {
                push_bounded(&mut self.whole_frame_cpu_ms, self.frames, millis(cpu));
            }
        }
        self.is_counting = line_running;
        if line_running && self.first_counted_frame.is_none() {
            self.first_counted_frame = Some(now);
        }
        self.previous_frame_start = Some(now);
        self.frame_events = 0;
    }

    /// Call at the end of the UI closure with what it measured.
    pub fn frame_finished(&mut self, work: FrameWork) {
        let ms = millis(work.closure);
        if self.is_counting {
            push_bounded(&mut self.ui_closure_ms, self.frames, ms);
            if let Some(cpu) = work.closure_cpu {
                push_bounded(&mut self.ui_closure_cpu_ms, self.frames, millis(cpu));
            }
            if let Some(waiting) = work.waiting {
                push_bounded(&mut self.ui_closure_waiting_ms, self.frames, millis(waiting));
            }
            self.keep_if_slow(work);
        }
        if self.recent_ui_closure_ms.len() == RECENT_FRAMES {
            self.recent_ui_closure_ms.pop_front();
        }
        self.recent_ui_closure_ms.push_back(ms);
        self.frames += 1;
    }

    /// Counts events folded this frame.
    pub fn count_events(&mut self, events: u64) {
        self.events += events;
        self.frame_events += events;
    }

    fn keep_if_slow(&mut self, work: FrameWork) {
        let closure_ms = f64::from(millis(work.closure));
        if self.slowest.len() == SLOWEST_KEPT
            && self.slowest.last().is_some_and(|fastest_kept| fastest_kept.closure_ms >= closure_ms)
        {
            return;
        }
        let at_ms = match (self.first_counted_frame, self.previous_frame_start) {
            (Some(first), Some(started)) => f64::from(millis(started.duration_since(first))),
            _ => 0.0,
        };
        self.slowest.push(FrameSample {
            frame: self.frames,
            at_ms,
            closure_ms,
            closure_cpu_ms: work.closure_cpu.map(|cpu| f64::from(millis(cpu))),
            waiting_ms: work.waiting.map(|waiting| f64::from(millis(waiting))),
            events: self.frame_events,
            folding_ms: f64::from(millis(work.folding)),
            glyph_atlas_fill: work.glyph_atlas_fill,
        });
        self.slowest.sort_by(|a, b| b.closure_ms.total_cmp(&a.closure_ms));
        self.slowest.truncate(SLOWEST_KEPT);
    }

    /// Percentiles over the last [`RECENT_FRAMES`] frames (for the status bar).
    pub fn recent_ui_closure(&self) -> Option<Percentiles> {
        percentiles(self.recent_ui_closure_ms.iter().copied().collect())
    }

    /// The whole report.
    pub fn stats(&self, slots: usize) -> FrameStats {
        FrameStats {
            ui_closure: percentiles(self.ui_closure_ms.clone()),
            ui_closure_cpu: percentiles(self.ui_closure_cpu_ms.clone()),
            ui_closure_waiting: percentiles(self.ui_closure_waiting_ms.clone()),
            whole_frame_cpu: percentiles(self.whole_frame_cpu_ms.clone()),
            frame_interval: percentiles(self.intervals_ms.clone()),
            frames: self.frames,
            slots,
            events: self.events,
            slowest_frames: self.slowest.clone(),
        }
    }
}

fn millis(duration: Duration) -> f32 {
    (duration.as_secs_f64() * 1000.0) as f32
}

fn push_bounded(samples: &mut Vec<f32>, counter: u64, value: f32) {
    if samples.len() < SAMPLES_MAX {
        samples.push(value);
    } else {
        samples[(counter % SAMPLES_MAX as u64) as usize] = value;
    }
}

/// Nearest-rank percentiles; `None` for no samples.
fn percentiles(mut samples: Vec<f32>) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f32::total_cmp);
    let rank = |percent: f64| {
        let index = ((percent / 100.0) * samples.len() as f64).ceil() as usize;
        f64::from(samples[index.clamp(1, samples.len()) - 1])
    };
    Some(Percentiles {
        samples: samples.len(),
        p50_ms: rank(50.0),
        p99_ms: rank(99.0),
        max_ms: f64::from(samples[samples.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[f32], expected: Option<(usize, f64, f64, f64)>) {
        let found = percentiles(samples.to_vec())
            .map(|stats| (stats.samples, stats.p50_ms, stats.p99_ms, stats.max_ms));
        assert_eq!(found, expected, "{samples:?}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        check(&[], None);
        check(&[4.0], Some((1, 4.0, 4.0, 4.0)));
        check(&[3.0, 1.0, 2.0, 4.0], Some((4, 2.0, 4.0, 4.0)));
        let hundred: Vec<f32> = (1..=100).map(|value| value as f32).collect();
        check(&hundred, Some((100, 50.0, 99.0, 100.0)));
    }

    fn work(closure_ms: u64) -> FrameWork {
        FrameWork {
            closure: Duration::from_millis(closure_ms),
            folding: Duration::from_millis(closure_ms / 4),
            closure_cpu: Some(Duration::from_millis(closure_ms / 2)),
            waiting: Some(Duration::from_millis(closure_ms / 8)),
            glyph_atlas_fill: 0.25,
        }
    }

    #[test]
    fn only_frames_while_the_line_runs_count() {
        let mut timer = FrameTimer::default();
        let start = Instant::now();
        let ms = Duration::from_millis;
        timer.frame_started(start, false, None);
        timer.frame_finished(work(9));
        timer.frame_started(start + ms(500), true, Some(ms(10)));
        timer.count_events(7);
        timer.frame_finished(work(2));
        timer.frame_started(start + ms(516), true, Some(ms(5)));
        timer.frame_finished(work(4));
        timer.frame_started(start + ms(900), false, Some(ms(6)));
        timer.frame_finished(work(8));
        let stats = timer.stats(1);
        assert_eq!(stats.frames, 4);
        // Intervals and frame CPU need a counted frame before them: 500 -> 516 and 516 -> 900.
        assert_eq!(
            stats.frame_interval.map(|interval| (interval.samples, interval.max_ms)),
            Some((2, 384.0))
        );
        assert_eq!(stats.whole_frame_cpu.map(|cpu| (cpu.samples, cpu.max_ms)), Some((2, 6.0)));
        assert_eq!(stats.ui_closure.map(|closure| (closure.samples, closure.max_ms)), Some((2, 4.0)));
        assert_eq!(stats.ui_closure_cpu.map(|cpu| (cpu.samples, cpu.max_ms)), Some((2, 2.0)));
        assert_eq!(stats.ui_closure_waiting.map(|waiting| (waiting.samples, waiting.max_ms)), Some((2, 0.0)));
        // The slowest counted frames, slowest first, with when they ran and what they folded.
        let slowest: Vec<_> = stats
            .slowest_frames
            .iter()
            .map(|frame| (frame.frame, frame.at_ms, frame.closure_ms, frame.events, frame.folding_ms))
            .collect();
        assert_eq!(slowest, [(2, 16.0, 4.0, 0, 1.0), (1, 0.0, 2.0, 7, 0.0)]);
    }

    #[test]
    fn only_the_slowest_frames_are_kept() {
        let mut timer = FrameTimer::default();
        let start = Instant::now();
        for (index, closure_ms) in [5, 1, 9, 3, 7, 2, 8, 6, 4, 10, 0].into_iter().enumerate() {
            timer.frame_started(start + Duration::from_millis(index as u64 * 100), true, None);
            timer.frame_finished(work(closure_ms));
        }
        let kept: Vec<f64> = timer.stats(1).slowest_frames.iter().map(|frame| frame.closure_ms).collect();
        assert_eq!(kept, [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]);
    }

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work_not_its_sleep() {
        let before = thread_cpu_time().expect("Unix reports a thread's CPU time");
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time().unwrap() - before;
        let spin_started = Instant::now();
        let mut sum = 0_u64;
        while spin_started.elapsed() < Duration::from_millis(30) {
            sum = std::hint::black_box(sum.wrapping_add(1));
        }
        let spun = thread_cpu_time().unwrap() - before - slept;
        assert!(slept < Duration::from_millis(10), "sleeping 30 ms cost {slept:?} of CPU");
        assert!(spun > Duration::from_millis(3), "spinning 30 ms cost only {spun:?} of CPU");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_run_delay_grows_while_threads_outnumber_the_cores() {
        // More spinning threads than cores: each must wait for a core some of the time.
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        let waited: Vec<Duration> = std::thread::scope(|scope| {
            let spinners: Vec<_> = (0..cores * 3)
                .map(|_| {
                    scope.spawn(|| {
                        let before = thread_run_delay().expect("Linux reports a thread's run delay");
                        let started = Instant::now();
                        let mut sum = 0_u64;
                        while started.elapsed() < Duration::from_millis(150) {
                            sum = std::hint::black_box(sum.wrapping_add(1));
                        }
                        thread_run_delay().unwrap() - before
                    })
                })
                .collect();
            spinners.into_iter().map(|spinner| spinner.join().unwrap()).collect()
        });
        let total: Duration = waited.iter().sum();
        assert!(
            total > Duration::from_millis(100),
            "{} threads on {cores} cores waited {waited:?}",
            cores * 3
        );
    }
}
