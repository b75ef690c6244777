//! The on-path DNS injector's I/O: sniff an interface with an AF_PACKET socket, send forged
//! replies back out of it. The decisions are in [`super::dns_forge`].
//!
//! Sniffing never holds or drops the query: the kernel forwards it as usual, the resolver's
//! real answer follows the forged one, and the probe sees both.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender, NetworkInterface};

use super::dns_forge::{Forged, Injector};

/// Most forged replies waiting for their `--delay-ms`; more are dropped (and logged).
const MAX_DELAYED: usize = 256;
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the injector could not start.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// No interface of that name in this network namespace.
    #[error("no interface `{0}` in this network namespace (interfaces: {1})")]
    NoInterface(String, String),
    /// The AF_PACKET socket could not be opened (needs root or CAP_NET_RAW).
    #[error("cannot open an AF_PACKET socket on {iface}: {source}")]
    Socket {
        /// The interface.
        iface: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The datalink layer offered something other than an Ethernet channel.
    #[error("{0} is not an Ethernet interface")]
    NotEthernet(String),
}

/// An open capture on one interface, ready to [`run`](DnsInjector::run).
pub struct DnsInjector {
    iface: NetworkInterface,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    injector: Injector,
    delay: Duration,
}

impl DnsInjector {
    /// Open an AF_PACKET socket on `iface`. Capture starts now, so a query sent after this
    /// returns is seen.
    pub fn open(iface: &str, injector: Injector, delay: Duration) -> Result<Self, InjectError> {
        let all = pnet_datalink::interfaces();
        let Some(found) = all.iter().find(|i| i.name == iface).cloned() else {
            let names = all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(InjectError::NoInterface(iface.to_string(), names));
        };
        let config = pnet_datalink::Config {
            read_timeout: Some(READ_TIMEOUT),
            read_buffer_size: 65536,
            write_buffer_size: 65536,
            promiscuous: false,
            ..Default::default()
        };
        match pnet_datalink::channel(&found, config) {
            Ok(Channel::Ethernet(tx, rx)) => Ok(DnsInjector { iface: found, tx, rx, injector, delay }),
            Ok(_) => Err(InjectError::NotEthernet(iface.to_string())),
            Err(source) => Err(InjectError::Socket { iface: iface.to_string(), source }),
        }
    }

    /// Sniff and inject until the process ends. Blocking: run it on its own thread.
    pub fn run(self) {
        let DnsInjector { iface, tx, mut rx, injector, delay } = self;
        let tx = Arc::new(Mutex::new(tx));
        let own_mac = iface.mac.map(|m| m.octets());
        let mut ip_id: u16 = 0;
        let delayed = (!delay.is_zero()).then(|| spawn_delayed_sender(tx.clone(), iface.name.clone()));
        loop {
            let frame = match rx.next() {
                Ok(frame) => frame,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => {
                    tracing::warn!("{}: capture error: {e}", iface.name);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            // Frames we transmitted ourselves come back on an ETH_P_ALL socket; skip them.
            if own_mac.is_some_and(|mac| frame.get(6..12) == Some(&mac[..])) {
                continue;
            }
            ip_id = ip_id.wrapping_add(1);
            let Some(forged) = injector.forge(frame, ip_id) else { continue };
            match &delayed {
                None => send(&tx, &iface.name, &forged),
                Some(queue) => {
                    if queue.try_send((Instant::now() + delay, forged)).is_err() {
                        tracing::warn!("{}: {MAX_DELAYED} delayed replies pending; dropping one", iface.name);
                    }
                }
            }
        }
    }
}

type SharedSender = Arc<Mutex<Box<dyn DataLinkSender>>>;

fn send(tx: &SharedSender, iface: &str, forged: &Forged) {
    // A poisoned lock only means another sender panicked mid-send; the socket is still fine.
    let mut tx = tx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match tx.send_to(&forged.frame, None) {
        Some(Ok(())) => {
            tracing::info!("injected reply for {} to {} (spoofed from {}:53)", forged.name, forged.client, forged.server)
        }
        Some(Err(e)) => tracing::warn!("{iface}: sending a forged reply failed: {e}"),
        None => tracing::warn!("{iface}: sending a forged reply failed"),
    }
}

/// A thread that sends each reply at its due time (the delay is constant, so arrival order is
/// due order); the queue is bounded.
fn spawn_delayed_sender(tx: SharedSender, iface: String) -> mpsc::SyncSender<(Instant, Forged)> {
    let (queue, pending) = mpsc::sync_channel::<(Instant, Forged)>(MAX_DELAYED);
    std::thread::spawn(move || {
        for (due, forged) in pending {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            send(&tx, &iface, &forged);
        }
    });
    queue
}
