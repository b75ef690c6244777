//! The status page's "Events" section: the detected blocking events of the last week
//! ([`crate::events`]), per country, ongoing first: a section of its own after the countries'
//! tables, which [`super::html::render`] places at the end of `<main>`.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::{escape, query_value};
use crate::events::{Event, LOOKBACK_HOURS};

/// Events shown per country; the rest are counted ("and 3 more") and listed by the API.
pub const MAX_PER_COUNTRY: usize = 10;

/// The section: one table row per event, grouped by country.
pub fn section(events: &[Event]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<section class=\"events\" id=\"events\"><h2>Events <span class=\"summary\">blocking that began or ended in the last \
         {} days, found by a changepoint detector over trusted probes' hourly blocked share \
         (<a href=\"/api/v1/events\">JSON</a>)</span></h2>",
        LOOKBACK_HOURS / 24
    );
    let mut countries: Vec<&str> = events.iter().map(|e| e.country.as_str()).collect();
    countries.sort_unstable();
    countries.dedup();
    for cc in countries {
        let mine: Vec<&Event> = events.iter().filter(|e| e.country == cc).collect();
        let _ = writeln!(
            out,
            "<table class=\"events-of\" data-country=\"{cc}\"><thead><tr><th><span class=\"cc\">{cc}</span></th><th>Test</th>\
             <th>Mechanism</th><th>Probes</th><th>Started</th><th>Ended</th></tr></thead><tbody>",
            cc = escape(cc)
        );
        for event in mine.iter().take(MAX_PER_COUNTRY) {
            row(&mut out, event);
        }
        out.push_str("</tbody></table>\n");
        if mine.len() > MAX_PER_COUNTRY {
            let _ = writeln!(out, "<p class=\"more\">and {} more</p>", mine.len() - MAX_PER_COUNTRY);
        }
    }
    out.push_str("</section>\n");
    out
}

fn row(out: &mut String, event: &Event) {
    let mechanism = event.mechanism.map_or("—".to_string(), |m| format!("<code>{}</code>", escape(m.as_str())));
    let asns = if event.asns.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = event.asns.iter().map(|a| format!("AS{a}")).collect();
        format!("<small>in {}</small>", escape(&list.join(", ")))
    };
    let started =
        if event.started_before_lookback { format!("before {}", when(event.started_at)) } else { when(event.started_at) };
    let ended = match event.ended_at {
        None => "<span class=\"badge\">ongoing</span>".to_string(),
        Some(at) => when(at),
    };
    let link = format!(
        "/api/v1/measurements?country={}&amp;target={}&amp;test={}&amp;verdict=blocked&amp;since={}",
        query_value(&event.country),
        query_value(&event.target),
        event.test.as_str(),
        query_value(&event.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    let _ = writeln!(
        out,
        "<tr class=\"event\"><td class=\"target\"><a href=\"{link}\">{target}</a></td><td>{test}</td><td>{mechanism}</td>\
         <td class=\"n\"><b>{blocked}</b> of {measuring}{asns}</td><td class=\"when\">{started}</td><td class=\"when\">{ended}</td></tr>",
        target = escape(&event.target),
        test = event.test.as_str(),
        blocked = event.probes_blocked,
        measuring = event.probes_measuring,
    );
}

/// An hour as `2026-12-01 14:00 UTC`.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use vantage_measurement::{Mechanism, TestKind};

    use super::*;
    use crate::status::html::render;
    use crate::status::view::Page;

    fn event(target: &str, ended: bool) -> Event {
        let at = DateTime::from_timestamp(1_764_597_600, 0).unwrap_or_default(); // 2025-12-01 14:00 UTC
        Event {
            country: "DE".into(),
            target: target.into(),
            test: TestKind::Tls,
            started_at: at,
            detected_at: at,
            ended_at: ended.then_some(at + chrono::Duration::hours(3)),
            started_before_lookback: false,
            mechanism: Some(Mechanism::TlsResetAfterClientHello),
            baseline_share: 0.05,
            blocked_share: 0.8,
            probes_blocked: 5,
            probes_measuring: 6,
            asns: vec![3320],
        }
    }

    #[test]
    fn an_event_reads_as_where_what_how_many_and_since_when() {
        let page = Page { window_secs: 3600, ..Page::default() };
        let html = render(&page, &[event("wikipedia", false), event("news", true)], Utc::now());
        let section = &html[html.find("<section class=\"events\"").expect("section")..html.find("</main>").expect("main")];
        assert!(section.contains("data-country=\"DE\""), "{section}");
        assert!(section.contains("<b>5</b> of 6<small>in AS3320</small>"), "{section}");
        assert!(section.contains("<code>tls.reset_after_clienthello</code>"), "{section}");
        assert!(
            section.contains("2025-12-01 14:00 UTC</td><td class=\"when\"><span class=\"badge\">ongoing</span>"),
            "{section}"
        );
        assert!(section.contains("2025-12-01 17:00 UTC"), "the ended one: {section}");
    }

    #[test]
    fn target_names_are_escaped_and_no_events_leave_the_page_alone() {
        let page = Page { window_secs: 3600, ..Page::default() };
        let html = render(&page, &[event("<script>x</script>", false)], Utc::now());
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_eq!(render(&page, &[], Utc::now()).find("id=\"events\""), None, "no events, no section");
    }
}
