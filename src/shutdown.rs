//! How tether stops: the stop signals, watched on a thread of its own, and the way
//! out of a process told to stop gracefully.
//!
//! # Stopping, signal by signal
//!
//! Once [`crate::server::Tether::run`] runs, SIGINT, SIGTERM and SIGQUIT no longer
//! end the process by their default action: tether handles them, and any sequence
//! of them ends the process within the bound given here, counted from the first.
//!
//! - **SIGINT**: exits at once, once the access log is written out (at most 2 s).
//! - **SIGTERM**: the listeners stop; requests in flight finish; HTTP/1 clients are
//!   told `Connection: close` on their next response; websockets get a Close 1001
//!   (between two frames) at once; the process exits as soon as nothing is open, at
//!   least 1 s after the signal, and drops what is still open 5 s after that
//!   ([`LINGER`]). At the latest 8 s after the signal ([`STOP_GRACE`]).
//! - **SIGQUIT**, with a new tether waiting on the upgrade socket: the listening
//!   sockets go to it; this process keeps accepting for pingora's 5 s, then stops
//!   as on SIGTERM, except that websockets stay `upgrade_grace` before their Close
//!   1001. At the latest `upgrade_grace` + 28 s after the signal ([`HAND_OVER`] +
//!   [`STOP_GRACE`]). With no new tether waiting: as SIGTERM (and logged), so that a
//!   SIGQUIT too always stops the process.
//! - **A second stop signal**, any of the three, once a stop has begun: exits at
//!   once, as SIGINT.
//!
//! Whatever happens inside, a watchdog thread ends the process (status 1) when the
//! bound runs out.
//!
//! # Why tether, not pingora
//!
//! pingora's own stop cannot be trusted to end. Its SIGINT ("fast shutdown") shuts
//! down each service's runtimes at once, without first telling the accept loops to
//! stop. tether's listeners run on pingora's no-steal runtimes, one single-threaded
//! tokio runtime per thread: a listening socket is registered with the I/O driver of
//! the thread that built it, while its accept loop may run on another thread. When
//! the socket's thread shuts down first, `accept()` fails at once and for ever ("A
//! Tokio 1.x context was found, but it is being shutdown"); pingora's accept loop
//! backs off only on EMFILE, logs every failure, and an error costs no tokio budget,
//! so the loop never yields: its thread never gets to shut down, pingora waits for
//! it for ever, and the log grows by some 50 MB/s. Once pingora has taken the first
//! signal it no longer watches for signals, and tokio's handlers stay installed, so
//! further signals did nothing either.
//!
//! So tether takes the signals itself ([`StopSignals`]): SIGINT, a second signal
//! and the watchdog exit with [`std::process::exit`] ([`Exit`]); SIGTERM and SIGQUIT
//! go to pingora as a graceful stop, which tells the accept loops to end before
//! anything shuts down, and [`ShutdownService`] exits once the connections are done.
//! pingora's grace period is set beyond the watchdog ([`pingora_grace_period`]), so
//! its runtime shutdown is never reached.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
use tokio::sync::{broadcast, oneshot};

use crate::access_log::AccessLog;
use crate::routing::SharedRouting;

/// Once the websockets are closed, how long requests still in flight (and the
/// Close frames) get before the process exits anyway.
pub const LINGER: Duration = Duration::from_secs(5);
/// The process stays at least this long after the listeners stop, even with
/// nothing open: a keep-alive client between two requests gets its next response
/// with `Connection: close` rather than a connection closed under it.
const MIN_LINGER: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);
/// The longest the access log's last lines may take to be written out at the exit
/// (an output that stopped taking them loses them).
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(2);
/// The longest a stop as on SIGTERM takes, counted from the moment the listeners
/// stop: [`LINGER`], the access log's [`ACCESS_LOG_FLUSH`] and a second to spare.
pub const STOP_GRACE: Duration = Duration::from_secs(8);
/// The longest an upgrade's hand-over takes before the listeners stop: pingora
/// sends the listening sockets (up to 15 s of retries when the new process is slow
/// to take them), then keeps accepting for 5 s alongside the new process.
pub const HAND_OVER: Duration = Duration::from_secs(20);
/// How long the watchdog gives SIGINT's exit (the access log written out).
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// pingora's grace period (`grace_period_seconds`), after which it would shut down
/// its runtimes (see the module's doc): beyond the watchdog's bound for any stop,
/// so that tether always exits first.
pub fn pingora_grace_period(upgrade_grace: Duration) -> u64 {
    (HAND_OVER + upgrade_grace + STOP_GRACE)
        .as_secs_f64()
        .ceil() as u64
        + 1
}

/// The one way out of the process: writes out the access log, then exits.
pub struct Exit {
    access_log: Option<Arc<AccessLog>>,
    exiting: AtomicBool,
}

impl Exit {
    /// The way out, writing out `access_log` (when there is one) first.
    pub fn new(access_log: Option<Arc<AccessLog>>) -> Arc<Exit> {
        Arc::new(Exit {
            access_log,
            exiting: AtomicBool::new(false),
        })
    }

    /// Writes out the access log's last lines (at most [`ACCESS_LOG_FLUSH`]) and ends
    /// the process with `code`. When several threads get here, the first one exits
    /// and the others wait for it.
    pub fn now(&self, code: i32) -> ! {
        if self.exiting.swap(true, Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        if let Some(log) = &self.access_log {
            log.stop(ACCESS_LOG_FLUSH);
        }
        std::process::exit(code)
    }
}

/// Ends the process (status 1) `bound` after `signal` if it still runs then.
fn watchdog(bound: Duration, signal: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("stop watchdog".into())
        .spawn(move || {
            std::thread::sleep(bound);
            // Logging might block (a full pipe): it gets a moment on a thread of its
            // own, and the exit comes regardless.
            let _ = std::thread::Builder::new().spawn(move || {
                tracing::error!("still running {bound:?} after {signal}: exiting");
            });
            std::thread::sleep(Duration::from_millis(100));
            std::process::exit(1)
        });
    if let Err(e) = spawned {
        tracing::error!("no watchdog for the stop: {e}");
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGQUIT => "SIGQUIT",
        _ => "a signal",
    }
}

/// SIGINT, SIGTERM and SIGQUIT, watched by a thread of their own for the life of
/// the process (see the module's doc for what each does).
pub struct StopSignals {
    pub exit: Arc<Exit>,
    /// Where a new tether waits for the listening sockets on an upgrade.
    pub upgrade_socket: Option<PathBuf>,
    pub upgrade_grace: Duration,
}

impl StopSignals {
    /// Installs the handlers (from here on the three signals no longer end the
    /// process by their default action) and starts the thread. pingora learns of
    /// the stop through the returned [`ShutdownSignalWatch`].
    pub fn start(self) -> std::io::Result<DecidedStop> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGQUIT])?;
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("stop signals".into())
            .spawn(move || {
                let mut to_pingora = Some(tx);
                for signal in signals.forever() {
                    self.on(signal, &mut to_pingora);
                }
            })?;
        Ok(DecidedStop(Mutex::new(Some(rx))))
    }

    fn on(&self, signal: i32, to_pingora: &mut Option<oneshot::Sender<ShutdownSignal>>) {
        let name = name(signal);
        let Some(tx) = to_pingora.take() else {
            tracing::info!("{name} while stopping: exiting now");
            watchdog(EXIT_GRACE, name);
            self.exit.now(0);
        };
        let (stop, bound) = match signal {
            SIGQUIT if self.new_tether_waits() => {
                tracing::info!("SIGQUIT: handing the listeners to the new tether");
                (
                    ShutdownSignal::GracefulUpgrade,
                    HAND_OVER + self.upgrade_grace + STOP_GRACE,
                )
            }
            SIGQUIT => {
                tracing::warn!(
                    "SIGQUIT with no new tether waiting on {}: stopping as on SIGTERM (to upgrade, start `tether run --upgrade` first)",
                    self.upgrade_socket
                        .as_deref()
                        .map_or("(no upgrade socket)".into(), |p| p.display().to_string())
                );
                (ShutdownSignal::GracefulTerminate, STOP_GRACE)
            }
            SIGTERM => {
                tracing::info!("SIGTERM: stopping");
                (ShutdownSignal::GracefulTerminate, STOP_GRACE)
            }
            // SIGINT.
            _ => {
                tracing::info!("{name}: exiting now");
                watchdog(EXIT_GRACE, name);
                self.exit.now(0);
            }
        };
        watchdog(bound, name);
        if tx.send(stop).is_err() {
            // pingora no longer listens (it cannot stop gracefully).
            tracing::error!("{name}: the server is not running: exiting now");
            self.exit.now(0);
        }
    }

    fn new_tether_waits(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.upgrade_socket
            .as_deref()
            .is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
    }
}

/// pingora's side of [`StopSignals`]: the stop decided on the first signal.
pub struct DecidedStop(Mutex<Option<oneshot::Receiver<ShutdownSignal>>>);

#[async_trait]
impl ShutdownSignalWatch for DecidedStop {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().take();
        match rx {
            Some(rx) => match rx.await {
                Ok(stop) => stop,
                Err(_) => {
                    tracing::error!("the signal thread ended: only SIGKILL stops this process");
                    std::future::pending().await
                }
            },
            // pingora asks once; a second ask waits for ever.
            None => std::future::pending().await,
        }
    }
}

/// The end of a graceful stop (SIGTERM, or SIGQUIT once the sockets are handed
/// over). pingora stops the listeners and then only sleeps its grace period; this
/// service makes the end clean and no longer than needed: requests in flight
/// finish, websockets stay for `upgrade_grace` after an upgrade (not at all on
/// SIGTERM) and are then closed with a Close 1001 between two frames, as a drained
/// target's are, and the process exits as soon as nothing is open.
pub struct ShutdownService {
    routing: SharedRouting,
    upgrade_grace: Duration,
    exit: Arc<Exit>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl ShutdownService {
    /// `phases` is the server's execution phase watch (subscribed before it runs),
    /// from which the service learns whether the stop is an upgrade.
    pub fn new(
        routing: SharedRouting,
        upgrade_grace: Duration,
        phases: broadcast::Receiver<ExecutionPhase>,
        exit: Arc<Exit>,
    ) -> Self {
        ShutdownService {
            routing,
            upgrade_grace,
            exit,
            phases: Mutex::new(Some(phases)),
        }
    }

    /// Requests in flight and open websockets, over every target (draining ones too).
    fn open(&self) -> u64 {
        let routing = self.routing.load();
        routing
            .groups
            .iter()
            .flat_map(|g| g.all_targets())
            .map(|t| t.connections())
            .sum()
    }

    fn close_websockets(&self) {
        let routing = self.routing.load();
        for g in &routing.groups {
            for t in g.all_targets() {
                t.close_connections();
            }
        }
    }
}

/// Whether the phases seen so far include the hand-over of an upgrade.
fn upgrading(phases: &mut broadcast::Receiver<ExecutionPhase>) -> bool {
    let mut seen = false;
    loop {
        match phases.try_recv() {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout,
            ) => seen = true,
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return seen,
        }
    }
}

#[async_trait]
impl BackgroundService for ShutdownService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.phases.lock().take();
        if shutdown.changed().await.is_err() {
            return;
        }
        let stopped = Instant::now();
        let upgrade = phases.is_some_and(|mut p| upgrading(&mut p));
        let grace = if upgrade {
            self.upgrade_grace
        } else {
            Duration::ZERO
        };
        tracing::info!(
            "listeners stopped ({}): websockets close in {grace:?}",
            if upgrade { "upgrade" } else { "stop" }
        );
        let close_at = stopped + grace;
        loop {
            let now = Instant::now();
            if now >= close_at {
                break;
            }
            if now >= stopped + MIN_LINGER && self.open() == 0 {
                tracing::info!("nothing open: exiting");
                self.exit.now(0);
            }
            tokio::time::sleep(POLL.min(close_at - now)).await;
        }
        let open = self.open();
        if open > 0 {
            tracing::info!("closing what is still open ({open})");
            self.close_websockets();
        }
        let give_up = Instant::now() + LINGER;
        while Instant::now() < give_up && (Instant::now() < stopped + MIN_LINGER || self.open() > 0)
        {
            tokio::time::sleep(POLL).await;
        }
        // pingora would sleep out the rest of its grace period and then shut down
        // its runtimes (see the module's doc); what is left is dropped here.
        self.exit.now(0);
    }
}
