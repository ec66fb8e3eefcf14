//! Codec tests against the published packets of RFC 2865 §7.1 and §7.2, plus
//! table-driven malformed input.

use super::*;

const SECRET: &[u8] = b"xyzzy5461";

// RFC 2865 §7.1: nemo / arctangent, and the Access-Accept to it.
const RFC2865_7_1_REQUEST: [u8; 56] = [
    0x01, 0x00, 0x00, 0x38, 0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4, 0x22,
    0x7a, 0x01, 0x06, 0x6e, 0x65, 0x6d, 0x6f, 0x02, 0x12, 0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96,
    0xe4, 0x3f, 0x78, 0x2a, 0x0a, 0xee, 0x04, 0x06, 0xc0, 0xa8, 0x01, 0x10, 0x05, 0x06, 0x00, 0x00, 0x00, 0x03,
];
const RFC2865_7_1_RESPONSE: [u8; 38] = [
    0x02, 0x00, 0x00, 0x26, 0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10, 0x05, 0xf6, 0xbf, 0x9b, 0x55, 0xe0,
    0xb2, 0x06, 0x06, 0x00, 0x00, 0x00, 0x01, 0x0f, 0x06, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x06, 0xc0, 0xa8, 0x01, 0x03,
];
// RFC 2865 §7.2: flopsy, CHAP, and the Access-Accept to it.
const RFC2865_7_2_REQUEST_AUTH: [u8; 16] = [
    0x2a, 0xee, 0x86, 0xf0, 0x8d, 0x0d, 0x55, 0x96, 0x9c, 0xa5, 0x97, 0x8e, 0x0d, 0x33, 0x67, 0xa2,
];
const RFC2865_7_2_RESPONSE: [u8; 56] = [
    0x02, 0x01, 0x00, 0x38, 0x15, 0xef, 0xbc, 0x7d, 0xab, 0x26, 0xcf, 0xa3, 0xdc, 0x34, 0xd9, 0xc0, 0x3c, 0x86, 0x01,
    0xa4, 0x06, 0x06, 0x00, 0x00, 0x00, 0x02, 0x07, 0x06, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0xff, 0xff, 0xff, 0xfe,
    0x0a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x06, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x06, 0x00, 0x00, 0x05, 0xdc,
];

#[test]
fn rfc2865_7_1_request_decodes() {
    let p = Packet::decode(&RFC2865_7_1_REQUEST).unwrap();
    assert_eq!(p.code(), Code::AccessRequest);
    assert_eq!(p.identifier(), 0);
    assert_eq!(p.first(attr::USER_NAME), Some(&b"nemo"[..]));
    assert_eq!(p.attributes().count(), 4);
    assert_eq!(p.bytes(), &RFC2865_7_1_REQUEST[..]);
}

#[test]
fn rfc2865_7_1_user_password_unhides_and_hides_back() {
    let p = Packet::decode(&RFC2865_7_1_REQUEST).unwrap();
    let hidden = p.first(attr::USER_PASSWORD).unwrap();
    let clear = unhide_password(hidden, SECRET, p.authenticator()).unwrap();
    assert_eq!(&clear[..], b"arctangent");
    assert_eq!(hide_password(b"arctangent", SECRET, p.authenticator()).unwrap(), hidden);
}

#[test]
fn rfc2865_7_1_response_authenticator() {
    let p = Packet::decode(&RFC2865_7_1_REQUEST).unwrap();
    let auth = response_authenticator(&RFC2865_7_1_RESPONSE, p.authenticator(), SECRET);
    assert_eq!(auth, RFC2865_7_1_RESPONSE[4..20]);
    assert!(verify_response_authenticator(
        &RFC2865_7_1_RESPONSE,
        p.authenticator(),
        SECRET
    ));
    assert!(!verify_response_authenticator(
        &RFC2865_7_1_RESPONSE,
        p.authenticator(),
        b"wrong"
    ));
}

#[test]
fn rfc2865_7_2_response_decodes_and_reencodes() {
    // The document's Response Authenticator was computed over a packet that
    // differs from the one printed (a known erratum), so only the framing is
    // checked here; §7.1 checks the authenticator.
    let p = Packet::decode(&RFC2865_7_2_RESPONSE).unwrap();
    assert_eq!(p.code(), Code::AccessAccept);
    assert_eq!(p.identifier(), 1);
    assert_eq!(p.attributes().count(), 6);
    let mut b = ResponseBuilder::new(Code::AccessAccept, 1);
    for a in p.attributes() {
        b.push(a.attr_type, a.value);
    }
    let ours = b.finish(&RFC2865_7_2_REQUEST_AUTH, SECRET);
    // Ours carries Message-Authenticator first, then the same attributes.
    assert_eq!(&ours[20 + 18..], &RFC2865_7_2_RESPONSE[20..]);
}

#[test]
fn password_hiding_matches_radius_rs() {
    let ra = [7u8; 16];
    for pw in [&b"1"[..], b"0123456789abcdef", b"0123456789abcdef0", &[b'x'; 128]] {
        let theirs = radius::core::avp::AVP::from_user_password(2, pw, b"s3cret", &ra).unwrap();
        let ours = hide_password(pw, b"s3cret", &ra).unwrap();
        assert_eq!(theirs.encode_bytes(), ours);
        assert_eq!(&unhide_password(&ours, b"s3cret", &ra).unwrap()[..], pw);
    }
    assert_eq!(hide_password(&[b'x'; 129], b"s", &ra), None);
}

#[test]
fn unhide_refuses_bad_lengths() {
    let ra = [0u8; 16];
    for len in [0, 1, 15, 17, 144] {
        assert_eq!(unhide_password(&vec![0; len], b"s", &ra), None, "length {len}");
    }
}

#[test]
fn response_has_valid_message_authenticator_first() {
    let request_auth = [9u8; 16];
    let mut b = ResponseBuilder::new(Code::AccessChallenge, 42);
    b.push(attr::STATE, b"abc").push(attr::PROXY_STATE, b"1");
    let bytes = b.finish(&request_auth, b"testing123");
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.identifier(), 42);
    let first = p.attributes().next().unwrap();
    assert_eq!(first.attr_type, attr::MESSAGE_AUTHENTICATOR);
    assert_eq!(
        verify_message_authenticator(&p, Some(&request_auth), b"testing123"),
        MaCheck::Valid
    );
    assert_eq!(
        verify_message_authenticator(&p, Some(&request_auth), b"other"),
        MaCheck::Invalid
    );
    assert!(verify_response_authenticator(&bytes, &request_auth, b"testing123"));
}

#[test]
fn long_values_are_split_and_packets_capped() {
    let mut b = ResponseBuilder::new(Code::AccessReject, 1);
    b.push(attr::REPLY_MESSAGE, &[b'a'; 300]);
    let bytes = b.finish(&[0; 16], b"s");
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.count(attr::REPLY_MESSAGE), 2);
    let mut b = ResponseBuilder::new(Code::AccessReject, 1);
    for _ in 0..40 {
        b.push(attr::CLASS, &[b'c'; 200]);
    }
    assert!(b.finish(&[0; 16], b"s").len() <= MAX_PACKET_LEN);
}

#[test]
fn malformed_packets_give_exact_errors() {
    let mut long_len = RFC2865_7_1_REQUEST.to_vec();
    long_len[2..4].copy_from_slice(&5000u16.to_be_bytes());
    let mut short_len = RFC2865_7_1_REQUEST.to_vec();
    short_len[2..4].copy_from_slice(&19u16.to_be_bytes());
    let mut past_end = RFC2865_7_1_REQUEST.to_vec();
    past_end[21] = 60; // User-Name claims 60 octets
    let mut zero_attr = RFC2865_7_1_REQUEST.to_vec();
    zero_attr[21] = 0;
    let mut one_attr = RFC2865_7_1_REQUEST.to_vec();
    one_attr[21] = 1;
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty", vec![], DecodeError::Truncated { got: 0, need: 20 }),
        ("19 bytes", vec![1; 19], DecodeError::Truncated { got: 19, need: 20 }),
        ("length over 4096", long_len, DecodeError::BadLength { length: 5000 }),
        ("length under 20", short_len, DecodeError::BadLength { length: 19 }),
        (
            "datagram shorter than length",
            RFC2865_7_1_REQUEST[..40].to_vec(),
            DecodeError::Truncated { got: 40, need: 56 },
        ),
        (
            "attribute past end",
            past_end,
            DecodeError::BadAttribute {
                attr_type: 1,
                offset: 20,
                length: 60,
            },
        ),
        (
            "attribute length 0",
            zero_attr,
            DecodeError::BadAttribute {
                attr_type: 1,
                offset: 20,
                length: 0,
            },
        ),
        (
            "attribute length 1",
            one_attr,
            DecodeError::BadAttribute {
                attr_type: 1,
                offset: 20,
                length: 1,
            },
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(Packet::decode(&bytes).unwrap_err(), want, "{name}");
    }
}

#[test]
fn trailing_padding_is_ignored() {
    let mut padded = RFC2865_7_1_REQUEST.to_vec();
    padded.extend_from_slice(&[0xff; 10]);
    let p = Packet::decode(&padded).unwrap();
    assert_eq!(p.bytes().len(), 56);
    assert_eq!(p.attributes().count(), 4);
}

#[test]
fn message_authenticator_checks_position_and_count() {
    // A request with MA last (as a FreeRADIUS proxy sends it) verifies.
    let mut req = RFC2865_7_1_REQUEST.to_vec();
    let ma_offset = req.len();
    req.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
    req.extend_from_slice(&[0; 16]);
    let len = req.len() as u16;
    req[2..4].copy_from_slice(&len.to_be_bytes());
    let ma = message_authenticator(&req, ma_offset, SECRET);
    req[ma_offset + 2..].copy_from_slice(&ma);
    let p = Packet::decode(&req).unwrap();
    assert_eq!(verify_message_authenticator(&p, None, SECRET), MaCheck::Valid);
    // Two of them is invalid, whatever their values.
    let mut twice = req.clone();
    twice.extend_from_slice(&req[ma_offset..]);
    let len = twice.len() as u16;
    twice[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        verify_message_authenticator(&Packet::decode(&twice).unwrap(), None, SECRET),
        MaCheck::Invalid
    );
    let p = Packet::decode(&RFC2865_7_1_REQUEST).unwrap();
    assert_eq!(verify_message_authenticator(&p, None, SECRET), MaCheck::Absent);
}
