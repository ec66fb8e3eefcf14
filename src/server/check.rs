//! The per-datagram checks that need nothing but the bytes and the sending
//! client's settings: framing, code, Message-Authenticator, User-Password
//! framing, single-valued attributes. Pure and synchronous, so the fuzz target and the property tests
//! run exactly what the server runs. Client lookup, the duplicate cache and
//! the capacity limit stay in `server`; nothing here logs or counts.

use crate::metrics::DropReason;
use crate::wire::{self, attr, Code, MaCheck, Packet};

/// RFC 2865 §5.2: a hidden User-Password is 16 to 128 octets in 16-octet blocks.
const MAX_HIDDEN_PASSWORD: usize = 128;

/// Attributes an Access-Request carries at most once (RFC 2865 §5.44's table
/// says 0-1; RFC 3579 §3.2 for Message-Authenticator). A second copy would let
/// the server and a proxy in front read different values, so such a request
/// is malformed.
pub(crate) const SINGLE_VALUED: [u8; 5] = [
    attr::USER_NAME,
    attr::USER_PASSWORD,
    attr::STATE,
    attr::MESSAGE_AUTHENTICATOR,
    attr::CALLING_STATION_ID,
];

/// Checks a datagram from a known client. `Ok` is a request worth deciding:
/// a well-formed Access-Request or Status-Server whose Message-Authenticator
/// (wherever it stands) is right, or absent where `require_ma` allows it.
/// More than one of a single-valued attribute is malformed. `Err` says why
/// it must be dropped unanswered.
pub(crate) fn check_request<'a>(datagram: &'a [u8], secret: &[u8], require_ma: bool) -> Result<Packet<'a>, DropReason> {
    let packet = Packet::decode(datagram).map_err(|_| DropReason::Malformed)?;
    let code = packet.code();
    if !matches!(code, Code::AccessRequest | Code::StatusServer) {
        return Err(DropReason::UnsupportedCode);
    }
    if repeats_single_valued(&packet) {
        return Err(DropReason::Malformed);
    }
    match wire::verify_message_authenticator(&packet, None, secret) {
        MaCheck::Valid => {}
        MaCheck::Invalid => return Err(DropReason::BadMessageAuthenticator),
        // RFC 5997 §3: Status-Server always carries one.
        MaCheck::Absent if code == Code::StatusServer || require_ma => {
            return Err(DropReason::MissingMessageAuthenticator)
        }
        MaCheck::Absent => {}
    }
    if let Some(hidden) = packet.first(attr::USER_PASSWORD) {
        if hidden.is_empty() || hidden.len() > MAX_HIDDEN_PASSWORD || hidden.len() % 16 != 0 {
            return Err(DropReason::BadPassword);
        }
    }
    Ok(packet)
}

/// Whether one of [`SINGLE_VALUED`] occurs twice; one pass over the attributes.
fn repeats_single_valued(packet: &Packet<'_>) -> bool {
    let mut seen = [false; SINGLE_VALUED.len()];
    for a in packet.attributes() {
        if let Some(i) = SINGLE_VALUED.iter().position(|&t| t == a.attr_type) {
            if std::mem::replace(&mut seen[i], true) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Access-Request with `attrs` (type, value), no Message-Authenticator.
    fn request(attrs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut req = vec![1u8, 7, 0, 0];
        req.extend_from_slice(&[9; 16]);
        for (t, v) in attrs {
            req.push(*t);
            req.push(u8::try_from(v.len() + 2).unwrap());
            req.extend_from_slice(v);
        }
        let len = u16::try_from(req.len()).unwrap();
        req[2..4].copy_from_slice(&len.to_be_bytes());
        req
    }

    #[test]
    fn a_second_copy_of_a_single_valued_attribute_is_malformed() {
        let password: &[u8] = &[0; 16];
        let once = request(&[(attr::USER_NAME, b"alice"), (attr::USER_PASSWORD, password)]);
        assert!(check_request(&once, b"s", false).is_ok());
        for t in SINGLE_VALUED {
            let value: &[u8] = if t == attr::USER_PASSWORD || t == attr::MESSAGE_AUTHENTICATOR {
                password
            } else {
                b"x"
            };
            let twice = request(&[(attr::USER_NAME, b"alice"), (t, value), (t, value)]);
            let twice = if t == attr::USER_NAME {
                request(&[(t, value), (t, value)])
            } else {
                twice
            };
            assert_eq!(
                check_request(&twice, b"s", false).err(),
                Some(DropReason::Malformed),
                "type {t}"
            );
        }
        let proxy_states = request(&[(attr::PROXY_STATE, b"a"), (attr::PROXY_STATE, b"b")]);
        assert!(
            check_request(&proxy_states, b"s", false).is_ok(),
            "Proxy-State may repeat"
        );
    }
}
