//! The russh `Handler` of one SSH connection. It holds no session logic: authentication is
//! answered here (it must be, synchronously with the protocol), and every channel callback
//! becomes an [`Event`] for the connection's actor in [`super::session`]. Requests Sekisho never
//! grants (port/agent/X11 forwarding, subsystems) are refused here and reported as events.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use policy::Protocol;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::events::{Event, Refusal};
use super::menu::parse_login;
use super::session::Actor;
use crate::auth::matrix_card::{MatrixCard, Verdict};
use crate::auth::{key_is_authorized, verify_password};
use crate::services::Services;

/// Events queued toward the actor. Small: a full queue stalls russh's read loop, which is the
/// backpressure toward a fast typist or a paste.
const EVENT_QUEUE: usize = 64;
/// Most keyboard-interactive answers looked at in one response.
const MAX_KBD_ANSWERS: usize = 8;

/// The methods of the first factor. Keyboard-interactive is offered only after it (for the
/// matrix card): OpenSSH tries a listed method once, so listing it early would burn it.
fn first_factor_methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])
}

/// A rejected first factor: the client may try again (russh would otherwise drop the method
/// from the list after one failure).
fn reject_first() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(first_factor_methods()),
        partial_success: false,
    }
}

/// Who is logging in (after the first factor was answered).
#[derive(Debug, Clone)]
struct Login {
    /// The login name as sent (`USER+TARGET`).
    login: String,
    user: String,
    target: Option<String>,
}

/// The matrix card step of a card user. It is asked whatever the answer to the first factor,
/// and only its end says yes or no, so a right password is never confirmed before the card
/// is answered (a guesser learns nothing from the first step).
struct CardStep {
    card: MatrixCard,
    /// The password or key was right.
    /// INVARIANT: the login is accepted only when this is true and the card answer is right.
    first_factor_ok: bool,
    /// The user name or address was locked out: nothing was checked and the step fails,
    /// exactly as after a wrong password.
    locked: bool,
}

/// One connection's russh handler.
pub struct ConnectionHandler {
    services: Arc<Services>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Set once the first factor was answered (and kept only if the login succeeds).
    login: Option<Login>,
    /// The card step, when the user has a card and the first factor was answered.
    card: Option<CardStep>,
    /// Toward the actor, once authenticated.
    events: Option<mpsc::Sender<Event>>,
    /// The one session channel this connection may have.
    session_channel: Option<ChannelId>,
    /// Fired once authentication succeeded (stops the listener's authentication timer).
    authenticated: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ConnectionHandler {
    pub(super) fn new(
        services: Arc<Services>,
        shared: Arc<Shared>,
        peer: SocketAddr,
        authenticated: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        ConnectionHandler {
            services,
            shared,
            peer,
            login: None,
            card: None,
            events: None,
            session_channel: None,
            authenticated: Some(authenticated),
        }
    }

    /// The first factor was answered. Without a card: accepted when `ok` (the caller refuses
    /// otherwise). With one: the card comes next whatever `ok` is (see [`CardStep`]).
    fn first_factor(
        &mut self,
        login: &str,
        card: Option<Vec<String>>,
        ok: bool,
        locked: bool,
    ) -> Auth {
        let (user, target) = parse_login(login);
        let Some(rows) = card else {
            self.login = Some(Login {
                login: login.to_owned(),
                user: user.to_owned(),
                target: target.map(str::to_owned),
            });
            info!(user, "SSH login accepted");
            return Auth::Accept;
        };
        match MatrixCard::from_config_rows(&rows) {
            Ok(card) => {
                self.login = Some(Login {
                    login: login.to_owned(),
                    user: user.to_owned(),
                    target: target.map(str::to_owned),
                });
                self.card = Some(CardStep {
                    card,
                    first_factor_ok: ok,
                    locked,
                });
                Auth::Reject {
                    proceed_with_methods: Some(MethodSet::from(
                        &[MethodKind::KeyboardInteractive][..],
                    )),
                    partial_success: true,
                }
            }
            Err(e) => {
                warn!(user, error = %e, "Unusable matrix card; refusing the login");
                reject_first()
            }
        }
    }

    /// True (and logged) when `user`'s matrix card is locked out: both first factors refuse
    /// the login then, the same way for a right and a wrong password or key.
    fn card_locked(&self, user: &str) -> bool {
        let locked = self.shared.matrix.is_locked(user, Instant::now());
        if locked {
            warn!(user, "SSH login refused: matrix card locked out");
        }
        locked
    }

    /// Whether `user` (or this address) is locked out by the failed-logon throttle. A locked
    /// login is answered like a wrong one, and nothing is checked or counted.
    fn throttled(&self, user: &str) -> bool {
        match self
            .services
            .throttle()
            .check(user, self.peer.ip(), Instant::now())
        {
            Ok(()) => false,
            Err(locked) => {
                debug!(user, subject = %locked.subject, remaining_secs = locked.remaining.as_secs(), "SSH login refused: locked out after repeated failures");
                true
            }
        }
    }

    /// A failed logon: counted by the throttle (a lockout it starts is audited), logged and
    /// written as an `auth.failed` denial. `why` names the factor, never a secret.
    async fn failed(&self, login: &str, why: &str) {
        let (user, target) = parse_login(login);
        let ip = self.peer.ip();
        let lockouts = self
            .services
            .throttle()
            .record_failure(user, ip, Instant::now());
        info!(user, client_ip = %ip, reason = why, "SSH logon failed");
        self.services
            .auth_failed(
                Protocol::Ssh,
                user,
                ip,
                target,
                format!("SSH logon of {user} from {ip} refused: {why}"),
            )
            .await;
        self.services
            .lockouts_started(&lockouts, Protocol::Ssh, ip)
            .await;
    }

    async fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            // A closed actor means the session is over; russh will close the connection.
            let _ = tx.send(event).await;
        }
    }

    async fn refuse(&self, kind: Refusal, detail: String, channel: Option<ChannelId>) {
        info!(?kind, %detail, "Refused an SSH request");
        self.emit(Event::Refused {
            kind,
            detail,
            channel,
            told: false,
        })
        .await;
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // OpenSSH's probe for the methods: no credential was tried, nothing is counted.
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, login: &str, password: &str) -> Result<Auth, Self::Error> {
        // A new first factor starts the login over.
        self.login = None;
        self.card = None;
        let (user, _) = parse_login(login);
        let inventory = self.services.inventory();
        let known = inventory.user(user);
        let hash = known.and_then(|u| u.password_hash.clone());
        let card = known.and_then(|u| u.matrix_card.clone());
        // While the card is locked the password is not even checked: a right and a wrong one
        // get the same refusal, so the lockout is no oracle for guessing it.
        if card.is_some() && self.card_locked(user) {
            return Ok(reject_first());
        }
        // Likewise while the user or address is locked out by the throttle.
        let locked = self.throttled(user);
        if locked && card.is_none() {
            return Ok(reject_first());
        }
        let ok = match (locked, hash) {
            (false, Some(hash)) => {
                let password = policy::Secret::new(password.to_owned());
                tokio::task::spawn_blocking(move || verify_password(&hash, password.expose()))
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        if card.is_some() {
            // The card is asked whether the password was right or not.
            return Ok(self.first_factor(login, card, ok, locked));
        }
        if !ok {
            info!(user, "SSH password rejected");
            let why = if known.is_none() {
                "unknown user"
            } else {
                "wrong password"
            };
            self.failed(login, why).await;
            return Ok(reject_first());
        }
        self.services
            .throttle()
            .record_success(user, self.peer.ip());
        Ok(self.first_factor(login, None, true, false))
    }

    async fn auth_publickey_offered(
        &mut self,
        login: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only a question ("would this key do?"): clients offer every key they hold, so an
        // unknown key is not a failed logon.
        let (user, _) = parse_login(login);
        let inventory = self.services.inventory();
        let known = inventory
            .user(user)
            .is_some_and(|u| key_is_authorized(&u.ssh_keys, offer.public_key));
        Ok(if known { Auth::Accept } else { reject_first() })
    }

    async fn auth_publickey(
        &mut self,
        login: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.login = None;
        self.card = None;
        let (user, _) = parse_login(login);
        let inventory = self.services.inventory();
        let known = inventory.user(user);
        let card = known.and_then(|u| u.matrix_card.clone());
        if card.is_some() && self.card_locked(user) {
            return Ok(reject_first());
        }
        let locked = self.throttled(user);
        if locked && card.is_none() {
            return Ok(reject_first());
        }
        let ok = !locked && known.is_some_and(|u| key_is_authorized(&u.ssh_keys, key.public_key));
        if card.is_some() {
            return Ok(self.first_factor(login, card, ok, locked));
        }
        if !ok {
            self.failed(login, "public key not authorized").await;
            return Ok(reject_first());
        }
        self.services
            .throttle()
            .record_success(user, self.peer.ip());
        Ok(self.first_factor(login, None, true, false))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        login: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let (Some(l), Some(step)) = (&self.login, &self.card) else {
            return Ok(Auth::reject());
        };
        if l.login != login {
            return Ok(Auth::reject());
        }
        let user = l.user.clone();
        let guard = &self.shared.matrix;
        let Some(response) = response else {
            // The user's pending challenge: a new round shows the same cells until they are
            // answered, so redrawing gives nothing new.
            let challenge =
                match guard.challenge(&user, &step.card, &mut rand::rng(), Instant::now()) {
                    Some(c) => c,
                    None => {
                        // Locked meanwhile: refused like a wrong card answer, without one.
                        warn!(user, "Matrix card locked out");
                        self.login = None;
                        self.card = None;
                        return Ok(reject_first());
                    }
                };
            let prompts: Vec<(Cow<'static, str>, bool)> = challenge
                .prompts()
                .into_iter()
                .map(|p| (Cow::Owned(p), false))
                .collect();
            return Ok(Auth::Partial {
                name: Cow::Borrowed("Sekisho matrix card"),
                instructions: Cow::Borrowed(
                    "Enter the digit printed in each cell of your matrix card.",
                ),
                prompts: Cow::Owned(prompts),
            });
        };
        // An answer ends this attempt, right or wrong: a failure starts over at the password.
        let (Some(l), Some(step)) = (self.login.take(), self.card.take()) else {
            return Ok(reject_first());
        };
        if step.locked {
            return Ok(reject_first());
        }
        let answers: Vec<String> = response
            .take(MAX_KBD_ANSWERS)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let now = Instant::now();
        let verdict = guard.answer(&user, &step.card, &refs, now);
        if step.first_factor_ok && verdict == Verdict::Pass {
            info!(user, "SSH login accepted (with matrix card)");
            let ip = self.peer.ip();
            self.services.throttle().record_success(&user, ip);
            self.services.second_factors().record_pass(&user, ip, now);
            self.login = Some(l);
            return Ok(Auth::Accept);
        }
        let why = match verdict {
            Verdict::Pass => "wrong password or key",
            Verdict::Fail { remaining } => {
                info!(user, remaining, "Matrix card answer rejected");
                if step.first_factor_ok {
                    "wrong matrix card answer"
                } else {
                    "wrong password or key, and wrong matrix card answer"
                }
            }
            Verdict::Locked => {
                warn!(user, "Matrix card locked out after repeated failures");
                "wrong matrix card answer; the card is now locked out"
            }
        };
        self.failed(&l.login, why).await;
        Ok(reject_first())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Err(russh::Error::NotAuthenticated);
        };
        if let Some(done) = self.authenticated.take() {
            let _ = done.send(());
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        self.events = Some(tx);
        let span = info_span!(
            "session",
            proto = "ssh",
            client_ip = %self.peer.ip(),
            user = %login.user,
        );
        let actor = Actor::new(
            Arc::clone(&self.services),
            session.handle(),
            rx,
            login.user,
            login.target,
            self.peer.ip(),
            self.shared.shutdown.clone(),
        );
        self.services.tasks().spawn(actor.run().instrument(span));
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.events.is_none() || self.session_channel.is_some() {
            // One terminal per connection: nothing else leaves the session.
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let id = channel.id();
        // The channel object is dropped: its data also reaches `data` below.
        drop(channel);
        self.session_channel = Some(id);
        reply.accept().await;
        self.emit(Event::SessionChannel(id)).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse(Refusal::Forwarding, "X11 channel".to_owned(), None)
            .await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        let detail =
            format!("port forwarding to {host_to_connect}:{port_to_connect} (direct-tcpip)");
        self.refuse(Refusal::Forwarding, detail, None).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse(
            Refusal::Forwarding,
            "forwarded-tcpip channel".to_owned(),
            None,
        )
        .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        let detail = format!("unix socket forwarding to {socket_path}");
        self.refuse(Refusal::Forwarding, detail, None).await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.emit(Event::Eof(channel)).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.emit(Event::Closed(channel)).await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::trace!(len = data.len(), "Client data");
        self.emit(Event::Data(channel, Bytes::copy_from_slice(data)))
            .await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.emit(Event::Pty {
            term: term.chars().take(64).collect(),
            cols: col_width,
            rows: row_height,
        })
        .await;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        self.refuse(
            Refusal::Forwarding,
            "X11 forwarding".to_owned(),
            Some(channel),
        )
        .await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The console's environment is not the client's business.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.emit(Event::Shell(channel)).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let command: String = String::from_utf8_lossy(data).chars().take(1024).collect();
        self.emit(Event::Exec(channel, command)).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let name: String = name.chars().take(64).collect();
        // Accept, then say why on stderr and end the channel with status 1 (the actor does):
        // OpenSSH exits on a failed subsystem request before printing the channel's stderr,
        // so a plain failure would leave the user without the reason.
        session.channel_success(channel)?;
        let line = format!(
            "sekisho: denied (ssh.file-transfer): file transfer (subsystem {name}) is not allowed through Sekisho\r\n"
        );
        session.extended_data(channel, 1, Bytes::from(line))?;
        self.emit(Event::Refused {
            kind: Refusal::FileTransfer,
            detail: format!("subsystem {name}"),
            channel: Some(channel),
            told: true,
        })
        .await;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.emit(Event::Resize {
            cols: col_width,
            rows: row_height,
        })
        .await;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse(
            Refusal::Forwarding,
            "agent forwarding".to_owned(),
            Some(channel),
        )
        .await;
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let detail = format!("remote port forwarding from {address}:{port} (tcpip-forward)");
        self.refuse(Refusal::Forwarding, detail, None).await;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let detail = format!("remote unix socket forwarding from {socket_path}");
        self.refuse(Refusal::Forwarding, detail, None).await;
        Ok(false)
    }
}
