//! Who may hold a connection: caps on open connections per client address and in
//! all, and the open-file limit those caps are derived from.
//!
//! Every accepted socket asks [`ConnectionGate::admit`] before hyper sees it. A refused
//! socket is closed at once, so a client that opens sockets and never sends anything
//! costs one file descriptor for microseconds instead of for the header read timeout.
//! The rules, in order:
//! 1. never more than `max_connections` open in all;
//! 2. never more than `max_connections_per_client` from one address (trusted proxies,
//!    which carry everyone's traffic, are exempt);
//! 3. once the open connections reach seven eighths of `max_connections`, an address
//!    that already holds [`FAIR_SHARE`] connections gets no more: the last eighth is
//!    kept for addresses with few connections (health checks, new visitors), so many
//!    attacking addresses together cannot lock everyone else out either.
//!
//! Counting is per connection, not per request: a keep-alive connection is admitted
//! once, and the redirect path never touches the gate.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections an address may always open, even when hop is nearly full.
pub const FAIR_SHARE: usize = 4;

/// File descriptors kept back from connections when `max_connections` is derived from
/// the open-file limit: the database files (SQLite opens three per connection in WAL
/// mode), the listener, the runtime's own descriptors, logs and a GeoIP file.
pub const FILE_HEADROOM: u64 = 64;

/// The largest `max_connections` derived from the file limit: past it, memory (about
/// 30 KiB a connection with its buffers) rather than descriptors is what runs out.
pub const DERIVED_MAX_CONNECTIONS: u64 = 16_384;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Full,
    /// The address holds `max_connections_per_client` already.
    PerClient,
    /// hop is nearly full and the address holds its fair share already.
    NearlyFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "max_connections",
            Self::PerClient => "max_connections_per_client",
            Self::NearlyFull => "nearly_full",
        }
    }
}

/// The caps, from the configuration.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// 0: no cap per address.
    pub max_connections_per_client: usize,
    /// Peers exempt from the per-address caps.
    pub trusted_proxies: Vec<IpNet>,
}

/// Open connections by client address, and the caps they are held to.
pub struct ConnectionGate {
    limits: ConnectionLimits,
    /// Above this many open connections, rule 3 applies.
    reserve_from: usize,
    open: Mutex<Open>,
    refused: [AtomicU64; 3],
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it (when the connection ends) frees its place.
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    /// `None` for a trusted proxy, which is counted only in the total.
    client: Option<IpAddr>,
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Self {
        let reserve_from = limits.max_connections - limits.max_connections / 8;
        Self {
            limits,
            reserve_from,
            open: Mutex::default(),
            refused: Default::default(),
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Admits a connection from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let trusted = self
            .limits
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let verdict = if open.total >= self.limits.max_connections {
            Err(Refusal::Full)
        } else if trusted {
            Ok(None)
        } else {
            let held = open.by_client.get(&peer).copied().unwrap_or(0);
            let per_client = self.limits.max_connections_per_client;
            if per_client > 0 && held >= per_client {
                Err(Refusal::PerClient)
            } else if open.total >= self.reserve_from && held >= FAIR_SHARE {
                Err(Refusal::NearlyFull)
            } else {
                *open.by_client.entry(peer).or_insert(0) += 1;
                Ok(Some(peer))
            }
        };
        match verdict {
            Ok(client) => {
                open.total += 1;
                Ok(Admitted {
                    gate: self.clone(),
                    client,
                })
            }
            Err(refusal) => {
                drop(open);
                self.refused[refusal as usize].fetch_add(1, Ordering::Relaxed);
                Err(refusal)
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Connections refused since start, by reason.
    pub fn refused(&self) -> [(Refusal, u64); 3] {
        [Refusal::Full, Refusal::PerClient, Refusal::NearlyFull]
            .map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    fn release(&self, client: Option<IpAddr>) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(client) = client
            && let Some(held) = open.by_client.get_mut(&client)
        {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&client);
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(self.client);
    }
}

/// Raises the soft open-file limit to the hard one (what a server is allowed to use is
/// the hard limit; the soft default of 1,024 is a shell convenience) and returns the
/// limit now in force, or `None` where it cannot be read.
#[cfg(unix)]
pub fn raise_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit.current
}

#[cfg(not(unix))]
pub fn raise_file_limit() -> Option<u64> {
    None
}

/// `max_connections` when the configuration leaves it at 0: the open-file limit less
/// [`FILE_HEADROOM`], at least 16, at most [`DERIVED_MAX_CONNECTIONS`].
pub fn derived_max_connections(file_limit: Option<u64>) -> usize {
    let limit = file_limit.unwrap_or(1024);
    limit
        .saturating_sub(FILE_HEADROOM)
        .clamp(16, DERIVED_MAX_CONNECTIONS) as usize
}

/// Logs a recurring warning at most once per interval, with how many were held back,
/// so a flood of failed accepts or refused sockets cannot flood the log too.
pub struct Throttled {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl Throttled {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            held_back: AtomicU64::new(0),
        }
    }

    /// Calls `log` with the number of occurrences held back since the last call, if the
    /// interval has passed; otherwise counts this occurrence.
    pub fn run(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        log(self.held_back.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_client: usize, trusted: &[&str]) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate::new(ConnectionLimits {
            max_connections: max,
            max_connections_per_client: per_client,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        }))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_is_held_to_its_cap_and_others_still_get_in() {
        let gate = gate(100, 10, &[]);
        let held: Vec<_> = (0..10)
            .map(|_| gate.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("192.0.2.1")).err(), Some(Refusal::PerClient));
        let other = gate.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.open(), 11);
        drop(held);
        assert_eq!(gate.open(), 1);
        // Places are given back: the address may connect again.
        let _again = gate.admit(ip("192.0.2.1")).unwrap();
        drop(other);
        assert_eq!(gate.refused()[1], (Refusal::PerClient, 1));
    }

    #[test]
    fn the_last_eighth_is_kept_for_addresses_with_few_connections() {
        let gate = gate(64, 0, &[]);
        let mut held = Vec::new();
        // 14 addresses with 4 connections each reach 56 = 7/8 of 64.
        for n in 0..14 {
            for _ in 0..FAIR_SHARE {
                held.push(gate.admit(ip(&format!("198.51.100.{n}"))).unwrap());
            }
        }
        assert_eq!(
            gate.admit(ip("198.51.100.0")).err(),
            Some(Refusal::NearlyFull)
        );
        // A newcomer still gets in, up to its fair share, until hop is full.
        for _ in 0..FAIR_SHARE {
            held.push(gate.admit(ip("203.0.113.7")).unwrap());
        }
        assert_eq!(
            gate.admit(ip("203.0.113.7")).err(),
            Some(Refusal::NearlyFull)
        );
        while gate.open() < 64 {
            held.push(
                gate.admit(ip(&format!("203.0.113.{}", gate.open())))
                    .unwrap(),
            );
        }
        assert_eq!(gate.admit(ip("203.0.113.200")).err(), Some(Refusal::Full));
    }

    #[test]
    fn trusted_proxies_are_held_only_to_the_total() {
        let gate = gate(20, 2, &["10.0.0.0/8"]);
        let held: Vec<_> = (0..20)
            .map(|_| gate.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(gate.admit(ip("10.1.2.3")).err(), Some(Refusal::Full));
        drop(held);
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn derived_cap_keeps_headroom_and_stays_bounded() {
        assert_eq!(derived_max_connections(Some(512)), 448);
        assert_eq!(derived_max_connections(Some(1024)), 960);
        assert_eq!(derived_max_connections(Some(40)), 16);
        assert_eq!(derived_max_connections(Some(1 << 20)), 16_384);
        assert_eq!(derived_max_connections(None), 960);
    }

    #[test]
    fn throttled_logs_once_per_interval_and_counts_the_rest() {
        let throttled = Throttled::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..5 {
            throttled.run(|held_back| logged.push(held_back));
        }
        assert_eq!(logged, vec![0]);
        let throttled = Throttled::new(Duration::ZERO);
        throttled.run(|_| {});
        throttled.run(|held_back| logged.push(held_back));
        assert_eq!(logged, vec![0, 0]);
    }
}
