//! Black-box tests: the real `mailotp` binary over real UDP, with radclient
//! and a real SMTP server. See `harness` for how processes are started.

mod core_flow;
mod fast_path;
mod harness;
