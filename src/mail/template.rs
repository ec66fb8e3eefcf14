//! Mail bodies: parsed with the configuration (`config::template`), so that
//! `config` needs nothing from `mail`; named here for the code that renders.

pub(crate) use crate::config::template::{rfc3339, Values};
