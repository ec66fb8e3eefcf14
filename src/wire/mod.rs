//! wire: RADIUS bytes ↔ packets (RFC 2865, 2869, 3579, 5997).
//!
//! Owns the packet layout, the Request/Response Authenticator, User-Password
//! hiding and Message-Authenticator. The decoder borrows the datagram and never
//! allocates per attribute, because every request of the server passes here.
//! It knows nothing of users, challenges or mail, and never logs: callers get a
//! [`DecodeError`] and decide how to count it.

mod authenticator;
mod password;

pub use authenticator::{
    message_authenticator, response_authenticator, verify_message_authenticator, verify_response_authenticator, MaCheck,
};
pub use password::{hide_password, unhide_password};

use thiserror::Error;

/// Size of the fixed RADIUS header: code, identifier, length, authenticator.
pub const HEADER_LEN: usize = 20;
/// RFC 2865 §3: the largest packet a server must handle.
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest value an attribute can carry (255 minus type and length octets).
pub const MAX_ATTR_VALUE_LEN: usize = 253;

/// Attribute types the server reads or writes (RFC 2865, 2869).
pub mod attr {
    /// User-Name (1).
    pub const USER_NAME: u8 = 1;
    /// User-Password (2), hidden with the shared secret.
    pub const USER_PASSWORD: u8 = 2;
    /// Reply-Message (18).
    pub const REPLY_MESSAGE: u8 = 18;
    /// State (24): our transaction id in Access-Challenge and the answer to it.
    pub const STATE: u8 = 24;
    /// Class (25).
    pub const CLASS: u8 = 25;
    /// Vendor-Specific (26).
    pub const VENDOR_SPECIFIC: u8 = 26;
    /// Session-Timeout (27): in Access-Challenge, how long the NAS waits.
    pub const SESSION_TIMEOUT: u8 = 27;
    /// Calling-Station-Id (31): VPNs put the user's remote address here.
    pub const CALLING_STATION_ID: u8 = 31;
    /// Proxy-State (33): copied into the response unchanged and in order.
    pub const PROXY_STATE: u8 = 33;
    /// EAP-Message (79).
    pub const EAP_MESSAGE: u8 = 79;
    /// Message-Authenticator (80), RFC 3579 §3.2.
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// RADIUS packet codes this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Access-Request (1).
    AccessRequest,
    /// Access-Accept (2).
    AccessAccept,
    /// Access-Reject (3).
    AccessReject,
    /// Accounting-Request (4): not served.
    AccountingRequest,
    /// Access-Challenge (11).
    AccessChallenge,
    /// Status-Server (12), RFC 5997.
    StatusServer,
    /// Any other code.
    Other(u8),
}

impl Code {
    /// The code octet.
    pub fn to_u8(self) -> u8 {
        match self {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::Other(c) => c,
        }
    }

    /// The code for an octet.
    pub fn from_u8(c: u8) -> Code {
        match c {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            other => Code::Other(other),
        }
    }

    /// The name RFC 2865 gives the code, as admins read it in logs.
    pub fn name(self) -> &'static str {
        match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::Other(_) => "unknown code",
        }
    }
}

/// Why a datagram is not a RADIUS packet we can read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the header, or than its own length field says.
    #[error("datagram of {got} bytes is shorter than {need}")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Length field below the header size or above 4096.
    #[error("length field {length} is outside {HEADER_LEN}..={MAX_PACKET_LEN}")]
    BadLength {
        /// The value of the length field.
        length: usize,
    },
    /// An attribute whose length octet is below 2 or runs past the packet.
    #[error("attribute {attr_type} at offset {offset} has length {length}, which does not fit")]
    BadAttribute {
        /// The attribute's type octet.
        attr_type: u8,
        /// Offset of the attribute in the packet.
        offset: usize,
        /// Its length octet.
        length: u8,
    },
}

/// A decoded packet that borrows the datagram it came from.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the header and every attribute's framing. Bytes after the length
    /// field's end are padding and ignored (RFC 2865 §3).
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                got: datagram.len(),
                need: HEADER_LEN,
            });
        }
        let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&length) {
            return Err(DecodeError::BadLength { length });
        }
        if datagram.len() < length {
            return Err(DecodeError::Truncated {
                got: datagram.len(),
                need: length,
            });
        }
        let bytes = &datagram[..length];
        let mut offset = HEADER_LEN;
        while offset < length {
            let attr_type = bytes[offset];
            let attr_len = bytes.get(offset + 1).copied().unwrap_or(0);
            if attr_len < 2 || offset + usize::from(attr_len) > length {
                return Err(DecodeError::BadAttribute {
                    attr_type,
                    offset,
                    length: attr_len,
                });
            }
            offset += usize::from(attr_len);
        }
        Ok(Packet { bytes })
    }

    /// The packet's code.
    pub fn code(&self) -> Code {
        Code::from_u8(self.bytes[0])
    }

    /// The identifier octet.
    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    /// The 16-octet authenticator field.
    pub fn authenticator(&self) -> &'a [u8; 16] {
        self.bytes[4..HEADER_LEN]
            .try_into()
            .expect("header length checked in decode")
    }

    /// The packet's bytes, exactly as long as its length field.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Every attribute in order, with the offset of its type octet.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }

    /// The first attribute of a type.
    pub fn first(&self, attr_type: u8) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.attr_type == attr_type).map(|a| a.value)
    }

    /// How many attributes of a type the packet carries.
    pub fn count(&self, attr_type: u8) -> usize {
        self.attributes().filter(|a| a.attr_type == attr_type).count()
    }

    /// A copy that owns its bytes, for work that outlives the datagram
    /// buffer; it is not decoded again.
    pub fn to_buf(&self) -> PacketBuf {
        PacketBuf(self.bytes.into())
    }
}

/// A decoded packet that owns its bytes (see [`Packet::to_buf`]).
#[derive(Debug, Clone)]
pub struct PacketBuf(Box<[u8]>);

impl PacketBuf {
    /// The packet, as it was decoded.
    pub fn packet(&self) -> Packet<'_> {
        Packet { bytes: &self.0 }
    }
}

/// One attribute of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The type octet.
    pub attr_type: u8,
    /// The value, without type and length.
    pub value: &'a [u8],
    /// Offset of the type octet within the packet.
    pub offset: usize,
}

/// Iterator over a decoded packet's attributes.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // Framing was validated by `Packet::decode`, so lengths fit here.
        let header = self.bytes.get(self.offset..self.offset + 2)?;
        let len = usize::from(header[1]);
        let attribute = Attribute {
            attr_type: header[0],
            value: &self.bytes[self.offset + 2..self.offset + len],
            offset: self.offset,
        };
        self.offset += len;
        Some(attribute)
    }
}

/// Builds a response to a request: Message-Authenticator first, then the
/// attributes in the order they are pushed, then the Response Authenticator.
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    buf: Vec<u8>,
    /// Once an attribute did not fit, later ones are left out too, so that
    /// what is sent is always a prefix of what was pushed (Proxy-States stay
    /// in order, never with a gap).
    full: bool,
}

impl ResponseBuilder {
    /// Starts a response with the request's identifier, with room for the
    /// Message-Authenticator as first attribute.
    pub fn new(code: Code, identifier: u8) -> ResponseBuilder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[code.to_u8(), identifier, 0, 0]);
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
        buf.extend_from_slice(&[0; 16]);
        ResponseBuilder { buf, full: false }
    }

    /// Appends one attribute; values longer than 253 bytes are split over
    /// several attributes of the same type (as RFC 2865 allows for
    /// Reply-Message), and the packet never grows past 4096 bytes: from the
    /// first attribute that does not fit on, nothing more is added.
    pub fn push(&mut self, attr_type: u8, value: &[u8]) -> &mut Self {
        let chunks: Vec<&[u8]> = if value.is_empty() {
            vec![value]
        } else {
            value.chunks(MAX_ATTR_VALUE_LEN).collect()
        };
        for chunk in chunks {
            if self.full || self.buf.len() + chunk.len() + 2 > MAX_PACKET_LEN {
                self.full = true;
                break;
            }
            self.buf.push(attr_type);
            self.buf.push(chunk.len() as u8 + 2);
            self.buf.extend_from_slice(chunk);
        }
        self
    }

    /// Signs the response for the request it answers and returns its bytes.
    pub fn finish(mut self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        // RFC 3579 §3.2: the MA of a response is computed with the request's
        // authenticator in the header, before the Response Authenticator.
        self.buf[4..HEADER_LEN].copy_from_slice(request_authenticator);
        let ma = message_authenticator(&self.buf, HEADER_LEN, secret);
        self.buf[HEADER_LEN + 2..HEADER_LEN + 18].copy_from_slice(&ma);
        let auth = response_authenticator(&self.buf, request_authenticator, secret);
        self.buf[4..HEADER_LEN].copy_from_slice(&auth);
        self.buf
    }
}

#[cfg(test)]
mod tests;
