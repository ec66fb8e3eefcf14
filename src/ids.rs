//! ids: the names a login goes by — the transaction id (the RADIUS State),
//! the [`Origin`] a login comes from, and a confirmation link's token. Plain
//! values with no store, code or mail behind them, so that `challenge`,
//! `otp`, `mail` and the stores can all name them without depending on one
//! another. Nothing here logs; a [`LinkToken`]'s Debug hides it.

use std::fmt;

use rand::RngCore;

/// A challenge's transaction id: 128 random bits, sent as the RADIUS State in
/// 32 lower-case hex characters so it reads the same in logs and radclient.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transaction([u8; 16]);

impl Transaction {
    /// A fresh, unguessable id.
    pub fn random() -> Transaction {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        Transaction(id)
    }

    /// Reads a State attribute; `None` when it is not one of ours.
    pub fn from_state(state: &[u8]) -> Option<Transaction> {
        if state.len() != 32 || !state.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(state, &mut id).ok()?;
        Some(Transaction(id))
    }

    /// The State attribute's value.
    pub fn to_state(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::encode_to_slice(self.0, &mut out).expect("32 hex digits for 16 bytes");
        out
    }

    /// The raw id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transaction({self})")
    }
}

/// Where a login comes from: the Calling-Station-Id of the request (whichever
/// NAS or proxy relays it), or, when the request had none, the RADIUS client
/// it came from (its configured name). A challenge is answered only from the
/// origin that opened it, so that knowing the PIN is not enough to take over
/// a login that the user started elsewhere.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The Calling-Station-Id as the NAS sent it.
    Station(String),
    /// The configured name of the client that sent a request without one.
    Client(String),
}

impl Origin {
    /// The origin of a request with `calling_station` from client `client`.
    pub fn of(calling_station: Option<&str>, client: &str) -> Origin {
        match calling_station {
            Some(station) => Origin::Station(station.to_owned()),
            None => Origin::Client(client.to_owned()),
        }
    }

    /// One string for a store: the kind's letter, `:`, the value, so that a
    /// Calling-Station-Id never equals a client's name.
    pub fn encode(&self) -> String {
        match self {
            Origin::Station(s) => format!("s:{s}"),
            Origin::Client(c) => format!("c:{c}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Station(s) => write!(f, "calling-station {}", s.escape_debug()),
            Origin::Client(c) => write!(f, "client {}", c.escape_debug()),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

/// A confirmation link's secret part: 128 random bits, 32 hex characters in
/// the URL. The store keeps only a keyed digest of it (of the raw bytes,
/// which the stores read directly).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkToken(pub(crate) [u8; 16]);

impl LinkToken {
    /// A fresh, unguessable token.
    pub fn random() -> LinkToken {
        let mut t = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut t);
        LinkToken(t)
    }

    /// Reads the token from a URL path segment; `None` when it cannot be one.
    pub fn from_path(segment: &str) -> Option<LinkToken> {
        Transaction::from_state(segment.as_bytes()).map(|tx| LinkToken(tx.0))
    }

    /// The token as it goes into the URL.
    pub fn to_path(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(***)")
    }
}
