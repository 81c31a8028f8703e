//! The `tether` command: `run`, `check`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether::config::Config;
use tether::log_limit::{RateLimit, PINGORA_LISTENING};
use tether::server::Tether;
use tether::upgrade::{Start, UpgradeError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for tether's memory. mimalloc asks for them on its
/// arenas; each first touch then faults in and zeroes 2 MiB, and connection buffers
/// spread over arenas keep whole huge pages resident: 10,000 idle websockets cost
/// several times the memory and the set-up CPU with them (BENCHMARKS.md, S5).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("prctl(PR_SET_THP_DISABLE): {e}");
    }
}

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A sticky-session, websocket-aware HTTP load balancer (an ALB stand-in)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the config's listeners.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Once bound, write the listeners' and the admin API's addresses to this
        /// file (`listener <index> <protocol> <address>`, `admin <address>`, one per
        /// line): the way to learn the ports picked for `port = 0`.
        #[arg(long, value_name = "FILE")]
        addresses_file: Option<PathBuf>,
        /// Take the listening sockets of the running tether (zero-downtime upgrade):
        /// start this, then send SIGQUIT to the old process within 5 s. Port-0
        /// listeners keep their ports, read from the old process's --addresses-file.
        #[arg(long)]
        upgrade: bool,
        /// The Unix socket through which the listening sockets pass on an upgrade
        /// (default: one per config file, /tmp/tether-upgrade-<hash of its path>.sock).
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
    },
    /// Validate a config file: exit 0 with a summary, or 2 with FILE:LINE:COLUMN: message.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show each target group's targets with state and reason (asks the running
    /// tether's admin API, `[load_balancer] admin`).
    Targets {
        #[arg(long, short, required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// The admin API's address, instead of the config's `admin` (needed when
        /// that has port 0: see `tether run --addresses-file`).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start demo backends with tether in front of them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
        backends: u16,
    },
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tether=info")),
            )
            .with_writer(std::io::stderr)
            .finish()
            // pingora's accept loop logs every failure, at once again on errors it
            // does not back off from: 10 lines a second of it at most.
            .with(RateLimit::new(PINGORA_LISTENING, 10))
            .init();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config: path,
            addresses_file,
            upgrade,
            upgrade_socket,
        } => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let start = match start(
                &config,
                upgrade,
                upgrade_socket.unwrap_or_else(|| tether::upgrade::default_socket(&path)),
                addresses_file.as_deref(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tether: {e}");
                    return ExitCode::from(2);
                }
            };
            match Tether::build_with(&config, &start) {
                Ok(t) => {
                    tracing::info!("{}", config.summary());
                    for line in t.addresses().lines() {
                        tracing::info!("bound {line}");
                    }
                    if let Some(path) = addresses_file {
                        if let Err(e) = write_atomically(&path, &t.addresses()) {
                            eprintln!("tether: cannot write {}: {e}", path.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    t.run()
                }
                Err(e) => {
                    eprintln!("tether: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Targets {
            config,
            admin,
            json,
        } => targets(config.as_deref(), admin, json),
        Command::Demo { listen, backends } => match tether::demo::run(listen, backends.into()) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("tether demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn targets(path: Option<&std::path::Path>, admin: Option<SocketAddr>, json: bool) -> ExitCode {
    let admin = match (admin, path) {
        (Some(admin), _) => admin,
        (None, Some(path)) => {
            let config = match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match config.load_balancer.admin {
                Some(admin) if admin.port() != 0 => admin,
                Some(_) => {
                    eprintln!(
                        "{}: the admin API has port 0: pass the port it bound with --admin",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!(
                        "{}: no admin API: set [load_balancer] admin = \"127.0.0.1:9900\" so that tether targets can ask the running tether",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
        // clap requires one of them.
        (None, None) => return ExitCode::from(2),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether targets: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tether::admin::fetch_targets(admin)) {
        Ok(groups) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&groups).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(groups) => {
            print!("{}", tether::admin::render(&groups));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether targets: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How `tether run` starts: on an upgrade, with the running tether's addresses for
/// the listeners configured with port 0.
fn start(
    config: &Config,
    upgrade: bool,
    upgrade_socket: PathBuf,
    addresses_file: Option<&std::path::Path>,
) -> Result<Start, UpgradeError> {
    let mut start = Start {
        upgrade_socket: Some(upgrade_socket),
        upgrade,
        previous: Vec::new(),
    };
    let listeners: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
    if upgrade && listeners.iter().any(|a| a.port() == 0) {
        if let Some(file) = addresses_file {
            start.previous = tether::upgrade::read_previous(file)?;
        }
        tether::upgrade::check_previous(&listeners, &start.previous, addresses_file)?;
    }
    Ok(start)
}

/// Writes `text` to `path` through a temporary file and a rename, so that a reader
/// never sees half of it.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
