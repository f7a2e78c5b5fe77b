//! The live-session registry: opening a recorded session, the [`LiveSession`] a relay holds,
//! why a session must end ([`EndReason`]) and closing its catalogue row, retried while the
//! catalogue is unavailable.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use policy::{Authorized, Denial, Inventory, Request, Rule, SessionId};
use recorder::catalogue::{NewSession, Outcome, event_kind};
use recorder::{ChannelId, Direction, EventKind, RecordingWriter, WriterConfig};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::redecide::Admitted;
use super::{ErrorKind, Services, lock_ignoring_poison};

/// Why a live session was told to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Security staff ran `sekisho sessions kill`.
    Killed { by: String },
    /// The contract (or its window) no longer allows the session.
    ContractEnded { rule: Rule, reason: String },
    /// The console session a hop rode on has ended.
    ConsoleEnded { console: SessionId },
    /// The recording could not be written: fail closed.
    RecordingFailed { error: String },
    /// Sekisho is shutting down.
    Shutdown,
    /// Re-decided under the current configuration, the session is denied (user removed,
    /// desktops changed, target removed or changed, contract gone...).
    Revoked { rule: Rule, reason: String },
    /// Another instance closed the session's catalogue row (this instance had stopped beating
    /// and was presumed dead): the catalogue is the record, so the session ends here too.
    ClosedElsewhere,
}

impl EndReason {
    /// The catalogue outcome for a session ended for this reason.
    pub fn outcome(&self) -> Outcome {
        match self {
            EndReason::Killed { .. } => Outcome::Killed,
            EndReason::ContractEnded { .. } => Outcome::WindowClosed,
            EndReason::ConsoleEnded { .. } => Outcome::Completed,
            EndReason::RecordingFailed { .. } => Outcome::Failed,
            EndReason::Shutdown => Outcome::Shutdown,
            EndReason::Revoked { .. } => Outcome::Revoked,
            EndReason::ClosedElsewhere => Outcome::Interrupted,
        }
    }

    /// One line for the user, shown before the disconnect.
    pub fn message(&self) -> String {
        match self {
            EndReason::Killed { .. } => "sekisho: session ended by security staff".to_owned(),
            EndReason::ContractEnded { reason, .. } => format!("sekisho: session ended: {reason}"),
            EndReason::ConsoleEnded { .. } => {
                "sekisho: session ended: the console session it came from has ended".to_owned()
            }
            EndReason::RecordingFailed { .. } => {
                "sekisho: session ended: it can no longer be recorded".to_owned()
            }
            EndReason::Shutdown => {
                "sekisho: session ended: the bastion is shutting down".to_owned()
            }
            EndReason::Revoked { rule, reason } => {
                format!("sekisho: session ended: access revoked ({rule}): {reason}")
            }
            EndReason::ClosedElsewhere => "sekisho: session ended: this bastion lost contact \
                 with the catalogue and the session was closed as interrupted"
                .to_owned(),
        }
    }

    /// What the recording keeps of the reason (a policy event): the rule and the reason of a
    /// revocation, the user's message otherwise.
    pub fn detail(&self) -> String {
        match self {
            EndReason::Revoked { rule, reason } => format!("revoked: {rule}: {reason}"),
            _ => self.message(),
        }
    }
}

/// Protocol metadata a player needs, written into the recording header.
#[derive(Debug, Clone, Default)]
pub struct SessionMeta {
    pub protocol_metadata: BTreeMap<String, String>,
    /// Free text for the catalogue row (e.g. the RDP channels negotiated).
    pub detail: Option<String>,
}

/// What the supervisor knows about one live session of this instance.
pub(super) struct Registered {
    pub(super) protocol: policy::Protocol,
    /// The original request and what it was admitted as, for re-deciding it.
    pub(super) admitted: Admitted,
    /// The inventory the session was last found allowed under (at its start, then at each
    /// re-decision): a denial this inventory gives too is time's doing (a closing window),
    /// not a configuration change's.
    pub(super) allowed_under: Arc<Inventory>,
    pub(super) end: watch::Sender<Option<EndReason>>,
    pub(super) notices: mpsc::Sender<String>,
    pub(super) warned: bool,
    /// The session's recording, for what the supervisor writes into it (who watches).
    pub(super) writer: RecordingWriter,
    /// Who was watching at the supervisor's last look (see `watching.rs`).
    pub(super) watchers: std::collections::BTreeSet<recorder::catalogue::Watcher>,
    /// Whether anyone watches, for the relay of a supervised session (four eyes).
    pub(super) watched: watch::Sender<bool>,
}

/// A catalogue row still to be closed.
pub(super) struct PendingClose {
    pub(super) id: SessionId,
    pub(super) ended_at: DateTime<Utc>,
    pub(super) outcome: Outcome,
    pub(super) recording: recorder::catalogue::RecordingSummary,
}

impl Services {
    /// Opens the recording and the catalogue row of an allowed session and registers it with
    /// the supervisor. An error means the session must not run (fail closed).
    pub async fn open_session(
        self: &Arc<Self>,
        auth: &Authorized,
        req: &Request,
        meta: SessionMeta,
    ) -> Result<LiveSession> {
        self.open_decided_session(auth, req, meta, None).await
    }

    /// [`Services::open_session`] for the allow decision stored as `decision`, which is
    /// linked to the session so that the session's evidence names what admitted it.
    pub(super) async fn open_decided_session(
        self: &Arc<Self>,
        auth: &Authorized,
        req: &Request,
        meta: SessionMeta,
        decision: Option<recorder::catalogue::DecisionId>,
    ) -> Result<LiveSession> {
        // A session opened after the supervisor told every session to end would never be
        // told: refuse it (the client's listener is closing anyway).
        if self.shutdown.is_cancelled() {
            return Err(anyhow!("Sekisho is shutting down"));
        }
        if auth.supervised() && !super::supervision::holds_input(req.protocol) {
            let denial = super::supervision::unsupported_denial(req, auth);
            self.record_refusal(None, &denial, req).await;
            return Err(anyhow!("{}", denial.reason()));
        }
        let started_at = Utc::now();
        let id = SessionId(uuid::Uuid::now_v7());
        let header = recorder::Header {
            session_id: id.0,
            protocol: req.protocol.as_str().to_owned(),
            user: Some(auth.user().to_owned()),
            contractor: Some(auth.contractor().to_owned()),
            source: req.source.to_string(),
            target: auth.target().to_owned(),
            start_unix_us: started_at.timestamp_micros(),
            metadata: meta.protocol_metadata.clone(),
        };
        let writer = match RecordingWriter::create(
            self.recordings.store(),
            header,
            self.signing_key.clone(),
            WriterConfig::default(),
        )
        .await
        {
            Ok(w) => w,
            Err(e) => {
                self.metrics.error(ErrorKind::Recording);
                // The allow decision is already in the catalogue; the refusal that followed
                // it must be there too, or the audit trail says a session ran that never did.
                let denial = unrecordable_denial(req, auth, &e.to_string());
                self.record_refusal(None, &denial, req).await;
                return Err(e).context("cannot open the recording");
            }
        };
        let location = writer.location().to_owned();
        let new = NewSession {
            id,
            instance: self.instance.clone(),
            protocol: req.protocol,
            user: auth.user().to_owned(),
            contractor: auth.contractor().to_owned(),
            source: req.source,
            target: auth.target().to_owned(),
            path: auth.path().to_owned(),
            console_session: auth.console_session(),
            started_at,
            recording: Some(location.clone()),
            detail: meta.detail.clone(),
        };
        if let Err(e) = self.catalogue.session_started(&new).await {
            // The recording exists but the session will not run: close it so it is not
            // mistaken for a crash, then refuse.
            let _ = writer.finish().await;
            self.metrics.error(ErrorKind::Catalogue);
            return Err(e).context("cannot register the session in the catalogue");
        }
        if let Some(decision) = decision
            && let Err(e) = self.catalogue.link_decision(decision, id).await
        {
            // The decision and the session are both stored; only the cross-reference is
            // missing, which the session's time, source and target still establish.
            self.metrics.error(ErrorKind::Catalogue);
            warn!(session = %id, error = %e, "Cannot link the session to its allow decision");
        }

        let (end_tx, end_rx) = watch::channel(None);
        let (notice_tx, notice_rx) = mpsc::channel(8);
        let (watched_tx, watched_rx) = watch::channel(false);
        self.lock_sessions().insert(
            id,
            Registered {
                protocol: req.protocol,
                admitted: Admitted {
                    request: req.clone(),
                    user: auth.user().to_owned(),
                    contractor: auth.contractor().to_owned(),
                    target: auth.target().to_owned(),
                    path: auth.path().to_owned(),
                    console: auth.console_session(),
                },
                allowed_under: self.inventory(),
                end: end_tx.clone(),
                notices: notice_tx,
                warned: false,
                writer: writer.clone(),
                watchers: std::collections::BTreeSet::new(),
                watched: watched_tx,
            },
        );
        self.metrics.session_started(req.protocol);
        // Shutdown may have begun while the recording was being opened.
        if self.shutdown.is_cancelled() {
            end_tx.send_if_modified(|slot| set_once(slot, EndReason::Shutdown));
        }

        // A failing disk ends the session that cannot be recorded.
        let failed = writer.failed();
        let watcher_end = end_tx.clone();
        let services = Arc::clone(self);
        self.tasks.spawn(async move {
            // `failed` never resolves for a recording that finishes well: stop watching once
            // the session is gone (every receiver dropped), or shutdown would wait for ever.
            let failure = tokio::select! {
                failure = failed => failure,
                _ = watcher_end.closed() => return,
            };
            let error = failure.error.to_string();
            warn!(session = %id, error = %error, "Recording failed; ending the session");
            services.metrics.error(ErrorKind::Recording);
            let _ = services
                .catalogue
                .session_event(id, Utc::now(), event_kind::RECORDING_FAILED, Some(&error))
                .await;
            watcher_end
                .send_if_modified(|slot| set_once(slot, EndReason::RecordingFailed { error }));
        });

        info!(session = %id, protocol = %req.protocol, user = auth.user(), target = auth.target(), "Session started");
        Ok(LiveSession {
            id,
            protocol: req.protocol,
            services: Arc::clone(self),
            writer: Some(writer),
            end: end_rx,
            end_tx,
            notices: Some(notice_rx),
            location,
            supervised: auth.supervised(),
            watched: watched_rx,
        })
    }

    /// Closes a session's catalogue row; when the catalogue is unavailable the close is kept
    /// and retried by the supervisor until it succeeds.
    async fn close_row(
        &self,
        close: PendingClose,
    ) -> Result<(), recorder::catalogue::CatalogueError> {
        let result = self
            .catalogue
            .session_ended(
                close.id,
                close.ended_at,
                close.outcome,
                Some(&close.recording),
            )
            .await;
        if let Err(e) = &result {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(session = %close.id, error = %e, "Cannot close the session in the catalogue; will retry");
            lock_ignoring_poison(&self.pending_closes).push(close);
        }
        result.map(|_| ())
    }

    /// Retries the closes that failed while the catalogue was unavailable.
    pub(super) async fn retry_pending_closes(&self) {
        let pending = std::mem::take(&mut *lock_ignoring_poison(&self.pending_closes));
        for close in pending {
            let id = close.id;
            if self.close_row(close).await.is_ok() {
                info!(session = %id, "Session closed in the catalogue after it returned");
            }
        }
    }
}

pub(super) fn set_once(slot: &mut Option<EndReason>, reason: EndReason) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(reason);
    true
}

/// A live, recorded session. Every byte a relay moves goes through it.
///
/// INVARIANT: while a `LiveSession` exists, its catalogue row is live and its recording open;
/// [`LiveSession::finish`] (or drop, as a last resort) closes both.
pub struct LiveSession {
    pub id: SessionId,
    protocol: policy::Protocol,
    services: Arc<Services>,
    writer: Option<RecordingWriter>,
    end: watch::Receiver<Option<EndReason>>,
    end_tx: watch::Sender<Option<EndReason>>,
    notices: Option<mpsc::Receiver<String>>,
    location: String,
    supervised: bool,
    watched: watch::Receiver<bool>,
}

impl LiveSession {
    /// Four eyes: the session may run only while security staff watch it (the relay waits
    /// for a watcher before dialling, and holds the contractor's input while nobody watches).
    pub fn supervised(&self) -> bool {
        self.supervised
    }

    /// Whether anyone watches the session now, updated by the supervisor.
    pub fn watched(&self) -> watch::Receiver<bool> {
        self.watched.clone()
    }

    fn writer(&self) -> Result<&RecordingWriter> {
        self.writer
            .as_ref()
            .ok_or_else(|| anyhow!("the recording is already closed"))
    }

    /// Records bytes the client sent on `channel` (keys, pointer, client PDUs).
    pub async fn client_data(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        self.record(
            Direction::ClientToServer,
            channel,
            Bytes::copy_from_slice(bytes),
        )
        .await
    }

    /// Records bytes the server sent on `channel` (screen, terminal output).
    pub async fn server_data(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        self.record(
            Direction::ServerToClient,
            channel,
            Bytes::copy_from_slice(bytes),
        )
        .await
    }

    /// [`Self::server_data`] of bytes the caller also sends on: shared, not copied (a raw
    /// full screen is megabytes).
    pub async fn server_bytes(&self, channel: u32, bytes: Bytes) -> Result<()> {
        self.record(Direction::ServerToClient, channel, bytes).await
    }

    async fn record(&self, direction: Direction, channel: u32, bytes: Bytes) -> Result<()> {
        let len = bytes.len();
        let result = self
            .writer()?
            .data(direction, ChannelId(channel), bytes)
            .await;
        if result.is_ok() {
            self.services
                .metrics
                .recorded(direction == Direction::ClientToServer, len);
        }
        self.fail_on_error(result)
    }

    /// Records a terminal (or desktop) size change.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        let result = self
            .writer()?
            .event(EventKind::Resize { width, height }, String::new())
            .await;
        self.fail_on_error(result)
    }

    /// Records a policy event in the recording and the catalogue ("clipboard channel
    /// stripped", "sftp refused").
    pub async fn event(&self, kind: EventKind, detail: &str) -> Result<()> {
        let catalogue_kind = kind.as_str();
        let result = self.writer()?.event(kind, detail).await;
        self.fail_on_error(result)?;
        self.services
            .catalogue
            .session_event(self.id, Utc::now(), catalogue_kind, Some(detail))
            .await
            .context("cannot write the session event to the catalogue")
    }

    /// Records a keyframe (a protocol snapshot a player can start from).
    pub async fn keyframe(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        let result = self
            .writer()?
            .keyframe(ChannelId(channel), Bytes::copy_from_slice(bytes))
            .await;
        self.fail_on_error(result)
    }

    fn fail_on_error<T, E: std::fmt::Display>(
        &self,
        result: std::result::Result<T, E>,
    ) -> Result<T> {
        result.map_err(|e| {
            let error = e.to_string();
            self.end_tx.send_if_modified(|slot| {
                set_once(
                    slot,
                    EndReason::RecordingFailed {
                        error: error.clone(),
                    },
                )
            });
            anyhow!("recording failed: {error}")
        })
    }

    /// Resolves when the session must end, with the reason.
    pub async fn ended(&self) -> EndReason {
        let mut rx = self.end.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return EndReason::Shutdown;
            }
        }
    }

    /// The reason the session must end, if it must.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end.borrow().clone()
    }

    /// Messages for the user (the contract window warning); take it once.
    pub fn take_notices(&mut self) -> Option<mpsc::Receiver<String>> {
        self.notices.take()
    }

    /// Where the recording is stored.
    pub fn recording_location(&self) -> &str {
        &self.location
    }

    /// Seals the recording and closes the catalogue row with `outcome`.
    pub async fn finish(mut self, outcome: Outcome) -> Result<()> {
        let outcome = match self.end_reason() {
            Some(reason) if outcome == Outcome::Completed => reason.outcome(),
            _ => outcome,
        };
        if let Some(reason) = self.end_reason() {
            let detail = reason.detail();
            let kind = match reason {
                EndReason::Killed { .. } => EventKind::SessionKilled,
                _ => EventKind::Policy,
            };
            if let Some(w) = self.writer.as_ref() {
                let _ = w.event(kind, detail.clone()).await;
            }
        }
        self.services.lock_sessions().remove(&self.id);
        let summary = match self.writer.take() {
            Some(w) => w.finish().await,
            None => Err(recorder::WriteError::Closed),
        };
        let recording = catalogue_summary(&self.location, &summary);
        if let Err(e) = &summary {
            error!(session = %self.id, error = %e, "Cannot seal the recording");
            self.services.metrics.error(ErrorKind::Seal);
        }
        self.services.metrics.session_ended(self.protocol, outcome);
        // A sealed graphical recording: its typed text is indexed in the background, after
        // the session has ended (never on its path, and a failure loses nothing).
        if let Ok(sealed) = &summary
            && super::typed_index::indexed(self.protocol)
        {
            super::typed_index::index_later(
                Arc::clone(&self.services),
                self.id,
                sealed.location.clone(),
            );
        }
        self.services
            .close_row(PendingClose {
                id: self.id,
                ended_at: Utc::now(),
                outcome,
                recording,
            })
            .await
            .context("cannot close the session in the catalogue (retrying in the background)")?;
        info!(session = %self.id, outcome = %outcome, "Session ended");
        summary
            .map(|_| ())
            .map_err(|e| anyhow!("cannot seal the recording: {e}"))
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // A relay that returned early without `finish` (a bug or a panic): still seal the
        // recording and close the row, in the background.
        if let Some(writer) = self.writer.take() {
            let services = Arc::clone(&self.services);
            let id = self.id;
            services.lock_sessions().remove(&id);
            let tasks = services.tasks.clone();
            let location = self.location.clone();
            services
                .metrics
                .session_ended(self.protocol, Outcome::Failed);
            tasks.spawn(async move {
                let summary = writer.finish().await;
                let recording = catalogue_summary(&location, &summary);
                let _ = services
                    .close_row(PendingClose {
                        id,
                        ended_at: Utc::now(),
                        outcome: Outcome::Failed,
                        recording,
                    })
                    .await;
            });
        }
    }
}

/// What the catalogue records of a recording once its writer has finished (or failed).
fn catalogue_summary(
    location: &str,
    summary: &std::result::Result<recorder::RecordingSummary, recorder::WriteError>,
) -> recorder::catalogue::RecordingSummary {
    match summary {
        Ok(s) => recorder::catalogue::RecordingSummary {
            location: s.location.clone(),
            state: recorder::catalogue::RecordingState::Complete,
            size: s.size,
            hash: Some(s.final_hash.clone()),
        },
        Err(_) => recorder::catalogue::RecordingSummary {
            location: location.to_owned(),
            state: recorder::catalogue::RecordingState::Incomplete,
            size: std::fs::metadata(location).map(|m| m.len()).unwrap_or(0),
            hash: None,
        },
    }
}

fn unrecordable_denial(req: &Request, auth: &Authorized, error: &str) -> Denial {
    Denial::new(
        Rule::SekishoUnavailable,
        format!(
            "{} from {} to {} denied: the session cannot be recorded right now ({error}); try again later",
            req.protocol,
            req.source,
            auth.target()
        ),
        Some(auth.user().to_owned()),
        Some(auth.contractor().to_owned()),
        Some(auth.target().to_owned()),
    )
}
