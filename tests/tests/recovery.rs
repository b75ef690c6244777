//! The probe killed mid-upload sends again without duplicates. A loopback proxy stands between the
//! real `vantage-probe` and a real `vantage-collector`: it passes requests on, but holds the
//! collector's `200` to one batch, and the probe is killed with SIGKILL while waiting for it. The
//! collector stored the batch; the probe never heard so and kept it in its spool. Restarted, the
//! probe sends it again, the collector reports it as already there, and every measurement is
//! stored exactly once with the spool left empty. Nothing leaves 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vantage_tests::procs::{Collector, bin, probe};
use vantage_tests::servers::{self, DnsBehaviour};

const TARGET: &str = "target.example";
/// The longest any step waits (a request through the proxy, the probe reaching the held batch).
const WAIT: Duration = Duration::from_secs(120);

/// What the proxy saw of the batch whose answer it held.
#[derive(Debug)]
struct Held {
    /// The collector's answer, as it would have reached the probe.
    status: u16,
    report: Value,
}

/// An HTTP/1.1 proxy on loopback in front of `upstream`. One request per connection (it asks the
/// collector to close after answering, so the answer's end is the connection's). It passes every
/// answer back except the collector's answer to the `hold`th `POST /api/v1/measurements`, which
/// it reports on `held` and never relays: the connection stays open, silent, until it is dropped.
async fn holding_proxy(upstream: SocketAddr, hold: usize) -> anyhow::Result<(SocketAddr, mpsc::Receiver<Held>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let batches = Arc::new(Mutex::new(0usize));
        while let Ok((client, _)) = listener.accept().await {
            let (tx, batches) = (tx.clone(), Arc::clone(&batches));
            tokio::spawn(async move {
                if let Err(e) = relay(client, upstream, hold, &batches, &tx).await {
                    eprintln!("proxy: {e:#}");
                }
            });
        }
    });
    Ok((addr, rx))
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    hold: usize,
    batches: &Mutex<usize>,
    held: &mpsc::Sender<Held>,
) -> anyhow::Result<()> {
    let (head, body) = tokio::time::timeout(WAIT, read_request(&mut client)).await.context("request timed out")??;
    let is_batch = head.starts_with("POST /api/v1/measurements ");
    let mut request = close_after(&head).into_bytes();
    request.extend_from_slice(&body);
    let mut collector = TcpStream::connect(upstream).await?;
    collector.write_all(&request).await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, collector.read_to_end(&mut response)).await.context("collector timed out")??;
    let number = {
        let mut batches = batches.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        *batches += usize::from(is_batch);
        *batches
    };
    if is_batch && number == hold {
        let (status, report) = parse_response(&response)?;
        held.send(Held { status, report }).await?;
        // Silent until the probe is gone and the test drops us.
        let _ = tokio::time::timeout(WAIT, client.read_u8()).await;
        return Ok(());
    }
    client.write_all(&response).await?;
    client.shutdown().await?;
    Ok(())
}

/// The request head (through the blank line) and its `Content-Length` body.
async fn read_request(stream: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed before a whole request head");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..end].to_vec())?;
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()?
        .unwrap_or(0);
    anyhow::ensure!(!head.to_ascii_lowercase().contains("transfer-encoding"), "chunked requests are not relayed");
    let mut body = buffer[end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed mid-body");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn close_after(head: &str) -> String {
    let mut lines: Vec<&str> =
        head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    lines.join("\r\n") + "\r\n\r\n"
}

/// Status and JSON body of a whole `Content-Length` response.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Value)> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").context("no response head")? + 4;
    let head = std::str::from_utf8(&response[..end])?;
    let status = head.split(' ').nth(1).context("no status")?.parse()?;
    Ok((status, serde_json::from_slice(&response[end..])?))
}

/// Probe flags that keep every query on loopback: TCP tests of three local targets.
fn run_args(dir: &Path, dns: SocketAddr, port: u16, collector: &str) -> Vec<String> {
    let targets = dir.join("targets.toml");
    let text: String = (1..=3)
        .map(|n| format!("[[target]]\nname = \"site{n}\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {port}\ntests = [\"tcp\"]\n"))
        .collect();
    std::fs::write(&targets, text).expect("write targets");
    let mut args: Vec<String> =
        ["run", "--json", "--no-helper", "--doh", "none", "--no-system-resolver", "--timeout", "3", "--resolver"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.push(dns.to_string());
    args.extend(["--targets".into(), targets.display().to_string(), "--collector".into(), collector.into()]);
    args.extend(["--data-dir".into(), dir.join("probe-data").display().to_string()]);
    args
}

fn ids(printed: &[Value]) -> BTreeSet<String> {
    printed.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect()
}

/// Spool files still waiting, and lines set aside as refused.
fn spool_contents(data_dir: &Path) -> anyhow::Result<(usize, usize)> {
    let count = |dir: &Path| -> anyhow::Result<usize> {
        let mut lines = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_string_lossy().contains(".ndjson") {
                lines += std::fs::read_to_string(&path)?.lines().count();
            }
        }
        Ok(lines)
    };
    Ok((count(&data_dir.join("spool"))?, count(&data_dir.join("spool/rejected"))?))
}

/// How often each id is stored.
async fn stored(collector: &Collector) -> anyhow::Result<BTreeMap<String, usize>> {
    let url = format!("{}/api/v1/measurements?limit=100000", collector.url);
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    let mut ids = BTreeMap::new();
    for line in text.lines() {
        let m: Value = serde_json::from_str(line)?;
        *ids.entry(m["id"].as_str().context("id")?.to_string()).or_insert(0) += 1;
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_killed_while_its_batch_is_acknowledged_sends_it_again_without_duplicates() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let zone: HashMap<String, Ipv4Addr> = [(TARGET.to_string(), Ipv4Addr::LOCALHOST)].into();
    let dns = servers::dns(zone, DnsBehaviour::Honest).await?;
    // The kernel completes TCP handshakes on a listening socket: each TCP test succeeds.
    let site = StdListener::bind("127.0.0.1:0")?;
    let port = site.local_addr()?.port();
    let data_dir = dir.path().join("probe-data");
    let collector = Collector::start(&[])?;

    // A first run while the collector is unreachable leaves one spool file (three measurements).
    let closed = StdListener::bind("127.0.0.1:0")?.local_addr()?;
    let out =
        probe(&run_args(dir.path(), dns.addr, port, &format!("http://{closed}")).iter().map(String::as_str).collect::<Vec<_>>())?;
    anyhow::ensure!(out.status.success(), "offline run failed: {}", String::from_utf8_lossy(&out.stderr));
    let first: Vec<Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(first.len(), 3);
    assert_eq!(spool_contents(&data_dir)?, (3, 0));

    // The second run delivers the old file, then its own: the proxy holds the answer to that.
    let upstream: SocketAddr = collector.url.trim_start_matches("http://").parse()?;
    let (proxy, mut held) = holding_proxy(upstream, 2).await?;
    let mut child = Command::new(bin("vantage-probe")?)
        .args(run_args(dir.path(), dns.addr, port, &format!("http://{proxy}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let printer = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    let answer = tokio::time::timeout(WAIT, held.recv()).await.context("the probe never sent its second batch")?;
    let answer = answer.context("the proxy stopped")?;
    child.kill()?; // SIGKILL: no chance to hear the answer or tidy the spool
    child.wait()?;
    // The collector did store that batch: the probe just never heard.
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!((answer.report["accepted"].as_u64(), answer.report["duplicates"].as_u64()), (Some(3), Some(0)), "{answer:?}");
    let second: Vec<Value> = printer
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(second.len(), 3, "the run printed its measurements before uploading");
    assert_eq!(spool_contents(&data_dir)?, (3, 0), "the acknowledged file is gone, the unacknowledged one stays");

    // Restarted, the probe sends the batch again: already there, nothing stored twice.
    let flushed = probe(&["flush", "--collector", &collector.url, "--data-dir", &data_dir.display().to_string()])?;
    let line = String::from_utf8(flushed.stdout)?;
    assert!(flushed.status.success(), "flush failed: {line}{}", String::from_utf8_lossy(&flushed.stderr));
    assert_eq!(line.trim(), "collector: 0 stored, 3 already there, 0 refused");
    assert_eq!(spool_contents(&data_dir)?, (0, 0), "the spool ends empty, nothing set aside");
    let stored = stored(&collector).await?;
    let sent: BTreeSet<String> = ids(&first).union(&ids(&second)).cloned().collect();
    assert_eq!(sent.len(), 6);
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), sent, "every measurement is stored");
    assert!(stored.values().all(|n| *n == 1), "each exactly once: {stored:?}");
    Ok(())
}
