//! Unit tests of a RadSec session over an in-memory stream, with a handler
//! that holds Access-Requests until the test lets them go: answers in any
//! order, duplicates per connection, framing errors, and who a client is.

use std::sync::Arc;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Semaphore;

use super::session::{self, End, Peer};
use crate::auth::{Decision, Incoming, Kind, Reason, RequestHandler, Unavailable};
use crate::config::{Client, Secret, RADSEC_SECRET};
use crate::lifecycle::Lifecycle;
use crate::metrics::DropReason;
use crate::server::{Clients, Context};
use crate::wire::{self, attr, Packet};

/// Status-Server at once; Access-Requests once the test adds a permit.
struct Gate(Arc<Semaphore>);

impl RequestHandler for Gate {
    fn answers_at_once(&self, kind: Kind) -> bool {
        kind == Kind::StatusServer
    }

    async fn handle(&self, request: &Incoming<'_>) -> Result<Decision, Unavailable> {
        if let Incoming::Access(_) = request {
            self.0.acquire().await.expect("gate open").forget();
            return Ok(Decision::reject(Reason::WrongPin));
        }
        Ok(Decision::accept(Reason::StatusServer))
    }
}

fn client(name: &str, network: &str, tls_name: Option<&str>) -> Client {
    Client {
        name: name.to_owned(),
        network: network.parse::<IpNet>().unwrap(),
        secret: Secret::new(RADSEC_SECRET.to_vec()),
        require_message_authenticator: false,
        challenge_mode: Default::default(),
        trusted_email: None,
        tls_name: tls_name.map(str::to_owned),
    }
}

/// A request of `code`, with a valid Message-Authenticator.
fn request(code: u8, id: u8, authenticator: u8) -> Vec<u8> {
    let mut out = vec![code, id, 0, 38];
    out.extend_from_slice(&[authenticator; 16]);
    out.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
    out.extend_from_slice(&[0; 16]);
    let ma = wire::message_authenticator(&out, 20, RADSEC_SECRET);
    out[22..38].copy_from_slice(&ma);
    out
}

async fn answer(stream: &mut DuplexStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.ok()?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut packet = header.to_vec();
    packet.resize(len, 0);
    stream.read_exact(&mut packet[4..]).await.ok()?;
    Some(packet)
}

/// A session on one end of an in-memory stream; the other end, the gate,
/// the context and the session's task.
fn start() -> (
    DuplexStream,
    Arc<Semaphore>,
    Arc<Context<Gate>>,
    tokio::task::JoinHandle<End>,
) {
    let gate = Arc::new(Semaphore::new(0));
    let clients = Clients::new(vec![client("nas", "127.0.0.1/32", Some("nas.test"))]);
    let ctx = Arc::new(Context::new(clients, Gate(Arc::clone(&gate)), 16));
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer {
        client: Arc::new(client("nas", "127.0.0.1/32", Some("nas.test"))),
        address: "127.0.0.1:40000".parse().unwrap(),
    };
    let life = Lifecycle::new(std::time::Duration::from_secs(1));
    let task_ctx = Arc::clone(&ctx);
    let idle = std::time::Duration::from_secs(600);
    let task = tokio::spawn(async move { session::run(theirs, peer, idle, &task_ctx, &life).await });
    (ours, gate, ctx, task)
}

#[tokio::test]
async fn a_waiting_request_does_not_hold_up_the_answers_behind_it() {
    let (mut stream, gate, _ctx, task) = start();
    stream.write_all(&request(1, 1, 1)).await.unwrap();
    stream.write_all(&request(12, 2, 2)).await.unwrap();
    let first = answer(&mut stream).await.unwrap();
    assert_eq!((first[0], first[1]), (2, 2), "Status-Server answered first");
    gate.add_permits(1);
    let second = answer(&mut stream).await.unwrap();
    assert_eq!((second[0], second[1]), (3, 1), "then the Access-Request");
    drop(stream);
    assert_eq!(task.await.unwrap(), End::Closed);
}

#[tokio::test]
async fn a_retransmission_on_the_connection_gets_the_same_answer_once() {
    let (mut stream, gate, ctx, task) = start();
    let pin = request(1, 9, 7);
    stream.write_all(&pin).await.unwrap();
    stream.write_all(&pin).await.unwrap();
    gate.add_permits(1);
    let first = answer(&mut stream).await.unwrap();
    stream.write_all(&pin).await.unwrap();
    let again = answer(&mut stream).await.unwrap();
    assert_eq!(first, again, "the cached bytes");
    assert_eq!(ctx.metrics.drops(DropReason::DuplicateInProgress), 1);
    drop(stream);
    assert_eq!(task.await.unwrap(), End::Closed);
}

#[tokio::test]
async fn a_length_outside_20_to_4096_ends_the_session_at_once() {
    for length in [5u16, 19, 4097, 65535] {
        let (mut stream, _gate, ctx, task) = start();
        // An Access-Request still waiting at the gate gets no answer either.
        stream.write_all(&request(1, 1, 1)).await.unwrap();
        let mut bad = request(12, 2, 2);
        bad[2..4].copy_from_slice(&length.to_be_bytes());
        stream.write_all(&bad).await.unwrap();
        assert_eq!(task.await.unwrap(), End::Framing, "length {length}");
        assert_eq!(answer(&mut stream).await, None, "closed without answers");
        assert_eq!(ctx.metrics.drops(DropReason::Malformed), 1);
    }
}

#[tokio::test]
async fn a_well_framed_packet_failing_its_checks_is_dropped_and_the_session_goes_on() {
    let (mut stream, _gate, ctx, task) = start();
    let mut forged = request(12, 3, 3);
    forged[30] ^= 1;
    stream.write_all(&forged).await.unwrap();
    stream.write_all(&request(12, 4, 4)).await.unwrap();
    let answer = answer(&mut stream).await.unwrap();
    assert_eq!(Packet::decode(&answer).unwrap().identifier(), 4);
    assert_eq!(ctx.metrics.drops(DropReason::BadMessageAuthenticator), 1);
    drop(stream);
    assert_eq!(task.await.unwrap(), End::Closed);
}

#[test]
fn radsec_and_udp_clients_never_stand_in_for_each_other() {
    let clients = Clients::new(vec![
        client("udp", "127.0.0.1/32", None),
        client("proxy", "127.0.0.0/8", Some("proxy.test")),
        client("other", "192.0.2.0/24", Some("other.test")),
    ]);
    let local = "127.0.0.1".parse().unwrap();
    assert_eq!(clients.find(local).unwrap().name, "udp");
    assert_eq!(
        clients.find("127.0.0.2".parse().unwrap()).map(|c| c.name.as_str()),
        None
    );
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let found = clients.find_radsec(local, &names(&["x.test", "Proxy.TEST"]));
    assert_eq!(found.unwrap().name, "proxy");
    assert!(
        clients.find_radsec(local, &names(&["other.test"])).is_none(),
        "wrong address"
    );
    assert!(clients.find_radsec(local, &names(&["udp"])).is_none());
    let mapped = "::ffff:127.0.0.9".parse().unwrap();
    assert_eq!(
        clients.find_radsec(mapped, &names(&["proxy.test"])).unwrap().name,
        "proxy"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_last_request_and_status_server_is_one() {
    let (mut stream, _gate, _ctx, task) = start();
    let begin = tokio::time::Instant::now();
    for id in 1..=3 {
        stream.write_all(&request(12, id, id)).await.unwrap();
        assert_eq!(answer(&mut stream).await.unwrap()[1], id);
        // 400 s apart, 1200 s in all: each watchdog keeps the connection.
        tokio::time::advance(std::time::Duration::from_secs(400)).await;
    }
    assert_eq!(task.await.unwrap(), End::Idle);
    let last_request = std::time::Duration::from_secs(800);
    assert_eq!(begin.elapsed(), last_request + std::time::Duration::from_secs(600));
}
