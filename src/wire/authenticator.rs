//! Request/Response Authenticator (RFC 2865 §3) and Message-Authenticator
//! (RFC 3579 §3.2, HMAC-MD5). Every comparison here is constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::{attr, Packet, HEADER_LEN};

type HmacMd5 = Hmac<Md5>;

/// HMAC-MD5 over `bytes` with the 16 value octets of the Message-Authenticator
/// whose type octet is at `ma_offset` taken as zero. For a response, the
/// caller has the request's authenticator in the header already.
pub fn message_authenticator(bytes: &[u8], ma_offset: usize, secret: &[u8]) -> [u8; 16] {
    ma_with_header(bytes, &bytes[4..HEADER_LEN], ma_offset, secret)
}

fn ma_with_header(bytes: &[u8], header_auth: &[u8], ma_offset: usize, secret: &[u8]) -> [u8; 16] {
    let mut mac = HmacMd5::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&bytes[..4]);
    mac.update(header_auth);
    mac.update(&bytes[HEADER_LEN..ma_offset + 2]);
    mac.update(&[0; 16]);
    mac.update(&bytes[ma_offset + 18..]);
    mac.finalize().into_bytes().into()
}

/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
pub fn response_authenticator(bytes: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(&bytes[..4]);
    md5.update(request_authenticator);
    md5.update(&bytes[HEADER_LEN..]);
    md5.update(secret);
    md5.finalize().into()
}

/// What a packet's Message-Authenticator says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaCheck {
    /// No Message-Authenticator attribute.
    Absent,
    /// Exactly one, 16 octets, with the right HMAC.
    Valid,
    /// Present but wrong: bad HMAC, bad length, or more than one.
    Invalid,
}

/// Checks a packet's Message-Authenticator wherever it stands (a FreeRADIUS
/// proxy appends it after the client's attributes). For a response, pass the
/// authenticator of the request it answers.
pub fn verify_message_authenticator(
    packet: &Packet<'_>,
    request_authenticator: Option<&[u8; 16]>,
    secret: &[u8],
) -> MaCheck {
    let mut found = None;
    for a in packet.attributes() {
        if a.attr_type == attr::MESSAGE_AUTHENTICATOR {
            if found.is_some() || a.value.len() != 16 {
                return MaCheck::Invalid;
            }
            found = Some(a);
        }
    }
    let Some(a) = found else {
        return MaCheck::Absent;
    };
    let bytes = packet.bytes();
    let header: &[u8] = match request_authenticator {
        Some(ra) => ra,
        None => &bytes[4..HEADER_LEN],
    };
    let expected = ma_with_header(bytes, header, a.offset, secret);
    if bool::from(expected.ct_eq(a.value)) {
        MaCheck::Valid
    } else {
        MaCheck::Invalid
    }
}

/// Whether a response's authenticator matches the request it answers.
pub fn verify_response_authenticator(response: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    if response.len() < HEADER_LEN {
        return false;
    }
    let expected = response_authenticator(response, request_authenticator, secret);
    bool::from(expected.ct_eq(&response[4..HEADER_LEN]))
}
