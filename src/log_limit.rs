//! A cap on the log lines of one source. pingora's accept loop logs every failed
//! `accept()` and backs off only on EMFILE: an error that repeats at once (ENFILE,
//! ENOBUFS, or a runtime shutting down under it: src/shutdown.rs) would otherwise
//! write tens of megabytes a second.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// pingora's listening service: its accept loop and its handshake errors.
pub const PINGORA_LISTENING: &str = "pingora_core::services::listening";

const WINDOW: Duration = Duration::from_secs(1);

/// A layer that lets through at most `per_second` events a second whose target
/// starts with `target`; the rest of that second's are dropped, and one line on
/// stderr says so.
pub struct RateLimit {
    target: &'static str,
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    passed: u32,
    /// Whether this window has dropped an event already (and said so).
    dropped: bool,
}

impl RateLimit {
    /// A limit of `per_second` lines for the log target `target`.
    pub fn new(target: &'static str, per_second: u32) -> RateLimit {
        RateLimit {
            target,
            per_second,
            window: Mutex::new(Window {
                start: Instant::now(),
                passed: 0,
                dropped: false,
            }),
        }
    }

    /// Whether an event at `now` passes, and when not whether it is the window's
    /// first dropped (time to say so).
    fn admit(&self, now: Instant) -> Admit {
        let mut w = self.window.lock();
        if now.saturating_duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                passed: 0,
                dropped: false,
            };
        }
        if w.passed < self.per_second {
            w.passed += 1;
            Admit::Pass
        } else if !w.dropped {
            w.dropped = true;
            Admit::FirstDropped
        } else {
            Admit::Dropped
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Pass,
    FirstDropped,
    Dropped,
}

/// Whether `event` comes from a target starting with `prefix`. pingora logs with
/// the `log` crate, whose records come as events with target `log` and the
/// record's own target in the field `log.target`.
fn from_target(event: &Event<'_>, prefix: &str) -> bool {
    struct LogTarget<'a> {
        prefix: &'a str,
        matches: bool,
    }
    impl Visit for LogTarget<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "log.target" {
                self.matches = value.starts_with(self.prefix);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    let target = event.metadata().target();
    if target != "log" {
        return target.starts_with(prefix);
    }
    let mut visitor = LogTarget {
        prefix,
        matches: false,
    };
    event.record(&mut visitor);
    visitor.matches
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if !from_target(event, self.target) {
            return true;
        }
        match self.admit(Instant::now()) {
            Admit::Pass => true,
            Admit::FirstDropped => {
                // Not through tracing: an event logged while one is being dispatched
                // is itself dropped.
                eprintln!(
                    "tether: more than {} log lines a second from {}: the rest of this second's are dropped",
                    self.per_second, self.target
                );
                false
            }
            Admit::Dropped => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_pass_the_first_lines_of_each_second_and_drop_the_rest() {
        let limit = RateLimit::new("x", 3);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(limit.admit(at(0)), Admit::Pass);
        assert_eq!(limit.admit(at(1)), Admit::Pass);
        assert_eq!(limit.admit(at(2)), Admit::Pass);
        assert_eq!(limit.admit(at(3)), Admit::FirstDropped);
        assert_eq!(limit.admit(at(999)), Admit::Dropped);
        // A new second.
        assert_eq!(limit.admit(at(1000)), Admit::Pass);
        assert_eq!(limit.admit(at(1001)), Admit::Pass);
        assert_eq!(limit.admit(at(1002)), Admit::Pass);
        assert_eq!(limit.admit(at(1003)), Admit::FirstDropped);
    }

    #[test]
    fn it_should_limit_its_target_and_leave_the_others_alone() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tracing_subscriber::layer::SubscriberExt;

        /// Counts the events that get through.
        struct Count(Arc<AtomicUsize>);
        impl<S: Subscriber> Layer<S> for Count {
            fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let seen = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(RateLimit::new("limited", 2))
            .with(Count(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::error!(target: "limited::module", "flood");
                tracing::error!(target: "other", "fine");
                // As a `log` record comes (pingora's), limited too.
                tracing::event!(target: "log", tracing::Level::ERROR, log.target = "limited::module", "flood");
                tracing::event!(target: "log", tracing::Level::ERROR, log.target = "other", "fine");
            }
        });
        assert_eq!(seen.load(Ordering::Relaxed), 2 + 5 + 5);
    }
}
