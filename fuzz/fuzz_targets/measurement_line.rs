//! Any text as one submitted NDJSON line through `parse_line`, the collector's validation: never
//! panics, and whatever it accepts is stored as its re-serialised form, so that form must parse
//! back (and validate) to an equal measurement and serialise to the same bytes again.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use vantage_measurement::{parse_line, validate};

fuzz_target!(|line: &str| {
    // A fixed "now", so a run is reproducible and the seeds (started at this instant) validate.
    let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default();
    let Ok(accepted) = parse_line(line, now) else { return };
    let stored = accepted.to_json_line().expect("an accepted measurement serialises");
    let again = parse_line(&stored, now).unwrap_or_else(|e| panic!("the stored form is refused: {e}\n{stored}"));
    assert_eq!(again, accepted, "the stored form parses to another measurement:\n{line}\n{stored}");
    assert_eq!(again.to_json_line().expect("serialises"), stored, "serialising is not stable");
    assert_eq!(validate(&again, now), Ok(()));
});
