//! The fully-encrypted-traffic censor's I/O: the same in-path TUN box as [`super::quic_tun`]
//! (policy routing sends what arrives from the probe through a TUN device; packets written back
//! re-enter the kernel and go on to the server), for TCP instead of UDP. Decisions are
//! [`super::fet::FetCensor`]'s.

use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

use super::fet::{Decision, FetCensor};
use super::quic_tun::TunError;

/// Route TCP arriving on `probe_iface` through `tun` (routing table and rule priority `table`).
pub fn setup_commands(tun: &str, probe_iface: &str, table: u32) -> Vec<Vec<String>> {
    super::quic_tun::setup_commands(tun, probe_iface, table)
        .into_iter()
        .map(|argv| argv.into_iter().map(|a| if a == "udp" { "tcp".to_string() } else { a }).collect())
        .collect()
}

/// Undo [`setup_commands`]' rule.
pub fn teardown_commands(probe_iface: &str, table: u32) -> Vec<Vec<String>> {
    super::quic_tun::teardown_commands(probe_iface, table)
        .into_iter()
        .map(|argv| argv.into_iter().map(|a| if a == "udp" { "tcp".to_string() } else { a }).collect())
        .collect()
}

/// An open TUN device and the censor deciding on what it reads.
pub struct FetTun {
    name: String,
    device: SyncDevice,
    censor: FetCensor,
}

impl FetTun {
    /// Create and bring up the TUN device `name`.
    pub fn open(name: &str, censor: FetCensor) -> Result<Self, TunError> {
        let device = DeviceBuilder::new()
            .name(name)
            .mtu(1500)
            .build_sync()
            .map_err(|source| TunError::Create { name: name.to_string(), source })?;
        Ok(FetTun { name: name.to_string(), device, censor })
    }

    /// Read, decide, write back, until the process ends. Blocking: run it on its own thread.
    pub fn run(mut self) {
        let mut buf = vec![0u8; 65536];
        let mut cut = 0u64;
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
            match self.censor.decide(packet) {
                Decision::Cut => {
                    cut += 1;
                    if cut.is_power_of_two() {
                        tracing::info!("cut {cut} segment(s) of fully encrypted flows so far");
                    }
                    continue;
                }
                Decision::Suspect => tracing::info!("a flow's first data packet looks fully encrypted"),
                Decision::Forward => {}
            }
            if let Err(e) = self.device.send(packet) {
                tracing::warn!("{}: write: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_routes_tcp_from_the_probe_link_through_the_tun() {
        let cmds: Vec<String> = setup_commands("vfet0", "cp", 101).iter().map(|c| c.join(" ")).collect();
        assert!(cmds.contains(&"ip rule add iif cp ipproto tcp lookup 101 pref 101".to_string()), "{cmds:?}");
        assert!(cmds.contains(&"ip route replace default dev vfet0 table 101".to_string()));
        let undo: Vec<String> = teardown_commands("cp", 101).iter().map(|c| c.join(" ")).collect();
        assert_eq!(undo, vec!["ip rule del iif cp ipproto tcp lookup 101 pref 101".to_string()]);
    }
}
