//! Black-box tests: the real `mailotp` binary over real UDP, with radclient
//! and a real SMTP server. See `harness` for how processes are started.

mod attributes;
mod certs;
mod control;
mod control_support;
mod core_flow;
mod deny;
mod fast_path;
mod flood;
mod floods_http;
mod freeradius;
mod hardening;
mod harness;
mod languages;
mod ldap;
mod link;
mod logs;
mod mail_and_abuse;
mod packaging;
mod packets;
mod policies;
mod policy_ldap;
mod pool_support;
mod radsec;
mod radsec_support;
mod redis;
mod redis_forgery;
mod redis_trips;
mod second_factor;
mod service;
mod slapd;
