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

#[test]
fn pins_come_from_certificates_and_keys_and_travel_in_invitations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/testdata");
    let file = |name: &str| data.join(name).display().to_string();
    // OpenSSL's pins of these files (`openssl x509 -pubkey | openssl pkey -pubin -outform der |
    // openssl dgst -sha256 -binary | base64`, as docs/operators.md has it).
    const EC: &str = "sha256/VRwbY5IxnpNBYn7rJsEf3EQbZ+pPxFL3zlwlMYIC9AA=";
    const RSA: &str = "sha256/Ytge9hYT5NcNqwDQfKj2fClZBxd2zMZhdMzNq4BZ/ss=";
    for (name, pin) in
        [("ec-cert.pem", EC), ("ec-key.pem", EC), ("rsa-cert.pem", RSA), ("rsa-key.pem", RSA), ("rsa-public.pem", RSA)]
    {
        assert_eq!(ok(&["pin", &file(name)], d).trim(), pin, "{name}");
    }
    let sec1 = run(&["pin", &file("ec-key-sec1.pem")], d);
    assert!(!sec1.status.success());
    assert!(String::from_utf8_lossy(&sec1.stderr).contains("openssl pkey -in KEY -pubout"), "{sec1:?}");

    ok(&["list-key", "new", "--out", "k.key"], d);
    let invite = |extra: &[&str]| {
        let mut args = vec!["invite", "--key", "k.key", "--collector", "https://c1.example"];
        args.extend(extra);
        run(&args, d)
    };
    // The live key twice (its certificate and its key file are one pin), and the backup's pin.
    let (cert, key) = (file("ec-cert.pem"), file("ec-key.pem"));
    let out = invite(&["--pin-from", &cert, "--pin-from", &key, "--backup-pin", RSA]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let invitation = Invitation::parse(String::from_utf8_lossy(&out.stdout).trim()).expect("a valid invitation");
    assert_eq!(invitation.pins, [EC, RSA]);
    let one = invite(&["--pin", EC]);
    assert!(one.status.success());
    assert!(String::from_utf8_lossy(&one.stderr).contains("pin a backup key too"), "{one:?}");

    for (extra, needle) in [
        (&["--pin", "sha256/AAAA"][..], "is not a key pin"),
        (&["--collector", "http://c2.example"], "plaintext HTTP to another machine"),
        (&["--collector", "http://127.0.0.1:8080", "--pin", EC], "collector_pins are set"),
    ] {
        let out = invite(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(needle), "{extra:?}: {stderr}");
    }
    assert!(invite(&["--collector", "http://c2.example", "--danger-plaintext-collector"]).status.success());
    assert!(invite(&["--collector", "http://127.0.0.1:8080"]).status.success(), "loopback is this machine");
}
