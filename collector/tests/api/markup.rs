//! A small reader of tags in HTML or SVG text, for asserting on elements and their
//! attributes rather than on substrings. Enough for what the collector writes and what Chromium
//! serialises (quoted attribute values, no `>` inside a tag but in a quoted value); not a
//! general parser. Also used by the status page's SVG unit tests (`src/status/svg.rs`).

use std::collections::BTreeMap;

/// A tag: its name and attributes (values with the five HTML entities decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

impl Element {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.get("class").is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

/// Every tag in `text`, in document order: start tags with their attributes, end tags as
/// `/name` without (comments and doctypes skipped).
pub fn tags(text: &str) -> Vec<Element> {
    let mut tags = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with('!') || rest.starts_with('?') {
            continue;
        }
        if let Some(end) = rest.strip_prefix('/') {
            let name_len = end.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(end.len());
            tags.push(Element { name: format!("/{}", end[..name_len].to_ascii_lowercase()), attributes: BTreeMap::new() });
            continue;
        }
        let name_len = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
        let name = rest[..name_len].to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut attributes = BTreeMap::new();
        let mut cursor = &rest[name_len..];
        loop {
            cursor = cursor.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if cursor.is_empty() || cursor.starts_with('>') {
                break;
            }
            let key_len = cursor.find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/').unwrap_or(cursor.len());
            let key = cursor[..key_len].to_ascii_lowercase();
            cursor = cursor[key_len..].trim_start();
            let mut value = String::new();
            if let Some(after) = cursor.strip_prefix('=') {
                let after = after.trim_start();
                let (raw, next) = match after.chars().next() {
                    Some(quote @ ('"' | '\'')) => {
                        let body = &after[1..];
                        let end = body.find(quote).expect("a closed attribute quote");
                        (&body[..end], &body[end + 1..])
                    }
                    _ => {
                        let end = after.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                value = unescape(raw);
                cursor = next;
            }
            if key_len == 0 {
                // Not an attribute (a stray character): step over it.
                cursor = &cursor[cursor.chars().next().map_or(0, char::len_utf8)..];
                continue;
            }
            attributes.insert(key, value);
        }
        tags.push(Element { name, attributes });
        rest = cursor;
    }
    tags
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// One bar: `(data-t, data-blocked, data-measured)`.
pub type Point = (String, u64, u64);

/// The `(data-t, data-blocked, data-measured)` of every bar (`class="pt"`) of the timeline of
/// country `cc`, per target (`data-target` of its series), in document order.
pub fn timeline_points(text: &str, cc: &str) -> Vec<(String, Vec<Point>)> {
    let id = format!("timeline-{cc}");
    let mut inside = false;
    let mut series: Vec<(String, Vec<Point>)> = Vec::new();
    for tag in tags(text) {
        match tag.name.as_str() {
            "svg" => inside = tag.get("id") == Some(id.as_str()),
            "/svg" => inside = false,
            _ => {}
        }
        if !inside {
            continue;
        }
        if tag.has_class("series") {
            series.push((tag.get("data-target").expect("a series names its target").to_string(), Vec::new()));
        } else if tag.has_class("pt") {
            let number = |name| tag.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{name} in {tag:?}"));
            let point = (tag.get("data-t").expect("data-t").to_string(), number("data-blocked"), number("data-measured"));
            series.last_mut().expect("a point inside a series").1.push(point);
        }
    }
    series
}
