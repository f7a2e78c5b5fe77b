//! One actor per authenticated SSH connection: waits for the terminal, shows the menu or takes
//! the target from the login name, asks the policy, opens the recorded session, connects the
//! console and relays both ways until one side ends or the session must end.
//!
//! All glue with the rest of Sekisho (policy decisions, refusals, recording) goes through
//! [`Services`] here and nowhere else in `ssh/`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use policy::{Decision, Denial, Inventory, Protocol, Request, Rule, TargetKind, TargetRef};
use recorder::catalogue::Outcome;
use recorder::format::EventKind;
use russh::server::Handle;
use russh::{ChannelId, Disconnect};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::console::{self, ConsoleInput, Pty, Route, UpstreamAuth};
use super::events::{Event, Refusal};
use super::menu::{self, ExecCommand, LineEditor, MenuEntry};
use crate::services::supervision;
use crate::services::{Admission, LiveSession, Services, SessionMeta};

/// How long an authenticated connection may sit without asking for a shell or command.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the menu waits for a choice.
const MENU_TIMEOUT: Duration = Duration::from_secs(300);
/// The channel number terminal data is recorded under (one terminal per session).
const TERMINAL_CHANNEL: u32 = 0;

/// The actor of one connection.
pub struct Actor {
    services: Arc<Services>,
    handle: Handle,
    events: mpsc::Receiver<Event>,
    user: String,
    target: Option<String>,
    source: IpAddr,
    shutdown: CancellationToken,
    channel: Option<ChannelId>,
    pty: Pty,
    /// Refusals seen before the recording opened, written into it once it does.
    early_refusals: Vec<(Refusal, String)>,
}

/// How the connection phase ended.
enum Next {
    Shell,
    Exec(String),
    /// A request on the channel was refused; end with a failure status.
    Refused,
    Gone,
}

impl Actor {
    pub(super) fn new(
        services: Arc<Services>,
        handle: Handle,
        events: mpsc::Receiver<Event>,
        user: String,
        target: Option<String>,
        source: IpAddr,
        shutdown: CancellationToken,
    ) -> Actor {
        Actor {
            services,
            handle,
            events,
            user,
            target,
            source,
            shutdown,
            channel: None,
            pty: Pty {
                term: "xterm".to_owned(),
                cols: 80,
                rows: 24,
            },
            early_refusals: Vec::new(),
        }
    }

    /// Runs the connection to its end, then disconnects the client.
    pub async fn run(mut self) {
        let shutdown = self.shutdown.clone();
        let next = tokio::select! {
            n = self.setup() => n,
            _ = tokio::time::sleep(SETUP_TIMEOUT) => Next::Gone,
            _ = shutdown.cancelled() => Next::Gone,
        };
        let status = match next {
            Next::Gone => None,
            Next::Refused => Some(1),
            Next::Exec(cmd) => Some(self.exec(&cmd).await),
            Next::Shell => Some(self.shell().await),
        };
        self.flush_refusals(None).await;
        if let (Some(status), Some(ch)) = (status, self.channel) {
            let _ = self.handle.exit_status_request(ch, status).await;
            let _ = self.handle.eof(ch).await;
            let _ = self.handle.close(ch).await;
        }
        // Give the client a moment to read the last line before the transport goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = self
            .handle
            .disconnect(
                Disconnect::ByApplication,
                "session ended".to_owned(),
                String::new(),
            )
            .await;
    }

    /// Waits for the session channel and a shell or exec request.
    async fn setup(&mut self) -> Next {
        while let Some(ev) = self.events.recv().await {
            match ev {
                Event::SessionChannel(ch) => self.channel = Some(ch),
                Event::Pty { term, cols, rows } => self.pty = Pty { term, cols, rows },
                Event::Resize { cols, rows } => {
                    self.pty.cols = cols;
                    self.pty.rows = rows;
                }
                Event::Shell(ch) if Some(ch) == self.channel => return Next::Shell,
                Event::Exec(ch, cmd) if Some(ch) == self.channel => return Next::Exec(cmd),
                Event::Refused {
                    kind,
                    detail,
                    channel,
                    told,
                } => {
                    let ends = channel.is_some()
                        && channel == self.channel
                        && kind == Refusal::FileTransfer;
                    self.refused(None, kind, &detail, told).await;
                    if ends {
                        return Next::Refused;
                    }
                }
                Event::Eof(ch) | Event::Closed(ch) if Some(ch) == self.channel => {
                    return Next::Gone;
                }
                _ => {}
            }
        }
        Next::Gone
    }

    /// Writes a line (or prompt) to the user's terminal.
    async fn say(&self, text: &str) {
        if let Some(ch) = self.channel {
            let _ = self
                .handle
                .data(ch, Bytes::copy_from_slice(text.as_bytes()))
                .await;
        }
    }

    /// Writes a message to the user's stderr (shown even without a terminal, e.g. by sftp).
    async fn say_err(&self, text: &str) {
        if let Some(ch) = self.channel {
            let _ = self
                .handle
                .extended_data(ch, 1, Bytes::copy_from_slice(text.as_bytes()))
                .await;
        }
    }

    fn request(&self, protocol: Protocol, target: Option<&str>) -> Request {
        Request {
            protocol,
            source: self.source,
            target: TargetRef::Name(target.unwrap_or_default().to_owned()),
            user: Some(self.user.clone()),
        }
    }

    /// Reports a refused request: to the user, the catalogue and (when open) the recording.
    async fn refused(
        &mut self,
        live: Option<&LiveSession>,
        kind: Refusal,
        detail: &str,
        told: bool,
    ) {
        let (rule, what) = match kind {
            Refusal::FileTransfer => (Rule::SshFileTransfer, "file transfer"),
            Refusal::Forwarding => (Rule::SshForwarding, "forwarding"),
        };
        let reason = format!(
            "{detail} refused for {} from {}: {what} is not allowed through Sekisho; only the console terminal is available",
            self.user, self.source
        );
        if !told {
            self.say_err(&format!(
                "\r\nsekisho: denied ({}): {reason}\r\n",
                rule.as_str()
            ))
            .await;
        }
        let inventory = self.services.inventory();
        let contractor = inventory
            .user(&self.user)
            .and_then(|u| u.contractor.clone());
        let denial = Denial::new(
            rule,
            reason.clone(),
            Some(self.user.clone()),
            contractor,
            self.target.clone(),
        );
        let req = self.request(Protocol::Ssh, self.target.as_deref());
        match live {
            Some(live) => {
                self.services
                    .record_refusal(Some(live.id), &denial, &req)
                    .await;
                let kind = match kind {
                    Refusal::FileTransfer => EventKind::SftpRefused,
                    Refusal::Forwarding => EventKind::ForwardingRefused,
                };
                if let Err(e) = live.event(kind, &reason).await {
                    warn!(error = %format!("{e:#}"), "Cannot record a refusal");
                }
            }
            None => {
                self.services.record_refusal(None, &denial, &req).await;
                self.early_refusals.push((kind, reason));
            }
        }
    }

    /// Writes refusals that happened before the recording opened into it.
    async fn flush_refusals(&mut self, live: Option<&LiveSession>) {
        let early = std::mem::take(&mut self.early_refusals);
        if let Some(live) = live {
            for (kind, reason) in early {
                let kind = match kind {
                    Refusal::FileTransfer => EventKind::SftpRefused,
                    Refusal::Forwarding => EventKind::ForwardingRefused,
                };
                let _ = live.event(kind, &reason).await;
            }
        }
    }

    /// `ssh USER@bastion COMMAND`. Returns the exit status.
    async fn exec(&mut self, command: &str) -> u32 {
        match menu::parse_exec(command) {
            ExecCommand::Console(target) => {
                info!(%target, "Graphical console ticket asked for");
                // Decided (and written to the catalogue) now; the VNC listener asks the policy
                // again when the ticket is redeemed, since a window may close in between.
                let req = self.request(Protocol::ConsoleVnc, Some(&target));
                // A card user's ticket needs a recent card pass from this desktop. Over SSH it
                // holds by construction (this login passed the card), but the rule is the
                // VNC door's, and checked where it is redeemed too.
                if let Some(denial) = self.services.second_factor_missing(
                    Protocol::ConsoleVnc,
                    &self.user,
                    self.source,
                    &target,
                    std::time::Instant::now(),
                ) {
                    self.services.record_refusal(None, &denial, &req).await;
                    self.say_err(&format!(
                        "sekisho: denied ({}): {}\r\n",
                        denial.rule().as_str(),
                        denial.reason()
                    ))
                    .await;
                    return 1;
                }
                match self.services.decide(&req).await {
                    Decision::Deny(d) => {
                        self.say_err(&format!(
                            "sekisho: denied ({}): {}\r\n",
                            d.rule().as_str(),
                            d.reason()
                        ))
                        .await;
                        1
                    }
                    Decision::Allow(a) => match crate::vnc::tickets::shared().issue(
                        &self.user,
                        a.target(),
                        self.source,
                        chrono::Utc::now(),
                    ) {
                        Ok(ticket) => {
                            let vnc = self.services.inventory().listen().vnc;
                            self.say(&format!("vnc: {vnc}\r\npassword: {}\r\n", ticket.expose()))
                                .await;
                            0
                        }
                        Err(e) => {
                            self.say_err(&format!("sekisho: {e}\r\n")).await;
                            1
                        }
                    },
                }
            }
            ExecCommand::FileTransfer => {
                let program: String = command
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(64)
                    .collect();
                self.refused(
                    None,
                    Refusal::FileTransfer,
                    &format!("command {program}"),
                    false,
                )
                .await;
                1
            }
            ExecCommand::Other => {
                self.say_err(&format!(
                    "sekisho: commands are not available; log in as {0}+TARGET for a console, or as {0} for the menu\r\n",
                    self.user
                ))
                .await;
                1
            }
        }
    }

    /// An interactive login: the menu or the named target, then the console.
    async fn shell(&mut self) -> u32 {
        let target = match self.target.clone() {
            Some(t) => t,
            None => match self.menu().await {
                Some(t) => t,
                None => return 0,
            },
        };
        self.target = Some(target.clone());
        self.console(&target).await
    }

    /// Shows the targets the user may reach now and reads a choice.
    async fn menu(&mut self) -> Option<String> {
        let inventory = self.services.inventory();
        let entries = menu_entries(&inventory, &self.user, self.source, Utc::now());
        self.say(&menu::render_menu(&self.user, &entries)).await;
        let mut editor = LineEditor::default();
        let deadline = tokio::time::sleep(MENU_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            let ev = tokio::select! {
                ev = self.events.recv() => ev?,
                _ = &mut deadline => {
                    self.say("\r\nsekisho: no choice made; goodbye\r\n").await;
                    return None;
                }
                _ = self.shutdown.cancelled() => return None,
            };
            match ev {
                Event::Data(_, bytes) => {
                    let edit = editor.feed(&bytes);
                    if !edit.echo.is_empty() {
                        self.say(&String::from_utf8_lossy(&edit.echo)).await;
                    }
                    if edit.cancel {
                        self.say("\r\n").await;
                        return None;
                    }
                    if let Some(line) = edit.line {
                        let line = line.trim();
                        if line == "q" || line == "quit" || line == "exit" {
                            return None;
                        }
                        if line.is_empty() {
                            self.say("Choose a target by number or name (q to quit): ")
                                .await;
                            continue;
                        }
                        match menu::pick(&entries, line) {
                            Some(e) => return Some(e.name.clone()),
                            None => {
                                self.say("sekisho: no such target in the list\r\nChoose a target by number or name (q to quit): ")
                                    .await
                            }
                        }
                    }
                }
                Event::Resize { cols, rows } => {
                    self.pty.cols = cols;
                    self.pty.rows = rows;
                }
                Event::Refused {
                    kind, detail, told, ..
                } => self.refused(None, kind, &detail, told).await,
                Event::Eof(_) | Event::Closed(_) => return None,
                _ => {}
            }
        }
    }

    /// Decides, opens the recorded session, connects the console and relays.
    async fn console(&mut self, target: &str) -> u32 {
        let inventory = self.services.inventory();
        let protocol = inventory
            .target(target)
            .map_or(Protocol::ConsoleSerial, |t| protocol_for(t.kind));
        let req = self.request(protocol, Some(target));
        let admission = match Box::pin(self.services.admit(&req)).await {
            Ok(a) => a,
            Err(d) => {
                info!(%target, rule = d.rule().as_str(), "SSH console denied");
                self.say(&format!(
                    "sekisho: denied ({}): {}\r\n",
                    d.rule().as_str(),
                    d.reason()
                ))
                .await;
                return 1;
            }
        };
        let auth = admission.authorized().clone();
        let route = match route_for(&admission, self.services.secrets().as_deref()) {
            Ok(r) => r,
            Err(why) => {
                // Refused after an allow: the refusal is a row too, or the audit trail would
                // show an allowed connection that never ran, with no reason.
                let denial = Denial::new(
                    why.rule(),
                    format!("{} to {target} refused: {why}", protocol.describe()),
                    Some(auth.user().to_owned()),
                    Some(auth.contractor().to_owned()),
                    Some(target.to_owned()),
                );
                warn!(%target, rule = denial.rule().as_str(), reason = denial.reason(), "Console refused");
                Box::pin(self.services.record_refusal(None, &denial, &req)).await;
                self.say(&format!(
                    "sekisho: denied ({}): {}\r\n",
                    denial.rule().as_str(),
                    denial.reason()
                ))
                .await;
                return 1;
            }
        };
        let mut metadata = BTreeMap::new();
        metadata.insert("term".to_owned(), self.pty.term.clone());
        metadata.insert("cols".to_owned(), self.pty.cols.to_string());
        metadata.insert("rows".to_owned(), self.pty.rows.to_string());
        metadata.insert("console".to_owned(), route.describe());
        // Boxed here and below: a one-off step's future (the catalogue and the recording
        // opened or closed) would otherwise be laid out inline in this session's task, and
        // so held for every idle session's whole life (about 10 KiB each).
        let mut live = match Box::pin(self.services.open_admitted(
            admission,
            SessionMeta {
                protocol_metadata: metadata,
                detail: Some(route.describe()),
            },
        ))
        .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "Cannot open a recorded session; refusing");
                self.say(
                    "sekisho: this session cannot be recorded right now, so it is refused\r\n",
                )
                .await;
                return 1;
            }
        };
        self.flush_refusals(Some(&live)).await;
        if live.supervised()
            && let Err(outcome) = Box::pin(self.wait_for_watcher(&live, &req, target)).await
        {
            if let Err(e) = Box::pin(live.finish(outcome)).await {
                warn!(error = %format!("{e:#}"), "Cannot close the session");
            }
            return 1;
        }
        let io = match Box::pin(console::connect(&route, &self.pty, self.services.pins())).await {
            Ok(io) => io,
            Err(e) => {
                warn!(error = %e, "Console connection failed");
                if let console::ConsoleError::HostKeyChanged { .. } = &e {
                    // Not an outage: someone (or something) else answers at the console's
                    // address. A denial, so it is on the security staff's dashboard.
                    let reason = format!(
                        "console of {target} for {} refused: {e}; an administrator must check \
                         the console host, then `sekisho pins forget ENDPOINT`",
                        self.user
                    );
                    let inventory = self.services.inventory();
                    let contractor = inventory
                        .user(&self.user)
                        .and_then(|u| u.contractor.clone());
                    let denial = Denial::new(
                        Rule::ConsoleHostKeyChanged,
                        reason,
                        Some(self.user.clone()),
                        contractor,
                        Some(target.to_owned()),
                    );
                    self.services
                        .record_refusal(Some(live.id), &denial, &req)
                        .await;
                }
                let _ = live
                    .event(EventKind::Policy, &format!("console unavailable: {e}"))
                    .await;
                self.say(&format!("sekisho: {e}\r\n")).await;
                if let Err(e) = Box::pin(live.finish(Outcome::Failed)).await {
                    warn!(error = %format!("{e:#}"), "Cannot close the session");
                }
                return 1;
            }
        };
        info!(session = %live.id, %target, console = %route.describe(), "Console connected");
        self.say(&format!(
            "sekisho: connected to {target} ({}); this session is recorded\r\n",
            route.describe()
        ))
        .await;
        let (outcome, status) = self.relay(&mut live, io).await;
        if let Err(e) = Box::pin(live.finish(outcome)).await {
            warn!(error = %format!("{e:#}"), "Cannot close the session");
        }
        status
    }

    /// Four eyes: waits, before the console is dialled, until a member of security staff
    /// watches the session. `Err` is the outcome to close the session with: nobody came in
    /// time (refused, `supervision.absent`), it was ended, or the contractor left.
    async fn wait_for_watcher(
        &mut self,
        live: &LiveSession,
        req: &Request,
        target: &str,
    ) -> Result<(), Outcome> {
        let mut watched = live.watched();
        if *watched.borrow_and_update() {
            return Ok(());
        }
        let wait = self.services.inventory().auth().supervision_wait;
        self.say(&format!(
            "sekisho: {target} is supervised (four eyes): the session starts when a member of \
             security staff watches it; waiting up to {}\r\n",
            humantime_secs(wait)
        ))
        .await;
        let _ = live
            .event(
                EventKind::Policy,
                "supervised: waiting for a watcher before the console is opened",
            )
            .await;
        let ended = live.ended();
        tokio::pin!(ended);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                changed = watched.changed() => {
                    if changed.is_err() {
                        return Err(Outcome::Failed);
                    }
                    if *watched.borrow_and_update() {
                        self.say("sekisho: security staff are watching; opening the console\r\n")
                            .await;
                        return Ok(());
                    }
                }
                reason = &mut ended => {
                    self.say(&format!("{}\r\n", reason.message())).await;
                    return Err(reason.outcome());
                }
                () = &mut deadline => {
                    let contractor = self
                        .services
                        .inventory()
                        .user(&self.user)
                        .and_then(|u| u.contractor.clone());
                    let denial =
                        supervision::nobody_came_denial(req, &self.user, contractor, target, wait);
                    warn!(reason = denial.reason(), "Supervised session refused");
                    self.services.record_refusal(Some(live.id), &denial, req).await;
                    self.say(&format!(
                        "sekisho: denied ({}): {}\r\n",
                        denial.rule().as_str(),
                        denial.reason()
                    ))
                    .await;
                    return Err(Outcome::Denied);
                }
                ev = self.events.recv() => match ev {
                    // Nothing typed reaches anything while waiting.
                    Some(Event::Resize { cols, rows }) => {
                        self.pty.cols = cols;
                        self.pty.rows = rows;
                    }
                    Some(Event::Eof(ch) | Event::Closed(ch)) if Some(ch) == self.channel => {
                        return Err(Outcome::Completed);
                    }
                    None => return Err(Outcome::Completed),
                    Some(_) => {}
                },
            }
        }
    }

    /// Moves bytes both ways, recording each, until one side ends or the session must end.
    async fn relay(
        &mut self,
        live: &mut LiveSession,
        mut io: console::ConsoleIo,
    ) -> (Outcome, u32) {
        let mut notices = live.take_notices();
        let live: &LiveSession = live;
        let ended = live.ended();
        tokio::pin!(ended);
        // Four eyes: while nobody watches a supervised session, input is held (not sent,
        // counted) and output keeps flowing.
        let mut watched = live.watched();
        let mut holding = live.supervised();
        let mut held_bytes = 0usize;
        if holding && !*watched.borrow_and_update() {
            // The watcher left between the wait and the console answering.
            self.say("sekisho: nobody is watching this supervised session; your input is held (not sent) until security staff watch again\r\n")
                .await;
        }
        loop {
            tokio::select! {
                changed = watched.changed(), if holding => {
                    if changed.is_err() {
                        holding = false;
                        continue;
                    }
                    if *watched.borrow_and_update() {
                        self.say("\r\nsekisho: security staff are watching again; input resumed\r\n")
                            .await;
                        let _ = live
                            .event(
                                EventKind::Policy,
                                &format!("input resumed ({held_bytes} bytes typed while held were not sent)"),
                            )
                            .await;
                        held_bytes = 0;
                    } else {
                        self.say("\r\nsekisho: nobody is watching this supervised session; your input is held (not sent) until security staff watch again\r\n")
                            .await;
                        let _ = live
                            .event(EventKind::Policy, "input held: nobody is watching")
                            .await;
                    }
                }
                reason = &mut ended => {
                    info!(reason = %reason.message(), "Session ended by Sekisho");
                    self.say(&format!("\r\n{}\r\n", reason.message())).await;
                    return (reason.outcome(), 1);
                }
                Some(notice) = recv_opt(&mut notices) => {
                    self.say(&format!("\r\n{notice}\r\n")).await;
                    let _ = live.event(EventKind::Policy, &notice).await;
                }
                out = io.output.recv() => match out {
                    Some(bytes) => {
                        if live.server_data(TERMINAL_CHANNEL, &bytes).await.is_err() {
                            continue; // `ended` fires next: fail closed
                        }
                        if let Some(ch) = self.channel
                            && self.handle.data(ch, bytes).await.is_err()
                        {
                            return (Outcome::Completed, 0);
                        }
                    }
                    None => {
                        self.say("\r\nsekisho: the console closed the connection\r\n").await;
                        return match io.lost() {
                            // The console went away under the session: an auditor must see
                            // that it did not end by the contractor's choice.
                            Some(why) => {
                                warn!(reason = why, "Console lost");
                                let _ = live.event(EventKind::Note, &format!("{why}: the console closed the connection")).await;
                                (Outcome::Failed, 1)
                            }
                            None => (Outcome::Completed, 0),
                        };
                    }
                },
                ev = self.events.recv() => match ev {
                    Some(Event::Data(_, bytes)) => {
                        if live.supervised() && !*watched.borrow() {
                            held_bytes += bytes.len();
                            continue;
                        }
                        if live.client_data(TERMINAL_CHANNEL, &bytes).await.is_err() {
                            continue;
                        }
                        if io.input.send(ConsoleInput::Data(bytes)).await.is_err() {
                            return (Outcome::Completed, 0);
                        }
                    }
                    Some(Event::Resize { cols, rows }) => {
                        self.pty.cols = cols;
                        self.pty.rows = rows;
                        if live.resize(cols, rows).await.is_err() {
                            continue;
                        }
                        let _ = io.input.send(ConsoleInput::Resize { cols, rows }).await;
                    }
                    Some(Event::Refused { kind, detail, told, .. }) => {
                        self.refused(Some(live), kind, &detail, told).await
                    }
                    Some(Event::Eof(ch) | Event::Closed(ch)) if Some(ch) == self.channel => {
                        return (Outcome::Completed, 0);
                    }
                    Some(_) => {}
                    None => return (Outcome::Completed, 0),
                },
            }
        }
    }
}

/// "5 minutes", "90 seconds": a wait as the contractor reads it.
fn humantime_secs(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} seconds")
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The protocol of a text console login: a VM's hypervisor console, or a physical server's own
/// sshd.
pub fn protocol_for(kind: TargetKind) -> Protocol {
    match kind {
        TargetKind::Physical => Protocol::Ssh,
        _ => Protocol::ConsoleSerial,
    }
}

/// The menu: the targets under the user's contracts, with whether each may be reached now.
/// Evaluated with the pure policy (nothing is written: looking is not connecting).
pub fn menu_entries(
    inventory: &Inventory,
    user: &str,
    source: IpAddr,
    now: chrono::DateTime<Utc>,
) -> Vec<MenuEntry> {
    inventory
        .targets()
        .iter()
        .filter_map(|t| {
            let req = Request {
                protocol: protocol_for(t.kind),
                source,
                target: TargetRef::Name(t.name.clone()),
                user: Some(user.to_owned()),
            };
            let decision = policy::evaluate(inventory, &[], &req, now);
            if matches!(decision.rule(), Rule::ContractNone | Rule::TargetUnknown) {
                return None;
            }
            Some(MenuEntry {
                name: t.name.clone(),
                kind: t.kind.as_str().to_owned(),
                zone: t.zone.clone(),
                denied: match &decision {
                    Decision::Allow(_) => None,
                    Decision::Deny(d) => Some(format!("{}: {}", d.rule().as_str(), d.reason())),
                },
            })
        })
        .collect()
}

/// Why a console cannot be routed to; each is written to the catalogue as a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The VM has no text console endpoint.
    #[error("{0} has no text console configured")]
    NoTextConsole(String),
    /// The credential the console needs is not configured or not in the secrets file.
    #[error("{0}")]
    CredentialMissing(String),
}

impl RouteError {
    /// The rule of the denial row.
    pub fn rule(&self) -> Rule {
        match self {
            RouteError::NoTextConsole(_) => Rule::ConsoleUnavailable,
            RouteError::CredentialMissing(_) => Rule::CredentialMissing,
        }
    }
}

/// Where the console of the admitted target is and how to log in to it: only an
/// [`Admission`] gives a console's endpoint.
pub fn route_for(
    admission: &Admission,
    secrets: Option<&policy::Secrets>,
) -> Result<Route, RouteError> {
    let inventory = admission.inventory();
    let t = admission.target();
    let target = t.name.as_str();
    let (host, port, credential, command) = match t.kind {
        TargetKind::Physical => (
            t.address.to_string(),
            t.ssh_port,
            t.credential.clone(),
            None,
        ),
        _ => {
            if let Some(ep) = &t.ssh_console {
                let hv_cred = t
                    .hypervisor
                    .as_deref()
                    .and_then(|h| inventory.hypervisor(h))
                    .and_then(|h| h.credential.clone());
                let command = t
                    .console_command
                    .as_ref()
                    .map(|c| c.replace("{vm}", &t.name));
                (
                    ep.host.clone(),
                    ep.port,
                    hv_cred.or_else(|| t.credential.clone()),
                    command,
                )
            } else if let Some(ep) = &t.serial_console {
                return Ok(Route::Serial {
                    endpoint: ep.to_string(),
                });
            } else {
                return Err(RouteError::NoTextConsole(target.to_owned()));
            }
        }
    };
    let missing = RouteError::CredentialMissing;
    let name =
        credential.ok_or_else(|| missing(format!("no credential is configured for {target}")))?;
    let secrets = secrets.ok_or_else(|| missing("the secrets file is missing".to_owned()))?;
    let cred = secrets
        .credential(&name)
        .ok_or_else(|| missing(format!("credential {name} is not in the secrets file")))?;
    let auth = match (&cred.private_key, &cred.password) {
        (Some(key), _) => UpstreamAuth::Key(key.into()),
        (None, Some(pw)) => UpstreamAuth::Password(pw.clone()),
        (None, None) => {
            return Err(missing(format!(
                "credential {name} has neither password nor private_key"
            )));
        }
    };
    Ok(Route::Ssh {
        host,
        port,
        username: cred.username.clone(),
        auth,
        command,
    })
}
