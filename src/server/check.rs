//! The per-datagram checks that need nothing but the bytes and the sending
//! client's settings: framing, code, Message-Authenticator, User-Password
//! framing. Pure and synchronous, so the fuzz target and the property tests
//! run exactly what the server runs. Client lookup, the duplicate cache and
//! the capacity limit stay in `server`; nothing here logs or counts.

use crate::metrics::DropReason;
use crate::wire::{self, attr, Code, MaCheck, Packet};

/// RFC 2865 §5.2: a hidden User-Password is 16 to 128 octets in 16-octet blocks.
const MAX_HIDDEN_PASSWORD: usize = 128;

/// Checks a datagram from a known client. `Ok` is a request worth deciding:
/// a well-formed Access-Request or Status-Server whose Message-Authenticator
/// (wherever it stands) is right, or absent where `require_ma` allows it.
/// `Err` says why it must be dropped unanswered.
pub fn check_request<'a>(datagram: &'a [u8], secret: &[u8], require_ma: bool) -> Result<Packet<'a>, DropReason> {
    let packet = Packet::decode(datagram).map_err(|_| DropReason::Malformed)?;
    let code = packet.code();
    if !matches!(code, Code::AccessRequest | Code::StatusServer) {
        return Err(DropReason::UnsupportedCode);
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
