//! The fully-encrypted-traffic censor's I/O: TCP from the probe through a [`TunBox`], each
//! flow's first data packet judged by [`FetCensor`].

use super::fet::{Decision, FetCensor};
use super::tun::{TunBox, TunError};

/// An open TUN device and the censor deciding on what it reads.
pub struct FetTun {
    tun: TunBox,
    censor: FetCensor,
}

impl FetTun {
    /// Create and bring up the TUN device `name`.
    pub fn open(name: &str, censor: FetCensor) -> Result<Self, TunError> {
        Ok(FetTun { tun: TunBox::open(name)?, censor })
    }

    /// Read, decide, write back, until the process ends. Blocking: run it on its own thread.
    pub fn run(mut self) {
        let mut cut = 0u64;
        self.tun.run(|packet| match self.censor.decide(packet) {
            Decision::Cut => {
                cut += 1;
                if cut.is_power_of_two() {
                    tracing::info!("cut {cut} segment(s) of fully encrypted flows so far");
                }
                false
            }
            Decision::Suspect => {
                tracing::info!("a flow's first data packet looks fully encrypted");
                true
            }
            Decision::Forward => true,
        })
    }
}
