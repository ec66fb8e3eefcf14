//! User-Password hiding, RFC 2865 §5.2: the password, padded to 16-octet
//! blocks, is XORed with an MD5 chain seeded by the secret and the Request
//! Authenticator.

use md5::{Digest, Md5};
use zeroize::Zeroizing;

/// RFC 2865 §5.2: at most 128 octets.
const MAX_HIDDEN_LEN: usize = 128;

fn keystream_block(secret: &[u8], previous: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(secret);
    md5.update(previous);
    md5.finalize().into()
}

/// Hides a password for the wire; `None` when it is longer than 128 octets.
pub fn hide_password(password: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Option<Vec<u8>> {
    if password.len() > MAX_HIDDEN_LEN {
        return None;
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = vec![0u8; padded_len];
    out[..password.len()].copy_from_slice(password);
    let mut previous: [u8; 16] = *request_authenticator;
    for block in out.chunks_mut(16) {
        let key = keystream_block(secret, &previous);
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        previous.copy_from_slice(block);
    }
    Some(out)
}

/// Recovers a hidden password, without the NUL padding. `None` when the value's
/// length is not a multiple of 16 between 16 and 128 octets.
pub fn unhide_password(hidden: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Option<Zeroizing<Vec<u8>>> {
    if hidden.is_empty() || hidden.len() > MAX_HIDDEN_LEN || hidden.len() % 16 != 0 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(hidden.len()));
    let mut previous: &[u8] = request_authenticator;
    for block in hidden.chunks(16) {
        let key = keystream_block(secret, previous);
        out.extend(block.iter().zip(key).map(|(c, k)| c ^ k));
        previous = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Some(out)
}
