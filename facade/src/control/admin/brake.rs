//! A brake on guessing the admin token: an address that has sent too many
//! wrong tokens within a minute is refused (429) until that minute is over,
//! whatever token it sends meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window the failures are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered at most; beyond, those whose window is over are
/// forgotten first, so a flood of addresses cannot grow the map for good.
const MAX_ADDRESSES: usize = 10_000;

/// Wrong-token counts per client address.
#[derive(Debug)]
pub(crate) struct AuthBrake {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthBrake {
    /// A brake that stops an address after `limit` wrong tokens a minute.
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `address` must still wait, if it is braked now.
    pub(crate) fn braked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let &(since, count) = failures.get(&address)?;
        let left = WINDOW.checked_sub(now.saturating_duration_since(since))?;
        (count >= self.limit && !left.is_zero()).then_some(left)
    }

    /// Counts a wrong token from `address`.
    pub(crate) fn failed(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (since, _)| now.saturating_duration_since(*since) < WINDOW);
            if failures.len() >= MAX_ADDRESSES {
                // Every address is in its window: the newest guesser is
                // braked at once rather than forgotten.
                failures.clear();
            }
        }
        let entry = failures.entry(address).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_braked_after_its_limit_until_the_window_ends() {
        let brake = AuthBrake::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..2 {
            brake.failed(a, start);
        }
        assert_eq!(brake.braked(a, start), None, "two of three");
        brake.failed(a, start);
        let wait = brake.braked(a, start + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(brake.braked(b, start), None, "another address is not braked");
        assert_eq!(brake.braked(a, start + WINDOW), None, "the window is over");
        brake.failed(a, start + WINDOW);
        assert_eq!(
            brake.braked(a, start + WINDOW),
            None,
            "a new window counts from one"
        );
    }
}
