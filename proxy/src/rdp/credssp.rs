//! NLA (CredSSP with NTLM) on the contractor leg: Sekisho is the CredSSP server and checks the
//! contractor's NTLM response against the `nt_hash` of their Sekisho account.
//!
//! Sans-IO: [`take_frame`] frames the client's TsRequests in a byte stream and
//! [`NlaAcceptor::step`] turns one into the bytes to answer. No byte of this exchange is ever
//! recorded or logged: it carries the contractor's credentials.

use std::fmt;

use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, NStatusCode, ServerMode, ServerState, TsRequest,
};
use ironrdp_connector::sspi::{self, AuthIdentity, NTLM_HASH_PREFIX, Username};

use super::negotiation;

/// Largest TsRequest accepted from a client; NTLM messages are a few hundred bytes, and the
/// final one carries a password-sized credential blob.
pub const MAX_TS_REQUEST: usize = 16 * 1024;

/// Why NLA did not let the contractor in.
#[derive(Debug, thiserror::Error)]
pub enum NlaError {
    /// Wrong password, unknown user, or a user without `nt_hash`.
    #[error("NLA logon refused")]
    LogonRefused,
    /// The exchange itself was malformed or failed.
    #[error("CredSSP failed: {0}")]
    Protocol(String),
}

/// The NT hash of the one Sekisho account the policy already authorised by name; any other
/// name in the NTLM exchange is refused.
pub struct Account {
    /// the Sekisho user name (without `+target`)
    pub user: String,
    /// its NT hash
    pub nt_hash: [u8; 16],
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Accounts {
    account: Account,
}

impl CredentialsProxy for Accounts {
    type AuthenticationData = AuthIdentity;

    // Called with the name the client sends (`user` or `user+target`).
    fn auth_data_by_user(&mut self, username: &Username) -> std::io::Result<AuthIdentity> {
        let (name, _) = negotiation::split_user_target(username.account_name());
        if !name.eq_ignore_ascii_case(&self.account.user) {
            return Err(std::io::Error::other("unknown user"));
        }
        let mut hex = String::with_capacity(NTLM_HASH_PREFIX.len() + 32);
        hex.push_str(NTLM_HASH_PREFIX);
        for b in self.account.nt_hash {
            hex.push_str(&format!("{b:02x}"));
        }
        Ok(AuthIdentity {
            username: username.clone(),
            password: hex.into(),
        })
    }

    fn auth_data(&mut self) -> std::io::Result<Vec<AuthIdentity>> {
        // Only the lookup by name is used: the NTLM server always knows the client's name.
        Ok(Vec::new())
    }
}

/// What one client TsRequest led to.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes and wait for the next TsRequest.
    Reply(Vec<u8>),
    /// The contractor is authenticated as this (client-sent) user name.
    Done(String),
    /// Refused: send these bytes (may be empty) and close.
    Failed(Vec<u8>, NlaError),
}

/// The CredSSP server for one connection.
pub struct NlaAcceptor {
    server: CredSspServer<Accounts>,
}

impl fmt::Debug for NlaAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NlaAcceptor").finish_non_exhaustive()
    }
}

impl NlaAcceptor {
    /// `public_key` is the subjectPublicKey of Sekisho's TLS certificate on this connection
    /// (CredSSP binds the exchange to it).
    pub fn new(account: Account, public_key: Vec<u8>) -> Result<Self, NlaError> {
        let mode = ServerMode::Ntlm(sspi::ntlm::NtlmConfig::new("sekisho".to_owned()));
        let server = CredSspServer::new(public_key, Accounts { account }, mode)
            .map_err(|e| NlaError::Protocol(e.to_string()))?;
        Ok(Self { server })
    }

    /// Processes one whole TsRequest from the client.
    pub fn step(&mut self, frame: &[u8]) -> Step {
        let request = match TsRequest::from_buffer(frame) {
            Ok(r) => r,
            Err(e) => return Step::Failed(Vec::new(), NlaError::Protocol(e.to_string())),
        };
        if let Err(e) = check_sealed_fields(&request) {
            return Step::Failed(Vec::new(), e);
        }
        // NTLM needs no network round trip, so the generator completes at once.
        match self.server.process(request).resolve_to_result() {
            Ok(ServerState::ReplyNeeded(ts)) => match encode(&ts) {
                Ok(bytes) => Step::Reply(bytes),
                Err(e) => Step::Failed(Vec::new(), e),
            },
            Ok(ServerState::Finished(identity)) => {
                Step::Done(identity.username.account_name().to_owned())
            }
            Err(err) => {
                let refused = matches!(
                    err.error.error_type,
                    sspi::ErrorKind::LogonDenied | sspi::ErrorKind::MessageAltered
                ) || err.error.to_string().contains("unknown user");
                let reply = err
                    .ts_request
                    .map(|ts| {
                        let mut ts = *ts;
                        if refused {
                            // As Windows does, so the client reports a logon failure.
                            ts.error_code = Some(NStatusCode::LOGON_FAILURE);
                        }
                        encode(&ts).unwrap_or_default()
                    })
                    .unwrap_or_default();
                let error = if refused {
                    NlaError::LogonRefused
                } else {
                    NlaError::Protocol(err.error.to_string())
                };
                Step::Failed(reply, error)
            }
        }
    }
}

/// Length of the NTLM signature that starts every sealed TsRequest field.
const NTLM_SIGNATURE_LEN: usize = 16;

/// Refuses sealed fields (`pubKeyAuth`, `authInfo`) too short to hold an NTLM signature:
/// sspi 0.23 splits them at 16 bytes without checking and would panic.
pub(crate) fn check_sealed_fields(ts: &TsRequest) -> Result<(), NlaError> {
    for (name, field) in [
        ("pubKeyAuth", &ts.pub_key_auth),
        ("authInfo", &ts.auth_info),
    ] {
        if let Some(bytes) = field
            && bytes.len() < NTLM_SIGNATURE_LEN
        {
            return Err(NlaError::Protocol(format!(
                "TsRequest {name} of {} bytes is shorter than an NTLM signature",
                bytes.len()
            )));
        }
    }
    Ok(())
}

/// Takes the first whole TsRequest off the front of `buf`, or `None` until it has all
/// arrived: frames CredSSP on both legs.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, NlaError> {
    match frame_len(buf)? {
        Some(len) if buf.len() >= len => Ok(Some(buf.drain(..len).collect())),
        _ => Ok(None),
    }
}

/// The length of the TsRequest at the start of `buf`, once its header is there.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, NlaError> {
    match TsRequest::read_length(buf) {
        Ok(len) if len > MAX_TS_REQUEST => Err(NlaError::Protocol(format!(
            "TsRequest of {len} bytes is larger than {MAX_TS_REQUEST}"
        ))),
        Ok(len) => Ok(Some(len)),
        // sspi reports every header error as UnexpectedEof; a BER sequence header is at
        // most 4 bytes here (u16 lengths), so past that the header is malformed, not short.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && buf.len() < 6 => Ok(None),
        Err(e) => Err(NlaError::Protocol(format!("bad TsRequest header: {e}"))),
    }
}

pub(crate) fn encode(ts: &TsRequest) -> Result<Vec<u8>, NlaError> {
    let len = ts
        .buffer_len()
        .map_err(|e| NlaError::Protocol(e.to_string()))?;
    let mut out = Vec::with_capacity(usize::from(len));
    ts.encode_ts_request(&mut out)
        .map_err(|e| NlaError::Protocol(e.to_string()))?;
    Ok(out)
}

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo: what CredSSP calls the server's
/// public key. `None` when `spki` is not a well-formed SPKI.
pub fn spki_public_key(spki: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE { AlgorithmIdentifier SEQUENCE, subjectPublicKey BIT STRING }
    let (tag, body, _) = der_tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_tlv(body)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, bits, _) = der_tlv(rest)?;
    if tag != 0x03 {
        return None;
    }
    // First byte: unused bits, 0 for a key.
    match bits.split_first() {
        Some((0, key)) => Some(key.to_vec()),
        _ => None,
    }
}

/// The subjectPublicKey bits of a DER X.509 certificate: what CredSSP binds the exchange
/// to on the server leg. `None` when `cert` is not a well-formed certificate.
pub fn cert_public_key(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... } ... }
    let (tag, body, _) = der_tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_tlv(body)?;
    if tag != 0x30 {
        return None;
    }
    if tbs.first() == Some(&0xa0) {
        tbs = der_tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = der_tlv(tbs)?.2;
    }
    let (tag, _, after) = der_tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let spki = tbs.get(..tbs.len() - after.len())?;
    spki_public_key(spki)
}

/// One DER TLV: (tag, value, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_public_key_takes_the_bit_string() {
        // SEQUENCE { SEQUENCE { OID }, BIT STRING 00 04 AA BB }
        let spki = [
            0x30, 0x0b, 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03, 0x03, 0x03, 0x00, 0xaa, 0xbb,
        ];
        assert_eq!(spki_public_key(&spki), Some(vec![0xaa, 0xbb]));
    }

    #[test]
    fn spki_public_key_rejects_truncated_and_odd_input() {
        let spki = [0x30, 0x0b, 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03, 0x03, 0x03];
        assert_eq!(spki_public_key(&spki), None);
        assert_eq!(spki_public_key(&[]), None);
        assert_eq!(spki_public_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn cert_public_key_is_the_key_of_the_certificate() {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["srv01".to_owned()]).unwrap();
        use rcgen::PublicKeyData;
        let want = spki_public_key(&signing_key.subject_public_key_info()).unwrap();
        assert_eq!(want, signing_key.der_bytes());
        assert_eq!(cert_public_key(cert.der()), Some(want));
        // Truncated anywhere: no key, no panic.
        let der = cert.der().to_vec();
        for n in 0..der.len() {
            assert_eq!(cert_public_key(der.get(..n).unwrap()), None);
        }
    }

    #[test]
    fn frame_len_waits_for_the_header_and_bounds_the_size() {
        assert!(matches!(frame_len(&[0x30]), Ok(None)));
        assert!(matches!(
            frame_len(&[0x30, 0x83, 0x10, 0x00, 0x00, 0x00]),
            Err(NlaError::Protocol(_))
        ));
        assert!(matches!(frame_len(&[0xff; 64]), Err(NlaError::Protocol(_))));
    }

    #[test]
    fn take_frame_waits_for_the_whole_request_and_keeps_what_follows() {
        let mut buf = vec![0x30, 0x03, 0x02, 0x01];
        assert_eq!(take_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0x06, 0xaa]);
        assert_eq!(
            take_frame(&mut buf).unwrap(),
            Some(vec![0x30, 0x03, 0x02, 0x01, 0x06])
        );
        assert_eq!(buf, [0xaa]);
    }
}
