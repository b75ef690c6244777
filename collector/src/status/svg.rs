//! One country's timelines drawn as an inline SVG: a row per target, a bar per bucket whose red
//! part is the blocked share, on a light track that says "measured". A bucket with nothing
//! conclusive has no bar: a gap, never a zero.
//!
//! Pure and script-free, so it passes the page's Content-Security-Policy and is tested as a
//! string. Every bar carries its values as `data-t` (bucket start, RFC 3339), `data-blocked` and
//! `data-measured`, which a browser test reads back, and a `<title>` a pointer or screen reader
//! shows. Target names come from probes: every text and attribute value goes through
//! [`escape`]; long names are shortened on screen and kept whole in the row's `<title>`.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::escape;
use super::timeline::{Bucket, CountryTimeline, Timelines};

/// The page's colours (see the stylesheet in [`super::html`]).
const RED: &str = "#b42318";
const TRACK: &str = "#e3e6ec";
const MUTED: &str = "#5b6475";
const FG: &str = "#1d2330";
const FONT: &str = "system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif";

/// Width of the target names' column.
const LABEL_W: f64 = 190.0;
/// Width of the bars' area, whatever the number of buckets.
const PLOT_W: f64 = 576.0;
/// Width of the latest share's column, right of the bars.
const LAST_W: f64 = 54.0;
/// Height of one target's row and of its tallest bar.
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 16.0;
/// Height of the time axis under the rows.
const AXIS_H: f64 = 18.0;
/// Characters of a target name shown before it is shortened.
const LABEL_CHARS: usize = 26;

/// The SVG for `country`, drawn over `timelines`' span.
pub fn render(country: &CountryTimeline, timelines: &Timelines) -> String {
    let buckets = timelines.buckets.max(1);
    let step = PLOT_W / buckets as f64;
    let width = LABEL_W + PLOT_W + LAST_W;
    let height = ROW_H * country.targets.len() as f64 + AXIS_H;
    let cc = escape(&country.cc);
    let label = format!(
        "Blocked share per target in {cc}, {} over the last {} (UTC)",
        if timelines.bucket_secs == 86_400 { "daily" } else { "hourly" },
        escape(&span_text(timelines)),
    );
    let mut out = String::with_capacity(2048 + country.targets.len() * buckets * 220);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" id=\"timeline-{cc}\" role=\"img\" \
         aria-label=\"{label}\" aria-describedby=\"timeline-{cc}-desc\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"{FONT}\" font-size=\"12\"><title>{label}</title>\
         <desc id=\"timeline-{cc}-desc\">{}</desc>",
        escape(&summary(country, timelines)),
    );
    for (i, series) in country.targets.iter().enumerate() {
        let top = ROW_H * i as f64;
        let target = escape(&series.target);
        let _ = write!(
            out,
            "<g class=\"series\" data-target=\"{target}\"><title>{target}</title>\
             <text x=\"0\" y=\"{}\" fill=\"{FG}\">{}</text>\
             <line x1=\"{LABEL_W}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{TRACK}\"/>",
            top + 15.0,
            escape(&shortened(&series.target)),
            LABEL_W + PLOT_W,
            top + 3.5 + BAR_H,
            top + 3.5 + BAR_H,
        );
        for (b, bucket) in series.buckets.iter().enumerate() {
            if let (Some(bucket), Some(start)) = (bucket, timelines.bucket_start(b)) {
                bar(&mut out, bucket, start, timelines.bucket_secs, LABEL_W + step * b as f64, top + 3.0, step);
            }
        }
        if let Some(last) = series.buckets.iter().rev().flatten().next() {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{}\">{}</text>",
                width - 2.0,
                top + 15.0,
                if last.blocked > 0 { RED } else { MUTED },
                percent(last),
            );
        }
        out.push_str("</g>");
    }
    axis(&mut out, timelines, step, ROW_H * country.targets.len() as f64);
    out.push_str("</svg>");
    out
}

/// One bucket's bar: the track (measured) and the blocked part, bottom-aligned.
fn bar(out: &mut String, bucket: &Bucket, start: DateTime<Utc>, bucket_secs: u64, x: f64, top: f64, step: f64) {
    let w = (step - 2.0).max(1.0);
    let blocked_h = (BAR_H * bucket.share()).max(if bucket.blocked > 0 { 1.5 } else { 0.0 });
    let end = start + chrono::TimeDelta::seconds(bucket_secs as i64);
    let when = if bucket_secs == 86_400 {
        start.format("%Y-%m-%d").to_string()
    } else {
        format!("{}–{} UTC", start.format("%Y-%m-%d %H:%M"), end.format("%H:%M"))
    };
    let _ = write!(
        out,
        "<g class=\"pt\" data-t=\"{}\" data-blocked=\"{}\" data-measured=\"{}\"><title>{}: {} of {} blocked ({})</title>\
         <rect x=\"{x:.1}\" y=\"{top}\" width=\"{w:.1}\" height=\"{BAR_H}\" rx=\"1.5\" fill=\"{TRACK}\"/>",
        escape(&start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        bucket.blocked,
        bucket.measured,
        escape(&when),
        bucket.blocked,
        bucket.measured,
        percent(bucket),
    );
    if blocked_h > 0.0 {
        let _ = write!(
            out,
            "<rect class=\"blocked\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{blocked_h:.1}\" rx=\"1.5\" fill=\"{RED}\"/>",
            top + BAR_H - blocked_h,
        );
    }
    out.push_str("</g>");
}

/// Tick labels under the bars: the hours divisible by 6 (or every 5th day back from today) at
/// their bucket's left edge, and "now" at the right end.
fn axis(out: &mut String, timelines: &Timelines, step: f64, top: f64) {
    let daily = timelines.bucket_secs == 86_400;
    let y = top + 14.0;
    let mut tick = |x: f64, anchor: &str, text: &str| {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\" fill=\"{MUTED}\" font-size=\"11\">{}</text>",
            escape(text)
        );
    };
    // Not within the last two buckets, where "now" is written.
    for b in 0..timelines.buckets.saturating_sub(2) {
        let Some(start) = timelines.bucket_start(b) else {
            return;
        };
        let (due, text) = if daily {
            ((timelines.buckets - 1 - b).is_multiple_of(5), start.format("%m-%d").to_string())
        } else {
            (start.timestamp().rem_euclid(6 * 3600) == 0, start.format("%H:00").to_string())
        };
        if due {
            tick(LABEL_W + step * b as f64, "middle", &text);
        }
    }
    tick(LABEL_W + PLOT_W, "end", if daily { "today" } else { "now" });
}

/// The chart in words, for screen readers: per target, in how many buckets it was blocked and
/// its latest share.
fn summary(country: &CountryTimeline, timelines: &Timelines) -> String {
    let unit = if timelines.bucket_secs == 86_400 { "days" } else { "hours" };
    let mut parts: Vec<String> = country
        .targets
        .iter()
        .map(|series| {
            let measured = series.buckets.iter().flatten().count();
            let blocked = series.buckets.iter().flatten().filter(|b| b.blocked > 0).count();
            let latest = series.buckets.iter().rev().flatten().next().map(percent).unwrap_or_default();
            format!("{}: blocked in {blocked} of {measured} {unit} measured, latest {latest}", series.target)
        })
        .collect();
    if country.more > 0 {
        parts.push(format!("{} more targets not drawn", country.more));
    }
    parts.join("; ") + "."
}

fn span_text(timelines: &Timelines) -> String {
    let secs = timelines.bucket_secs.saturating_mul(timelines.buckets as u64);
    if timelines.bucket_secs == 86_400 { format!("{} days", secs / 86_400) } else { format!("{} hours", secs / 3600) }
}

fn percent(bucket: &Bucket) -> String {
    format!("{:.0} %", bucket.share() * 100.0)
}

fn shortened(name: &str) -> String {
    if name.chars().count() <= LABEL_CHARS {
        return name.to_string();
    }
    let mut short: String = name.chars().take(LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
#[path = "../../tests/api/markup.rs"]
mod markup;

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::markup::{Element, tags, timeline_points};
    use super::*;
    use crate::status::timeline::TargetSeries;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).expect("time").with_timezone(&Utc)
    }

    fn timelines(targets: Vec<TargetSeries>) -> Timelines {
        Timelines {
            start: Some(at("2026-12-01T06:00:00Z")),
            bucket_secs: 3600,
            buckets: 24,
            countries: vec![CountryTimeline { cc: "DE".into(), targets, more: 0 }],
        }
    }

    fn series(target: &str, filled: &[(usize, u64, u64)]) -> TargetSeries {
        let mut buckets = vec![None; 24];
        for (i, blocked, measured) in filled {
            buckets[*i] = Some(Bucket { blocked: *blocked, measured: *measured });
        }
        TargetSeries { target: target.into(), buckets }
    }

    #[test]
    fn every_measured_bucket_is_a_bar_carrying_its_values_and_gaps_have_none() {
        let t = timelines(vec![series("wikipedia", &[(0, 1, 4), (5, 0, 3), (23, 2, 2)]), series("signal", &[(22, 1, 1)])]);
        let svg = render(&t.countries[0], &t);
        let points = timeline_points(&svg, "DE");
        let start = at("2026-12-01T06:00:00Z");
        let hour = |i: i64| (start + TimeDelta::hours(i)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(
            points,
            vec![
                ("wikipedia".to_string(), vec![(hour(0), 1, 4), (hour(5), 0, 3), (hour(23), 2, 2)]),
                ("signal".to_string(), vec![(hour(22), 1, 1)]),
            ]
        );
        let all = tags(&svg);
        let blocked_bars = all.iter().filter(|e| e.name == "rect" && e.has_class("blocked")).count();
        assert_eq!(blocked_bars, 3, "a bucket with nothing blocked has a track but no red part");
        let full = all.iter().find(|e| e.has_class("blocked") && e.get("height") == Some("16.0")).expect("a 100 % bar");
        assert_eq!(full.get("fill"), Some(RED));
    }

    #[test]
    fn the_chart_is_labelled_for_people_who_cannot_see_it() {
        let t = timelines(vec![series("wikipedia", &[(23, 3, 4)])]);
        let svg = render(&t.countries[0], &t);
        let all = tags(&svg);
        let root = &all[0];
        assert_eq!((root.name.as_str(), root.get("role"), root.get("id")), ("svg", Some("img"), Some("timeline-DE")));
        let label = root.get("aria-label").expect("aria-label");
        assert_eq!(label, "Blocked share per target in DE, hourly over the last 24 hours (UTC)");
        assert_eq!(all[1].name, "title");
        let desc = all.iter().find(|e| e.name == "desc").expect("desc");
        assert_eq!(root.get("aria-describedby"), desc.get("id"));
        assert!(svg.contains(">wikipedia: blocked in 1 of 1 hours measured, latest 75 %.</desc>"), "{svg}");
        assert!(svg.contains("2026-12-02 05:00–06:00 UTC: 3 of 4 blocked (75 %)</title>"), "{svg}");
        let ticks: Vec<&Element> = all.iter().filter(|e| e.has_class("tick")).collect();
        let anchors: Vec<Option<&str>> = ticks.iter().map(|e| e.get("text-anchor")).collect();
        assert_eq!(anchors, vec![Some("middle"); 4].into_iter().chain([Some("end")]).collect::<Vec<_>>());
        for text in [">06:00</text>", ">12:00</text>", ">18:00</text>", ">00:00</text>", ">now</text>"] {
            assert!(svg.contains(text), "tick {text} in {svg}");
        }
    }

    #[test]
    fn hostile_target_names_are_escaped_everywhere() {
        let name = "<script>alert('x')</script>&\"q=1\" onload=\"x";
        let t = timelines(vec![series(name, &[(1, 1, 1)])]);
        let svg = render(&t.countries[0], &t);
        assert!(!svg.contains("<script"), "{svg}");
        let series_tag = tags(&svg).into_iter().find(|e| e.has_class("series")).expect("series");
        assert_eq!(series_tag.get("data-target"), Some(name), "the name survives whole, as one attribute");
        assert!(!series_tag.attributes.contains_key("onload"));
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q=1&quot; onload=&quot;x</title>"));
    }

    #[test]
    fn long_names_are_shortened_on_screen_only() {
        let name = "a-very-long-target-name-from-a-probe.example.org";
        let t = timelines(vec![series(name, &[(1, 1, 1)])]);
        let svg = render(&t.countries[0], &t);
        assert!(svg.contains(&format!("<title>{name}</title>")));
        assert!(svg.contains(">a-very-long-target-name-f…</text>"), "{svg}");
    }
}
