//! An in-path box built from a TUN device and policy routing, for the userspace censors that
//! judge whole packets ([`super::quic_tun`], [`super::fet_tun`]); written when the kernel here
//! had no NFQUEUE (it has since: see [`super::nfqueue`]).
//!
//! Inside the censor namespace, one protocol arriving from the probe-facing interface is routed
//! into the TUN device (a rule sends it to a table whose only route is the TUN). We read each
//! packet, and write back the ones we keep; a packet written to a TUN re-enters the kernel as
//! if received on it, so it no longer matches the `iif` rule and follows the main table on to
//! the server. Replies never enter the TUN. Reverse-path filtering must be off for the TUN,
//! since the probe's addresses are routed via the probe-facing link, not via the TUN.
//!
//! The exact commands are [`setup_commands`] (and [`teardown_commands`]); the censors'
//! subcommands run them themselves when given `--probe-iface`.

use std::process::Command;
use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

/// Why the TUN box could not start.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The device could not be created (needs root or CAP_NET_ADMIN, and /dev/net/tun).
    #[error("cannot create TUN device {name}: {source}")]
    Create {
        /// The device name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A routing or sysctl command failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not run.
        detail: String,
    },
}

/// The commands (argv lists, run inside the censor namespace) that route `proto` (`udp`,
/// `tcp`) arriving on `probe_iface` through the TUN device `tun`, using routing table `table`;
/// the rule's priority is `table` too. The TUN device must exist first.
pub fn setup_commands(tun: &str, probe_iface: &str, proto: &str, table: u32) -> Vec<Vec<String>> {
    let t = table.to_string();
    let rp_tun = format!("net.ipv4.conf.{tun}.rp_filter=0");
    [
        vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        vec!["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
        vec!["sysctl", "-qw", &rp_tun],
        vec!["ip", "link", "set", "dev", tun, "up"],
        vec!["ip", "route", "replace", "default", "dev", tun, "table", &t],
        vec!["ip", "rule", "add", "iif", probe_iface, "ipproto", proto, "lookup", &t, "pref", &t],
    ]
    .into_iter()
    .map(|argv| argv.into_iter().map(String::from).collect())
    .collect()
}

/// Undo [`setup_commands`]: the rule goes; the route goes with the device when the filter exits.
pub fn teardown_commands(probe_iface: &str, proto: &str, table: u32) -> Vec<Vec<String>> {
    let t = table.to_string();
    vec![["ip", "rule", "del", "iif", probe_iface, "ipproto", proto, "lookup", &t, "pref", &t].map(String::from).to_vec()]
}

/// Run `commands` in order, stopping at the first failure.
pub fn run_commands(commands: &[Vec<String>]) -> Result<(), TunError> {
    for argv in commands {
        let command = argv.join(" ");
        let Some((program, args)) = argv.split_first() else { continue };
        let output = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| TunError::Command { command: command.clone(), detail: e.to_string() })?;
        if !output.status.success() {
            let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(TunError::Command { command, detail });
        }
    }
    Ok(())
}

/// An open TUN device.
pub struct TunBox {
    name: String,
    device: SyncDevice,
}

impl TunBox {
    /// Create and bring up the TUN device `name` (no address: it only carries routed packets).
    pub fn open(name: &str) -> Result<Self, TunError> {
        let device = DeviceBuilder::new()
            .name(name)
            .mtu(1500)
            .build_sync()
            .map_err(|source| TunError::Create { name: name.to_string(), source })?;
        Ok(TunBox { name: name.to_string(), device })
    }

    /// Read each packet, write it back when `keep` says so, until the process ends. Blocking:
    /// run it on its own thread.
    pub fn run(self, mut keep: impl FnMut(&[u8]) -> bool) {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match self.device.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("{}: read: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let packet = &buf[..n];
            if keep(packet)
                && let Err(e) = self.device.send(packet)
            {
                tracing::warn!("{}: write: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_routes_one_protocol_from_the_probe_link_through_the_tun() {
        let cmds: Vec<String> = setup_commands("vtun0", "veth-probe", "udp", 100).iter().map(|c| c.join(" ")).collect();
        assert!(cmds.contains(&"ip route replace default dev vtun0 table 100".to_string()));
        assert!(cmds.contains(&"ip rule add iif veth-probe ipproto udp lookup 100 pref 100".to_string()));
        assert!(cmds.contains(&"sysctl -qw net.ipv4.conf.vtun0.rp_filter=0".to_string()));
        let undo: Vec<String> = teardown_commands("veth-probe", "udp", 100).iter().map(|c| c.join(" ")).collect();
        assert_eq!(undo, vec!["ip rule del iif veth-probe ipproto udp lookup 100 pref 100".to_string()]);
        let tcp: Vec<String> = setup_commands("vfet0", "cp", "tcp", 101).iter().map(|c| c.join(" ")).collect();
        assert!(tcp.contains(&"ip rule add iif cp ipproto tcp lookup 101 pref 101".to_string()), "{tcp:?}");
    }
}
