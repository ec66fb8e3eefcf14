//! `mailotp check -c FILE --explain USER [--client NAME] [--calling-station IP]`:
//! which policy applies to a user asking from there, and what the server
//! would do, without a PIN. It asks the directory what `serve` would (the
//! user's canonical name and groups) and changes nothing.

use std::process::ExitCode;

use super::CliError;
use crate::config::{Config, Delivery};
use crate::policy::{PolicyDelivery, SecondFactor, Subject};
use crate::users::HashThreads;

/// What `--explain` was asked.
pub(super) struct Asked {
    /// The user name as a NAS would send it.
    pub user: String,
    /// The `[[clients]]` name; the first client when not given.
    pub client: Option<String>,
    /// The Calling-Station-Id, if any.
    pub calling_station: Option<String>,
}

/// Prints the policy and the outcome of a right PIN; exits 0.
pub(super) fn run(config: &Config, asked: &Asked) -> Result<ExitCode, CliError> {
    let client = match &asked.client {
        Some(name) => config
            .clients
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| format!("no [[clients]] entry is named `{name}`"))?,
        None => &config.clients[0],
    };
    let users = crate::users::open(&config.users, HashThreads::new(1))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let Some((user, active)) = runtime.block_on(users.lookup(&asked.user))? else {
        println!("user {}: unknown: Access-Reject, as for a wrong PIN", asked.user);
        return Ok(ExitCode::SUCCESS);
    };
    let station = asked.calling_station.as_deref();
    println!(
        "user {} (groups: {}) from client {}, Calling-Station-Id {}",
        user.name,
        if user.groups.is_empty() {
            "none".to_owned()
        } else {
            user.groups.join(", ")
        },
        client.name,
        station.unwrap_or("none")
    );
    if !active {
        println!("  inactive: Access-Reject, as for a wrong PIN");
        return Ok(ExitCode::SUCCESS);
    }
    let who = Subject {
        user: &user.name,
        groups: &user.groups,
        client: &client.name,
        calling_station: station,
    };
    let policy = config.policies.resolve(&who);
    let email = &config.email;
    match policy {
        Some(p) => println!("  policy: {}", p.name),
        None => println!("  policy: none matches; the [email] settings apply"),
    }
    let reply = policy.map_or(0, |p| p.reply.len());
    match policy.map_or(SecondFactor::Email, |p| p.second_factor) {
        SecondFactor::None => println!("  right PIN: Access-Accept (exempt) with {reply} policy reply attribute(s)"),
        SecondFactor::Deny => println!("  right PIN: Access-Reject, as for a wrong PIN (denied-by-policy)"),
        SecondFactor::Email => {
            let validity = policy
                .and_then(|p| p.challenge_validity)
                .unwrap_or(email.challenge_validity);
            let length = policy.and_then(|p| p.otp_length).unwrap_or(email.otp_length);
            let attempts = policy.and_then(|p| p.max_attempts).unwrap_or(email.max_attempts);
            let link = match policy.and_then(|p| p.delivery) {
                Some(delivery) => delivery == PolicyDelivery::Link,
                None => matches!(email.delivery, Delivery::Link(_)),
            };
            let what = if link {
                "a link".to_owned()
            } else {
                format!("a {length}-digit code ({attempts} wrong answers void it)")
            };
            println!(
                "  right PIN: {what} by e-mail to {}, valid {} s (Session-Timeout); \
                 Access-Accept adds {reply} policy reply attribute(s)",
                user.email,
                validity.as_secs()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
