//! NLA (CredSSP with NTLM) on the server leg: Sekisho is the CredSSP client and logs on to the
//! target with the credentials of the secrets file, so the contractor never learns them.
//!
//! Sans-IO: [`super::credssp::take_frame`] frames the server's TsRequests, [`NlaClient::start`]
//! gives the first TsRequest and [`NlaClient::step`] turns each server TsRequest into the next
//! one to send. No byte of this exchange is ever recorded or logged: the last TsRequest carries
//! the target's password, encrypted only by the NTLM session key and TLS.

use std::fmt;

use ironrdp_connector::sspi::credssp::{
    ClientMode, ClientState, CredSspClient, CredSspMode, TsRequest,
};
use ironrdp_connector::sspi::{self, AuthIdentity, Credentials, Username};

use super::credssp::{self, NlaError};
use super::types::TargetCredentials;

/// Why NLA toward the target did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NlaClientError {
    /// The server answered the NTLM Authenticate message with an error or by closing: it
    /// refused the injected credentials.
    #[error("the server refused the injected credentials")]
    Refused,
    /// The server's TsRequest was malformed, out of order, or failed a CredSSP check (such as
    /// the binding to its TLS public key).
    #[error("CredSSP with the server failed: {0}")]
    Protocol(String),
    /// The credentials cannot be expressed for NTLM (e.g. an empty user name).
    #[error("the injected credentials are not usable for NLA: {0}")]
    Unusable(String),
}

impl From<NlaError> for NlaClientError {
    fn from(e: NlaError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// Where the exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `start` not called yet.
    New,
    /// NTLM Negotiate sent; waiting for the Challenge.
    AwaitChallenge,
    /// NTLM Authenticate (with our public key proof) sent; the server's answer says whether
    /// it took the credentials.
    AwaitPublicKey,
    /// The credentials were sent; CredSSP is over.
    Done,
    /// An error ended it.
    Failed,
}

/// What one server TsRequest led to.
#[derive(Debug)]
pub enum ClientStep {
    /// Send these bytes and wait for the next TsRequest.
    Send(Vec<u8>),
    /// Send these bytes (the credentials); CredSSP is then over and the RDP connection
    /// sequence goes on (MCS Connect Initial).
    Finish(Vec<u8>),
}

/// The CredSSP client for one server connection.
pub struct NlaClient {
    client: CredSspClient,
    phase: Phase,
}

impl fmt::Debug for NlaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NlaClient")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl NlaClient {
    /// `server_public_key` is the subjectPublicKey of the certificate the server presented on
    /// this TLS connection ([`super::credssp::cert_public_key`]); `server_name` names it in the
    /// service principal name (`TERMSRV/…`, used by Kerberos only).
    pub fn new(
        credentials: &TargetCredentials,
        server_public_key: Vec<u8>,
        server_name: &str,
    ) -> Result<Self, NlaClientError> {
        let username = Username::new(&credentials.username, credentials.domain.as_deref())
            .map_err(|e| NlaClientError::Unusable(e.to_string()))?;
        let identity = AuthIdentity {
            username,
            password: credentials.password.expose().to_owned().into(),
        };
        // Plain NTLM, as mstsc sends when Kerberos is not possible; a bastion has no ticket.
        let client = CredSspClient::new(
            server_public_key,
            Credentials::AuthIdentity(identity),
            CredSspMode::WithCredentials,
            ClientMode::Ntlm(sspi::ntlm::NtlmConfig::default()),
            format!("TERMSRV/{server_name}"),
        )
        .map_err(|e| NlaClientError::Protocol(e.to_string()))?;
        Ok(Self {
            client,
            phase: Phase::New,
        })
    }

    /// The first TsRequest (NTLM Negotiate).
    pub fn start(&mut self) -> Result<Vec<u8>, NlaClientError> {
        if self.phase != Phase::New {
            return Err(NlaClientError::Protocol(
                "CredSSP already started".to_owned(),
            ));
        }
        match self.process(TsRequest::default())? {
            ClientState::ReplyNeeded(ts) => {
                self.phase = Phase::AwaitChallenge;
                encode(&ts)
            }
            ClientState::FinalMessage(_) => self.fail(NlaClientError::Protocol(
                "CredSSP finished before the server spoke".to_owned(),
            )),
        }
    }

    /// Processes one whole TsRequest from the server.
    pub fn step(&mut self, frame: &[u8]) -> Result<ClientStep, NlaClientError> {
        let phase = self.phase;
        if !matches!(phase, Phase::AwaitChallenge | Phase::AwaitPublicKey) {
            return Err(NlaClientError::Protocol(format!(
                "server TsRequest in phase {phase:?}"
            )));
        }
        let request = match TsRequest::from_buffer(frame) {
            Ok(r) => r,
            Err(e) => return self.fail(NlaClientError::Protocol(e.to_string())),
        };
        if let Err(e) = credssp::check_sealed_fields(&request) {
            return self.fail(e.into());
        }
        // An error code after our Authenticate message is the server's verdict on the
        // credentials; before it, the exchange itself went wrong.
        if let Some(code) = request.error_code.filter(|c| c.0 != 0) {
            return self.fail(if phase == Phase::AwaitPublicKey {
                NlaClientError::Refused
            } else {
                NlaClientError::Protocol(format!("server error code {:#010x}", code.0))
            });
        }
        match (phase, self.process(request)?) {
            (Phase::AwaitChallenge, ClientState::ReplyNeeded(ts)) => {
                self.phase = Phase::AwaitPublicKey;
                Ok(ClientStep::Send(encode(&ts)?))
            }
            (Phase::AwaitPublicKey, ClientState::FinalMessage(ts)) => {
                self.phase = Phase::Done;
                Ok(ClientStep::Finish(encode(&ts)?))
            }
            (phase, _) => self.fail(NlaClientError::Protocol(format!(
                "unexpected CredSSP state after the server's TsRequest in phase {phase:?}"
            ))),
        }
    }

    /// What it means that the server closed the connection now.
    pub fn closed(&self) -> NlaClientError {
        match self.phase {
            // Servers (FreeRDP, Windows without HYBRID_EX) drop the connection on a wrong
            // password instead of answering.
            Phase::AwaitPublicKey => NlaClientError::Refused,
            _ => NlaClientError::Protocol("the server closed during CredSSP".to_owned()),
        }
    }

    /// The CredSSP exchange is over (the credentials were sent).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn process(&mut self, request: TsRequest) -> Result<ClientState, NlaClientError> {
        // NTLM needs no network round trip (no KDC), so the generator completes at once.
        let result = self.client.process(request).resolve_to_result();
        match result {
            Ok(state) => Ok(state),
            Err(e) => {
                let error = if self.phase == Phase::AwaitPublicKey
                    && e.error_type == sspi::ErrorKind::LogonDenied
                {
                    NlaClientError::Refused
                } else {
                    NlaClientError::Protocol(e.to_string())
                };
                self.fail(error)
            }
        }
    }

    fn fail<T>(&mut self, e: NlaClientError) -> Result<T, NlaClientError> {
        self.phase = Phase::Failed;
        Err(e)
    }
}

fn encode(ts: &TsRequest) -> Result<Vec<u8>, NlaClientError> {
    credssp::encode(ts).map_err(NlaClientError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdp::credssp::{Account, NlaAcceptor, Step};
    use crate::rdp::types::Secret;

    fn creds(user: &str, password: &str) -> TargetCredentials {
        TargetCredentials {
            username: user.to_owned(),
            password: Secret::new(password.to_owned()),
            domain: None,
        }
    }

    fn nt_hash(password: &str) -> [u8; 16] {
        use md4::{Digest, Md4};
        let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        Md4::digest(&utf16).into()
    }

    const KEY: &[u8] = &[0x42; 270];

    /// Runs the client against Sekisho's own CredSSP server (sspi's NTLM acceptor).
    fn run(server_password: &str, client_password: &str) -> Result<String, NlaClientError> {
        let mut server = NlaAcceptor::new(
            Account {
                user: "maint".to_owned(),
                nt_hash: nt_hash(server_password),
            },
            KEY.to_vec(),
        )
        .unwrap();
        let mut client = NlaClient::new(&creds("maint", client_password), KEY.to_vec(), "srv01")?;
        let mut to_server = client.start()?;
        for _ in 0..4 {
            match server.step(&to_server) {
                Step::Reply(bytes) => match client.step(&bytes)? {
                    ClientStep::Send(b) => to_server = b,
                    ClientStep::Finish(b) => to_server = b,
                },
                Step::Done(user) => return Ok(user),
                Step::Failed(bytes, _) if bytes.is_empty() => return Err(client.closed()),
                Step::Failed(bytes, _) => {
                    client.step(&bytes)?;
                    return Err(client.closed());
                }
            }
        }
        Err(NlaClientError::Protocol("no end".to_owned()))
    }

    #[test]
    fn logs_on_to_an_ntlm_credssp_server() {
        assert_eq!(run("s3cret!", "s3cret!").unwrap(), "maint");
    }

    #[test]
    fn a_wrong_password_is_refused() {
        assert!(matches!(
            run("s3cret!", "other"),
            Err(NlaClientError::Refused)
        ));
    }

    #[test]
    fn malformed_server_input_is_a_typed_error() {
        let mut client = NlaClient::new(&creds("maint", "pw"), KEY.to_vec(), "srv01").unwrap();
        client.start().unwrap();
        for garbage in [
            &[][..],
            &[0x30][..],
            &[0x30, 0x03, 0x02, 0x01][..],
            &[0xff; 32][..],
            &[0x30, 0x05, 0xa0, 0x03, 0x02, 0x01, 0x06][..],
        ] {
            let mut c = NlaClient::new(&creds("maint", "pw"), KEY.to_vec(), "srv01").unwrap();
            c.start().unwrap();
            assert!(matches!(c.step(garbage), Err(NlaClientError::Protocol(_))));
            // Failed is final: nothing more is processed.
            assert!(c.step(garbage).is_err());
        }
        assert!(matches!(client.closed(), NlaClientError::Protocol(_)));
    }

    /// Sekisho's own CredSSP server for "maint"/"pw" bound to `server_key`, and a client for
    /// the same credentials bound to [`KEY`], once the server has sent its NTLM Challenge.
    fn challenged(server_key: Vec<u8>) -> (NlaAcceptor, NlaClient, Vec<u8>) {
        let mut server = NlaAcceptor::new(
            Account {
                user: "maint".to_owned(),
                nt_hash: nt_hash("pw"),
            },
            server_key,
        )
        .unwrap();
        let mut client = NlaClient::new(&creds("maint", "pw"), KEY.to_vec(), "srv01").unwrap();
        let Step::Reply(challenge) = server.step(&client.start().unwrap()) else {
            panic!("no challenge");
        };
        (server, client, challenge)
    }

    #[test]
    fn steps_before_start_or_twice_start_are_refused() {
        let mut c = NlaClient::new(&creds("maint", "pw"), KEY.to_vec(), "srv01").unwrap();
        assert!(c.step(&[0x30, 0x00]).is_err());
        c.start().unwrap();
        assert!(c.start().is_err());
    }

    #[test]
    fn an_error_code_after_authenticate_is_a_refusal() {
        // Challenge from a real acceptor, then the server answers with an error code.
        let (_server, mut client, challenge) = challenged(KEY.to_vec());
        assert!(matches!(
            client.step(&challenge).unwrap(),
            ClientStep::Send(_)
        ));
        let ts = TsRequest {
            error_code: Some(sspi::credssp::NStatusCode::LOGON_FAILURE),
            ..TsRequest::default()
        };
        let bytes = credssp::encode(&ts).unwrap();
        assert!(matches!(client.step(&bytes), Err(NlaClientError::Refused)));
        assert!(!client.is_done());
    }

    #[test]
    fn a_public_key_mismatch_is_not_a_refusal() {
        // The server proves a different TLS key: a man in the middle, not a wrong password.
        let (mut server, mut client, challenge) = challenged(vec![0x17; 270]);
        let ClientStep::Send(auth) = client.step(&challenge).unwrap() else {
            panic!("no authenticate");
        };
        match server.step(&auth) {
            Step::Reply(bytes) | Step::Failed(bytes, _) if !bytes.is_empty() => {
                assert!(client.step(&bytes).is_err());
            }
            _ => {}
        }
        assert!(!client.is_done());
    }

    fn challenge_then(mut f: impl FnMut(&mut NlaClient, TsRequest)) {
        let (_server, mut client, challenge) = challenged(KEY.to_vec());
        f(&mut client, TsRequest::from_buffer(&challenge).unwrap());
    }

    #[test]
    fn short_sealed_fields_are_errors_on_both_legs() {
        // sspi would panic splitting a pubKeyAuth shorter than an NTLM signature.
        let (mut server, mut client, challenge) = challenged(KEY.to_vec());
        let ClientStep::Send(auth) = client.step(&challenge).unwrap() else {
            panic!("no authenticate");
        };
        let mut ts = TsRequest::from_buffer(&auth).unwrap();
        ts.pub_key_auth = Some(vec![1, 2, 3]);
        assert!(matches!(
            server.step(&credssp::encode(&ts).unwrap()),
            Step::Failed(_, NlaError::Protocol(_))
        ));
        let proof = TsRequest {
            pub_key_auth: Some(vec![0; 15]),
            ..TsRequest::default()
        };
        assert!(matches!(
            client.step(&credssp::encode(&proof).unwrap()),
            Err(NlaClientError::Protocol(_))
        ));
    }

    proptest::proptest! {
        // A hostile server: any NTLM payload in a well-formed TsRequest, at either step, is
        // an answer or a typed error, never a panic.
        #[test]
        fn hostile_nego_tokens_never_panic(
            token in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            flip in 0usize..400,
        ) {
            let mut first = NlaClient::new(&creds("maint", "pw"), KEY.to_vec(), "srv01").unwrap();
            first.start().unwrap();
            let ts = TsRequest { nego_tokens: Some(token.clone()), ..TsRequest::default() };
            let _ = first.step(&credssp::encode(&ts).unwrap());

            // A real challenge with one byte changed, then garbage as the public key proof.
            challenge_then(|client, mut ts| {
                if let Some(t) = ts.nego_tokens.as_mut()
                    && !t.is_empty()
                {
                    let i = flip % t.len();
                    if let Some(b) = t.get_mut(i) {
                        *b ^= 0x5a;
                    }
                }
                if client.step(&credssp::encode(&ts).unwrap()).is_ok() {
                    let proof = TsRequest {
                        pub_key_auth: Some(token.clone()),
                        ..TsRequest::default()
                    };
                    assert!(client.step(&credssp::encode(&proof).unwrap()).is_err());
                }
            });
        }
    }
}
