//! Fitting `max_connections` to the file descriptors the process may open.
//!
//! A facade out of descriptors fails in the worst places: it cannot accept,
//! cannot dial an upstream, cannot open its store. `max_connections` is
//! there so that a flood is answered 503 before that happens, but only if
//! the process may open enough descriptors for that many connections. So
//! at start the soft limit is raised as far as the hard limit allows (as
//! nginx's `worker_rlimit_nofile` and Go's runtime do), and if that is still
//! too few, the facade serves fewer connections and says so, rather than
//! promise what it cannot keep.

/// Descriptors one client connection may hold: its own socket and one
/// pooled upstream socket.
const PER_CONNECTION: u64 = 2;

/// Descriptors kept for everything else: listeners, the store's pool,
/// health checks, shadow copies, certificate reloads, the runtime's own.
const RESERVE: u64 = 256;

/// How many client connections fit in `limit` descriptors, at most
/// `wanted`. A limit too small for the reserve keeps half of it for
/// connections, so the facade still serves a few.
fn fitting(wanted: usize, limit: u64) -> usize {
    let reserve = RESERVE.min(limit / 2);
    let fit = (limit - reserve) / PER_CONNECTION;
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, wanted.max(1))
}

/// Raises the descriptor limit for `max_connections` client connections,
/// and returns how many the facade can really hold: `max_connections`, or
/// fewer when the hard limit is too low (with a warning that says what to
/// change).
pub(crate) fn fit_connections(max_connections: usize) -> usize {
    let needed = (max_connections as u64)
        .saturating_mul(PER_CONNECTION)
        .saturating_add(RESERVE);
    let limit = match rlimit::increase_nofile_limit(needed) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open-file limit; max_connections is taken as configured");
            return max_connections;
        }
    };
    let fit = fitting(max_connections, limit);
    if fit < max_connections {
        tracing::warn!(
            max_connections,
            descriptors_needed = needed,
            open_file_limit = limit,
            serving_at_most = fit,
            "max_connections needs more file descriptors than this process may open; \
             serving fewer connections so a flood gets 503s instead of failed accepts. \
             Raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn, the container's nofile) \
             or lower max_connections"
        );
    }
    fit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_in_what_is_left_after_the_reserve() {
        // Enough: as configured.
        assert_eq!(fitting(16_384, 1_048_576), 16_384);
        assert_eq!(fitting(16_384, 16_384 * 2 + 256), 16_384);
        // Debian's default soft limit of 1,024.
        assert_eq!(fitting(16_384, 1_024), 384);
        // Absurdly low limits still serve something.
        assert_eq!(fitting(16_384, 100), 25);
        assert_eq!(fitting(16_384, 1), 1);
        assert_eq!(fitting(0, 1_024), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_for_what_is_configured() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let fit = fit_connections(10);
        assert_eq!(fit, 10);
        let (after, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert!(
            after >= soft.min(hard),
            "the soft limit went down: {soft} -> {after}"
        );
        assert!(after >= 10 * PER_CONNECTION + RESERVE || after == hard);
    }
}
