//! The daemon's configuration, written into the initramfs by the builder.

use serde::Deserialize;
use std::path::Path;

/// Where the initramfs builder puts the configuration.
pub const CONFIG_PATH: &str = "/etc/restore-daemon.json";
/// Where the host puts the per-VM ticket (second cpio archive).
pub const TICKET_PATH: &str = "/ticket";

/// Settings of the daemon inside the VM.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Idle seconds before the watchdog powers the VM off.
    pub idle_timeout: u64,
    /// vsock port to listen on.
    pub port: u32,
    /// Log level (error, warn, info, debug, trace).
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: 600,
            port: file_restore_wire::DEFAULT_PORT,
            log_level: "info".into(),
        }
    }
}

impl Config {
    /// Reads the configuration; a missing file means the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("bad configuration {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }
}

/// Reads a ticket file; the ticket must not be empty.
pub fn read_ticket(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read ticket {}: {e}", path.display()))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        anyhow::bail!("ticket file {} is empty", path.display());
    }
    Ok(t)
}
