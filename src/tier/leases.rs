//! Redirect allowances borrowed from the cluster-wide bucket in Redis, so that a
//! cached redirect does not wait on Redis for its rate limit.
//!
//! A node takes a few requests at once from a client's bucket in Redis (a lease) and
//! spends them locally. The first lease of a client is one request; a lease spent
//! before it ran out of time doubles the next one, up to [`Leases::max_size`] (a 64th
//! of the limit); a lease that lapsed with requests left halves it. Requests are taken
//! from Redis before they are spent, so the nodes together never allow more than the
//! limit; what a lapsed lease leaves unspent is lost, which keeps the nodes below it
//! by at most a 64th of the limit each. A refusal is remembered until the bucket
//! has room again, so a refused client costs no Redis call per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a lease may be spent.
pub const LEASE_LIFETIME: Duration = Duration::from_secs(1);
/// Shards grow past this many clients before lapsed leases are first dropped.
const SWEEP_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Requests left to spend.
    left: u32,
    /// Requests the lease held when granted.
    size: u32,
    /// Spend until then; for a refusal, refuse until then.
    until: Instant,
    refused: bool,
}

/// What a client's lease says about one more redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    Allowed,
    /// Refused by the cluster until the bucket has room: seconds to wait.
    Refused(u64),
    /// No lease to spend: ask Redis for this many requests.
    Borrow(u32),
}

struct Shard {
    leases: HashMap<IpAddr, Lease>,
    sweep_above: usize,
}

pub struct Leases {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for Leases {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            shards: (0..(threads * 4).next_power_of_two())
                .map(|_| {
                    Mutex::new(Shard {
                        leases: HashMap::new(),
                        sweep_above: SWEEP_ABOVE,
                    })
                })
                .collect(),
        }
    }
}

impl Leases {
    /// The largest lease for a limit of `per_minute`.
    pub fn max_size(per_minute: u32) -> u32 {
        (per_minute / 64).max(1)
    }

    fn shard(&self, client: &IpAddr) -> &Mutex<Shard> {
        let hash = match client {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => u128::from(*v6) as usize,
        };
        &self.shards[hash & (self.shards.len() - 1)]
    }

    /// Spends one request of `client`'s lease, if it has one.
    pub fn spend(&self, client: IpAddr, per_minute: u32, now: Instant) -> Spend {
        let mut shard = self.shard(&client).lock().expect("leases poisoned");
        let Some(lease) = shard.leases.get_mut(&client) else {
            return Spend::Borrow(1);
        };
        if lease.refused {
            if now < lease.until {
                return Spend::Refused(lease.until.saturating_duration_since(now).as_secs().max(1));
            }
            return Spend::Borrow(1);
        }
        if lease.left > 0 && now < lease.until {
            lease.left -= 1;
            return Spend::Allowed;
        }
        let next = if lease.left == 0 {
            lease.size.saturating_mul(2)
        } else {
            lease.size / 2
        };
        Spend::Borrow(next.clamp(1, Self::max_size(per_minute)))
    }

    /// Records what Redis granted for one request and a lease of `granted - 1` more,
    /// or (`granted` 0) a refusal for `wait`. Concurrent borrowers of one client add
    /// up: a live lease keeps what it has left.
    pub fn record(&self, client: IpAddr, granted: u32, wait: Duration, now: Instant) {
        let mut shard = self.shard(&client).lock().expect("leases poisoned");
        if shard.leases.len() > shard.sweep_above {
            shard.leases.retain(|_, lease| now < lease.until);
            shard.sweep_above = SWEEP_ABOVE.max(2 * shard.leases.len());
        }
        if let Some(live) = shard
            .leases
            .get_mut(&client)
            .filter(|lease| !lease.refused && now < lease.until && lease.left > 0)
        {
            if granted > 0 {
                live.left += granted - 1;
                live.size = live.size.max(granted);
                live.until = now + LEASE_LIFETIME;
            }
            return;
        }
        let lease = if granted == 0 {
            Lease {
                left: 0,
                size: 1,
                until: now + wait,
                refused: true,
            }
        } else {
            Lease {
                left: granted - 1,
                size: granted,
                until: now + LEASE_LIFETIME,
                refused: false,
            }
        };
        shard.leases.insert(client, lease);
    }

    /// Forgets every lease (they were taken from a Redis that may be gone).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().expect("leases poisoned").leases.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_grow_while_spent_and_shrink_when_they_lapse() {
        let leases = Leases::default();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert_eq!(leases.spend(client, 6400, start), Spend::Borrow(1));
        leases.record(client, 1, Duration::ZERO, start);
        // Spent at once: the next is twice as large, then twice again.
        assert_eq!(leases.spend(client, 6400, start), Spend::Borrow(2));
        leases.record(client, 2, Duration::ZERO, start);
        assert_eq!(leases.spend(client, 6400, start), Spend::Allowed);
        assert_eq!(leases.spend(client, 6400, start), Spend::Borrow(4));
        // Never above a 64th of the limit.
        leases.record(client, 100, Duration::ZERO, start);
        for _ in 0..99 {
            assert_eq!(leases.spend(client, 6400, start), Spend::Allowed);
        }
        assert_eq!(leases.spend(client, 6400, start), Spend::Borrow(100));
        // Lapsed with requests left: half.
        leases.record(client, 100, Duration::ZERO, start);
        let later = start + LEASE_LIFETIME;
        assert_eq!(leases.spend(client, 6400, later), Spend::Borrow(50));
        // A refusal is remembered until the bucket has room.
        leases.record(client, 0, Duration::from_secs(3), later);
        assert_eq!(leases.spend(client, 6400, later), Spend::Refused(3));
        assert_eq!(
            leases.spend(client, 6400, later + Duration::from_secs(3)),
            Spend::Borrow(1)
        );
        leases.clear();
        assert_eq!(leases.spend(client, 6400, later), Spend::Borrow(1));
        // Two borrowers at once: the second grant adds to the first lease.
        leases.record(client, 3, Duration::ZERO, later);
        leases.record(client, 3, Duration::ZERO, later);
        for _ in 0..4 {
            assert_eq!(leases.spend(client, 6400, later), Spend::Allowed);
        }
        assert_eq!(leases.spend(client, 6400, later), Spend::Borrow(6));
    }
}
