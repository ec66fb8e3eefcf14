//! invariants: what must hold for ANY datagram a network can send, written
//! once and run by both the `cargo fuzz` targets (`fuzz/`) and the property
//! tests of the normal test suite. Each function panics when a property is
//! broken — that is how a fuzzer reports — so the server never calls them.
//!
//! Properties: decoding never panics; a decoded packet re-encoded through
//! [`ResponseBuilder`] decodes again to the same attributes, signed; the
//! server's per-datagram checks never panic and only pass well-formed,
//! correctly signed requests, whose parsing and answer never panic either.

use crate::auth::{Decision, Reason};
use crate::challenge::Transaction;
use crate::metrics::DropReason;
use crate::server::{check_request, encode_response, SINGLE_VALUED};
use crate::wire::{self, attr, Code, MaCheck, Packet, ResponseBuilder};

/// The shared secret the invariants sign and check with.
pub const SECRET: &[u8] = b"fuzzing-secret";

/// Decodes `data`; when it decodes, re-encodes its attributes as a response
/// and checks that the result decodes to the same attributes (as many as fit
/// in 4096 bytes), with a valid Message-Authenticator first and a valid
/// Response Authenticator, and that encoding that again gives the same bytes.
pub fn decode_roundtrip(data: &[u8]) {
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    assert!(packet.bytes().len() <= wire::MAX_PACKET_LEN);
    let original: Vec<(u8, &[u8])> = payload(&packet);
    let encoded = reencode(&packet);
    let again = Packet::decode(&encoded).expect("our own encoding decodes");
    let copied = payload(&again);
    assert!(copied.len() <= original.len());
    assert_eq!(
        copied,
        original[..copied.len()],
        "attributes survive re-encoding in order"
    );
    if encoded.len() + 2 + original.get(copied.len()).map_or(0, |a| a.1.len()) <= wire::MAX_PACKET_LEN {
        assert_eq!(copied.len(), original.len(), "nothing is lost while there is room");
    }
    let first = again.attributes().next().expect("the MA is there");
    assert_eq!(first.attr_type, attr::MESSAGE_AUTHENTICATOR);
    let request_auth = packet.authenticator();
    assert_eq!(
        wire::verify_message_authenticator(&again, Some(request_auth), SECRET),
        MaCheck::Valid
    );
    assert!(wire::verify_response_authenticator(&encoded, request_auth, SECRET));
    let twice = reencode(&again);
    assert_eq!(twice[..4], encoded[..4], "re-encoding keeps code, id and length");
    assert_eq!(twice[HEAD..], encoded[HEAD..], "re-encoding is stable");
}

/// Bytes up to and including the Message-Authenticator, which differ when a
/// packet is signed against another authenticator.
const HEAD: usize = wire::HEADER_LEN + 18;

fn payload<'a>(packet: &Packet<'a>) -> Vec<(u8, &'a [u8])> {
    packet
        .attributes()
        .filter(|a| a.attr_type != attr::MESSAGE_AUTHENTICATOR)
        .map(|a| (a.attr_type, a.value))
        .collect()
}

fn reencode(packet: &Packet<'_>) -> Vec<u8> {
    let mut response = ResponseBuilder::new(packet.code(), packet.identifier());
    for (attr_type, value) in payload(packet) {
        response.push(attr_type, value);
    }
    response.finish(packet.authenticator(), SECRET)
}

/// Runs the server's checks on `data` as it arrived and, when it carries a
/// Message-Authenticator, once more correctly signed (so that fuzzing gets
/// past the HMAC), with and without `require_message_authenticator`.
pub fn screening(data: &[u8]) {
    screen_once(data);
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    let Some(ma) = packet.attributes().find(|a| a.attr_type == attr::MESSAGE_AUTHENTICATOR) else {
        return;
    };
    let repeated = SINGLE_VALUED.iter().any(|&t| packet.count(t) > 1);
    if ma.value.len() != 16 || repeated {
        return;
    }
    let mut signed = packet.bytes().to_vec();
    let mac = wire::message_authenticator(&signed, ma.offset, SECRET);
    signed[ma.offset + 2..ma.offset + 18].copy_from_slice(&mac);
    let verdict = check_request(&signed, SECRET, true);
    assert!(
        !matches!(
            verdict,
            Err(DropReason::Malformed | DropReason::BadMessageAuthenticator | DropReason::MissingMessageAuthenticator)
        ),
        "a well-formed, correctly signed packet passes framing and MA: {verdict:?}"
    );
    screen_once(&signed);
}

fn screen_once(data: &[u8]) {
    for require_ma in [false, true] {
        let Ok(packet) = check_request(data, SECRET, require_ma) else {
            continue;
        };
        assert!(matches!(packet.code(), Code::AccessRequest | Code::StatusServer));
        let ma = wire::verify_message_authenticator(&packet, None, SECRET);
        let needs_ma = require_ma || packet.code() == Code::StatusServer;
        assert!(ma == MaCheck::Valid || (ma == MaCheck::Absent && !needs_ma), "{ma:?}");
        parse_and_answer(&packet);
    }
}

/// What `server` does with a request that passed the checks, minus the decision.
fn parse_and_answer(packet: &Packet<'_>) {
    let user = packet
        .first(attr::USER_NAME)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    if let Some(hidden) = packet.first(attr::USER_PASSWORD) {
        let password = wire::unhide_password(hidden, SECRET, packet.authenticator());
        assert!(password.is_some(), "checked framing means the password unhides");
    }
    let state = packet.first(attr::STATE).and_then(Transaction::from_state);
    let decision = Decision {
        code: Code::AccessChallenge,
        state: state.or_else(|| Some(Transaction::random())),
        reply_message: Some(format!("answer for {user}")),
        attributes: Vec::new(),
        reason: Reason::ChallengeSent,
        canonical: None,
        policy: None,
    };
    let bytes = encode_response(packet, &decision, SECRET);
    let answer = Packet::decode(&bytes).expect("our answer decodes");
    assert_eq!(
        wire::verify_message_authenticator(&answer, Some(packet.authenticator()), SECRET),
        MaCheck::Valid
    );
    let sent: Vec<&[u8]> = values(packet, attr::PROXY_STATE);
    let copied: Vec<&[u8]> = values(&answer, attr::PROXY_STATE);
    assert_eq!(copied, sent[..copied.len()], "Proxy-State copied in order");
}

fn values<'a>(packet: &Packet<'a>, attr_type: u8) -> Vec<&'a [u8]> {
    packet
        .attributes()
        .filter(|a| a.attr_type == attr_type)
        .map(|a| a.value)
        .collect()
}

#[cfg(test)]
mod tests {
    //! The fuzz targets' properties on generated inputs, quick enough for
    //! every `cargo test`: raw bytes, and well-framed packets (often with
    //! the attributes the server reads) with one byte changed or the length
    //! field bent.

    use proptest::prelude::*;

    use super::*;

    fn attribute() -> impl Strategy<Value = (u8, Vec<u8>)> {
        let attr_type = prop_oneof![
            Just(attr::USER_NAME),
            Just(attr::USER_PASSWORD),
            Just(attr::STATE),
            Just(attr::PROXY_STATE),
            Just(attr::MESSAGE_AUTHENTICATOR),
            any::<u8>(),
        ];
        let value = prop_oneof![
            Just(vec![0u8; 16]),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 120..=253),
        ];
        (attr_type, value)
    }

    /// A framed packet: code, identifier, authenticator, attributes.
    fn packet() -> impl Strategy<Value = Vec<u8>> {
        let code = prop_oneof![Just(1u8), Just(12), Just(4), any::<u8>()];
        let attrs = proptest::collection::vec(attribute(), 0..20);
        (code, any::<u8>(), any::<[u8; 16]>(), attrs).prop_map(|(code, id, auth, attrs)| {
            let mut out = vec![code, id, 0, 0];
            out.extend_from_slice(&auth);
            for (t, v) in attrs {
                out.push(t);
                out.push(v.len() as u8 + 2);
                out.extend_from_slice(&v);
            }
            let len = out.len().min(usize::from(u16::MAX)) as u16;
            out[2..4].copy_from_slice(&len.to_be_bytes());
            out
        })
    }

    /// A framed packet, as it is or bent in one place.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        (packet(), 0u8..4, any::<usize>(), any::<u8>()).prop_map(|(mut d, how, at, byte)| {
            let at = at % d.len();
            match how {
                0 => {}
                1 => d[at] ^= byte | 1,
                2 => d.truncate(at),
                _ => d[2..4].copy_from_slice(&u16::from(byte).wrapping_mul(17).to_be_bytes()),
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_decode_and_screen_without_panic(data in proptest::collection::vec(any::<u8>(), 0..4200)) {
            decode_roundtrip(&data);
            screening(&data);
        }

        #[test]
        fn packets_bent_in_one_place_decode_and_screen_without_panic(data in datagram()) {
            decode_roundtrip(&data);
            screening(&data);
        }
    }

    #[test]
    fn a_signed_request_passes_and_its_answer_copies_proxy_states() {
        let mut req = vec![1u8, 7, 0, 0];
        req.extend_from_slice(&[9; 16]);
        req.extend_from_slice(&[attr::PROXY_STATE, 3, b'a', attr::PROXY_STATE, 3, b'b']);
        req.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
        req.extend_from_slice(&[0; 16]);
        let len = req.len() as u16;
        req[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            check_request(&req, SECRET, true).err(),
            Some(DropReason::BadMessageAuthenticator)
        );
        let mac = wire::message_authenticator(&req, 26, SECRET);
        req[28..44].copy_from_slice(&mac);
        assert!(check_request(&req, SECRET, true).is_ok());
        screening(&req);
        decode_roundtrip(&req);
    }
}
