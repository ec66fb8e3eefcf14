//! `mailotp login USER [--server ADDR] [--secret S]`: an interactive test
//! client that logs in the way a VPN would. It sends the PIN, shows the
//! Reply-Message, asks for the code (or for Enter, with link delivery),
//! answers with the State, and prints Access-Accept or Access-Reject. It
//! works against any RADIUS server: it builds packets with the `radius`
//! crate, signs every request with Message-Authenticator, and refuses an
//! answer whose authenticators are wrong. Typed secrets are never echoed.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2869};
use zeroize::Zeroizing;

use super::CliError;
use crate::wire::{self, attr, MaCheck};

/// How long one try waits for an answer, and how many tries a request gets.
const TIMEOUT: Duration = Duration::from_secs(5);
const TRIES: usize = 3;

/// Runs the login dialogue; exit 0 on Access-Accept, 1 otherwise.
pub(super) fn run(user: &str, server: SocketAddr, secret: &str) -> Result<ExitCode, CliError> {
    let bind = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    let pin = ask(&format!("PIN for {user}: "))?;
    let mut answer = exchange(&socket, secret, user, pin.as_bytes(), None)?;
    loop {
        for message in &answer.messages {
            println!("{message}");
        }
        match answer.code {
            Code::AccessAccept => {
                println!("Access-Accept");
                return Ok(ExitCode::SUCCESS);
            }
            Code::AccessChallenge => {
                let code = ask("Code (or Enter after confirming a link): ")?;
                let state = answer.state.take();
                answer = exchange(&socket, secret, user, code.as_bytes(), state.as_deref())?;
            }
            _ => {
                if !answer.messages.is_empty() {
                    println!("(In reject mode, log in again with your PIN followed by the code.)");
                }
                println!("Access-Reject");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

/// Reads a secret: without echo on a terminal, else one line of stdin.
fn ask(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    if std::io::stdin().is_terminal() {
        return Ok(Zeroizing::new(rpassword::prompt_password(prompt)?));
    }
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line)?;
    println!();
    Ok(Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// What came back.
struct Answer {
    code: Code,
    state: Option<Vec<u8>>,
    messages: Vec<String>,
}

/// Sends one Access-Request (retrying on silence) and checks the answer.
fn exchange(
    socket: &UdpSocket,
    secret: &str,
    user: &str,
    password: &[u8],
    state: Option<&[u8]>,
) -> Result<Answer, CliError> {
    let request = build(secret, user, password, state)?;
    let mut buf = [0u8; wire::MAX_PACKET_LEN];
    for _ in 0..TRIES {
        socket.send(&request)?;
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        return check(&buf[..n], &request, secret);
    }
    Err(format!(
        "no answer from the server after {TRIES} tries of {} s",
        TIMEOUT.as_secs()
    )
    .into())
}

fn build(secret: &str, user: &str, password: &[u8], state: Option<&[u8]>) -> Result<Vec<u8>, CliError> {
    let mut packet = Packet::new(Code::AccessRequest, secret.as_bytes());
    // Message-Authenticator first (BlastRADIUS); its value is filled below.
    rfc2869::add_message_authenticator(&mut packet, &[0; 16]);
    rfc2865::add_user_name(&mut packet, user);
    rfc2865::add_user_password(&mut packet, password).map_err(|e| format!("cannot hide the password: {e}"))?;
    rfc2865::add_nas_identifier(&mut packet, "mailotp-login");
    if let Some(state) = state {
        rfc2865::add_state(&mut packet, state);
    }
    let mut bytes = packet.encode().map_err(|e| format!("cannot encode the request: {e}"))?;
    let mac = wire::message_authenticator(&bytes, wire::HEADER_LEN, secret.as_bytes());
    bytes[wire::HEADER_LEN + 2..wire::HEADER_LEN + 18].copy_from_slice(&mac);
    Ok(bytes)
}

/// Decodes the answer, refusing it unless both authenticators are right.
fn check(response: &[u8], request: &[u8], secret: &str) -> Result<Answer, CliError> {
    let forged = "the answer is not signed with this secret (wrong --secret, or not from the server)";
    if !Packet::is_authentic_response(response, request, secret.as_bytes()) {
        return Err(forged.into());
    }
    let ours = wire::Packet::decode(response).map_err(|e| format!("malformed answer: {e}"))?;
    let request_auth: &[u8; 16] = request[4..wire::HEADER_LEN].try_into().expect("a request header");
    if wire::verify_message_authenticator(&ours, Some(request_auth), secret.as_bytes()) == MaCheck::Invalid {
        return Err(forged.into());
    }
    let packet = Packet::decode(response, secret.as_bytes()).map_err(|e| format!("malformed answer: {e}"))?;
    let messages = rfc2865::lookup_all_reply_message(&packet).unwrap_or_default();
    let state = ours.first(attr::STATE).map(<[u8]>::to_vec);
    Ok(Answer {
        code: packet.get_code(),
        state,
        messages,
    })
}
