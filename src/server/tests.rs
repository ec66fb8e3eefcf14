//! Unit tests of the answer encoding.

use super::*;
use crate::auth::Reason;
use crate::dictionary::WireAttribute;
use crate::wire::{verify_message_authenticator, MaCheck};

#[test]
fn proxy_state_survives_when_reply_attributes_fill_the_packet() {
    let mut request = vec![1, 7, 0, 0];
    request.extend_from_slice(&[3; 16]);
    for ps in [&b"proxy-1"[..], b"proxy-2"] {
        request.extend_from_slice(&[attr::PROXY_STATE, ps.len() as u8 + 2]);
        request.extend_from_slice(ps);
    }
    let len = request.len() as u16;
    request[2..4].copy_from_slice(&len.to_be_bytes());
    let request = Packet::decode(&request).unwrap();
    let big = WireAttribute {
        attr_type: attr::CLASS,
        value: vec![b'c'; 250],
    };
    let decision = Decision {
        attributes: vec![big; 20],
        ..Decision::accept(Reason::OtpAccepted)
    };
    let bytes = encode_response(&request, &decision, b"s");
    let response = Packet::decode(&bytes).unwrap();
    assert!(bytes.len() <= wire::MAX_PACKET_LEN);
    let proxy: Vec<&[u8]> = response
        .attributes()
        .filter(|a| a.attr_type == attr::PROXY_STATE)
        .map(|a| a.value)
        .collect();
    assert_eq!(proxy, [&b"proxy-1"[..], b"proxy-2"]);
    assert!(
        response.count(attr::CLASS) < 20,
        "reply attributes were cut, not Proxy-State"
    );
    assert_eq!(
        verify_message_authenticator(&response, Some(request.authenticator()), b"s"),
        MaCheck::Valid
    );
}
