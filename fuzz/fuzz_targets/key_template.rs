//! The ingest key templates: `KeyTemplate::parse` on arbitrary text, then
//! every method of a parsed template and `match_key` on arbitrary keys.
//!
//! Input: UTF-8 lines, `template \n radar \n key \n key ...`. Besides "no
//! panic, no hang", a key whose time the template's own placeholders give
//! (`time_in_key`) must lie below the folder prefix of its own day, which
//! is what the day listings rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raincast_ingest::layout::{time_from_name, KeyTemplate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let template = lines.next().unwrap_or_default();
    let radar = lines.next().unwrap_or("bom02");
    let Ok(t) = KeyTemplate::parse(template) else {
        return;
    };
    assert_eq!(KeyTemplate::parse(t.as_str()).as_ref(), Ok(&t));
    let _ = (t.folder_granularity(), t.static_prefix(radar));
    for key in lines {
        let _ = time_from_name(key);
        let Some(m) = t.match_key(radar, key) else {
            continue;
        };
        assert!(key.ends_with(&m.file_name), "{key:?} -> {:?}", m.file_name);
        if let Some(time) = m.time {
            let prefix = t.prefix_for(radar, time.date_naive());
            if t.time_in_key() {
                assert!(key.starts_with(&prefix), "{key:?} is not below {prefix:?}");
            }
        } else {
            assert!(!t.time_in_key(), "{key:?} matched without its time");
        }
    }
});
