//! RadSec test kit: a test CA made with `openssl ca` at test time (so it can
//! also issue an expired certificate, PEERS.md), a mailotp with `[radsec]`
//! on a free port, and a small blocking TLS client (rustls) that sends
//! hand-built packets and reads answers framed by their Length.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;

use crate::certs::openssl;
use crate::harness::*;

/// RFC 6614 §2.3's fixed secret, mailotp's default for a RadSec client.
pub const RADSEC_SECRET: &str = "radsec";
/// The name the test clients' certificates carry and mailotp expects.
pub const CLIENT_NAME: &str = "nas.radsec.test";

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Leaf<'a> {
    /// Subject CN.
    pub cn: &'a str,
    /// A DNS SAN, if any.
    pub dns: Option<&'a str>,
    /// extendedKeyUsage value, if any.
    pub eku: Option<&'a str>,
    /// Valid only in 2020.
    pub expired: bool,
}

impl<'a> Leaf<'a> {
    /// A RadSec client certificate for `dns` (CN the same).
    pub fn client(dns: &'a str) -> Leaf<'a> {
        Leaf {
            cn: dns,
            dns: Some(dns),
            eku: Some("clientAuth"),
            expired: false,
        }
    }
}

/// A private CA in a temporary directory.
pub struct TestCa {
    pub dir: TempDir,
    pub ca: PathBuf,
}

const CA_CNF: &str = "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
serial = serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n";

impl TestCa {
    /// A new CA named `name` (P-256 keys: quick to make).
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.cnf"), CA_CNF).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        let subj = format!("/CN={name}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &subj,
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
        let ca = d.join("ca.pem");
        TestCa { dir, ca }
    }

    /// Issues a leaf named `stem` in the CA's directory.
    pub fn issue(&self, stem: &str, leaf: Leaf<'_>) -> Issued {
        let d = self.dir.path();
        let (key, csr, cert, ext) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
            format!("{stem}.ext"),
        );
        let subj = format!("/CN={}", leaf.cn);
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &subj,
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let mut extensions = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n".to_owned();
        if let Some(dns) = leaf.dns {
            extensions.push_str(&format!("subjectAltName=DNS:{dns},IP:127.0.0.1\n"));
        }
        if let Some(eku) = leaf.eku {
            extensions.push_str(&format!("extendedKeyUsage={eku}\n"));
        }
        std::fs::write(d.join(&ext), extensions).unwrap();
        let mut args = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", &csr,
            "-out", &cert, "-extfile", &ext,
        ];
        if leaf.expired {
            args.extend(["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]);
        } else {
            args.extend(["-days", "2"]);
        }
        openssl(d, &args);
        Issued {
            cert: d.join(cert),
            key: d.join(key),
        }
    }
}

/// A CA with mailotp's server certificate (localhost, 127.0.0.1) and a good
/// client certificate for [`CLIENT_NAME`].
pub struct Pki {
    pub ca: TestCa,
    pub server: Issued,
    pub client: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = TestCa::new("mailotp radsec test CA");
        let server = ca.issue(
            "server",
            Leaf {
                cn: "localhost",
                dns: Some("localhost"),
                eku: Some("serverAuth"),
                expired: false,
            },
        );
        let client = ca.issue("client", Leaf::client(CLIENT_NAME));
        Pki { ca, server, client }
    }

    /// The `[radsec]` section on a free port, with metrics on another.
    pub fn section(&self) -> String {
        format!(
            "[radsec]\nlisten = [\"127.0.0.1:0\"]\ncertificate_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            self.server.cert, self.server.key, self.ca.ca
        )
    }
}

/// A `radsec = true` client block.
pub fn radsec_client(name: &str, address: &str, tls_name: &str) -> String {
    format!("name = \"{name}\"\naddress = \"{address}\"\nradsec = true\ntls_name = \"{tls_name}\"\n")
}

/// A setup whose only client is the RadSec client `nas` (127.0.0.1, [`CLIENT_NAME`]).
pub fn radsec_setup(pki: &Pki, smtp_port: u16) -> Setup {
    let mut setup = Setup::new(smtp_port);
    setup.clients = vec![radsec_client("nas", "127.0.0.1", CLIENT_NAME)];
    setup.extra = pki.section();
    setup
}

/// The RadSec address a server logged.
pub fn radsec_addr(server: &Server) -> SocketAddr {
    let line = server.wait_for_log("radsec listening on ");
    let rest = line.split("radsec listening on ").nth(1).unwrap();
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A blocking RadSec connection from the test.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects with `identity`, trusting `ca`; `Err` when the handshake fails.
    pub fn connect(addr: SocketAddr, ca: &Path, identity: &Issued) -> std::io::Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&identity.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(DEADLINE))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient { stream })
    }

    /// Sends bytes as they are (a packet, or garbage).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// The next answer, framed by its Length; `None` when the connection ended.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).ok()?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut packet = header.to_vec();
        packet.resize(len.max(4), 0);
        self.stream.read_exact(&mut packet[4..]).ok()?;
        Some(packet)
    }
}

/// Whether the server refuses `identity` before any RADIUS: either the
/// handshake fails, or (TLS 1.3) the first read after it ends the stream
/// without an answer to a Status-Server.
pub fn refused(addr: SocketAddr, ca: &Path, identity: &Issued) -> bool {
    let Ok(mut client) = TlsClient::connect(addr, ca, identity) else {
        return true;
    };
    let status = crate::packets::Request::new(crate::packets::STATUS_SERVER, 1).ma();
    let _ = client.send(&status.signed(RADSEC_SECRET));
    client.recv().is_none()
}

/// A shipped file of `conf/radsec/`.
pub fn shipped_radsec(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/radsec").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A RadSec proxy in front of mailotp (FreeRADIUS or radsecproxy): radclient
/// talks UDP to `addr` with [`crate::freeradius::NAS_SECRET`].
pub struct Proxy {
    pub process: Process,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Proxy {
    /// FreeRADIUS 3.2 with the shipped `freeradius-proxy.conf`, proxying to
    /// the mailotp RadSec listener at `home` with `identity`.
    pub fn freeradius(home: SocketAddr, ca: &Path, identity: &Issued) -> Proxy {
        use crate::freeradius::{free_udp_port, radiusd_conf, shipped, NAS_SECRET};
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let proxy = shipped_radsec("freeradius-proxy.conf")
            .replace("ipaddr = 192.0.2.10", &format!("ipaddr = {}", home.ip()))
            .replace("port = 2083", &format!("port = {}", home.port()))
            .replace(
                "/etc/freeradius/3.0/certs/radsec-client.pem",
                &identity.cert.display().to_string(),
            )
            .replace(
                "/etc/freeradius/3.0/certs/radsec-client.key",
                &identity.key.display().to_string(),
            )
            .replace("/etc/freeradius/3.0/certs/mailotp-ca.pem", &ca.display().to_string());
        let clients = shipped("clients.conf")
            .replace("10.1.2.0/24", "127.0.0.1")
            .replace("the-nas-secret", NAS_SECRET);
        let d = dir.path();
        std::fs::write(d.join("proxy.conf"), proxy).unwrap();
        std::fs::write(d.join("clients.conf"), clients).unwrap();
        std::fs::write(d.join("authorize.conf"), shipped("authorize.conf")).unwrap();
        std::fs::write(d.join("radiusd.conf"), radiusd_conf(d, port)).unwrap();
        let status = Command::new("chmod").arg("-R").arg("go-w").arg(d).status().unwrap();
        assert!(status.success());
        // -X is single-threaded, which FreeRADIUS refuses for TLS (PEERS.md).
        let mut cmd = Command::new("freeradius");
        cmd.args(["-f", "-xx", "-l", "stdout", "-d"]).arg(d);
        Proxy::ready(Process::spawn("freeradius", cmd), port, dir)
    }

    /// radsecproxy with the shipped `radsecproxy.conf`.
    pub fn radsecproxy(home: SocketAddr, ca: &Path, identity: &Issued) -> Proxy {
        use crate::freeradius::{free_udp_port, NAS_SECRET};
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let conf = shipped_radsec("radsecproxy.conf")
            .replace("ListenUDP *:1812", &format!("ListenUDP 127.0.0.1:{port}"))
            .replace("host 10.1.2.0/24", "host 127.0.0.1")
            .replace("the-nas-secret", NAS_SECRET)
            .replace("host 192.0.2.10", &format!("host {}", home.ip()))
            .replace("port 2083", &format!("port {}", home.port()))
            .replace(
                "/etc/radsecproxy/radsec-client.pem",
                &identity.cert.display().to_string(),
            )
            .replace(
                "/etc/radsecproxy/radsec-client.key",
                &identity.key.display().to_string(),
            )
            .replace("/etc/radsecproxy/mailotp-ca.pem", &ca.display().to_string());
        let path = dir.path().join("radsecproxy.conf");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new("/usr/sbin/radsecproxy");
        cmd.args(["-f", "-d", "3", "-i"])
            .arg(dir.path().join("radsecproxy.pid"))
            .arg("-c")
            .arg(&path);
        Proxy::ready(Process::spawn("radsecproxy", cmd), port, dir)
    }

    /// Waits until the proxy answers Status-Server on its UDP port.
    fn ready(process: Process, port: u16, dir: TempDir) -> Proxy {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let secret = crate::freeradius::NAS_SECRET;
        poll("the proxy to answer Status-Server", DEADLINE, || {
            radclient_code(addr, secret, "status", "Message-Authenticator = 0x00")
        });
        Proxy {
            process,
            addr,
            _dir: dir,
        }
    }

    /// radclient through the proxy.
    pub fn radclient(&self, attributes: &str) -> Reply {
        radclient(self.addr, crate::freeradius::NAS_SECRET, attributes).expect("an answer through the proxy")
    }
}
