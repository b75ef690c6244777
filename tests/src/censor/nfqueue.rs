//! The in-path ECH censor's I/O: packets held by the kernel's NFQUEUE while [`EchFilter`] judges
//! them, so nothing it blocks ever reaches the server.
//!
//! The harness sends the probe's client→server TCP to the queue (`iptables -A FORWARD … -j
//! NFQUEUE --queue-num N`, after this program says `ready`: a queue with no listener drops).
//! A blocked packet is dropped ([`Block::Drop`], a silent censor: the client times out), or
//! marked and handed back to the same hook ([`Block::Reset`]), where the harness's first rule
//! `-m mark --mark RESET_MARK -j REJECT --reject-with tcp-reset` drops it and answers the client
//! with a RST in the server's name, as an injecting censor does.

use anyhow::Context;
use nfq::{Queue, Verdict};

use super::ech_filter::{Decision, EchFilter};

/// The mark a packet to be reset carries back to the hook (the harness's REJECT rule matches it).
pub const RESET_MARK: u32 = 0xec;

/// What a blocked packet becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Dropped: the flow goes silent.
    Drop,
    /// Rejected with a TCP RST to the client (via [`RESET_MARK`]).
    Reset,
}

/// A bound queue and the filter behind it.
pub struct EchQueue {
    queue: Queue,
    filter: EchFilter,
    block: Block,
}

impl std::fmt::Debug for EchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchQueue").field("block", &self.block).finish_non_exhaustive()
    }
}

impl EchQueue {
    /// Bind queue `num` (root, in the censor's namespace).
    pub fn open(num: u16, filter: EchFilter, block: Block) -> anyhow::Result<EchQueue> {
        let mut queue = Queue::open().context("opening the NFQUEUE netlink socket")?;
        queue.bind(num).with_context(|| format!("binding NFQUEUE {num}"))?;
        Ok(EchQueue { queue, filter, block })
    }

    /// Judge packets until the socket fails (the process is ended by a signal).
    pub fn run(mut self) -> anyhow::Result<()> {
        loop {
            let mut msg = self.queue.recv().context("reading from NFQUEUE")?;
            let verdict = match (self.filter.decide(msg.get_payload()), self.block) {
                (Decision::Pass, _) => Verdict::Accept,
                (Decision::Block, Block::Drop) => Verdict::Drop,
                (Decision::Block, Block::Reset) => {
                    msg.set_nfmark(RESET_MARK);
                    Verdict::Repeat
                }
            };
            if verdict != Verdict::Accept {
                tracing::debug!("blocking a segment ({:?})", self.block);
            }
            msg.set_verdict(verdict);
            self.queue.verdict(msg).context("answering NFQUEUE")?;
        }
    }
}
