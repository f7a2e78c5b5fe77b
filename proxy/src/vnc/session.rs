//! One recorded VNC console session: opens the session in [`Services`], then relays both ways
//! message by message through the sans-IO decoders, filtering SetEncodings (ZRLE first, see
//! [`super::encodings`]), dropping the
//! clipboard in both directions, recording what passes, and ending on kill, window end or
//! shutdown.
//!
//! Recording layout (channel 0): the ServerInit is the first keyframe and is also in the header
//! metadata (`rfb.*` keys); client-to-server data records hold whole client messages as
//! forwarded (after filtering), server-to-client records whole server messages and rectangles.
//! A player feeds both directions to `player::rfb::Replay` in recording order.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use player::rfb::{self, ClientMsg, ServerDecoder, ServerMsg};
use recorder::catalogue::Outcome;
use recorder::format::EventKind;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, trace, warn};

use player::rfb::ServerInit;

use super::conn::Conn;
use super::encodings;
use super::hold::InputHold;
use crate::services::{Admission, EndReason, LiveSession, Services, SessionMeta, supervision};

/// Everything the relay needs after a successful handshake.
pub(crate) struct Established {
    pub viewer: Conn,
    pub upstream: Conn,
    /// the decision, consumed by opening the session
    pub admission: Admission,
    pub server_init: ServerInit,
    pub server_init_raw: Vec<u8>,
}

/// The recording channel of RFB data.
pub const RFB_CHANNEL: u32 = 0;

/// Header metadata the player needs to decode the recording.
pub fn metadata(init: &rfb::ServerInit, raw: &[u8]) -> BTreeMap<String, String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    BTreeMap::from([
        ("rfb.width".to_owned(), init.width.to_string()),
        ("rfb.height".to_owned(), init.height.to_string()),
        (
            "rfb.pixel_format".to_owned(),
            hex(&init.pixel_format.to_bytes()),
        ),
        ("rfb.name".to_owned(), init.name.clone()),
        ("rfb.server_init".to_owned(), hex(raw)),
    ])
}

/// Runs the session to its end and closes its recording and catalogue row.
pub(crate) async fn run(
    est: Established,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<()> {
    let Established {
        mut viewer,
        mut upstream,
        admission,
        server_init,
        server_init_raw,
    } = est;
    let auth = admission.authorized().clone();
    let request = admission.request().clone();
    let meta = SessionMeta {
        protocol_metadata: metadata(&server_init, &server_init_raw),
        detail: Some(format!(
            "{}x{} {:?}",
            server_init.width, server_init.height, server_init.name
        )),
    };
    let live = match services.open_admitted(admission, meta).await {
        Ok(l) => l,
        Err(e) => {
            // Fail closed: no recording, no console. The viewer already got "OK", so the only
            // signal left is the close.
            let _ = viewer.stream.shutdown().await;
            return Err(e.context("cannot open the session"));
        }
    };
    let span = info_span!("session", id = %live.id, proto = "console-vnc", client_ip = %request.source, user = auth.user());
    async move {
        if live.supervised()
            && let Err(outcome) =
                wait_for_watcher(&live, &services, &request, &auth, &mut viewer).await
        {
            let _ = viewer.stream.shutdown().await;
            let _ = upstream.stream.shutdown().await;
            return live.finish(outcome).await;
        }
        let outcome = match relay(
            &mut viewer,
            &mut upstream,
            &live,
            &server_init,
            &server_init_raw,
            &shutdown,
        )
        .await
        {
            Ok(Some(reason)) => {
                info!(reason = ?reason, "Session told to end");
                reason.outcome()
            }
            Ok(None) => Outcome::Completed,
            Err(e) => {
                // A hostile or broken peer, or a recording failure (which `finish` names).
                info!(error = %format!("{e:#}"), "Relay stopped on an error");
                Outcome::Failed
            }
        };
        let _ = viewer.stream.shutdown().await;
        let _ = upstream.stream.shutdown().await;
        live.finish(outcome).await
    }
    .instrument(span)
    .await
}

/// Four eyes: before the viewer gets its ServerInit (so it shows nothing of the console, and
/// nothing it sends is read), waits for a member of security staff to watch the session, at
/// most `auth.supervision_wait`; nobody: refused as `supervision.absent`.
async fn wait_for_watcher(
    live: &LiveSession,
    services: &Services,
    req: &policy::Request,
    auth: &policy::Authorized,
    viewer: &mut Conn,
) -> Result<(), Outcome> {
    let mut watched = live.watched();
    if *watched.borrow_and_update() {
        return Ok(());
    }
    let wait = services.inventory().auth().supervision_wait;
    let _ = live
        .event(
            EventKind::Policy,
            "supervised: waiting for a watcher before the console is shown",
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
                    return Ok(());
                }
            }
            reason = &mut ended => return Err(reason.outcome()),
            () = &mut deadline => {
                let denial = supervision::nobody_came_denial(
                    req,
                    auth.user(),
                    Some(auth.contractor().to_owned()),
                    auth.target(),
                    wait,
                );
                warn!(reason = denial.reason(), "Supervised session refused");
                services.record_refusal(Some(live.id), &denial, req).await;
                return Err(Outcome::Denied);
            }
            // The viewer has nothing to say before ServerInit; what it sends stays unread.
            r = viewer.fill() => {
                if r.is_err() {
                    return Err(Outcome::Completed);
                }
            }
        }
    }
}

/// Relays until a side closes (`Ok(None)`), the session must end (`Ok(Some(reason))`), or a
/// peer misbehaves or the recording fails (`Err`).
async fn relay(
    viewer: &mut Conn,
    upstream: &mut Conn,
    live: &LiveSession,
    init: &rfb::ServerInit,
    init_raw: &[u8],
    shutdown: &CancellationToken,
) -> Result<Option<EndReason>> {
    live.keyframe(RFB_CHANNEL, init_raw).await?;
    viewer.send(init_raw).await?;
    let mut decoder =
        ServerDecoder::new(init.width, init.height, init.pixel_format).without_rect_data();
    let mut last_removed: Vec<i32> = Vec::new();
    let mut told_uncompressed = false;
    // Four eyes: while nobody watches, the viewer's keys and pointer are held.
    let mut watched = live.watched();
    let mut supervised = live.supervised();
    let mut gate = InputHold::new(supervised && !*watched.borrow_and_update());
    if gate.is_holding() {
        live.event(EventKind::Policy, "input held: nobody is watching")
            .await?;
    }
    loop {
        tokio::select! {
            changed = watched.changed(), if supervised => {
                if changed.is_err() {
                    // The supervisor dropped the session (it is ending): the gate keeps its
                    // last state, so a hold is never lifted without a watcher.
                    supervised = false;
                    continue;
                }
                let now_watched = *watched.borrow_and_update();
                if now_watched && gate.is_holding() {
                    let held = gate.resume();
                    live.event(
                        EventKind::Policy,
                        &format!("input resumed ({held} key and pointer events while held were not sent)"),
                    )
                    .await?;
                } else if !now_watched && !gate.is_holding() {
                    let mut release = Vec::new();
                    for msg in gate.hold() {
                        rfb::encode_client(&msg, &mut release)?;
                    }
                    live.event(EventKind::Policy, "input held: nobody is watching")
                        .await?;
                    if !release.is_empty() {
                        live.client_data(RFB_CHANNEL, &release).await?;
                        upstream.stream.write_all(&release).await?;
                    }
                }
            }
            reason = live.ended() => return Ok(Some(reason)),
            _ = shutdown.cancelled() => return Ok(Some(EndReason::Shutdown)),
            r = viewer.fill() => {
                if r.is_err() {
                    return Ok(None);
                }
                let out = client_to_server(
                    viewer,
                    &mut decoder,
                    live,
                    &mut last_removed,
                    &mut told_uncompressed,
                    &mut gate,
                )
                .await?;
                if !out.is_empty() {
                    live.client_data(RFB_CHANNEL, &out).await?;
                    upstream.stream.write_all(&out).await?;
                }
            }
            r = upstream.fill() => {
                if r.is_err() {
                    return Ok(None);
                }
                let out = server_to_client(upstream, &mut decoder, live).await?;
                if !out.is_empty() {
                    // One buffer for the recording and the viewer: screens are megabytes.
                    let out = bytes::Bytes::from(out);
                    live.server_bytes(RFB_CHANNEL, out.clone()).await?;
                    viewer.stream.write_all(&out).await?;
                }
            }
        }
    }
}

/// Decodes every complete client message in the buffer and returns the bytes to forward.
async fn client_to_server(
    viewer: &mut Conn,
    decoder: &mut ServerDecoder,
    live: &LiveSession,
    last_removed: &mut Vec<i32>,
    told_uncompressed: &mut bool,
    gate: &mut InputHold,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some((msg, n)) = rfb::decode_client(viewer.buf.get(pos..).unwrap_or_default())? {
        let raw = viewer.buf.get(pos..pos + n).unwrap_or_default();
        pos += n;
        trace!(kind = msg.kind(), len = n, "Viewer message");
        if !gate.admit(&msg) {
            continue;
        }
        match msg {
            ClientMsg::SetEncodings(list) => {
                let choice = encodings::for_console(&list);
                if !choice.removed.is_empty() && choice.removed != *last_removed {
                    let detail = format!(
                        "encodings the player cannot decode removed from the viewer's SetEncodings: {:?}",
                        choice.removed
                    );
                    live.event(EventKind::Policy, &detail).await?;
                    last_removed.clone_from(&choice.removed);
                }
                if !choice.compressed && !*told_uncompressed {
                    warn!(
                        encodings = ?list,
                        "The viewer offers no ZRLE: the console sends, and the recording keeps, uncompressed screens"
                    );
                    live.event(
                        EventKind::Note,
                        "the viewer offers no ZRLE: screens are recorded as the console sends them, uncompressed, several times larger",
                    )
                    .await?;
                    *told_uncompressed = true;
                }
                rfb::encode_client(&ClientMsg::SetEncodings(choice.offered), &mut out)?;
            }
            ClientMsg::SetPixelFormat(pf) => {
                decoder.set_pixel_format(pf);
                out.extend_from_slice(raw);
            }
            ClientMsg::ClientCutText(text) => {
                info!(
                    direction = "viewer-to-console",
                    bytes = text.len(),
                    "Clipboard dropped"
                );
                let detail = format!("clipboard from the viewer dropped ({} bytes)", text.len());
                live.event(EventKind::ClipboardDropped, &detail).await?;
            }
            _ => out.extend_from_slice(raw),
        }
    }
    viewer.buf.drain(..pos);
    Ok(out)
}

/// Decodes every complete server message (or rectangle) in the buffer and returns the bytes to
/// forward.
async fn server_to_client(
    upstream: &mut Conn,
    decoder: &mut ServerDecoder,
    live: &LiveSession,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let rest = upstream.buf.get(pos..).unwrap_or_default();
        let Some((msg, n)) = decoder.decode(rest)? else {
            break;
        };
        let raw = rest.get(..n).unwrap_or_default();
        pos += n;
        match msg {
            ServerMsg::ServerCutText(text) => {
                info!(
                    direction = "console-to-viewer",
                    bytes = text.len(),
                    "Clipboard dropped"
                );
                let detail = format!("clipboard from the console dropped ({} bytes)", text.len());
                live.event(EventKind::ClipboardDropped, &detail).await?;
            }
            ServerMsg::Rect(r) if r.encoding == rfb::Encoding::DesktopSize => {
                live.resize(r.width.into(), r.height.into()).await?;
                out.extend_from_slice(raw);
            }
            _ => out.extend_from_slice(raw),
        }
    }
    if pos == 0 && upstream.buf.len() as u64 > rfb::MAX_MESSAGE_LEN {
        bail!("console message exceeds the limit");
    }
    upstream.buf.drain(..pos);
    Ok(out)
}
