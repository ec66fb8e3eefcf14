//! Hand-built RADIUS packets for the black-box tests: a small request builder
//! over `mailotp::wire` that can put Message-Authenticator anywhere (or
//! nowhere, or wrong), raw attribute bytes for malformed shapes, and the check
//! every response must pass (Message-Authenticator first and valid, Response
//! Authenticator right). Also reads the server's "datagrams dropped" log lines.

use std::net::{SocketAddr, UdpSocket};

use mailotp::wire::{self, attr, MaCheck, Packet};

use crate::harness::{poll, Server, Setup, DEADLINE};

/// Access-Request (1).
pub const ACCESS_REQUEST: u8 = 1;
/// Accounting-Request (4).
pub const ACCOUNTING_REQUEST: u8 = 4;
/// Status-Server (12).
pub const STATUS_SERVER: u8 = 12;

/// A request under construction; attributes stay in the order they are added.
#[derive(Debug, Clone)]
pub struct Request {
    /// Code octet.
    pub code: u8,
    /// Identifier octet.
    pub id: u8,
    /// Request Authenticator (random).
    pub authenticator: [u8; 16],
    attrs: Vec<(u8, Vec<u8>)>,
}

impl Request {
    /// An empty request of `code` with a random authenticator.
    pub fn new(code: u8, id: u8) -> Request {
        Request {
            code,
            id,
            authenticator: rand::random(),
            attrs: Vec::new(),
        }
    }

    /// Access-Request with User-Name and the hidden User-Password.
    pub fn login(id: u8, user: &str, password: &str, secret: &str) -> Request {
        let req = Request::new(ACCESS_REQUEST, id).attr(attr::USER_NAME, user.as_bytes());
        let hidden = wire::hide_password(password.as_bytes(), secret.as_bytes(), &req.authenticator).unwrap();
        req.attr(attr::USER_PASSWORD, &hidden)
    }

    /// Appends an attribute.
    pub fn attr(mut self, attr_type: u8, value: &[u8]) -> Request {
        self.attrs.push((attr_type, value.to_vec()));
        self
    }

    /// Appends a Message-Authenticator of 16 zero octets (filled by [`Request::signed`]).
    pub fn ma(self) -> Request {
        self.attr(attr::MESSAGE_AUTHENTICATOR, &[0; 16])
    }

    /// Puts a zero Message-Authenticator first, before what is there.
    pub fn ma_first(mut self) -> Request {
        self.attrs.insert(0, (attr::MESSAGE_AUTHENTICATOR, vec![0; 16]));
        self
    }

    /// The bytes as they stand (any Message-Authenticator left zero).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![self.code, self.id, 0, 0];
        out.extend_from_slice(&self.authenticator);
        for (t, v) in &self.attrs {
            out.push(*t);
            out.push(u8::try_from(v.len() + 2).expect("test attributes fit"));
            out.extend_from_slice(v);
        }
        set_length(&mut out);
        out
    }

    /// The bytes with the first Message-Authenticator computed with `secret`.
    pub fn signed(&self, secret: &str) -> Vec<u8> {
        let mut out = self.bytes();
        let offset = Packet::decode(&out)
            .unwrap()
            .attributes()
            .find(|a| a.attr_type == attr::MESSAGE_AUTHENTICATOR)
            .expect("signed() needs a Message-Authenticator")
            .offset;
        let ma = wire::message_authenticator(&out, offset, secret.as_bytes());
        out[offset + 2..offset + 18].copy_from_slice(&ma);
        out
    }
}

/// Writes the datagram's real size into its length field.
pub fn set_length(datagram: &mut [u8]) {
    let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
    datagram[2..4].copy_from_slice(&len.to_be_bytes());
}

/// Checks what every response must be: an answer to `request` whose first
/// attribute is a valid Message-Authenticator and whose Response
/// Authenticator is right. Returns the decoded response.
pub fn assert_signed<'a>(response: &'a [u8], request: &Request, secret: &str) -> Packet<'a> {
    let packet = Packet::decode(response).expect("the response decodes");
    assert_eq!(packet.identifier(), request.id, "the response answers the request's id");
    let first = packet.attributes().next().expect("the response has attributes");
    assert_eq!(
        first.attr_type,
        attr::MESSAGE_AUTHENTICATOR,
        "Message-Authenticator first"
    );
    assert_eq!(
        wire::verify_message_authenticator(&packet, Some(&request.authenticator), secret.as_bytes()),
        MaCheck::Valid,
        "the response's Message-Authenticator"
    );
    assert!(
        wire::verify_response_authenticator(response, &request.authenticator, secret.as_bytes()),
        "the Response Authenticator"
    );
    packet
}

/// A UDP socket bound to `local_ip` (any address of 127/8 works on Linux),
/// connected to the server. Its receive timeout is the tests' deadline: no
/// test here waits for a timeout (drops are seen in the log), so only a
/// missing answer ever runs into it.
pub fn udp_from(local_ip: &str, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((local_ip, 0)).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.connect(server).unwrap();
    socket
}

/// Starts a server on `setup` that sums up drops every second, so that tests
/// can see them in the log.
pub fn start_with_drop_log(setup: &Setup) -> Server {
    let dir = setup.write();
    let text = setup
        .config_text()
        .replacen("[server]\n", "[server]\ndrop_log_interval = 1\n", 1);
    std::fs::write(dir.path().join("mailotp.toml"), text).unwrap();
    Server::start_in(dir, &setup.args, setup.listen.len())
}

/// The drops the server has logged for `reason` so far (the highest `total`
/// of its "datagrams dropped" lines).
pub fn dropped(server: &Server, reason: &str) -> u64 {
    let wanted = [format!("reason={reason} "), format!("reason=\"{reason}\" ")];
    server
        .log()
        .lines()
        .filter(|l| l.contains("datagrams dropped") && wanted.iter().any(|w| l.contains(w.as_str())))
        .filter_map(|l| l.split("total=").nth(1)?.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Waits until the log shows at least `total` drops for `reason`.
pub fn wait_dropped(server: &Server, reason: &str, total: u64) {
    poll(&format!("{total} drop(s) logged as {reason}"), DEADLINE, || {
        (dropped(server, reason) >= total).then_some(())
    });
}

/// Sends a datagram and returns the answer, if one comes within the timeout.
pub fn send_recv(socket: &UdpSocket, datagram: &[u8]) -> Option<Vec<u8>> {
    socket.send(datagram).unwrap();
    recv(socket)
}

/// The next datagram on the socket, if one comes within the timeout.
pub fn recv(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// Waits until the server has logged `n` "request answered" lines and checks
/// that there are exactly `n` (its log is read by a thread, so a line can
/// trail the answer it describes).
pub fn assert_answered(server: &Server, n: usize) {
    poll(&format!("{n} answers logged"), DEADLINE, || {
        (server.process.count_lines("request answered") >= n).then_some(())
    });
    assert_eq!(
        server.process.count_lines("request answered"),
        n,
        "answered exactly {n}:\n{}",
        server.log()
    );
}
