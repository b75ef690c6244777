//! Scenario tables for the localisation rules. Each scenario is two strings, the target's and the
//! control's outcome per TTL from 1: `.` nothing, `E` an ICMP error, `R` the server's reply, `X` a
//! reset (nothing observable after it), `A`/`D` an alert/DNS answer with nothing after it, and
//! `Ae`/`De` or `Ar`/`Dr` the same followed by an ICMP error or the server's reply.

use super::*;

fn seen(token: &str) -> Seen {
    let injected = |kind, after| Seen::Injected { kind, after };
    match token {
        "." => Seen::Nothing,
        "E" => Seen::IcmpError,
        "R" => Seen::Reply,
        "X" => injected(Injection::Reset, After::Unobservable),
        "A" => injected(Injection::Alert, After::Nothing),
        "Ae" => injected(Injection::Alert, After::IcmpError),
        "Ar" => injected(Injection::Alert, After::Reply),
        "D" => injected(Injection::DnsAnswer, After::Nothing),
        "De" => injected(Injection::DnsAnswer, After::IcmpError),
        "Dr" => injected(Injection::DnsAnswer, After::Reply),
        other => panic!("unknown token {other}"),
    }
}

fn rows(target: &str, control: &str) -> Vec<Row> {
    let (target, control): (Vec<&str>, Vec<&str>) = (target.split_whitespace().collect(), control.split_whitespace().collect());
    assert_eq!(target.len(), control.len(), "one outcome per TTL on both sides");
    (1u8..).zip(target.iter().zip(&control)).map(|(ttl, (t, c))| Row { ttl, target: seen(t), control: seen(c) }).collect()
}

fn located(censor_hop: u8, server_hop: u8, how: How, placement: Placement) -> Localisation {
    Localisation::Localised(Located { censor_hop, server_hop: Some(server_hop), how, placement })
}

fn not(reason: Reason) -> Localisation {
    Localisation::NotLocalised(reason)
}

fn check(table: &[(&str, &str, &str, Localisation)]) {
    for (story, target, control, expected) in table {
        assert_eq!(localise(&rows(target, control)), *expected, "{story}");
    }
}

#[test]
fn injectors_are_found_at_the_first_ttl_that_draws_the_injection() {
    use Injection::*;
    check(&[
        (
            "RST injector at hop 3 of 5: a reset closes the socket, so placement can't be seen",
            "E E X X X",
            "E E E E R",
            located(3, 5, How::Injected(Reset), Placement::Unknown),
        ),
        (
            "DNS injection on-path at hop 3 of 5: the query goes on and draws ICMP, then the destination's answer",
            "E E De De Dr",
            "E E E  E  R",
            located(3, 5, How::Injected(DnsAnswer), Placement::OnPath),
        ),
        (
            "DNS injection in-path at hop 3 of 5: the forged answer and nothing after, where the control went on",
            "E E D D D",
            "E E E E R",
            located(3, 5, How::Injected(DnsAnswer), Placement::InPath),
        ),
        (
            "TLS alert on-path at hop 2 of 4: the socket survives the alert and the ClientHello goes on",
            "E Ae Ae Ar",
            "E E  E  R",
            located(2, 4, How::Injected(Alert), Placement::OnPath),
        ),
        (
            "RST injector at hop 3 of 5 behind a lossy first hop",
            ". E X X X",
            ". E E . R",
            located(3, 5, How::Injected(Reset), Placement::Unknown),
        ),
        (
            "in-path needs three silent TTLs the control answered: two are loss-sized",
            "E E . D D",
            "E E E E R",
            located(4, 5, How::Injected(DnsAnswer), Placement::Unknown),
        ),
    ]);
}

#[test]
fn silent_droppers_are_found_one_hop_past_the_last_sign_of_life() {
    check(&[
        ("silent dropper at hop 3 of 5", "E E . . .", "E E E E R", located(3, 5, How::Dropped, Placement::InPath)),
        (
            "silent dropper at hop 3 of 5, seen through a lossy path to the server hop + 2",
            ". E . . . . .",
            "E . E . R R R",
            located(3, 5, How::Dropped, Placement::InPath),
        ),
        (
            "dropper right before the server: found when the runner goes past the server hop",
            "E E E . . .",
            "E E E E R R",
            located(4, 5, How::Dropped, Placement::InPath),
        ),
    ]);
}

#[test]
fn lossy_benign_paths_produce_no_hop() {
    check(&[
        (
            "random missing ICMP on both sides, the target reaches the server",
            "E . E . R",
            ". E E E R",
            not(Reason::TargetReachedServer),
        ),
        ("the reply lost at one TTL, drawn at the next", ". . E E . R R", "E E . E R R R", not(Reason::TargetReachedServer)),
        (
            "two losses in a row at the end of the path look like a dropper at hop 4, but two are loss-sized",
            "E . E . .",
            "E E E E R",
            not(Reason::TooFewConfirmations),
        ),
    ]);
}

#[test]
fn evidence_that_cant_locate_a_censor_says_why() {
    check(&[
        ("the control is reset too: not a name-based block", "E E X X X", "E E X X X", not(Reason::ControlInjected)),
        ("the control never reaches the server: no path to compare", "E E . . .", "E E E E E", not(Reason::ControlNeverArrived)),
        ("one lone injection: it may be a hop late, or noise", "E . X . .", "E E E E R", not(Reason::SingleInjection)),
        (
            "an alert first seen at the server's hop: the server itself may refuse the name",
            "E E E E A A",
            "E E E E R R",
            not(Reason::AtServerHop),
        ),
        ("the target dies where the control does", "E E E E E .", "E E E E R .", not(Reason::NoSilentDifference)),
    ]);
    assert_eq!(localise(&[]), not(Reason::NoRows));
}

#[test]
fn rows_are_read_by_ttl_not_by_order() {
    let mut shuffled = rows("E E . . .", "E E E E R");
    shuffled.reverse();
    assert_eq!(localise(&shuffled), located(3, 5, How::Dropped, Placement::InPath));
}

#[test]
fn labels_are_unique() {
    use std::collections::HashSet;
    let reasons = [
        Reason::NoRows,
        Reason::ControlNeverArrived,
        Reason::ControlInjected,
        Reason::SingleInjection,
        Reason::TargetReachedServer,
        Reason::TooFewConfirmations,
        Reason::NoSilentDifference,
        Reason::AtServerHop,
    ];
    assert_eq!(reasons.iter().map(|r| r.as_str()).collect::<HashSet<_>>().len(), reasons.len());
    let placements = [Placement::InPath, Placement::OnPath, Placement::Unknown];
    assert_eq!(placements.iter().map(|p| p.as_str()).collect::<HashSet<_>>().len(), placements.len());
}
