//! The configuration file as written: serde structs with `deny_unknown_fields`
//! and named defaults. `validate` in the parent module turns them into the
//! typed [`super::Config`]; nothing outside `config` sees these.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret as written in the file (`secret`, `bind_password`,
/// `smtp_password`); its Debug never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    pub users: RawUsers,
    pub email: RawEmail,
    #[serde(default)]
    pub log: RawLog,
    pub state: Option<super::state::RawState>,
    pub link: Option<RawLink>,
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    #[serde(default)]
    pub messages: std::collections::BTreeMap<String, String>,
    pub control: Option<super::control::RawControl>,
    pub radsec: Option<super::radsec::RawRadsec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub name: String,
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub clients: Option<Vec<String>>,
    pub calling_station: Option<Vec<String>>,
    #[serde(default)]
    pub second_factor: RawSecondFactor,
    pub challenge_validity: Option<u64>,
    pub otp_length: Option<u32>,
    pub max_attempts: Option<u8>,
    pub delivery: Option<String>,
    #[serde(default)]
    pub reply: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSecondFactor {
    #[default]
    Email,
    None,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: String,
    #[serde(default = "default_metrics_connections")]
    pub max_connections: usize,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
}

fn default_metrics_connections() -> usize {
    64
}

fn default_request_timeout() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub listen: String,
    pub base_url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    pub deny_page_file: Option<PathBuf>,
}

fn default_max_connections() -> usize {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Vec<String>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    pub hash_workers: Option<usize>,
    pub receive_buffer: Option<usize>,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
    #[serde(default = "default_drop_log_interval")]
    pub drop_log_interval: u64,
    #[serde(default = "default_pin_queue_per_client")]
    pub pin_queue_per_client: usize,
}

fn default_pin_queue_per_client() -> usize {
    super::DEFAULT_PIN_QUEUE_PER_CLIENT
}

fn default_max_in_flight() -> usize {
    1024
}

fn default_shutdown_grace() -> u64 {
    5
}

fn default_drop_log_interval() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub name: String,
    pub address: String,
    pub secret: Option<RawSecret>,
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_true")]
    pub require_message_authenticator: bool,
    #[serde(default)]
    pub challenge_mode: super::ChallengeMode,
    pub trusted_email_attribute: Option<String>,
    #[serde(default)]
    pub radsec: bool,
    pub tls_name: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsers {
    #[serde(default = "default_backend")]
    pub backend: String,
    pub file: Option<PathBuf>,
    #[serde(default = "default_lockout_after")]
    pub lockout_after: u32,
    #[serde(default = "default_lockout_time")]
    pub lockout_time: u64,
    #[serde(default = "default_true")]
    pub deny_locks: bool,
    // backend = "ldap" only: checked in `config::ldap`, refused with "file".
    pub ldap_url: Option<String>,
    pub ldap_starttls: Option<bool>,
    pub ldap_ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<RawSecret>,
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub email_attribute: Option<String>,
    pub login_attribute: Option<String>,
    pub active_filter: Option<String>,
    pub timeout: Option<u64>,
    pub language_attribute: Option<String>,
    // The user's groups for [[policies]] (config::ldap::groups).
    pub group_attribute: Option<String>,
    pub group_filter: Option<String>,
    pub group_base_dn: Option<String>,
}

fn default_backend() -> String {
    "file".to_owned()
}

fn default_lockout_after() -> u32 {
    10
}

fn default_lockout_time() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    #[serde(default = "default_validity")]
    pub challenge_validity: u64,
    #[serde(default = "default_blocking")]
    pub blocking_timeout: u64,
    #[serde(default = "default_otp_length")]
    pub otp_length: u32,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u8,
    #[serde(default = "default_delivery")]
    pub delivery: String,
    pub body_file: Option<PathBuf>,
    pub html_body_file: Option<PathBuf>,
    pub templates_dir: Option<PathBuf>,
    pub default_language: Option<String>,
    pub timezone: Option<String>,
    pub fixed_otp_for_testing: Option<String>,
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    pub provider: RawProvider,
    pub throttling: Option<RawThrottling>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottling {
    pub max_emails_per_hour: Option<u32>,
    pub max_emails_in_five_minutes: Option<u32>,
    pub max_emails_per_client_ip_per_hour: Option<u32>,
}

fn default_validity() -> u64 {
    600
}

fn default_blocking() -> u64 {
    120
}

fn default_otp_length() -> u32 {
    6
}

fn default_max_attempts() -> u8 {
    3
}

fn default_delivery() -> String {
    "otp".to_owned()
}

fn default_queue_limit() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub kind: ProviderKind,
    pub smtp_server: Option<String>,
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_tls: super::SmtpTls,
    pub smtp_ca_file: Option<PathBuf>,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<RawSecret>,
    pub smtp_password_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub smtp_timeout: u64,
    pub outbox: Option<PathBuf>,
    #[serde(default = "default_from")]
    pub email_from: String,
    #[serde(default = "default_subject")]
    pub email_subject: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ProviderKind {
    Smtp,
    File,
}

fn default_timeout() -> u64 {
    30
}

fn default_from() -> String {
    "linotp@example.com".to_owned()
}

fn default_subject() -> String {
    "Your OTP".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    pub format: super::LogFormat,
}
