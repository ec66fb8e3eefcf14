//! `mailotp check [-c FILE] [--connect]`: loads and validates everything
//! `serve` would (configuration, users, templates, dictionary), prints a
//! summary, and with `--connect` tries each outside service once.

use std::process::ExitCode;

use super::CliError;
use crate::config::{Config, Delivery, Provider, StateConfig};
use crate::users::{HashThreads, UserDirectory};

/// Checks `config` (already loaded, so the configuration itself is valid).
pub(super) fn run(config: Config, connect: bool) -> Result<ExitCode, CliError> {
    let users = crate::users::open(&config.users, HashThreads::new(1))?;
    summary(&config, users.as_ref());
    for warning in config
        .cleartext_warnings()
        .into_iter()
        .chain(config.template_warnings())
    {
        println!("warning: {warning}");
    }
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let failed = runtime.block_on(probes(&config, users.as_ref()));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(config: &Config, users: &dyn UserDirectory) {
    println!("configuration {} is valid", config.source);
    let listen: Vec<String> = config.server.listen.iter().map(ToString::to_string).collect();
    println!("  listen: {}", listen.join(", "));
    for c in &config.clients {
        let ma = if c.require_message_authenticator {
            "required"
        } else {
            "optional"
        };
        println!(
            "  client {}: {} (Message-Authenticator {ma}, {:?})",
            c.name, c.network, c.challenge_mode
        );
    }
    match &config.users.source {
        crate::config::UsersSource::Ldap(_) => println!("  users: LDAP directory"),
        _ => println!("  users: {}", users.len()),
    }
    match &config.state {
        StateConfig::Memory => println!("  state: in this process"),
        StateConfig::Redis(_) => println!("  state: shared through Redis (key from secret_file)"),
    }
    let email = &config.email;
    let delivery = match &email.delivery {
        Delivery::Otp => format!("{}-digit codes", email.otp_length),
        Delivery::Link(link) => format!("links to {}/l/…", link.base_url),
    };
    println!(
        "  e-mail: {delivery} valid {} s, blocking {} s, from {}",
        email.challenge_validity.as_secs(),
        email.blocking_timeout.as_secs(),
        email.from
    );
}

/// Tries each outside service once, prints one line each; returns how many failed.
async fn probes(config: &Config, users: &dyn UserDirectory) -> usize {
    let mut failed = 0;
    let mut report = |what: String, result: Result<(), String>| match result {
        Ok(()) => println!("  {what}: ok"),
        Err(reason) => {
            failed += 1;
            println!("  {what}: FAILED: {reason}");
        }
    };
    let mail = match &config.email.provider {
        Provider::Smtp(smtp) => format!("SMTP server {}:{}", smtp.server, smtp.port),
        Provider::File { outbox } => format!("outbox {}", outbox.display()),
    };
    let result = match crate::mail::provider::build(&config.email.provider) {
        Ok(provider) => provider.check_connection().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    report(mail, result);
    if let crate::config::UsersSource::Ldap(ldap) = &config.users.source {
        let result = users.check_connection().await.map_err(|e| e.to_string());
        report(format!("LDAP service bind at {}", ldap.url), result);
    }
    if let StateConfig::Redis(redis) = &config.state {
        // Not the URL: it may carry the Redis password.
        let result = crate::redis::check_connection(redis).await.map_err(|e| e.to_string());
        report("Redis (shared state)".to_owned(), result);
    }
    failed
}
