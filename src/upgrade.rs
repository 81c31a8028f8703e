//! Taking over from a running tether (`tether run --upgrade`): where the listening
//! sockets pass (pingora's upgrade socket) and which addresses they are known by.
//!
//! pingora hands the sockets over keyed by the address each listener was bound
//! with. A listener with port 0 was bound on a port picked at start, so the new
//! process must ask for that port, not for 0: it reads it from the addresses file
//! the old process wrote (`--addresses-file`), before writing its own there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot read {path} (the running tether's addresses, needed for its port-0 listeners): {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} names no address for listener {index}: the running tether's port-0 listeners are known by the ports they bound")]
    Missing { path: PathBuf, index: usize },
    #[error("listener {index} has port 0: give --addresses-file, the file the running tether wrote its addresses to, so that the upgrade takes the same port")]
    NoAddressesFile { index: usize },
}

/// How a process starts: fresh, or taking the listening sockets of a running tether.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// The Unix socket through which the listening sockets pass: the new process
    /// listens on it, the old one sends to it on SIGQUIT. `None`: no upgrade socket
    /// (the process can neither take over nor hand over).
    pub upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets from the running tether instead of binding.
    pub upgrade: bool,
    /// The running tether's bound addresses, as its addresses file says (the
    /// `listener <index> <protocol> <address>` lines), by listener index.
    pub previous: Vec<Option<SocketAddr>>,
}

impl Start {
    /// The address listener `index`, configured as `configured`, is known by in the
    /// running tether: its previous address when the config says port 0.
    pub fn inherited(&self, index: usize, configured: SocketAddr) -> Option<SocketAddr> {
        if !self.upgrade || configured.port() != 0 {
            return None;
        }
        self.previous.get(index).copied().flatten()
    }
}

/// The default upgrade socket of the tether serving `config`: one per config file,
/// so that two tethers on one machine (two configs) never take each other's
/// sockets. Named by a hash of the config's absolute path, stable across builds
/// (FNV-1a), so that the old and the new binary agree on it.
pub fn default_socket(config: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in absolute.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    std::env::temp_dir().join(format!("tether-upgrade-{hash:016x}.sock"))
}

/// Reads the listener addresses of an addresses file (`listener <index> <protocol>
/// <address>` lines; other lines ignored).
pub fn read_previous(path: &Path) -> Result<Vec<Option<SocketAddr>>, UpgradeError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpgradeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_addresses(&text))
}

fn parse_addresses(text: &str) -> Vec<Option<SocketAddr>> {
    let mut out: Vec<Option<SocketAddr>> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("listener") {
            continue;
        }
        let (Some(index), Some(_protocol), Some(addr)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(index), Ok(addr)) = (index.parse::<usize>(), addr.parse::<SocketAddr>()) else {
            continue;
        };
        // Indexes are config positions, a handful: refuse absurd ones rather than
        // allocate for them.
        if index > 4096 {
            continue;
        }
        if out.len() <= index {
            out.resize(index + 1, None);
        }
        out[index] = Some(addr);
    }
    out
}

/// Checks that every port-0 listener of the config has a previous address.
pub fn check_previous(
    listeners: &[SocketAddr],
    previous: &[Option<SocketAddr>],
    path: Option<&Path>,
) -> Result<(), UpgradeError> {
    for (index, addr) in listeners.iter().enumerate() {
        if addr.port() != 0 {
            continue;
        }
        let Some(path) = path else {
            return Err(UpgradeError::NoAddressesFile { index });
        };
        if previous.get(index).copied().flatten().is_none() {
            return Err(UpgradeError::Missing {
                path: path.to_path_buf(),
                index,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_read_the_listener_addresses_of_an_addresses_file() {
        let got = parse_addresses(
            "listener 0 HTTP 127.0.0.1:4100\nlistener 2 HTTPS [::1]:4433\nadmin 127.0.0.1:9900\nlistener x HTTP nonsense\n",
        );
        assert_eq!(
            got,
            vec![
                Some("127.0.0.1:4100".parse().unwrap()),
                None,
                Some("[::1]:4433".parse().unwrap())
            ]
        );
    }

    #[test]
    fn it_should_take_the_previous_port_only_for_port_0_listeners_on_an_upgrade() {
        let start = Start {
            upgrade_socket: None,
            upgrade: true,
            previous: vec![Some("127.0.0.1:4100".parse().unwrap())],
        };
        assert_eq!(
            start.inherited(0, "127.0.0.1:0".parse().unwrap()),
            Some("127.0.0.1:4100".parse().unwrap())
        );
        assert_eq!(start.inherited(0, "127.0.0.1:80".parse().unwrap()), None);
        let fresh = Start {
            upgrade: false,
            ..start
        };
        assert_eq!(fresh.inherited(0, "127.0.0.1:0".parse().unwrap()), None);
    }

    #[test]
    fn it_should_refuse_an_upgrade_of_port_0_listeners_without_their_addresses() {
        let listeners = [
            "127.0.0.1:80".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
        let file = Path::new("addresses");
        assert!(check_previous(&listeners, &[], None).is_err());
        assert!(check_previous(&listeners, &[None, None], Some(file)).is_err());
        let previous = [None, Some("127.0.0.1:4100".parse().unwrap())];
        assert!(check_previous(&listeners, &previous, Some(file)).is_ok());
    }

    #[test]
    fn it_should_name_the_upgrade_socket_after_the_config_file() {
        let a = default_socket(Path::new("/etc/tether/a.toml"));
        let b = default_socket(Path::new("/etc/tether/b.toml"));
        assert_ne!(a, b);
        assert_eq!(a, default_socket(Path::new("/etc/tether/a.toml")));
        assert!(a.to_string_lossy().ends_with(".sock"));
    }
}
