//! Four eyes (`supervised = true` on a target or a contract): a session runs only while a
//! member of security staff watches it in the live view. The relay waits for a watcher before
//! it dials the target, and holds the contractor's input (output keeps flowing and is
//! recorded) while nobody watches. Nobody within `auth.supervision_wait` (default 5 min):
//! refused, rule `supervision.absent`.
//!
//! Holding input needs a relay that knows what input is: the text consoles (SSH and serial)
//! and the VNC console relay do (its viewer gets no ServerInit until a watcher comes, then its
//! keys and pointer are held while nobody watches). A supervised RDP session is refused before
//! anything is dialled (fail closed) until the RDP relay can hold input too.

use std::time::Duration;

use policy::{Authorized, Denial, Protocol, Request, Rule};

/// Whether the relay of `protocol` can hold input while nobody watches.
pub fn holds_input(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Ssh | Protocol::ConsoleSerial | Protocol::ConsoleVnc
    )
}

/// The refusal of a supervised session whose relay cannot hold input.
pub fn unsupported_denial(req: &Request, auth: &Authorized) -> Denial {
    Denial::new(
        Rule::SupervisionAbsent,
        format!(
            "{} from {} to {} denied: {} is supervised (four eyes), and a {} session cannot yet \
             be held while nobody watches; use its text console",
            req.protocol,
            req.source,
            auth.target(),
            auth.target(),
            req.protocol
        ),
        Some(auth.user().to_owned()),
        Some(auth.contractor().to_owned()),
        Some(auth.target().to_owned()),
    )
}

/// The refusal of a supervised session nobody came to watch: `user` (of `contractor`) to
/// `target`.
pub fn nobody_came_denial(
    req: &Request,
    user: &str,
    contractor: Option<String>,
    target: &str,
    waited: Duration,
) -> Denial {
    Denial::new(
        Rule::SupervisionAbsent,
        format!(
            "{} from {} to {target} denied: {target} is supervised (four eyes), and no member \
             of security staff watched the session within {} s; ask security staff to open it \
             in the live view, then connect again",
            req.protocol,
            req.source,
            waited.as_secs()
        ),
        Some(user.to_owned()),
        contractor,
        Some(target.to_owned()),
    )
}
