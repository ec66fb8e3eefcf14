//! radsec: the RadSec row — the same workloads over a few long-lived TLS
//! connections (RFC 6614) instead of UDP sockets. A test CA and the
//! certificates are made with openssl for each server; each load thread owns
//! one connection and keeps its share of the requests in flight, reading
//! answers framed by their Length in whatever order they come.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::load::{pin_to, Drive, Outcome, Workload};
use crate::packet::{check_answer, Outgoing};
use crate::procs::SECRET;

/// Long-lived connections, one per load thread.
pub const CONNECTIONS: usize = 4;
/// The name the bench client's certificate carries.
const CLIENT_NAME: &str = "bench.radsec.test";

/// A test CA, mailotp's certificate and the bench client's, in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Makes the CA and both leaves (P-256).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ec = [
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &ec,
            &[
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=bench CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        for (stem, name, eku) in [
            ("server", "localhost", "serverAuth"),
            ("client", CLIENT_NAME, "clientAuth"),
        ] {
            let (key, csr, pem, ext) = (
                format!("{stem}.key"),
                format!("{stem}.csr"),
                format!("{stem}.pem"),
                format!("{stem}.ext"),
            );
            let subj = format!("/CN={name}");
            openssl(d, &ec, &["-subj", &subj, "-keyout", &key, "-out", &csr]);
            let text =
                format!("basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:{name}\nextendedKeyUsage={eku}\n");
            std::fs::write(d.join(&ext), text).expect("write extensions");
            openssl(
                d,
                &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key"],
                &["-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &pem],
            );
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[radsec]` on `port` and the bench's RadSec client (the bench secret,
    /// so the workloads sign as on UDP), for mailotp's configuration.
    pub fn sections(&self, port: u16) -> String {
        format!(
            "[radsec]\nlisten = [\"127.0.0.1:{port}\"]\ncertificate_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\n\
             [[clients]]\nname = \"bench-tls\"\naddress = \"127.0.0.1\"\nradsec = true\n\
             tls_name = \"{CLIENT_NAME}\"\nsecret = \"{SECRET}\"\n",
            self.file("server.pem"),
            self.file("server.key"),
            self.file("ca.pem"),
        )
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.file("ca.pem")).expect("ca.pem") {
            roots.add(ca.expect("a CA certificate")).expect("a usable CA");
        }
        let chain = CertificateDer::pem_file_iter(self.file("client.pem"))
            .expect("client.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("the client certificate");
        let key = PrivateKeyDer::from_pem_file(self.file("client.key")).expect("client.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("the client identity");
        Arc::new(config)
    }
}

fn openssl(dir: &Path, args: &[&str], more: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .args(more)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `workload` over [`CONNECTIONS`] TLS connections to `target`.
pub fn run(pki: &Pki, target: SocketAddr, drive: &Drive, workload: &dyn Workload) -> Outcome {
    let config = pki.client_config();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let share = drive.in_flight / CONNECTIONS + usize::from(c < drive.in_flight % CONNECTIONS);
                let config = Arc::clone(&config);
                scope.spawn(move || {
                    pin_to(&drive.cpus);
                    one_connection(config, target, drive, share.clamp(1, 256), workload)
                })
            })
            .collect();
        let mut total = Outcome::default();
        for h in handles {
            total.merge(h.join().expect("load thread panicked"));
        }
        total
    })
}

/// One connection's closed loop: an answer frees its identifier and the
/// next request goes out at once.
fn one_connection(
    config: Arc<rustls::ClientConfig>,
    target: SocketAddr,
    drive: &Drive,
    in_flight: usize,
    workload: &dyn Workload,
) -> Outcome {
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let conn = rustls::ClientConnection::new(config, name).expect("a TLS client");
    let tcp = TcpStream::connect(target).expect("connect to the RadSec listener");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).expect("the TLS handshake");
    }
    // Only now: a read that times out inside the handshake would fail it.
    let timeout = Some(Duration::from_millis(5));
    stream.sock.set_read_timeout(timeout).expect("a read timeout");
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut sent: Vec<Option<(Outgoing, [u8; 16], Instant)>> =
        (0..in_flight).map(|id| send(&mut stream, workload, id)).collect();
    let (mut inbox, mut chunk) = (Vec::with_capacity(64 * 1024), [0u8; 16 * 1024]);
    while start.elapsed() < drive.duration && sent.iter().any(Option::is_some) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => inbox.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("RadSec connection failed: {e}"),
        }
        while inbox.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([inbox[2], inbox[3]]));
            if inbox.len() < len {
                break;
            }
            let answer: Vec<u8> = inbox.drain(..len).collect();
            let id = usize::from(answer[1]);
            let Some((outgoing, authenticator, at)) = sent.get_mut(id).and_then(Option::take) else {
                continue;
            };
            let checked = check_answer(&answer, &authenticator, &drive.secret, outgoing.expect)
                .and_then(|packet| workload.answered(&outgoing, &packet));
            match checked {
                Ok(()) => {
                    out.ok += 1;
                    out.latencies_us
                        .push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                Err(why) => {
                    out.wrong += 1;
                    out.first_wrong.get_or_insert(why);
                }
            }
            sent[id] = send(&mut stream, workload, id);
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Sends the workload's next request under `id`.
fn send(
    stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    workload: &dyn Workload,
    id: usize,
) -> Option<(Outgoing, [u8; 16], Instant)> {
    let mut authenticator = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut authenticator);
    let outgoing = workload.next(id as u8, &authenticator)?;
    let at = Instant::now();
    stream.write_all(&outgoing.bytes).expect("send over RadSec");
    stream.flush().expect("flush");
    Some((outgoing, authenticator, at))
}
