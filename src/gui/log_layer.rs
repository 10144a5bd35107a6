//! A `tracing` layer that forwards log events to the GUI's log panel.
//!
//! The binary installs it next to the usual stderr formatter, so the window shows the same
//! diagnostics a terminal would, with the span context (slot, unit) each event happened in.
//! Events travel through a bounded channel: a busy slot thread logging never waits for the UI
//! (a full channel drops the line and counts it), and the UI drains the channel once a frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use eframe::egui;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::store::{LogLine, LogStore};

/// How many lines may wait in the channel for the UI.
const CHANNEL_CAPACITY: usize = 10_000;

/// The layer half: install it in the subscriber.
pub struct GuiLogLayer {
    sender: crossbeam_channel::Sender<LogLine>,
    shared: Arc<Shared>,
}

/// The GUI half: give it to the app.
pub struct LogReceiver {
    receiver: crossbeam_channel::Receiver<LogLine>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Set once the window exists; until then lines just wait in the channel.
    repaint: OnceLock<egui::Context>,
    dropped: AtomicU64,
}

/// A connected layer and receiver.
pub fn log_channel() -> (GuiLogLayer, LogReceiver) {
    let (sender, receiver) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let shared = Arc::new(Shared { repaint: OnceLock::new(), dropped: AtomicU64::new(0) });
    (GuiLogLayer { sender, shared: shared.clone() }, LogReceiver { receiver, shared })
}

impl LogReceiver {
    /// Makes new lines wake the UI.
    pub fn set_repaint(&self, context: &egui::Context) {
        let _ = self.shared.repaint.set(context.clone());
    }

    /// Moves every waiting line into `store`.
    pub fn drain_into(&self, store: &mut LogStore) {
        for line in self.receiver.try_iter() {
            store.push(line);
        }
        store.dropped = self.shared.dropped.load(Ordering::Relaxed);
    }
}

/// The fields recorded on a span, formatted once when it is created.
struct SpanFields(String);

impl<S> Layer<S> for GuiLogLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut visitor = FieldText::default();
        attributes.record(&mut visitor);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let mut visitor = FieldText::default();
        values.record(&mut visitor);
        if let Some(span) = context.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            if !fields.0.is_empty() && !visitor.fields.is_empty() {
                fields.0.push(' ');
            }
            fields.0.push_str(&visitor.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut text = String::new();
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let fields = extensions.get::<SpanFields>().map(|fields| fields.0.as_str()).unwrap_or("");
                let _ = write!(text, "{}{{{fields}}}: ", span.name());
            }
        }
        let mut visitor = FieldText::default();
        event.record(&mut visitor);
        text.push_str(&visitor.message);
        if !visitor.fields.is_empty() {
            if !visitor.message.is_empty() {
                text.push(' ');
            }
            text.push_str(&visitor.fields);
        }
        let line = LogLine {
            time: crate::station::events::format_time(std::time::SystemTime::now()),
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            text,
        };
        if self.sender.try_send(line).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(repaint) = self.shared.repaint.get() {
            repaint.request_repaint();
        }
    }
}

/// Collects an event's message and its other fields as `name=value` text.
#[derive(Default)]
struct FieldText {
    message: String,
    fields: String,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push_field(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push_field(field, format_args!("{value:?}"));
        }
    }
}

impl FieldText {
    fn push_field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        // Records bridged from the `log` crate carry their origin as `log.*` fields: noise here.
        if field.name().starts_with("log.") {
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    fn check(emit: impl FnOnce(), expected: &[(Level, &str)]) {
        let (layer, receiver) = log_channel();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        let mut store = LogStore::default();
        receiver.drain_into(&mut store);
        let lines: Vec<(Level, &str)> =
            store.lines.iter().map(|line| (line.level, line.text.as_str())).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn events_arrive_with_their_span_context_and_fields() {
        check(|| tracing::info!("plain"), &[(Level::INFO, "plain")]);
        check(
            || {
                let _slot = tracing::info_span!("slot", slot = 3, fixture = "sim-3").entered();
                let _unit = tracing::info_span!("unit", unit = 7).entered();
                tracing::warn!(attempt = 2, "retrying");
            },
            &[(Level::WARN, "slot{slot=3 fixture=sim-3}: unit{unit=7}: retrying attempt=2")],
        );
        check(
            || {
                tracing::error!(reason = "gone", "probe lost");
                tracing::debug!("detail");
            },
            &[(Level::ERROR, "probe lost reason=gone"), (Level::DEBUG, "detail")],
        );
    }
}
