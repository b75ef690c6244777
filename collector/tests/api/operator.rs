//! The operator's workflow through the binary: make keys, sign a list, rotate, invite, serve it,
//! re-read it on SIGHUP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::Utc;
use vantage_measurement::wire::target_list::{self, Endorsement, Invitation, LIST_PATH, ListTrust, Revocation, SignedList};

const BINARY: &str = env!("CARGO_BIN_EXE_vantage-collector");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BINARY).args(args).current_dir(dir).output().expect("run vantage-collector")
}

fn ok(args: &[&str], dir: &Path) -> String {
    let output = run(args, dir);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf8")
}

/// The value printed after `label` on its own line.
fn printed<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or_else(|| panic!("no {label} in {stdout}"))
}

fn list_toml(version: u64) -> String {
    format!(
        "[list]\nversion = {version}\nexpires_days = 30\ninterval_hours = 6\ndisabled_tests = [\"tor\"]\nlabelled = [\"wikipedia\"]\n\n\
         [[target]]\nname = \"wikipedia\"\ndomain = \"www.wikipedia.org\"\n\n[[target]]\nname = \"signal\"\ndomain = \"signal.org\"\n"
    )
}

/// `line` without ANSI colour sequences (ESC [ … m).
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

fn read_signed(path: &Path) -> SignedList {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("a signed list")
}

#[test]
fn keys_are_made_rotated_and_a_signed_list_is_followed_from_the_first_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let made = ok(&["list-key", "new", "--out", "k0.key"], d);
    let k0_public = printed(&made, "public key:").to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("k0.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret is the owner's only");
    }
    let revocation: Revocation =
        serde_json::from_slice(&std::fs::read(d.join("k0.key.revocation.json")).expect("read")).expect("json");
    assert_eq!(revocation.key, k0_public);
    let secret = std::fs::read(d.join("k0.key")).expect("read");
    let again = run(&["list-key", "new", "--out", "k0.key"], d);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(d.join("k0.key")).expect("read"), secret, "the old key is untouched");

    ok(&["list-key", "new", "--out", "k1.key"], d);
    ok(&["list-key", "rotate", "--old", "k0.key", "--new", "k1.key", "--chain", "chain.json"], d);
    let chain: Vec<Endorsement> = serde_json::from_slice(&std::fs::read(d.join("chain.json")).expect("read")).expect("json");
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].signed_by, k0_public);
    let wrong_start = run(&["list-key", "rotate", "--old", "k0.key", "--new", "k1.key", "--chain", "chain.json"], d);
    assert!(!wrong_start.status.success(), "the chain ends at k1: rotating from k0 again is refused");

    std::fs::write(d.join("list.toml"), list_toml(1)).expect("write");
    ok(&["list", "sign", "--key", "k1.key", "--list", "list.toml", "--out", "signed.json", "--chain", "chain.json"], d);
    let signed = read_signed(&d.join("signed.json"));
    let verified = target_list::verify(&signed, &ListTrust { pinned: k0_public.clone(), version: None }, Utc::now())
        .expect("a probe pinning the first key follows the rotation");
    assert_eq!((verified.document.version, verified.document.interval_secs), (1, 21_600));
    assert_eq!(verified.document.labelled, vec!["wikipedia".to_string()]);
    assert_ne!(verified.signer, k0_public);

    let same_version =
        run(&["list", "sign", "--key", "k1.key", "--list", "list.toml", "--out", "signed.json", "--chain", "chain.json"], d);
    assert!(!same_version.status.success());
    assert!(String::from_utf8_lossy(&same_version.stderr).contains("raise [list] version above 1"));
    let bad_label = list_toml(2).replace("labelled = [\"wikipedia\"]", "labelled = [\"nowhere\"]");
    std::fs::write(d.join("list.toml"), bad_label).expect("write");
    let refused = run(&["list", "sign", "--key", "k1.key", "--list", "list.toml", "--out", "signed.json"], d);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`nowhere`"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(read_signed(&d.join("signed.json")), signed, "a refused list leaves the served one alone");

    let url = ok(&["invite", "--key", "k0.key", "--collector", "https://c1.example", "--collector", "https://c2.example"], d);
    let invitation = Invitation::parse(url.trim()).expect("a valid invitation");
    assert_eq!(invitation.collectors, ["https://c1.example", "https://c2.example"]);
    assert_eq!(invitation.list_key, k0_public);
    let by_public = ok(&["invite", "--list-key-public", &k0_public, "--collector", "https://c1.example"], d);
    assert!(by_public.trim().starts_with("https://c1.example/join#v1."));
    assert!(!run(&["invite", "--list-key-public", "AAAA", "--collector", "https://c1.example"], d).status.success());
}

#[tokio::test]
async fn serve_re_reads_the_list_on_sighup_and_keeps_it_when_the_new_file_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["list-key", "new", "--out", "k.key"], d);
    std::fs::write(d.join("list.toml"), list_toml(1)).expect("write");
    ok(&["list", "sign", "--key", "k.key", "--list", "list.toml", "--out", "signed.json"], d);
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--signed-list", "signed.json", "--data-dir", "data"])
        .current_dir(d)
        .env_remove("VANTAGE_LISTEN")
        .env("VANTAGE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    let base = line.trim().strip_prefix("vantage-collector listening on ").expect("address line").to_string();
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(without_colours(&line));
        }
    });
    let wait_for_log = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match log_rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the log never said {needle:?}");
    };
    let http = crate::support::http_client();
    let fetch = || async { http.get(format!("{base}{LIST_PATH}")).send().await.expect("GET").bytes().await.expect("body") };
    assert_eq!(fetch().await.as_ref(), std::fs::read(d.join("signed.json")).expect("read").as_slice());

    std::fs::write(d.join("list.toml"), list_toml(2)).expect("write");
    ok(&["list", "sign", "--key", "k.key", "--list", "list.toml", "--out", "signed.json"], d);
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill").success());
    hup(child.id());
    let reread = wait_for_log("signed list re-read");
    assert!(reread.contains("version=2"), "{reread}");
    let version_2 = std::fs::read(d.join("signed.json")).expect("read");
    assert_eq!(fetch().await.as_ref(), version_2.as_slice());

    std::fs::write(d.join("signed.json"), b"{ not a list").expect("write");
    hup(child.id());
    wait_for_log("keeping the signed list served so far");
    assert_eq!(fetch().await.as_ref(), version_2.as_slice(), "the good list stays");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}
