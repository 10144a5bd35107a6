//! Frame timing: how long the UI closure takes and how often frames are actually painted,
//! measured in the running app (not estimated), so "the UI stays responsive with 16 slots"
//! is a number in docs/performance.md.
//!
//! Three series are kept while the line runs (an idle egui app paints only on input, so idle
//! frames say nothing about load): the duration of each `App::ui` call (event folding and
//! layout, without the renderer); eframe's own measure of each frame's CPU time (`App::ui` plus
//! tessellation and rendering, without waiting for vsync); and the interval between the starts
//! of consecutive frames (everything, as the operator sees it).

use std::time::{Duration, Instant};

use serde::Serialize;

/// At most this many samples per series are kept for the report (about an hour at 60 fps);
/// later samples replace earlier ones round-robin, so memory stays bounded.
const SAMPLES_MAX: usize = 200_000;
/// The status bar's rolling window.
const RECENT_FRAMES: usize = 240;

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
    /// Duration of the UI closure (`App::ui`).
    pub ui_closure: Option<Percentiles>,
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
}

/// Collects both series.
#[derive(Debug, Default)]
pub struct FrameTimer {
    ui_closure_ms: Vec<f32>,
    whole_frame_cpu_ms: Vec<f32>,
    intervals_ms: Vec<f32>,
    recent_ui_closure_ms: std::collections::VecDeque<f32>,
    frames: u64,
    events: u64,
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
        self.previous_frame_start = Some(now);
    }

    /// Call at the end of the UI closure with its duration.
    pub fn frame_finished(&mut self, ui_closure: Duration) {
        let ms = millis(ui_closure);
        if self.is_counting {
            push_bounded(&mut self.ui_closure_ms, self.frames, ms);
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
    }

    /// Percentiles over the last [`RECENT_FRAMES`] frames (for the status bar).
    pub fn recent_ui_closure(&self) -> Option<Percentiles> {
        percentiles(self.recent_ui_closure_ms.iter().copied().collect())
    }

    /// The whole report.
    pub fn stats(&self, slots: usize) -> FrameStats {
        FrameStats {
            ui_closure: percentiles(self.ui_closure_ms.clone()),
            whole_frame_cpu: percentiles(self.whole_frame_cpu_ms.clone()),
            frame_interval: percentiles(self.intervals_ms.clone()),
            frames: self.frames,
            slots,
            events: self.events,
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

    #[test]
    fn only_frames_while_the_line_runs_count() {
        let mut timer = FrameTimer::default();
        let start = Instant::now();
        let ms = Duration::from_millis;
        timer.frame_started(start, false, None);
        timer.frame_finished(ms(9));
        timer.frame_started(start + ms(500), true, Some(ms(10)));
        timer.frame_finished(ms(2));
        timer.frame_started(start + ms(516), true, Some(ms(5)));
        timer.frame_finished(ms(4));
        timer.frame_started(start + ms(900), false, Some(ms(6)));
        timer.frame_finished(ms(8));
        let stats = timer.stats(1);
        assert_eq!(stats.frames, 4);
        // Intervals and frame CPU need a counted frame before them: 500 -> 516 and 516 -> 900.
        assert_eq!(
            stats.frame_interval.map(|interval| (interval.samples, interval.max_ms)),
            Some((2, 384.0))
        );
        assert_eq!(stats.whole_frame_cpu.map(|cpu| (cpu.samples, cpu.max_ms)), Some((2, 6.0)));
        assert_eq!(stats.ui_closure.map(|closure| (closure.samples, closure.max_ms)), Some((2, 4.0)));
    }
}
