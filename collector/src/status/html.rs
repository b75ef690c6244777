//! The status page as HTML: a pure function of the [`Page`], no script, a little inline CSS.
//!
//! Target names come from probes, so every value is escaped on the way out ([`escape`]) and
//! every query value in a link is percent-encoded before that ([`query_value`]). The response
//! also carries a Content-Security-Policy that forbids scripts, as a second fence.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::svg;
use super::timeline::Timelines;
use super::view::{BlockedRow, Country, Page};
use crate::events::Event;

const STYLE: &str = "
:root{--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;--bg:#f6f7f9;--card:#fff;--red:#b42318;--red-bg:#fdecea;--ok:#17703a}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:650;letter-spacing:.2px}
header h1 span{font-weight:400;color:#b9c0cf}
.meta{margin:10px 0 0;display:flex;flex-wrap:wrap;gap:8px 22px;color:#d6dbe6;font-size:14px}
.meta b{color:#fff;font-weight:600}
main{padding:20px 32px 8px;max-width:1200px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:0 0 16px;overflow:hidden}
section h2{margin:0;padding:12px 16px;font-size:17px;display:flex;align-items:baseline;gap:12px;border-bottom:1px solid var(--line)}
.cc{font-family:ui-monospace,'DejaVu Sans Mono',monospace;background:var(--fg);color:#fff;border-radius:4px;padding:1px 7px;font-size:15px}
.summary{font-weight:400;color:var(--muted);font-size:14px}
.summary.bad{color:var(--red);font-weight:600}
table{border-collapse:collapse;width:100%;table-layout:fixed}
col.c-target{width:20%}col.c-test{width:6%}col.c-how{width:24%}col.c-n{width:12%}col.c-since{width:16%}col.c-link{width:10%}
td.target{overflow-wrap:anywhere}
td.n,td.when,td.link{white-space:nowrap}
th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted);font-weight:600;padding:8px 12px;background:#fafbfc;border-bottom:1px solid var(--line)}
td{padding:9px 12px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
th:first-child,td:first-child{padding-left:16px}
td.target{font-weight:600}
.badge{display:inline-block;font-size:11px;font-weight:600;color:var(--red);background:var(--red-bg);border-radius:10px;padding:1px 8px;margin-left:6px;vertical-align:1px}
.unlisted{font-size:11px;color:var(--muted);margin-left:6px}
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:13px;background:#f1f3f6;border-radius:4px;padding:1px 5px}
.mech{display:block;margin:0 0 3px}
.n{font-variant-numeric:tabular-nums}
.n b{color:var(--red)}
.when small{display:block;color:var(--muted)}
a{color:#1a5fb4;text-decoration:none}
a:hover{text-decoration:underline}
.quiet p{margin:0;padding:12px 16px;color:var(--ok)}
.more{padding:8px 16px;color:var(--muted);font-size:13px}
.empty{padding:24px 16px;color:var(--muted)}
figure.chart{margin:0;padding:12px 16px 10px}
.chart figcaption{font-size:13px;color:var(--muted);margin:0 0 8px;display:flex;flex-wrap:wrap;gap:4px 16px}
.chart svg{display:block;max-width:100%;height:auto}
.chart+table,.quiet p+.chart{border-top:1px solid var(--line)}
.key i{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 5px 0 0;vertical-align:-1px}
.key .k-red{background:var(--red)}.key .k-track{background:var(--line)}
footer{padding:0 32px 28px;color:var(--muted);font-size:13px;max-width:1200px}
";

/// Render `page` with the detected `events` (a section of their own, after the countries; none
/// when there are none); `now` is for the "ago" hints.
pub fn render(page: &Page, events: &[Event], now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>Vantage — censorship status</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n");
    header(&mut out, page, now);
    out.push_str("<main>\n");
    let with_probes = page.countries.iter().filter(|c| c.probes_active > 0 || !c.blocked.is_empty()).count();
    if with_probes == 0 {
        let _ = writeln!(
            out,
            "<section><p class=\"empty\">No signed measurements in the last {}. Probes appear here once they \
             submit with their key.</p></section>",
            escape(&duration(page.window_secs))
        );
    }
    for country in &page.countries {
        country_section(&mut out, country, &page.timelines, now);
    }
    earlier_only(&mut out, page);
    if !events.is_empty() {
        out.push_str(&super::events::section(events));
    }
    out.push_str("</main>\n<footer>\n");
    let _ = write!(
        out,
        "<p>Each probe counts once per target and test, with its latest measurement of the last {}. \
         <b>Blocked</b> means the probe's controls reached the target while the target itself failed in a way \
         that points at interference; <i>since</i> is the earliest first <code>blocked</code> measurement after a \
         probe's last <code>ok</code>, among the probes blocked now. Only probes that have earned trust count here \
         (a registered key reporting for days, or one the operator vouches for), and none whose network or country, \
         as this collector sees it, is not the one it claims; anonymous (unsigned) and other submissions are stored but \
         not counted.</p>\n<p>Raw data: <a href=\"/api/v1/measurements\">/api/v1/measurements</a> · \
         Metrics: <a href=\"/metrics\">/metrics</a></p>\n",
        escape(&duration(page.window_secs))
    );
    out.push_str("</footer>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, page: &Page, now: DateTime<Utc>) {
    let countries = page.countries.iter().filter(|c| c.probes_active > 0).count();
    let blocked_countries = page.countries.iter().filter(|c| !c.blocked.is_empty()).count();
    out.push_str("<header>\n<h1>Vantage <span>censorship status</span></h1>\n<p class=\"meta\">");
    let _ = write!(
        out,
        "<span>Fleet: <b id=\"fleet-size\">{}</b> active {} in <b>{}</b> {}</span>",
        page.probes_total,
        plural(page.probes_total, "probe", "probes"),
        countries,
        plural(countries as u64, "country", "countries")
    );
    let _ = write!(
        out,
        "<span>Blocking reported in <b>{blocked_countries}</b> {}</span>",
        plural(blocked_countries as u64, "country", "countries")
    );
    let _ = write!(out, "<span>Last ingest: <b id=\"last-ingest\">{}</b></span>", escape(&when(page.last_ingest, now)));
    let _ = write!(out, "<span>Window: last {}</span>", escape(&duration(page.window_secs)));
    let _ = write!(out, "<span>Updated: {}</span>", escape(&when(page.read_at, now)));
    out.push_str("</p>\n</header>\n");
}

fn country_section(out: &mut String, country: &Country, timelines: &Timelines, now: DateTime<Utc>) {
    let cc = escape(&country.cc);
    if country.blocked.is_empty() {
        let _ = write!(
            out,
            "<section class=\"country quiet\" id=\"country-{cc}\"><h2><span class=\"cc\">{cc}</span>\
             <span class=\"summary\">{} active {}</span></h2><p>No blocking reported.</p>",
            country.probes_active,
            plural(country.probes_active, "probe", "probes"),
        );
        timeline(out, timelines, &country.cc);
        out.push_str("</section>\n");
        return;
    }
    let pairs = country.blocked.len() + country.more;
    let _ = writeln!(
        out,
        "<section class=\"country\" id=\"country-{cc}\"><h2><span class=\"cc\">{cc}</span>\
         <span class=\"summary bad\">{pairs} blocked {}</span><span class=\"summary\">{} active {}</span></h2>",
        plural(pairs as u64, "target/test", "targets/tests"),
        country.probes_active,
        plural(country.probes_active, "probe", "probes"),
    );
    timeline(out, timelines, &country.cc);
    out.push_str(
        "<table>\n<colgroup><col class=\"c-target\"><col class=\"c-test\"><col class=\"c-how\"><col class=\"c-n\">\
         <col class=\"c-n\"><col class=\"c-since\"><col class=\"c-link\"></colgroup>\n<thead><tr><th>Target</th><th>Test</th><th>How</th><th>Probes</th><th>Networks</th>\
         <th>Blocked since</th><th>Evidence</th></tr></thead>\n<tbody>\n",
    );
    for row in &country.blocked {
        blocked_row(out, &country.cc, row, now);
    }
    out.push_str("</tbody>\n</table>\n");
    if country.more > 0 {
        let _ = writeln!(out, "<p class=\"more\">{} more not shown (fewest probes).</p>", country.more);
    }
    out.push_str("</section>\n");
}

fn blocked_row(out: &mut String, cc: &str, row: &BlockedRow, now: DateTime<Utc>) {
    let link = format!(
        "/api/v1/measurements?country={}&target={}&verdict=blocked&test={}",
        query_value(cc),
        query_value(&row.target),
        query_value(row.test.as_str())
    );
    let listed = if row.published { "" } else { "<span class=\"unlisted\">not on the published list</span>" };
    let _ = write!(
        out,
        "<tr class=\"blocked\"><td class=\"target\">{}<span class=\"badge\">blocked</span>{listed}</td><td>{}</td><td>",
        escape(&row.target),
        escape(row.test.as_str())
    );
    if row.mechanisms.is_empty() {
        out.push_str("<span class=\"mech\">—</span>");
    }
    for (mechanism, probes) in &row.mechanisms {
        let _ = write!(out, "<span class=\"mech\"><code>{}</code>", escape(mechanism.as_str()));
        if row.mechanisms.len() > 1 {
            let _ = write!(out, " ×{probes}");
        }
        out.push_str("</span>");
    }
    let _ = writeln!(
        out,
        "</td><td class=\"n\"><b>{}</b> of {} {}</td><td class=\"n\"><b>{}</b> of {} {}</td>\
         <td class=\"when\">{}</td><td class=\"link\"><a href=\"{}\">raw data →</a></td></tr>",
        row.probes_blocked,
        row.probes_total,
        plural(row.probes_total, "probe", "probes"),
        row.asns_blocked,
        row.asns_total,
        plural(row.asns_total, "ASN", "ASNs"),
        since(row.since, now),
        escape(&link),
    );
}

/// The timeline of `cc` as a figure with its key, if it had anything blocked in the span.
fn timeline(out: &mut String, timelines: &Timelines, cc: &str) {
    let Some(country) = timelines.country(cc) else {
        return;
    };
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption><span>Share of measurements blocked, per target, {} (UTC)</span>\
         <span class=\"key\"><i class=\"k-red\"></i>blocked <i class=\"k-track\"></i>measured · no bar: nothing \
         conclusive measured</span></figcaption>{}",
        if timelines.bucket_secs == 86_400 { "day by day" } else { "hour by hour" },
        svg::render(country, timelines),
    );
    if country.more > 0 {
        let _ =
            write!(out, "<p class=\"more\">{} more blocked targets not drawn (fewest blocked measurements).</p>", country.more);
    }
    out.push_str("</figure>\n");
}

/// Countries blocked earlier in the timelines' span but with no probe active in the window.
fn earlier_only(out: &mut String, page: &Page) {
    for country in page.timelines.countries.iter().filter(|t| !page.countries.iter().any(|c| c.cc == t.cc)) {
        let cc = escape(&country.cc);
        let _ = write!(
            out,
            "<section class=\"country quiet\" id=\"country-{cc}\"><h2><span class=\"cc\">{cc}</span>\
             <span class=\"summary\">no probe active in the last {}</span></h2>",
            escape(&duration(page.window_secs)),
        );
        timeline(out, &page.timelines, &country.cc);
        out.push_str("</section>\n");
    }
}

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query value: everything but RFC 3986 unreserved characters.
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn since(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        Some(at) => format!("{}<small>{}</small>", escape(&at.format("%Y-%m-%d %H:%M UTC").to_string()), escape(&ago(at, now))),
        None => "—".to_string(),
    }
}

fn when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        Some(at) => format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S UTC"), ago(at, now)),
        None => "never".to_string(),
    }
}

fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    match secs {
        s if s < 0 => "in the future: probe clock ahead".to_string(),
        s if s < 60 => "just now".to_string(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} {}", s / 86_400, plural(s / 86_400, "day", "days")),
        s if s % 3600 == 0 => format!("{} {}", s / 3600, plural(s / 3600, "hour", "hours")),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use vantage_measurement::{Mechanism, TestKind};

    use super::*;
    use crate::status::timeline::{Bucket, CountryTimeline, TargetSeries};

    fn page_with_target(target: &str) -> Page {
        Page {
            window_secs: 3600,
            probes_total: 3,
            countries: vec![Country {
                cc: "DE".into(),
                probes_active: 3,
                blocked: vec![BlockedRow {
                    target: target.into(),
                    published: false,
                    test: TestKind::Tls,
                    mechanisms: vec![(Mechanism::TlsResetAfterClientHello, 2)],
                    probes_blocked: 2,
                    probes_total: 3,
                    asns_blocked: 1,
                    asns_total: 2,
                    since: DateTime::from_timestamp(1_700_000_000, 0),
                    streak_keys: vec![],
                }],
                more: 0,
            }],
            ..Page::default()
        }
    }

    #[test]
    fn hostile_names_are_escaped_in_text_and_links() {
        let html = render(&page_with_target("<script>alert('x')</script>&\"q=1"), &[], Utc::now());
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q=1"), "{html}");
        assert!(
            html.contains("target=%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%26%22q%3D1&amp;verdict=blocked"),
            "the link keeps the name as one query value: {html}"
        );
    }

    #[test]
    fn a_blocked_row_shows_what_where_how_and_since() {
        let now = DateTime::from_timestamp(1_700_000_000 + 7200, 0).expect("time");
        let html = render(&page_with_target("wikipedia"), &[], now);
        for expected in [
            "<span class=\"cc\">DE</span>",
            "wikipedia<span class=\"badge\">blocked</span>",
            "<code>tls.reset_after_clienthello</code>",
            "<b>2</b> of 3 probes",
            "<b>1</b> of 2 ASNs",
            "2023-11-14 22:13 UTC<small>2 h ago</small>",
            "href=\"/api/v1/measurements?country=DE&amp;target=wikipedia&amp;verdict=blocked&amp;test=tls\"",
            "not on the published list",
        ] {
            assert!(html.contains(expected), "missing {expected:?} in {html}");
        }
    }

    #[test]
    fn timelines_sit_under_their_country_heading_even_without_probes_active_now() {
        let mut page = page_with_target("wikipedia");
        let series =
            |target: &str| TargetSeries { target: target.into(), buckets: vec![Some(Bucket { blocked: 1, measured: 2 })] };
        page.timelines = Timelines {
            start: DateTime::from_timestamp(1_700_000_000, 0),
            bucket_secs: 3600,
            buckets: 1,
            countries: vec![
                CountryTimeline { cc: "DE".into(), targets: vec![series("wikipedia")], more: 2 },
                CountryTimeline { cc: "IR".into(), targets: vec![series("signal")], more: 0 },
            ],
        };
        let html = render(&page, &[], Utc::now());
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("no {needle:?} in {html}"));
        assert!(at("id=\"country-DE\"") < at("id=\"timeline-DE\"") && at("id=\"timeline-DE\"") < at("<table>"));
        assert!(html.contains("2 more blocked targets not drawn"), "{html}");
        assert!(at("<table>") < at("id=\"country-IR\"") && at("id=\"country-IR\"") < at("id=\"timeline-IR\""));
        assert!(html.contains("<span class=\"summary\">no probe active in the last 1 hour</span>"), "{html}");
    }

    #[test]
    fn an_empty_fleet_says_so() {
        let html = render(&Page { window_secs: 3600, ..Page::default() }, &[], Utc::now());
        assert!(html.contains("No signed measurements in the last 1 hour"), "{html}");
        assert!(html.contains("Last ingest: <b id=\"last-ingest\">never</b>"), "{html}");
    }
}
