//! packet: the requests the load generator sends and the checks on every
//! answer. Requests carry Message-Authenticator first (as mailotp requires by
//! default); answers must carry the right Response Authenticator, and the
//! right Message-Authenticator when they have one. Signing and checking use
//! mailotp's own `wire` functions; this module only lays out bytes.

use mailotp::wire::{self, attr, Code, MaCheck, Packet};

/// One request ready to send, and the answer code it must get.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The signed datagram.
    pub bytes: Vec<u8>,
    /// The code the answer must have.
    pub expect: Code,
    /// Which user (or other item) the request was about, for the workload.
    pub item: usize,
}

/// Lays out a request: Message-Authenticator first, then `attrs` in order,
/// with User-Password (if given) hidden with `secret`.
pub fn request(
    code: Code,
    id: u8,
    authenticator: &[u8; 16],
    secret: &[u8],
    attrs: &[(u8, &[u8])],
    password: Option<&[u8]>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[code.to_u8(), id, 0, 0]);
    buf.extend_from_slice(authenticator);
    buf.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
    buf.extend_from_slice(&[0; 16]);
    let hidden = password.map(|p| wire::hide_password(p, secret, authenticator).expect("bench passwords are short"));
    for (t, v) in attrs
        .iter()
        .copied()
        .chain(hidden.as_deref().map(|h| (attr::USER_PASSWORD, h)))
    {
        buf.push(t);
        buf.push(u8::try_from(v.len() + 2).expect("bench attributes are short"));
        buf.extend_from_slice(v);
    }
    let len = u16::try_from(buf.len()).expect("bench packets are short");
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    let ma = wire::message_authenticator(&buf, wire::HEADER_LEN, secret);
    buf[wire::HEADER_LEN + 2..wire::HEADER_LEN + 18].copy_from_slice(&ma);
    buf
}

/// Checks an answer against the request it answers; the decoded answer, or
/// what was wrong with it.
pub fn check_answer<'a>(
    answer: &'a [u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    expect: Code,
) -> Result<Packet<'a>, &'static str> {
    let packet = Packet::decode(answer).map_err(|_| "malformed answer")?;
    if !wire::verify_response_authenticator(packet.bytes(), request_authenticator, secret) {
        return Err("bad Response Authenticator");
    }
    if wire::verify_message_authenticator(&packet, Some(request_authenticator), secret) == MaCheck::Invalid {
        return Err("bad Message-Authenticator");
    }
    if packet.code() != expect {
        return Err("unexpected answer code");
    }
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_a_valid_message_authenticator_and_hidden_password() {
        let auth = [7u8; 16];
        let bytes = request(
            Code::AccessRequest,
            9,
            &auth,
            b"secret",
            &[(attr::USER_NAME, b"bench-1")],
            Some(b"pin"),
        );
        let packet = Packet::decode(&bytes).unwrap();
        assert_eq!(
            wire::verify_message_authenticator(&packet, None, b"secret"),
            MaCheck::Valid
        );
        let hidden = packet.first(attr::USER_PASSWORD).unwrap();
        assert_eq!(&wire::unhide_password(hidden, b"secret", &auth).unwrap()[..], b"pin");
        assert_eq!(packet.first(attr::USER_NAME), Some(&b"bench-1"[..]));
    }

    #[test]
    fn answers_with_a_wrong_signature_or_code_are_refused() {
        let auth = [3u8; 16];
        let answer = wire::ResponseBuilder::new(Code::AccessAccept, 9).finish(&auth, b"secret");
        assert!(check_answer(&answer, &auth, b"secret", Code::AccessAccept).is_ok());
        assert_eq!(
            check_answer(&answer, &auth, b"other", Code::AccessAccept).unwrap_err(),
            "bad Response Authenticator"
        );
        assert_eq!(
            check_answer(&answer, &auth, b"secret", Code::AccessReject).unwrap_err(),
            "unexpected answer code"
        );
    }
}
