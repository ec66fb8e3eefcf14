//! batch: datagrams in and out in batches (`recvmmsg`, `sendmmsg`, through
//! nix's safe wrappers), so a busy socket pays one system call per batch
//! instead of one per datagram, and the NAS is woken once for several answers.
//! A quiet socket still answers each datagram at once: a batch is whatever is
//! queued when the loop looks, never something it waits for.
//!
//! Nothing here blocks: every call is non-blocking and readiness comes from
//! tokio. Nothing here looks inside a datagram.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken or sent per system call at most.
pub(super) const BATCH: usize = 32;

/// Receive buffers for one socket's loop.
pub(super) struct Inbox {
    buffers: Vec<Box<[u8]>>,
    /// (buffer index, length, source) of the last batch.
    received: Vec<(usize, usize, SocketAddr)>,
}

impl Inbox {
    /// [`BATCH`] buffers of `size` bytes; a longer datagram is cut to `size`.
    pub(super) fn new(size: usize) -> Inbox {
        Inbox {
            buffers: (0..BATCH).map(|_| vec![0; size].into_boxed_slice()).collect(),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until `socket` has datagrams, then takes up to [`BATCH`] of them.
    pub(super) async fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.take(socket.as_raw_fd())) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                taken => return taken,
            }
        }
    }

    fn take(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        // The headers hold raw pointers (not Send), so they live only for
        // this call, never across an await of the loop.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self.buffers.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let results = recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        self.received.clear();
        for (index, message) in results.enumerate() {
            if let Some(source) = message.address.as_ref().and_then(std_address) {
                self.received.push((index, message.bytes, source));
            }
        }
        Ok(())
    }

    /// The datagrams of the last batch with their sources.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.received
            .iter()
            .map(|&(index, len, source)| (&self.buffers[index][..len], source))
    }
}

fn std_address(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Answers gathered while a batch is worked on, sent together at its end.
#[derive(Default)]
pub(super) struct Outbox {
    answers: Vec<(Arc<[u8]>, SocketAddr)>,
}

impl Outbox {
    /// Queues an answer.
    pub(super) fn push(&mut self, bytes: Arc<[u8]>, to: SocketAddr) {
        self.answers.push((bytes, to));
    }

    /// Sends every queued answer; one that cannot be sent is logged and
    /// skipped (UDP: the NAS will retransmit).
    pub(super) async fn send_all(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.answers.len() {
            let rest = &self.answers[sent..];
            match socket.try_io(Interest::WRITABLE, || send_some(socket.as_raw_fd(), rest)) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // sendmmsg reports the error of the first datagram it could not send.
                    tracing::warn!(to = %rest[0].1, error = %e, "cannot send answer");
                    sent += 1;
                }
            }
        }
        self.answers.clear();
    }
}

/// Sends up to [`BATCH`] answers; how many went out.
fn send_some(fd: std::os::fd::RawFd, answers: &[(Arc<[u8]>, SocketAddr)]) -> io::Result<usize> {
    let answers = &answers[..answers.len().min(BATCH)];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(answers.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = answers.iter().map(|(bytes, _)| [IoSlice::new(bytes)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = answers.iter().map(|(_, to)| Some((*to).into())).collect();
    let none: [ControlMessage<'_>; 0] = [];
    let results = sendmmsg(fd, &mut headers, &slices, addresses, none, MsgFlags::MSG_DONTWAIT)?;
    Ok(results.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn queued_datagrams_are_taken_in_order_with_their_sources() {
        let (server, client) = pair().await;
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 3], to).await.unwrap();
        }
        let mut inbox = Inbox::new(4);
        let mut seen = Vec::new();
        while seen.len() < 5 {
            inbox.receive(&server).await.unwrap();
            seen.extend(inbox.datagrams().map(|(d, from)| (d.to_vec(), from)));
        }
        let expected: Vec<(Vec<u8>, SocketAddr)> =
            (0..5u8).map(|i| (vec![i; 3], client.local_addr().unwrap())).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_long_datagram_is_cut_to_the_buffer() {
        let (server, client) = pair().await;
        client.send_to(&[7; 10], server.local_addr().unwrap()).await.unwrap();
        let mut inbox = Inbox::new(4);
        inbox.receive(&server).await.unwrap();
        let got: Vec<&[u8]> = inbox.datagrams().map(|(d, _)| d).collect();
        assert_eq!(got, [&[7u8; 4][..]]);
    }

    #[tokio::test]
    async fn more_answers_than_a_batch_all_arrive_in_order() {
        let (server, client) = pair().await;
        let to = client.local_addr().unwrap();
        let mut outbox = Outbox::default();
        let count = BATCH * 2 + 3;
        for i in 0..count {
            outbox.push(Arc::from(&(i as u16).to_be_bytes()[..]), to);
        }
        outbox.send_all(&server).await;
        let mut buf = [0u8; 8];
        for i in 0..count {
            let (len, from) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(
                (&buf[..len], from),
                (&(i as u16).to_be_bytes()[..], server.local_addr().unwrap())
            );
        }
    }
}
