//! The open-file limit. Every session holds a few descriptors (the client's socket, the
//! target's, the recording), so the soft limit most systems start a service with (1,024)
//! would stop an instance at a few hundred sessions, far below `[limits]`. `serve` raises
//! the soft limit toward what `[limits]` needs, within the hard limit the administrator set
//! (or past it, when it runs with the privilege to raise it).

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use policy::config::Limits;
use tracing::{info, warn};

/// Descriptors counted per connection: two sockets, the recording, and a second handle on
/// the client's socket (SSH keeps one until the login, to cut a client that ignores its
/// disconnect).
const PER_CONNECTION: u64 = 4;
/// Descriptors for everything else: listeners, the catalogue, logs, the spool.
const BASE: u64 = 1024;

/// What the open-file limit became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// What `[limits]` needs.
    pub wanted: u64,
}

/// Raises the soft `RLIMIT_NOFILE` toward what `limits` needs (never lowers it) and says so
/// in the log; warns when the hard limit keeps it below.
pub fn raise_for(limits: &Limits) -> Result<FdLimit, nix::Error> {
    let wanted = limits
        .total_connections()
        .saturating_mul(PER_CONNECTION)
        .saturating_add(BASE);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(FdLimit { soft, wanted });
    }
    // A privileged process may raise the hard limit too (up to the kernel's `fs.nr_open`);
    // anyone else gets as far as the hard limit.
    let soft = if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        wanted
    } else {
        let target = wanted.min(hard);
        if soft < target {
            setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        }
        target.max(soft)
    };
    info!(to = soft, wanted, "Raised the open-file limit");
    if soft < wanted {
        warn!(
            limit = soft,
            wanted,
            "The open-file limit is below what [limits] allows: sessions will be refused before \
             the limits are reached; raise the hard limit (LimitNOFILE= in a systemd unit)"
        );
    }
    Ok(FdLimit { soft, wanted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_and_never_lowers_it() {
        let (soft_before, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let r = raise_for(&Limits::default()).unwrap();
        assert!(r.soft >= soft_before, "{r:?} < {soft_before}");
        assert!(r.wanted > 12_000 * PER_CONNECTION, "{r:?}");
        let (soft_after, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft_after, r.soft);
    }
}
