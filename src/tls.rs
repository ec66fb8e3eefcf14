//! tls: the TLS side of RadSec — the server's rustls settings built from
//! `[radsec]`'s files (TLS 1.2 and 1.3, ring, a client certificate required
//! that chains to `ca_file` and carries the clientAuth extended key usage),
//! and the names a client certificate answers to.
//!
//! Used by `config` (so that `check` refuses what `serve` could not use) and
//! by `radsec` (at start and again on SIGHUP). It reads the files it is
//! given but knows nothing of the configuration, RADIUS, clients or sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

/// Why `[radsec]`'s certificate, key or CA cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TlsError {
    /// A file is missing, unreadable, or holds no usable PEM.
    #[error("{}: {reason}", file.display())]
    File {
        /// The configuration key that names the file.
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the one of the certificate.
    #[error("the key in {} does not belong to the certificate in {}", key_file.display(), certificate_file.display())]
    KeyMismatch {
        /// `key_file`.
        key_file: PathBuf,
        /// `certificate_file`.
        certificate_file: PathBuf,
    },
    /// rustls refused the combination (e.g. a key type it cannot sign with).
    #[error("cannot use the certificate and key: {0}")]
    Unusable(rustls::Error),
}

impl TlsError {
    /// The `[radsec]` key the error is about.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            TlsError::File { key, .. } => key,
            TlsError::KeyMismatch { .. } => "radsec.key_file",
            TlsError::Unusable(_) => "radsec.certificate_file",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM files of `[radsec]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    /// `certificate_file`: the server's chain, leaf first.
    pub certificate_file: &'a Path,
    /// `key_file`.
    pub key_file: &'a Path,
    /// `ca_file`: what client certificates must chain to.
    pub ca_file: &'a Path,
}

/// The server's TLS settings from `config`'s files.
pub(crate) fn server_config(config: TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("radsec.certificate_file", config.certificate_file)?;
    let key = PrivateKeyDer::from_pem_file(config.key_file).map_err(|e| TlsError::File {
        key: "radsec.key_file",
        file: config.key_file.to_path_buf(),
        reason: format!("no private key: {e}"),
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certificates("radsec.ca_file", config.ca_file)? {
        roots.add(ca).map_err(|e| TlsError::File {
            key: "radsec.ca_file",
            file: config.ca_file.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::File {
            key: "radsec.ca_file",
            file: config.ca_file.to_path_buf(),
            reason: e.to_string(),
        })?;
    let verifier = Arc::new(ClientAuthRequired { inner });
    let tls = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Unusable)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key_file: config.key_file.to_path_buf(),
                certificate_file: config.certificate_file.to_path_buf(),
            },
            e => TlsError::Unusable(e),
        })?;
    Ok(Arc::new(tls))
}

/// Every certificate in a PEM file; none is an error.
fn certificates(key: &'static str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        key,
        file: file.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| error(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The names `tls_name` is matched against: the certificate's DNS SANs, or
/// its subject CNs when it has no DNS SAN (RFC 6125 §6.4.4).
pub(crate) fn peer_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let dns: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !dns.is_empty() {
        return dns;
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect()
}

/// Whether a certificate says it may be used by a TLS client: webpki only
/// refuses a certificate whose extended key usage lacks clientAuth, and
/// takes one without the extension at all; RadSec wants it said.
fn allows_client_auth(cert: &CertificateDer<'_>) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return false;
    };
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

/// webpki's client verifier plus the clientAuth extended key usage, so a
/// certificate without it fails the handshake with an alert.
#[derive(Debug)]
struct ClientAuthRequired {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClientAuthRequired {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if !allows_client_auth(end_entity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
