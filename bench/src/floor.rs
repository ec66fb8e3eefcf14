//! floor: the least any BlastRADIUS-safe server must do per request, as a
//! responder of its own (`mailotp-bench --serve-floor ADDR`, started by the
//! bench like the other servers): take datagrams in batches (`recvmmsg`),
//! check the request's Message-Authenticator (HMAC-MD5 with the client's
//! secret), sign an Access-Accept that carries Message-Authenticator first
//! and the Response Authenticator (MD5), and send the answers in batches
//! (`sendmmsg`). Every other row can be read as a multiple of this one.
//!
//! It must not do anything a real server could skip: no duplicate cache, no
//! log, no decision, and one client (no lookup of the secret by source). It is bench code and never part of mailotp; a request
//! without a valid Message-Authenticator is dropped, never answered.

use std::convert::Infallible;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

type HmacMd5 = Hmac<Md5>;

/// Datagrams taken or sent per system call at most (as mailotp's server).
const BATCH: usize = 32;
/// RFC 2865 §3: the largest packet a server must take.
const MAX_PACKET: usize = 4096;
const HEADER_LEN: usize = 20;
const MESSAGE_AUTHENTICATOR: u8 = 80;
const ACCESS_ACCEPT: u8 = 2;
/// Header plus one Message-Authenticator attribute.
const ANSWER_LEN: usize = HEADER_LEN + 18;

/// Serves on `addr` until the process is killed; returns only on a bind or
/// socket error.
pub fn serve(addr: SocketAddr, secret: &[u8]) -> io::Result<Infallible> {
    let socket = UdpSocket::bind(addr)?;
    serve_on(&socket, secret)
}

/// Answers every request with a valid Message-Authenticator on `socket`.
fn serve_on(socket: &UdpSocket, secret: &[u8]) -> io::Result<Infallible> {
    // The key's HMAC state once, cloned per packet: any server can do this.
    let key = HmacMd5::new_from_slice(secret).expect("HMAC takes a key of any length");
    let mut buffers = vec![[0u8; MAX_PACKET]; BATCH];
    let mut answers: Vec<([u8; ANSWER_LEN], SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        answers.clear();
        for (request, from) in receive(socket, &mut buffers)? {
            if let Some(answer) = answer(&key, secret, request) {
                answers.push((answer, from));
            }
        }
        send(socket, &answers);
    }
}

/// Blocks until a datagram is queued, then takes what is queued, up to
/// [`BATCH`] (`MSG_WAITFORONE`): a batch is never waited for.
fn receive<'b>(socket: &UdpSocket, buffers: &'b mut [[u8; MAX_PACKET]]) -> io::Result<Vec<(&'b [u8], SocketAddr)>> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(buffers.len(), None);
    let mut lengths = Vec::with_capacity(buffers.len());
    {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        for message in results {
            let from = message.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::V4((*v4).into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
            });
            lengths.push((message.bytes, from));
        }
    }
    Ok(buffers
        .iter()
        .zip(lengths)
        .filter_map(|(buffer, (len, from))| Some((&buffer[..len], from?)))
        .collect())
}

/// Sends the answers in batches; one that cannot be sent is dropped (UDP).
fn send(socket: &UdpSocket, answers: &[([u8; ANSWER_LEN], SocketAddr)]) {
    let mut sent = 0;
    while sent < answers.len() {
        let rest = &answers[sent..answers.len().min(sent + BATCH)];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(rest.len(), None);
        let slices: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|(bytes, _)| [IoSlice::new(bytes)]).collect();
        let addresses: Vec<Option<SockaddrStorage>> = rest.iter().map(|(_, to)| Some((*to).into())).collect();
        let none: [ControlMessage<'_>; 0] = [];
        match sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            addresses,
            none,
            MsgFlags::empty(),
        ) {
            Ok(results) => sent += results.count().max(1),
            Err(_) => sent += 1,
        }
    }
}

/// The signed Access-Accept for `request`, or `None` when it is malformed or
/// its Message-Authenticator is missing or wrong.
fn answer(key: &HmacMd5, secret: &[u8], request: &[u8]) -> Option<[u8; ANSWER_LEN]> {
    let len = usize::from(u16::from_be_bytes([*request.get(2)?, *request.get(3)?]));
    if len < HEADER_LEN || len > request.len() || len > MAX_PACKET {
        return None;
    }
    let request = &request[..len];
    let at = message_authenticator_offset(request)?;
    let mut mac = key.clone();
    mac.update(&request[..at + 2]);
    mac.update(&[0; 16]);
    mac.update(&request[at + 18..]);
    // verify_slice compares in constant time.
    mac.verify_slice(&request[at + 2..at + 18]).ok()?;

    let mut out = [0u8; ANSWER_LEN];
    out[0] = ACCESS_ACCEPT;
    out[1] = request[1];
    out[2..4].copy_from_slice(&(ANSWER_LEN as u16).to_be_bytes());
    out[4..HEADER_LEN].copy_from_slice(&request[4..HEADER_LEN]);
    out[HEADER_LEN] = MESSAGE_AUTHENTICATOR;
    out[HEADER_LEN + 1] = 18;
    // RFC 3579 §3.2: the answer's HMAC is over the request's authenticator.
    let mut mac = key.clone();
    mac.update(&out);
    out[HEADER_LEN + 2..].copy_from_slice(&mac.finalize().into_bytes());
    let mut md5 = Md5::new();
    md5.update(out);
    md5.update(secret);
    out[4..HEADER_LEN].copy_from_slice(&md5.finalize());
    Some(out)
}

/// Where the one well-formed Message-Authenticator starts; `None` when the
/// attributes do not fill the packet exactly, or it is missing or repeated.
fn message_authenticator_offset(request: &[u8]) -> Option<usize> {
    let mut found = None;
    let mut at = HEADER_LEN;
    while at < request.len() {
        let (kind, len) = (request[at], usize::from(*request.get(at + 1)?));
        if len < 2 || at + len > request.len() {
            return None;
        }
        if kind == MESSAGE_AUTHENTICATOR {
            if found.is_some() || len != 18 {
                return None;
            }
            found = Some(at);
        }
        at += len;
    }
    found
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailotp::wire::{attr, Code};

    use super::*;
    use crate::packet::{check_answer, request};

    fn key(secret: &[u8]) -> HmacMd5 {
        HmacMd5::new_from_slice(secret).unwrap()
    }

    #[test]
    fn a_signed_request_gets_an_accept_the_load_generator_checks() {
        let auth = [5u8; 16];
        for code in [Code::StatusServer, Code::AccessRequest] {
            let req = request(code, 42, &auth, b"s3cret", &[(attr::USER_NAME, b"u")], Some(b"pin"));
            let out = answer(&key(b"s3cret"), b"s3cret", &req).expect("answered");
            let packet = check_answer(&out, &auth, b"s3cret", Code::AccessAccept).expect("valid answer");
            assert_eq!(packet.bytes()[1], 42);
            assert_eq!(
                out[HEADER_LEN],
                attr::MESSAGE_AUTHENTICATOR,
                "Message-Authenticator first"
            );
        }
    }

    #[test]
    fn requests_without_a_valid_message_authenticator_are_dropped() {
        let auth = [9u8; 16];
        let good = request(Code::AccessRequest, 1, &auth, b"s3cret", &[], Some(b"pin"));
        assert!(answer(&key(b"other"), b"other", &good).is_none(), "wrong secret");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(answer(&key(b"s3cret"), b"s3cret", &flipped).is_none(), "altered");
        // No Message-Authenticator at all: the BlastRADIUS case.
        let mut bare = vec![1, 2, 0, 26];
        bare.extend_from_slice(&auth);
        bare.extend_from_slice(&[attr::USER_NAME, 6, b'u', b's', b'e', b'r']);
        assert!(answer(&key(b"s3cret"), b"s3cret", &bare).is_none(), "missing");
        for cut in [0, 3, 19, good.len() - 1] {
            assert!(
                answer(&key(b"s3cret"), b"s3cret", &good[..cut]).is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_loop_answers_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        // The loop never returns; the thread ends with the test process.
        std::thread::spawn(move || serve_on(&server, b"s3cret"));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let auth = [7u8; 16];
        for id in 0..3u8 {
            client
                .send_to(&request(Code::StatusServer, id, &auth, b"s3cret", &[], None), to)
                .unwrap();
        }
        let mut buf = [0u8; 4096];
        let mut ids = Vec::new();
        for _ in 0..3 {
            let len = client.recv(&mut buf).unwrap();
            let packet = check_answer(&buf[..len], &auth, b"s3cret", Code::AccessAccept).unwrap();
            ids.push(packet.bytes()[1]);
        }
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2]);
    }
}
