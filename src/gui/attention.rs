//! The attention signal of a latched failure: a flashing frame on the slot's card (drawn by the
//! panels, timed here) and a short sound through the default audio device (rodio).
//!
//! The sound plays on its own thread, so the UI thread never waits on an audio device. A
//! station without one (a test machine, Xvfb, CI, a muted panel PC) loses only the sound: the
//! first attempt logs one warning and the signal goes on with the frame alone. The station
//! setting `attention_signal` turns both off.

use std::num::NonZero;
use std::time::{Duration, Instant};

use super::assets::ATTENTION_WAV;

/// The frame flashes on and off this often.
pub const FLASH_HALF_PERIOD: Duration = Duration::from_millis(400);

/// The attention signal: the sound's thread (started on the first failure) and the flash clock.
pub struct Attention {
    sounds: Option<crossbeam_channel::Sender<()>>,
    epoch: Instant,
}

impl Default for Attention {
    fn default() -> Self {
        Attention { sounds: None, epoch: Instant::now() }
    }
}

impl Attention {
    /// Plays the attention sound once (asynchronously).
    pub fn sound(&mut self) {
        if self.sounds.is_none() {
            let (sender, receiver) = crossbeam_channel::bounded(4);
            let spawned = std::thread::Builder::new().name("attention-sound".to_string()).spawn(move || {
                play_sounds(receiver);
            });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start the attention sound's thread: the signal is the flashing frame only");
            }
            self.sounds = Some(sender);
        }
        if let Some(sender) = &self.sounds {
            // A full queue means sounds are already on their way; one more adds nothing.
            let _ = sender.try_send(());
        }
    }

    /// Whether a flashing frame is in its bright half at `now`.
    pub fn flash_is_on(&self, now: Instant) -> bool {
        let halves = now.saturating_duration_since(self.epoch).as_millis() / FLASH_HALF_PERIOD.as_millis();
        halves.is_multiple_of(2)
    }
}

/// The sound thread: opens the default output device on the first request and plays the tone
/// for each request; without a device it logs once and drops every request.
fn play_sounds(requests: crossbeam_channel::Receiver<()>) {
    let tone = match Tone::from_wav(ATTENTION_WAV) {
        Ok(tone) => tone,
        Err(error) => {
            tracing::error!(%error, "the embedded attention sound (assets/attention.wav) is unreadable");
            return;
        }
    };
    let mut device = match rodio::DeviceSinkBuilder::open_default_sink() {
        Ok(device) => device,
        Err(error) => {
            tracing::warn!(%error, "no audio output device: the attention signal is the flashing frame only");
            for _ in requests {}
            return;
        }
    };
    device.log_on_drop(false);
    for () in requests {
        device.mixer().add(rodio::buffer::SamplesBuffer::new(
            tone.channels,
            tone.sample_rate,
            tone.samples.clone(),
        ));
    }
}

/// Why the embedded WAV could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("attention sound: expected {expected}, found {found}")]
pub struct WavError {
    expected: &'static str,
    found: String,
}

fn wav_error(expected: &'static str, found: impl Into<String>) -> WavError {
    WavError { expected, found: found.into() }
}

/// A decoded 16-bit PCM sound.
#[derive(Debug, Clone, PartialEq)]
pub struct Tone {
    pub channels: NonZero<u16>,
    pub sample_rate: NonZero<u32>,
    /// Interleaved samples in -1..1.
    pub samples: Vec<f32>,
}

impl Tone {
    /// Reads a RIFF/WAVE file of 16-bit PCM (the format `scripts/make-assets.py` writes).
    pub fn from_wav(bytes: &[u8]) -> Result<Tone, WavError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(wav_error("a RIFF/WAVE header", format!("{} bytes without one", bytes.len())));
        }
        let mut format = None;
        let mut offset = 12;
        while offset + 8 <= bytes.len() {
            let kind = &bytes[offset..offset + 4];
            let size = u32::from_le_bytes([
                bytes[offset + 4],
                bytes[offset + 5],
                bytes[offset + 6],
                bytes[offset + 7],
            ]) as usize;
            let body = bytes
                .get(offset + 8..offset + 8 + size)
                .ok_or_else(|| wav_error("a chunk within the file", format!("{size} bytes at {offset}")))?;
            match kind {
                b"fmt " => format = Some(read_format(body)?),
                b"data" => {
                    let (channels, sample_rate) =
                        format.ok_or_else(|| wav_error("the fmt chunk before data", "data first"))?;
                    let samples = body
                        .chunks_exact(2)
                        .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0);
                    return Ok(Tone { channels, sample_rate, samples: samples.collect() });
                }
                _ => {}
            }
            offset += 8 + size + size % 2;
        }
        Err(wav_error("a data chunk", "none"))
    }
}

fn read_format(body: &[u8]) -> Result<(NonZero<u16>, NonZero<u32>), WavError> {
    if body.len() < 16 {
        return Err(wav_error("a 16-byte fmt chunk", format!("{} bytes", body.len())));
    }
    let field16 = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
    let (audio_format, bits) = (field16(0), field16(14));
    if audio_format != 1 || bits != 16 {
        return Err(wav_error("16-bit PCM", format!("format {audio_format}, {bits} bits")));
    }
    let channels = NonZero::new(field16(2)).ok_or_else(|| wav_error("at least one channel", "0"))?;
    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let sample_rate = NonZero::new(rate).ok_or_else(|| wav_error("a sample rate", "0 Hz"))?;
    Ok((channels, sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sound_is_a_short_audible_tone() {
        let tone = Tone::from_wav(ATTENTION_WAV).expect("assets/attention.wav reads");
        assert_eq!((tone.channels.get(), tone.sample_rate.get()), (1, 22_050));
        let seconds = tone.samples.len() as f64 / 22_050.0;
        assert!((0.3..1.0).contains(&seconds), "{seconds} s");
        let peak = tone.samples.iter().fold(0.0f32, |peak, sample| peak.max(sample.abs()));
        assert!(peak > 0.3 && peak < 1.0, "peak {peak}");
    }

    #[test]
    fn a_file_that_is_not_16_bit_pcm_is_refused_by_name() {
        assert!(Tone::from_wav(b"not a wav file").is_err());
        let mut float_wav = ATTENTION_WAV.to_vec();
        // The fmt chunk's audio format (at 20) set to 3, IEEE float.
        float_wav[20] = 3;
        let error = Tone::from_wav(&float_wav).unwrap_err();
        assert_eq!(error.to_string(), "attention sound: expected 16-bit PCM, found format 3, 16 bits");
    }

    #[test]
    fn the_frame_flashes_on_and_off() {
        let attention = Attention::default();
        let start = attention.epoch;
        assert!(attention.flash_is_on(start));
        assert!(!attention.flash_is_on(start + FLASH_HALF_PERIOD));
        assert!(attention.flash_is_on(start + FLASH_HALF_PERIOD * 2));
    }
}
