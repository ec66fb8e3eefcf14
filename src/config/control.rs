//! `[control]`: where the operator socket (`mailotp ctl`) listens. Checks
//! the section only; `control` binds the socket.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Validator;
use super::ConfigError;

/// Where the socket is when the configuration says nothing.
pub(crate) const DEFAULT_SOCKET: &str = "/run/mailotp/control.sock";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<String>,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlConfig {
    /// `socket = ""`: no control socket.
    Off,
    /// The default path: when it cannot be made, the server warns and runs
    /// without it.
    Default(PathBuf),
    /// A path the configuration names: when it cannot be made, the server
    /// does not start.
    Configured(PathBuf),
}

impl Validator<'_> {
    pub(super) fn control(&self, raw: Option<RawControl>) -> Result<ControlConfig, ConfigError> {
        match raw.and_then(|c| c.socket) {
            None => Ok(ControlConfig::Default(PathBuf::from(DEFAULT_SOCKET))),
            Some(path) if path.is_empty() => Ok(ControlConfig::Off),
            Some(path) if path.len() > 100 => {
                Err(self.err("control.socket", "a Unix socket path must be shorter than 100 bytes"))
            }
            Some(path) => Ok(ControlConfig::Configured(self.path(path.as_ref()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LoadOptions, Source, EMBEDDED_CONFIG};

    fn control(section: &str) -> Result<ControlConfig, ConfigError> {
        let text = format!("{EMBEDDED_CONFIG}\n{section}");
        let source = Source::File(PathBuf::from("/etc/mailotp/mailotp.toml"));
        Config::from_text(&text, source, LoadOptions::default()).map(|c| c.control)
    }

    #[test]
    fn the_socket_is_the_default_off_or_relative_to_the_file() {
        assert_eq!(
            control("").unwrap(),
            ControlConfig::Default(PathBuf::from(DEFAULT_SOCKET))
        );
        assert_eq!(control("[control]\nsocket = \"\"\n").unwrap(), ControlConfig::Off);
        assert_eq!(
            control("[control]\nsocket = \"ctl.sock\"\n").unwrap(),
            ControlConfig::Configured(PathBuf::from("/etc/mailotp/ctl.sock"))
        );
        let long = format!("[control]\nsocket = \"/{}\"\n", "x".repeat(120));
        assert!(control(&long).unwrap_err().to_string().contains("control.socket"));
        assert!(
            control("[control]\nsockett = \"x\"\n").is_err(),
            "unknown keys are errors"
        );
    }
}
