use super::*;

#[test]
fn the_builtin_list_parses() {
    let targets = builtin();
    assert!(targets.len() >= 5);
    assert!(targets.iter().all(|t| t.port == 443 && t.control_sni == DEFAULT_CONTROL_SNI));
}

#[test]
fn categories_are_short_lowercase_words() {
    let t = &parse("[[target]]\nname='a'\ndomain='a.example'\ncategory='social-media'\n", "t").expect("valid")[0];
    assert_eq!(t.category.as_deref(), Some("social-media"));
    for word in ["vpn", "news", "circumvention", "web2", "x"] {
        assert!(is_category(word), "{word}");
    }
    for word in ["", "VPN", "2fast", "-vpn", "social media", "vpn_tor", &"a".repeat(MAX_CATEGORY_LEN + 1)] {
        assert!(!is_category(word), "{word:?}");
    }
    let builtin = builtin();
    assert!(builtin.iter().all(|t| t.category.as_deref().is_some_and(is_category)), "every built-in target has a category");
    let torproject = builtin.iter().find(|t| t.name == "torproject").expect("torproject");
    assert_eq!(torproject.category.as_deref(), Some("circumvention"));
}

#[test]
fn defaults_fill_in() {
    let t = &parse("[[target]]\nname='a'\ndomain='a.example'\n", "t").expect("valid")[0];
    assert_eq!(t.tests, DEFAULT_TESTS.to_vec());
    assert_eq!(t.address, None);
}

#[test]
fn typos_and_nonsense_are_refused_with_the_reason() {
    let cases = [
        ("[[target]]\nname='a'\ndomian='a.example'\n", "unknown field"),
        ("[[target]]\nname='a'\ndomain='a.example'\ntests=['ping']\n", "unknown TestKind `ping`"),
        ("[[target]]\nname='a'\ndomain='a.example'\n[[target]]\nname='a'\ndomain='b.example'\n", "twice"),
        ("[[target]]\nname='a'\ndomain='has space'\n", "printable"),
        ("[[target]]\nname='a'\ndomain='a.example'\naddress='not-ip'\n", "address"),
        ("[[target]]\nname='a'\ndomain='a.example'\nport=70000\n", "port"),
        ("[[target]]\nname='a'\ndomain='a.example'\ntrials=9\n", "trials must be 1-8"),
        ("[[target]]\nname='a'\ndomain='a.example'\ncontrol_port=0\n", "port 0"),
        ("target = []\n", "no [[target]]"),
        ("[[target]]\nname='a'\ndomain='a.example'\ncategory='VPN'\n", "category `VPN` must be a short lowercase word"),
        ("[[target]]\nname='a'\ndomain='a.example'\ncategory='social media'\n", "lowercase word"),
    ];
    for (text, needle) in cases {
        let err = parse(text, "t.toml").expect_err(needle).to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
        assert!(err.contains("t.toml"));
    }
}
const WG_KEY: &str = "YDGkhG/i5s4SR5FqDrfvMUzNhKnz5RqYkyZ/dZkDBno=";
const WG_PUBLIC: &str = "VCL4PuDDDkaj72v22QuilTjmK+2PzN9O2OrMYovzVFg=";

#[test]
fn vpn_targets_parse_their_keys_and_never_print_them() {
    let text = format!(
        "[[target]]\nname='wg'\ndomain='vpn.example'\naddress='203.0.113.40'\nport=51820\ntests=['wireguard']\n\
         echo_address='203.0.113.41'\n[target.wireguard]\nserver_public_key='{WG_PUBLIC}'\nprivate_key='{WG_KEY}'\n\
         address='203.0.113.130'\nserver_address='203.0.113.129'\n\
         [[target]]\nname='ovpn'\ndomain='vpn.example'\nport=1194\ntests=['openvpn']\ntransport='tcp'\n\
         [target.openvpn]\nmode='plain'\n"
    );
    let targets = parse(&text, "t").expect("valid");
    let wg = targets[0].wireguard.as_ref().expect("wireguard");
    assert!(wg.tunnel.is_some() && wg.helper_keys.is_none());
    assert_eq!(wg.keys.server_public, decode_key("server_public_key", WG_PUBLIC).expect("key"));
    assert_eq!(targets[1].openvpn.as_ref().map(|o| o.wrap.mode()), Some(vantage_measurement::VpnMode::Plain));
    let debug = format!("{targets:?}");
    assert!(!debug.contains(WG_KEY), "keys must not reach Debug output: {debug}");
}

#[test]
fn vpn_parameters_are_checked_at_load() {
    let base = "[[target]]\nname='a'\ndomain='a.example'\nport=1194\n";
    let cases = [
        ("tests=['openvpn']\n", "needs an `openvpn` table"),
        ("tests=['tls']\n[target.openvpn]\nmode='plain'\n", "not listed"),
        ("tests=['openvpn']\n[target.openvpn]\nmode='tls-crypt'\n", "need `key`"),
        ("tests=['openvpn']\n[target.openvpn]\nmode='tls-auth'\nkey='nope'\n", "static key"),
        ("tests=['openvpn']\n[target.openvpn]\nmode='tls-auth'\nkey_direction=2\nkey='x'\n", "key_direction"),
        ("tests=['wireguard']\n[target.wireguard]\nserver_public_key='abc'\nprivate_key='abc'\n", "is not base64"),
        ("tests=['ikev2']\ntransport='tcp'\n", "udp only"),
    ];
    for (tail, needle) in cases {
        let err = parse(&format!("{base}{tail}"), "t").expect_err(needle).to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
        assert!(!err.contains("nope"), "errors never echo key material: {err}");
    }
}
