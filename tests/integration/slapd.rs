//! A real OpenLDAP `slapd` for the LDAP tests: configured in a temp dir
//! (slapd.conf, mdb, entries loaded with slapadd before start), listening on
//! free ports, stopped and restarted by PID with its data kept.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::certs::TestPki;
use crate::harness::{free_tcp_port, poll, Process, DEADLINE};

/// The directory's suffix; users are searched from here, so both OUs count.
pub const BASE_DN: &str = "dc=example,dc=test";
/// The service account mailotp searches with.
pub const SERVICE_DN: &str = "cn=mailotp,ou=services,dc=example,dc=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "svc-ldap-secret-8841";
/// Inactive users carry `employeeType: disabled`.
pub const ACTIVE_FILTER: &str = "(!(employeeType=disabled))";
/// Directory users: (uid, password). alice is an ordinary user; dave is
/// disabled; erin has no mail; twin exists twice (in two OUs).
pub const LDAP_USERS: [(&str, &str); 4] = [
    ("alice", "ldap-alice-7731"),
    ("dave", "ldap-dave-4410"),
    ("erin", "ldap-erin-2290"),
    ("twin", "ldap-twin-6650"),
];

/// The directory password of a test user.
pub fn ldap_password(uid: &str) -> &'static str {
    LDAP_USERS.iter().find(|u| u.0 == uid).map(|u| u.1).unwrap()
}

/// A running slapd and its files.
pub struct Slapd {
    process: Option<Process>,
    dir: TempDir,
    /// Port of `ldap://` (plain, or STARTTLS when TLS is set up).
    pub port: u16,
    /// Port of `ldaps://`, when TLS is set up.
    pub ldaps_port: Option<u16>,
}

impl Slapd {
    /// A plain `ldap://` directory.
    pub fn start() -> Slapd {
        Slapd::start_with(None, "")
    }

    /// A plain `ldap://` directory with the entries of `ldif` added.
    pub fn start_seeded(ldif: &str) -> Slapd {
        Slapd::start_with(None, ldif)
    }

    /// A directory that takes `ldap://` with STARTTLS and `ldaps://`, with the
    /// certificate of `pki`, and refuses anything without TLS.
    pub fn start_tls(pki: &TestPki) -> Slapd {
        Slapd::start_with(Some(pki), "")
    }

    fn start_with(pki: Option<&TestPki>, extra: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path(), pki)).unwrap();
        std::fs::write(dir.path().join("data.ldif"), entries() + extra).unwrap();
        let out = Command::new("/usr/sbin/slapadd")
            .args(["-f", "slapd.conf", "-l", "data.ldif"])
            .current_dir(dir.path())
            .output()
            .expect("slapadd is installed (apt slapd)");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Slapd {
            process: None,
            dir,
            port: free_tcp_port(),
            ldaps_port: pki.map(|_| free_tcp_port()),
        };
        slapd.launch();
        slapd
    }

    /// How many binds as `dn` slapd has logged so far.
    pub fn binds_as(&self, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\" method=");
        self.process.as_ref().map_or(0, |p| p.count_lines(&needle))
    }

    /// Waits until slapd has logged a bind as `dn`: every operation before it
    /// is in its log by then.
    pub fn wait_for_bind_as(&self, dn: &str) {
        let needle = format!("BIND dn=\"{dn}\"");
        self.process.as_ref().expect("slapd is running").wait_for_line(&needle);
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://localhost:PORT` (the certificate names localhost and 127.0.0.1).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port.expect("a TLS directory"))
    }

    fn launch(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(port) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
        }
        let mut cmd = Command::new("/usr/sbin/slapd");
        // -d keeps it in the foreground (so its PID is ours), and 256 (stats)
        // logs each operation, for [`Slapd::binds_as`]; no -u/-g: it runs as
        // whoever runs the tests, on files that user owns.
        cmd.args(["-d", "256", "-h", &urls, "-f"])
            .arg(self.dir.path().join("slapd.conf"));
        self.process = Some(Process::spawn("slapd", cmd));
        let port = self.port;
        poll("slapd to accept connections", DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// Stops slapd (SIGTERM, by PID) and waits for it to exit.
    pub fn stop(&mut self) {
        let mut process = self.process.take().expect("slapd is running");
        process.signal("TERM");
        assert!(process.wait_exit(DEADLINE).is_some(), "slapd did not stop");
    }

    /// Freezes slapd (SIGSTOP): the kernel still accepts connections, but
    /// nothing answers, like a directory that hangs.
    pub fn pause(&self) {
        self.process.as_ref().expect("slapd is running").signal("STOP");
    }

    /// Lets a paused slapd run on (SIGCONT).
    pub fn resume(&self) {
        self.process.as_ref().expect("slapd is running").signal("CONT");
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "slapd is still running");
        self.launch();
    }
}

fn slapd_conf(dir: &Path, pki: Option<&TestPki>) -> String {
    let mut conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         pidfile {dir}/slapd.pid\n\
         # Like servers where a DN with an empty password binds (unauthenticated\n\
         # bind, RFC 4513 5.1.2): mailotp must refuse empty PINs itself.\n\
         allow bind_anon_dn\n",
        dir = dir.display()
    );
    if let Some(pki) = pki {
        conf.push_str(&format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\nsecurity tls=1\n",
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        ));
    }
    conf.push_str(&format!(
        "database mdb\n\
         maxsize 10485760\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"cn=admin,{BASE_DN}\"\n\
         directory {dir}/db\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none\n",
        dir = dir.display()
    ));
    conf
}

/// The entries: the tree, the service account and [`LDAP_USERS`].
fn entries() -> String {
    let mut ldif = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=staff,{BASE_DN}\nobjectClass: organizationalUnit\nou: staff\n\n\
         dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: mailotp\nuserPassword: {SERVICE_PASSWORD}\n\n"
    );
    let person = |uid: &str, ou: &str, extra: &str| {
        format!(
            "dn: uid={uid},ou={ou},{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {}\n{extra}\n",
            hashed(ldap_password(uid))
        )
    };
    ldif.push_str(&person(
        "alice",
        "people",
        "mail: alice@example.test\npreferredLanguage: de-CH\n",
    ));
    ldif.push_str(&person(
        "dave",
        "people",
        "mail: dave@example.test\nemployeeType: disabled\n",
    ));
    ldif.push_str(&person("erin", "people", ""));
    ldif.push_str(&person("twin", "people", "mail: twin1@example.test\n"));
    ldif.push_str(&person("twin", "staff", "mail: twin2@example.test\n"));
    ldif
}

/// `{SSHA}` as slappasswd makes it, as a real directory stores passwords.
fn hashed(password: &str) -> String {
    let out = Command::new("/usr/sbin/slappasswd")
        .args(["-s", password])
        .output()
        .expect("slappasswd is installed (apt slapd)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
