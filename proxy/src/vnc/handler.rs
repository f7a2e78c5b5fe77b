//! One viewer connection up to the relay: Sekisho's RFB server side (VNC authentication with a
//! one-time ticket), the policy check at connect time, and the upstream handshake with the
//! VM's console on its hypervisor.
//!
//! The order is chosen so a viewer learns every refusal as a SecurityResult failure with a
//! reason: the ticket is checked, the policy asked and the console reached and authenticated
//! before the viewer is told "OK".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use player::rfb::{
    self, CHALLENGE_LEN, ProtocolVersion, SECURITY_NONE, SECURITY_VNC_AUTH, SecurityResult,
    SecurityTypes, ServerInit,
};
use policy::{Denial, Protocol, Request, Rule, TargetRef};
use rand::RngCore;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::conn::Conn;
use super::session::Established;
use super::tickets::{TicketError, TicketStore, vnc_auth_response};
use crate::services::{Admission, Services};

/// Connecting to the hypervisor's VNC port.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Runs one viewer connection to its end.
pub(crate) async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    services: Arc<Services>,
    tickets: Arc<TicketStore>,
    shutdown: CancellationToken,
) {
    // A place among the unauthenticated, held until the ticket was redeemed.
    let permit = match crate::preauth::gate(crate::preauth::Door::Vnc).enter(peer.ip()) {
        Ok(p) => p,
        Err(full) => {
            info!(client_ip = %peer.ip(), reason = %full, "VNC connection closed before authentication");
            return;
        }
    };
    let deadline = services.inventory().auth().preauth_timeout;
    let mut viewer = Conn::new(stream);
    let est = tokio::select! {
        r = tokio::time::timeout(deadline, handshake(&mut viewer, peer.ip(), &services, &tickets)) => r,
        _ = shutdown.cancelled() => return,
    };
    drop(permit);
    let (admission, upstream, server_init, server_init_raw) = match est {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return, // refused; already answered and recorded
        Ok(Err(e)) => {
            info!(client_ip = %peer.ip(), error = %format!("{e:#}"), "VNC handshake failed");
            return;
        }
        Err(_) => {
            info!(client_ip = %peer.ip(), "VNC handshake timed out");
            return;
        }
    };
    let est = Established {
        viewer,
        upstream,
        admission,
        server_init,
        server_init_raw,
    };
    if let Err(e) = super::session::run(est, services, shutdown).await {
        warn!(client_ip = %peer.ip(), error = %format!("{e:#}"), "VNC session ended with an error");
    }
}

type Handshaken = (Admission, Conn, ServerInit, Vec<u8>);

async fn handshake(
    viewer: &mut Conn,
    source: IpAddr,
    services: &Arc<Services>,
    tickets: &TicketStore,
) -> Result<Option<Handshaken>> {
    viewer.send(ProtocolVersion::V3_8.to_bytes()).await?;
    let (version, _) = viewer.read_msg(rfb::decode_version).await?;
    if version == ProtocolVersion::V3_3 {
        // 3.3: the server decides the security type.
        viewer
            .send(&u32::from(SECURITY_VNC_AUTH).to_be_bytes())
            .await?;
    } else {
        let mut out = Vec::new();
        rfb::encode_security_types(&[SECURITY_VNC_AUTH], "", &mut out)?;
        viewer.send(&out).await?;
        let [choice] = viewer.read_exact_n::<1>().await?;
        if choice != SECURITY_VNC_AUTH {
            refuse(
                viewer,
                version,
                "sekisho accepts only VNC authentication with a one-time ticket",
            )
            .await?;
            return Ok(None);
        }
    }
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::rng().fill_bytes(&mut challenge);
    viewer.send(&challenge).await?;
    let response = viewer.read_exact_n::<CHALLENGE_LEN>().await?;

    let grant = match tickets.redeem(&challenge, &response, source, Utc::now()) {
        Ok(g) => g,
        Err(e) => {
            let reason = ticket_reason(&e);
            info!(client_ip = %source, reason = %reason, "VNC ticket refused");
            let grant = e.grant();
            let req = Request {
                protocol: Protocol::ConsoleVnc,
                source,
                target: TargetRef::Name(grant.map(|g| g.target.clone()).unwrap_or_default()),
                user: grant.map(|g| g.user.clone()),
            };
            let denial = Denial::new(
                Rule::VncTicketInvalid,
                reason.clone(),
                grant.map(|g| g.user.clone()),
                None,
                grant.map(|g| g.target.clone()),
            );
            services.record_refusal(None, &denial, &req).await;
            refuse(viewer, version, &reason).await?;
            return Ok(None);
        }
    };

    let request = Request {
        protocol: Protocol::ConsoleVnc,
        source,
        target: TargetRef::Name(grant.target.clone()),
        user: Some(grant.user.clone()),
    };
    // A user with a matrix card must have passed it from this desktop recently: VNC has no
    // card step of its own (checked at issue too; the pass may have expired or been forgotten
    // by a logout since).
    if let Some(denial) = services.second_factor_missing(
        Protocol::ConsoleVnc,
        &grant.user,
        source,
        &grant.target,
        std::time::Instant::now(),
    ) {
        info!(client_ip = %source, rule = denial.rule().as_str(), "VNC console refused: no recent matrix card pass");
        services.record_refusal(None, &denial, &request).await;
        refuse(viewer, version, &format!("sekisho: {}", denial.reason())).await?;
        return Ok(None);
    }

    // Ask the policy again: the contract window may have closed since the ticket was issued.
    let admission = match services.admit(&request).await {
        Ok(a) => a,
        Err(d) => {
            info!(client_ip = %source, rule = d.rule().as_str(), "VNC console denied");
            refuse(viewer, version, &format!("sekisho: {}", d.reason())).await?;
            return Ok(None);
        }
    };

    let (upstream, server_init, raw) = match connect_upstream(services, &admission).await {
        Ok(v) => v,
        Err(e) => {
            let target = &admission.target().name;
            warn!(target = %target, error = %format!("{e:#}"), "Cannot reach the VM console");
            refuse(
                viewer,
                version,
                &format!("sekisho: the console of {target} cannot be reached: {e:#}"),
            )
            .await?;
            return Ok(None);
        }
    };

    let mut ok = Vec::new();
    rfb::encode_security_result(&SecurityResult::Ok, version, &mut ok)?;
    viewer.send(&ok).await?;
    let _shared = viewer.read_msg(rfb::decode_client_init).await?;
    Ok(Some((admission, upstream, server_init, raw)))
}

fn ticket_reason(e: &TicketError) -> String {
    match e {
        TicketError::NoMatch => {
            "sekisho: wrong VNC ticket; ask for one with `ssh USER@bastion console TARGET`"
                .to_owned()
        }
        other => {
            format!("sekisho: {other}; ask for a new one with `ssh USER@bastion console TARGET`")
        }
    }
}

/// Sends a SecurityResult failure with `reason` (3.8; older viewers get no reason).
async fn refuse(viewer: &mut Conn, version: ProtocolVersion, reason: &str) -> Result<()> {
    let mut out = Vec::new();
    let mut reason = reason.to_owned();
    reason.truncate(rfb::MAX_REASON_LEN as usize);
    rfb::encode_security_result(&SecurityResult::Failed(reason), version, &mut out)?;
    viewer.send(&out).await?;
    let _ = viewer.stream.shutdown().await;
    Ok(())
}

/// Connects to the VM's `vnc_console` and authenticates: None, or VNC authentication with a
/// one-time password set through QMP just before (`vnc_qmp`), else with the password of the
/// target's (or its hypervisor's) credential. Sends ClientInit (shared, so other
/// viewers of the console are not disconnected) and reads ServerInit.
async fn connect_upstream(
    services: &Services,
    admission: &Admission,
) -> Result<(Conn, ServerInit, Vec<u8>)> {
    let inventory = admission.inventory();
    let target = admission.target();
    let endpoint = target
        .vnc_console
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no vnc_console", target.name))?;
    let credential = target.credential.clone().or_else(|| {
        target
            .hypervisor
            .as_deref()
            .and_then(|h| inventory.hypervisor(h))
            .and_then(|h| h.credential.clone())
    });
    let one_time = match &target.vnc_qmp {
        Some(qmp) => {
            let qmp_addr = format!("{}:{}", qmp.host, qmp.port);
            debug!(%qmp_addr, "Setting a one-time VNC password through QMP");
            Some(
                super::qmp::set_one_time_password(&qmp_addr)
                    .await
                    .with_context(|| {
                        format!("cannot set a VNC password through QMP at {qmp_addr}")
                    })?,
            )
        }
        None => None,
    };
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    debug!(%addr, "Connecting to the VM console");
    let stream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true).ok();
    let mut up = Conn::new(stream);
    let (server_version, _) = up.read_msg(rfb::decode_version).await?;
    let version = server_version.min(ProtocolVersion::V3_8);
    up.send(version.to_bytes()).await?;
    let chosen = if version == ProtocolVersion::V3_3 {
        let t = u32::from_be_bytes(up.read_exact_n::<4>().await?);
        u8::try_from(t).map_err(|_| anyhow!("console chose security type {t}"))?
    } else {
        let (types, _) = up.read_msg(rfb::decode_security_types).await?;
        let offered = match types {
            SecurityTypes::Offered(t) => t,
            SecurityTypes::Refused(reason) => bail!("the console refused: {reason}"),
        };
        let pick = if offered.contains(&SECURITY_NONE) {
            SECURITY_NONE
        } else if offered.contains(&SECURITY_VNC_AUTH) {
            SECURITY_VNC_AUTH
        } else {
            bail!("the console offers no usable security type ({offered:?})");
        };
        up.send(&[pick]).await?;
        pick
    };
    match chosen {
        SECURITY_NONE => {}
        SECURITY_VNC_AUTH if one_time.is_some() => {
            let password = one_time
                .as_ref()
                .map(|p| p.expose().as_bytes())
                .unwrap_or_default();
            let challenge = up.read_exact_n::<CHALLENGE_LEN>().await?;
            up.send(&vnc_auth_response(password, &challenge)).await?;
        }
        SECURITY_VNC_AUTH => {
            let name = credential.ok_or_else(|| {
                anyhow!(
                    "the console needs a password and {} has no credential",
                    target.name
                )
            })?;
            let secrets = services
                .secrets()
                .ok_or_else(|| anyhow!("the secrets file is missing"))?;
            let cred = secrets
                .credential(&name)
                .ok_or_else(|| anyhow!("credential {name} is not in the secrets file"))?;
            let password = cred
                .password
                .as_ref()
                .ok_or_else(|| anyhow!("credential {name} has no password"))?;
            let challenge = up.read_exact_n::<CHALLENGE_LEN>().await?;
            up.send(&vnc_auth_response(password.expose().as_bytes(), &challenge))
                .await?;
        }
        other => bail!("the console chose unsupported security type {other}"),
    }
    // 3.3 sends a SecurityResult after None only from 3.8 on (RFC 6143 §7.2.1).
    if !(chosen == SECURITY_NONE && version < ProtocolVersion::V3_8) {
        let (result, _) = up
            .read_msg(|b| rfb::decode_security_result(b, version))
            .await?;
        if let SecurityResult::Failed(reason) = result {
            bail!("the console refused the credential: {reason}");
        }
    }
    up.send(&[1]).await?; // ClientInit, shared
    let (init, raw) = up.read_msg(rfb::decode_server_init).await?;
    Ok((up, init, raw))
}
