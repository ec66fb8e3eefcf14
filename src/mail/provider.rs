//! Providers: send one rendered message, by SMTP (lettre's pooled async
//! transport, so connections are reused) or as an `.eml` file. They say
//! whether a failure is worth retrying; they never retry or log themselves.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::MailError;
use crate::config::{read_text, ConfigError, Provider, SmtpConfig, SmtpTls};

/// Sends one message.
#[async_trait]
pub(crate) trait MailProvider: Send + Sync + 'static {
    /// Delivers `message` to the next hop; its reply line (what an admin
    /// looks for in the relay's log).
    async fn send(&self, message: Message) -> Result<String, MailError>;

    /// Tries the next hop without sending (`mailotp check --connect`).
    async fn check_connection(&self) -> Result<(), MailError>;
}

/// Builds the provider `[email.provider]` asks for.
pub(crate) fn build(config: &Provider) -> Result<Box<dyn MailProvider>, ConfigError> {
    Ok(match config {
        Provider::File { outbox } => Box::new(FileProvider { outbox: outbox.clone() }),
        Provider::Smtp(smtp) => Box::new(SmtpProvider::new(smtp)?),
    })
}

/// Writes each message as `<uuid>.eml` into a directory.
struct FileProvider {
    outbox: PathBuf,
}

#[async_trait]
impl MailProvider for FileProvider {
    async fn send(&self, message: Message) -> Result<String, MailError> {
        tokio::fs::create_dir_all(&self.outbox)
            .await
            .map_err(|e| MailError::Transient {
                reason: format!("cannot create {}: {e}", self.outbox.display()),
            })?;
        AsyncFileTransport::<Tokio1Executor>::new(&self.outbox)
            .send(message)
            .await
            .map(|id| format!("written to {}/{id}.eml", self.outbox.display()))
            .map_err(|e| MailError::Transient {
                reason: format!("cannot write to {}: {e}", self.outbox.display()),
            })
    }

    async fn check_connection(&self) -> Result<(), MailError> {
        tokio::fs::create_dir_all(&self.outbox)
            .await
            .map_err(|e| MailError::Transient {
                reason: format!("cannot create {}: {e}", self.outbox.display()),
            })
    }
}

/// An SMTP relay.
struct SmtpProvider {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpProvider {
    fn new(config: &SmtpConfig) -> Result<SmtpProvider, ConfigError> {
        let key = "email.provider.smtp_ca_file";
        let tls_parameters = || -> Result<TlsParameters, ConfigError> {
            let mut builder = TlsParameters::builder(config.server.clone());
            if let Some(ca) = &config.ca_file {
                let pem = read_text(ca)?;
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| ConfigError::invalid(ca.display(), key, format!("not a PEM certificate: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| ConfigError::invalid("[email.provider]", key, format!("TLS set-up failed: {e}")))
        };
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.server.as_str())
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            let password = String::from_utf8_lossy(password.expose()).into_owned();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpProvider {
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl MailProvider for SmtpProvider {
    async fn send(&self, message: Message) -> Result<String, MailError> {
        match self.transport.send(message).await {
            Ok(reply) => Ok(format!(
                "{} {}",
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(MailError::Permanent { reason: e.to_string() }),
            Err(e) => Err(MailError::Transient { reason: e.to_string() }),
        }
    }

    async fn check_connection(&self) -> Result<(), MailError> {
        // Connects, greets (STARTTLS and AUTH as configured) and says NOOP.
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(MailError::Transient {
                reason: "the server did not accept NOOP".to_owned(),
            }),
            Err(e) => Err(MailError::Transient { reason: e.to_string() }),
        }
    }
}
