//! Key templates: where a radar's files sit in the bucket and what time each
//! one holds.
//!
//! A template is a key with placeholders, e.g. the default
//! `{radar}/{yyyy}/{mm}/{dd}/{file}` or NEXRAD's
//! `{yyyy}/{mm}/{dd}/{RADAR}/{RADAR}{yyyy}{mm}{dd}_{HH}{MM}{SS}{*}`:
//!
//! | placeholder | matches |
//! |---|---|
//! | `{radar}` / `{RADAR}` | the radar id as configured / in upper case |
//! | `{yyyy}` `{mm}` `{dd}` | year, month, day (4, 2, 2 digits) |
//! | `{HH}` `{MM}` `{SS}` | hour, minute, second (2 digits each) |
//! | `{file}` | the rest of the name (last segment only); the time is read from it |
//! | `{*}` | any characters within one segment (at most two `{*}` a template) |
//!
//! The time of a key comes from the date and time placeholders when the
//! template has them all, otherwise from the file name (see
//! [`time_from_name`]), otherwise from the object's modification time.
//!
//! The directory part before the file name must be built from literals,
//! `{radar}`/`{RADAR}` and the date placeholders only, so that one
//! ListObjectsV2 per day prefix finds every file of that day.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// The default layout below the source prefix.
pub const DEFAULT_TEMPLATE: &str = "{radar}/{yyyy}/{mm}/{dd}/{file}";

/// Most `{*}` a template may hold: matching backtracks over every split of
/// the file name between them, so the work grows as the name's length to
/// this power.
const MAX_WILDCARDS: usize = 2;

/// A template could not be parsed or is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Radar,
    RadarUpper,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    File,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field(Field),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    /// Parts of the directory prefix (up to and including the last `/`).
    dir: Vec<Part>,
    /// Parts of the file name.
    name: Vec<Part>,
}

/// What a key told about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    /// The time, when the key or file name holds one.
    pub time: Option<DateTime<Utc>>,
    /// The folders' date, when the template has year, month and day.
    pub date: Option<NaiveDate>,
    /// The file name (last segment).
    pub file_name: String,
}

impl KeyMatch {
    /// The span of time the key names: its time (a span of no length), else
    /// its folders' whole day (`[00:00, next 00:00)`); `None` when the key
    /// names neither. A scan's content time is expected in it, give or take
    /// the ingest's `key_time_tolerance`.
    pub fn time_span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match (self.time, self.date) {
            (Some(t), _) => Some((t, t)),
            (None, Some(d)) => {
                let start = Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
                Some((start, start + chrono::Duration::days(1)))
            }
            (None, None) => None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Captures {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
    minute: Option<u32>,
    second: Option<u32>,
}

impl KeyTemplate {
    /// Parses and checks a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let err = |reason: &str| TemplateError {
            template: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() || text.starts_with('/') || text.ends_with('/') {
            return Err(err("must be a relative key ending in a file name"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(stripped) = rest.strip_prefix('{') {
                let end = stripped.find('}').ok_or_else(|| err("unclosed '{'"))?;
                let field = match &stripped[..end] {
                    "radar" => Field::Radar,
                    "RADAR" => Field::RadarUpper,
                    "yyyy" => Field::Year,
                    "mm" => Field::Month,
                    "dd" => Field::Day,
                    "HH" => Field::Hour,
                    "MM" => Field::Minute,
                    "SS" => Field::Second,
                    "file" => Field::File,
                    "*" => Field::Any,
                    other => return Err(err(&format!("unknown placeholder {{{other}}}"))),
                };
                parts.push(Part::Field(field));
                rest = &stripped[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if lit.contains('}') {
                    return Err(err("stray '}'"));
                }
                parts.push(Part::Lit(lit.to_string()));
                rest = &rest[end..];
            }
        }
        // Split at the last '/', which must sit in a literal.
        let mut dir = Vec::new();
        let mut name = Vec::new();
        let last_lit_with_slash = parts
            .iter()
            .rposition(|p| matches!(p, Part::Lit(l) if l.contains('/')));
        for (i, p) in parts.into_iter().enumerate() {
            match (last_lit_with_slash, p) {
                (Some(j), Part::Lit(l)) if i == j => {
                    let k = l.rfind('/').unwrap_or(0);
                    dir.push(Part::Lit(l[..=k].to_string()));
                    if k + 1 < l.len() {
                        name.push(Part::Lit(l[k + 1..].to_string()));
                    }
                }
                (Some(j), p) if i < j => dir.push(p),
                (_, p) => name.push(p),
            }
        }
        if dir.iter().any(|p| {
            matches!(
                p,
                Part::Field(Field::File | Field::Any | Field::Hour | Field::Minute | Field::Second)
            )
        }) {
            return Err(err(
                "folders may only use literals, {radar}, {RADAR}, {yyyy}, {mm} and {dd}",
            ));
        }
        let files = name
            .iter()
            .filter(|p| matches!(p, Part::Field(Field::File)))
            .count();
        if files > 1 {
            return Err(err("{file} may appear once"));
        }
        if files == 1 && !matches!(name.last(), Some(Part::Field(Field::File))) {
            return Err(err("{file} must end the template"));
        }
        // Each {*} multiplies the matching work by the name's length.
        let wildcards = name
            .iter()
            .filter(|p| matches!(p, Part::Field(Field::Any)))
            .count();
        if wildcards > MAX_WILDCARDS {
            return Err(err("{*} may appear at most twice"));
        }
        let has = |f: Field| dir.iter().chain(&name).any(|p| *p == Part::Field(f));
        if has(Field::Day) && !(has(Field::Month) && has(Field::Year)) {
            return Err(err("{dd} needs {mm} and {yyyy}"));
        }
        Ok(Self {
            text: text.to_string(),
            dir,
            name,
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The date granularity of the folders: how specific a listing prefix
    /// can be. `Day` for the default layout.
    pub fn folder_granularity(&self) -> Granularity {
        let has = |f: Field| self.dir.contains(&Part::Field(f));
        if has(Field::Day) {
            Granularity::Day
        } else if has(Field::Month) {
            Granularity::Month
        } else if has(Field::Year) {
            Granularity::Year
        } else {
            Granularity::None
        }
    }

    /// The folder prefix holding `radar`'s files of `day` (the day's month or
    /// year folder for coarser layouts; the radar's root without dates).
    pub fn prefix_for(&self, radar: &str, day: NaiveDate) -> String {
        let mut out = String::new();
        for p in &self.dir {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Field(Field::Radar) => out.push_str(radar),
                Part::Field(Field::RadarUpper) => out.push_str(&radar.to_ascii_uppercase()),
                Part::Field(Field::Year) => out.push_str(&day.format("%Y").to_string()),
                Part::Field(Field::Month) => out.push_str(&day.format("%m").to_string()),
                Part::Field(Field::Day) => out.push_str(&day.format("%d").to_string()),
                Part::Field(_) => {}
            }
        }
        out
    }

    /// The folder prefix that does not depend on the date: everything before
    /// the first date placeholder (e.g. `bom02/` for the default layout).
    pub fn static_prefix(&self, radar: &str) -> String {
        let mut out = String::new();
        for p in &self.dir {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Field(Field::Radar) => out.push_str(radar),
                Part::Field(Field::RadarUpper) => out.push_str(&radar.to_ascii_uppercase()),
                Part::Field(_) => break,
            }
        }
        // Only whole folders.
        match out.rfind('/') {
            Some(i) => out[..=i].to_string(),
            None => String::new(),
        }
    }

    /// True when the template's own placeholders give the full time (then
    /// keys sort by time within a folder and S3 `StartAfter` is safe).
    pub fn time_in_key(&self) -> bool {
        let has = |f: Field| {
            self.dir
                .iter()
                .chain(&self.name)
                .any(|p| *p == Part::Field(f))
        };
        has(Field::Year)
            && has(Field::Month)
            && has(Field::Day)
            && has(Field::Hour)
            && has(Field::Minute)
    }

    /// The radar id a key names through a folder that is exactly `{radar}`
    /// (or `{RADAR}`, read in lower case), when the key then follows the
    /// template for that radar. `None` for templates without such a folder.
    pub fn radar_of(&self, key: &str) -> Option<String> {
        // The folders of the template, each as its list of parts.
        let mut folders: Vec<Vec<&Part>> = vec![Vec::new()];
        for part in &self.dir {
            match part {
                Part::Lit(l) => {
                    let mut pieces = l.split('/');
                    if pieces.next().is_some_and(|p| !p.is_empty()) {
                        folders.last_mut()?.push(part);
                    }
                    for piece in pieces {
                        folders.push(Vec::new());
                        if !piece.is_empty() {
                            folders.last_mut()?.push(part);
                        }
                    }
                }
                Part::Field(_) => folders.last_mut()?.push(part),
            }
        }
        let index = folders.iter().position(|f| {
            matches!(
                f.as_slice(),
                [Part::Field(Field::Radar | Field::RadarUpper)]
            )
        })?;
        let id = key.split('/').nth(index)?.to_ascii_lowercase();
        self.match_key(&id, key).map(|_| id)
    }

    /// Matches a key for `radar`. `None` when the key does not follow the
    /// template (another radar's file, a README ...).
    pub fn match_key(&self, radar: &str, key: &str) -> Option<KeyMatch> {
        let upper = radar.to_ascii_uppercase();
        let all: Vec<&Part> = self.dir.iter().chain(&self.name).collect();
        let mut caps = Captures::default();
        let mut file: Option<String> = None;
        if !match_parts(&all, key, radar, &upper, &mut caps, &mut file) {
            return None;
        }
        let file_name = key.rsplit('/').next().unwrap_or(key).to_string();
        let date = match (caps.year, caps.month, caps.day) {
            (Some(y), Some(m), Some(d)) => Some(NaiveDate::from_ymd_opt(y, m, d)?),
            _ => None,
        };
        let time = match (date, caps.hour, caps.minute) {
            (Some(d), Some(h), Some(mi)) => {
                let t = NaiveTime::from_hms_opt(h, mi, caps.second.unwrap_or(0))?;
                Some(Utc.from_utc_datetime(&d.and_time(t)))
            }
            _ => {
                let from_name = time_from_name(file.as_deref().unwrap_or(&file_name));
                // A name time must agree with the folders' date, if any.
                match (from_name, date) {
                    (Some(t), Some(d)) if t.date_naive() != d => None,
                    (t, _) => t,
                }
            }
        };
        Some(KeyMatch {
            time,
            date,
            file_name,
        })
    }
}

/// Date granularity of a template's folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Granularity {
    None,
    Year,
    Month,
    Day,
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// Backtracking matcher over template parts.
fn match_parts(
    parts: &[&Part],
    s: &str,
    radar: &str,
    upper: &str,
    caps: &mut Captures,
    file: &mut Option<String>,
) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return s.is_empty();
    };
    match first {
        Part::Lit(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|r| match_parts(rest, r, radar, upper, caps, file)),
        Part::Field(Field::Radar) => s
            .strip_prefix(radar)
            .is_some_and(|r| match_parts(rest, r, radar, upper, caps, file)),
        Part::Field(Field::RadarUpper) => s
            .strip_prefix(upper)
            .is_some_and(|r| match_parts(rest, r, radar, upper, caps, file)),
        Part::Field(Field::File) => {
            if s.is_empty() || s.contains('/') || s.starts_with('.') {
                return false;
            }
            *file = Some(s.to_string());
            rest.is_empty()
        }
        Part::Field(Field::Any) => {
            // Shortest match first, never across '/'.
            let limit = s.find('/').unwrap_or(s.len());
            for i in 0..=limit {
                if s.is_char_boundary(i) {
                    let saved = *caps;
                    if match_parts(rest, &s[i..], radar, upper, caps, file) {
                        return true;
                    }
                    *caps = saved;
                }
            }
            false
        }
        Part::Field(f) => {
            let n = if *f == Field::Year { 4 } else { 2 };
            let Some((v, r)) = digits(s, n) else {
                return false;
            };
            let slot = match f {
                Field::Year => {
                    // Like the other fields: a repeated year must agree.
                    if caps.year.is_some_and(|old| old != v as i32) {
                        return false;
                    }
                    caps.year = Some(v as i32);
                    return match_parts(rest, r, radar, upper, caps, file);
                }
                Field::Month => &mut caps.month,
                Field::Day => &mut caps.day,
                Field::Hour => &mut caps.hour,
                Field::Minute => &mut caps.minute,
                _ => &mut caps.second,
            };
            // A placeholder used twice must hold the same value.
            if slot.is_some_and(|old| old != v) {
                return false;
            }
            *slot = Some(v);
            match_parts(rest, r, radar, upper, caps, file)
        }
    }
}

/// Reads a scan time from a file name, trying in order:
/// * `yyyymmdd` followed by an optional `_`, `-` or `T` and `HHMM[SS]`
///   (`2_20180616_100000.prcp-cscn.nc`, `KATX20130717_195021_V06`,
///   `T_PAAH21_C_EUOC_20180824180000.hdf`, `201609281600_fmi.pgm.gz`);
/// * MeteoSwiss `AQCyyJJJHHMM…` (two-digit year, day of year).
///
/// Returns `None` when no plausible time (years 1990–2100) is found.
pub fn time_from_name(name: &str) -> Option<DateTime<Utc>> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = &name[start..i];
        if run.len() >= 8 {
            let date_part = &run[..8];
            let mut time_part = run[8..].to_string();
            if time_part.is_empty() && i + 1 < b.len() && matches!(b[i], b'_' | b'-' | b'T') {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                time_part = name[i + 1..j].to_string();
            }
            if let Some(t) = parse_date_time(date_part, &time_part) {
                return Some(t);
            }
        }
    }
    // MeteoSwiss: AQC + yy + JJJ + HHMM.
    if let Some(pos) = name.find("AQC") {
        let d = name.get(pos + 3..pos + 12)?;
        if d.bytes().all(|c| c.is_ascii_digit()) {
            let yy: i32 = d[..2].parse().ok()?;
            let doy: u32 = d[2..5].parse().ok()?;
            let date = NaiveDate::from_yo_opt(2000 + yy, doy)?;
            let t = NaiveTime::from_hms_opt(d[5..7].parse().ok()?, d[7..9].parse().ok()?, 0)?;
            return Some(Utc.from_utc_datetime(&date.and_time(t)));
        }
    }
    None
}

fn parse_date_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
    if !(1990..=2100).contains(&chrono::Datelike::year(&d)) {
        return None;
    }
    let t = match time.len() {
        n if n >= 6 => NaiveTime::parse_from_str(&time[..6], "%H%M%S").ok()?,
        4 | 5 => NaiveTime::parse_from_str(&time[..4], "%H%M").ok()?,
        _ => return None,
    };
    Some(Utc.from_utc_datetime(&NaiveDateTime::new(d, t)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn default_template_matches_bom_keys() {
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        let m = t
            .match_key("bom02", "bom02/2018/06/16/2_20180616_100600.prcp-cscn.nc")
            .unwrap();
        assert_eq!(m.time, Some(utc(2018, 6, 16, 10, 6, 0)));
        assert_eq!(m.file_name, "2_20180616_100600.prcp-cscn.nc");
        assert!(t.match_key("bom03", "bom02/2018/06/16/x.nc").is_none());
        assert!(t.match_key("bom02", "bom02/2018/06/x.nc").is_none());
        assert!(t.match_key("bom02", "bom02/2018/06/16/sub/x.nc").is_none());
        // A name starting with '.' (a file in transit) is no scan, whatever
        // the source (docs/OPERATIONS.md "Radars and the bucket layout").
        assert!(t
            .match_key("bom02", "bom02/2018/06/16/.2_20180616_100600.prcp-cscn.nc")
            .is_none());
        // Name date disagreeing with the folders: no time.
        let m = t
            .match_key("bom02", "bom02/2018/06/17/2_20180616_100600.nc")
            .unwrap();
        assert_eq!(m.time, None);
        // A name without a time.
        assert_eq!(
            t.match_key("bom02", "bom02/2018/06/16/README")
                .unwrap()
                .time,
            None
        );
        assert_eq!(t.folder_granularity(), Granularity::Day);
        let day = NaiveDate::from_ymd_opt(2018, 6, 16).unwrap();
        assert_eq!(t.prefix_for("bom02", day), "bom02/2018/06/16/");
        assert_eq!(t.static_prefix("bom02"), "bom02/");
        assert!(!t.time_in_key());
    }

    #[test]
    fn a_repeated_year_must_agree() {
        // Found by the key_template fuzz target: the name's year overrode the
        // folder's, so a 2012 folder's key got a 2013 time (and sat outside
        // the 2013 day prefix the time implies).
        let t =
            KeyTemplate::parse("{yyyy}/{mm}/{dd}/{RADAR}/{RADAR}{yyyy}{mm}{dd}_{HH}{MM}{SS}{*}")
                .unwrap();
        assert!(t
            .match_key("katx", "2012/07/17/KATX/KATX20130717_195021_V06")
            .is_none());
        let m = t
            .match_key("katx", "2013/07/17/KATX/KATX20130717_195021_V06")
            .unwrap();
        assert_eq!(m.time, Some(utc(2013, 7, 17, 19, 50, 21)));
    }

    #[test]
    fn wildcards_are_limited() {
        // Found by the key_template fuzz target: seven {*} backtracked
        // through every split of a 120-byte name (a timeout).
        let err = KeyTemplate::parse("{*}{*}{*}{*}{*}{*}{*}1)").unwrap_err();
        assert_eq!(err.reason, "{*} may appear at most twice");
        // Two stay quick on a long name that does not match.
        let t = KeyTemplate::parse("{radar}/{*}a{*}b").unwrap();
        let key = format!("x/{}", "a".repeat(1000));
        assert!(t.match_key("x", &key).is_none());
        assert!(t.match_key("x", "x/zazb").is_some());
    }

    #[test]
    fn nexrad_template() {
        let t =
            KeyTemplate::parse("{yyyy}/{mm}/{dd}/{RADAR}/{RADAR}{yyyy}{mm}{dd}_{HH}{MM}{SS}{*}")
                .unwrap();
        let m = t
            .match_key("katx", "2013/07/17/KATX/KATX20130717_195021_V06")
            .unwrap();
        assert_eq!(m.time, Some(utc(2013, 7, 17, 19, 50, 21)));
        let m = t
            .match_key("katx", "2013/07/17/KATX/KATX20130717_195021_V03.gz")
            .unwrap();
        assert_eq!(m.time, Some(utc(2013, 7, 17, 19, 50, 21)));
        // The day in the name must equal the folder's.
        assert!(t
            .match_key("katx", "2013/07/17/KATX/KATX20130718_195021_V06")
            .is_none());
        assert!(t
            .match_key("katx", "2013/07/17/KLOT/KLOT20130717_195021_V06")
            .is_none());
        assert!(t.time_in_key());
        let day = NaiveDate::from_ymd_opt(2013, 7, 17).unwrap();
        assert_eq!(t.prefix_for("katx", day), "2013/07/17/KATX/");
        assert_eq!(t.static_prefix("katx"), "");
        // The radar named by a key (keys of radars nobody configured).
        assert_eq!(
            t.radar_of("2013/07/17/KLOT/KLOT20130717_195021_V06")
                .as_deref(),
            Some("klot")
        );
        assert_eq!(t.radar_of("2013/07/17/KLOT/KATX20130717_195021_V06"), None);
        assert_eq!(t.radar_of("2013/07/17"), None);
        let d = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            d.radar_of("bom02/2018/06/16/2_20180616_100000.nc")
                .as_deref(),
            Some("bom02")
        );
        assert_eq!(d.radar_of("README.md"), None);
        let flat = KeyTemplate::parse("radar_{radar}/{file}").unwrap();
        assert_eq!(flat.radar_of("radar_x/a.h5"), None);
    }

    #[test]
    fn coarser_layouts() {
        let t = KeyTemplate::parse("raw/{radar}/{yyyy}{mm}/{file}").unwrap();
        assert_eq!(t.folder_granularity(), Granularity::Month);
        let day = NaiveDate::from_ymd_opt(2016, 7, 11).unwrap();
        assert_eq!(t.prefix_for("mch", day), "raw/mch/201607/");
        assert_eq!(t.static_prefix("mch"), "raw/mch/");
        let m = t
            .match_key("mch", "raw/mch/201607/AQC161932100V_00005.801.gif")
            .unwrap();
        assert_eq!(m.time, Some(utc(2016, 7, 11, 21, 0, 0)));
        let flat = KeyTemplate::parse("{radar}/{file}").unwrap();
        assert_eq!(flat.folder_granularity(), Granularity::None);
        assert_eq!(flat.prefix_for("fmi", day), "fmi/");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "",
            "/a/{file}",
            "{radar}/",
            "{radar}/{nope}/{file}",
            "{radar}/{file}/{yyyy}",
            "{radar}/{file}{file}",
            "{radar}/{file}.h5",
            "{radar}/{dd}/{file}",
            "{radar/{file}",
            "{radar}}/{file}",
            "{radar}/{HH}/{file}",
        ] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_from_file_names() {
        let cases = [
            ("2_20180616_100000.prcp-cscn.nc", utc(2018, 6, 16, 10, 0, 0)),
            (
                "T_PAAH21_C_EUOC_20180824180000.hdf",
                utc(2018, 8, 24, 18, 0, 0),
            ),
            (
                "201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
                utc(2016, 9, 28, 16, 0, 0),
            ),
            ("KATX20130717_195021_V06", utc(2013, 7, 17, 19, 50, 21)),
            (
                "20210704155000.rad.bewe.dwd.2016.hdf",
                utc(2021, 7, 4, 15, 50, 0),
            ),
            ("AQC161932100V_00005.801.gif", utc(2016, 7, 11, 21, 0, 0)),
            ("synth_20260101T120500Z.h5", utc(2026, 1, 1, 12, 5, 0)),
        ];
        for (name, want) in cases {
            assert_eq!(time_from_name(name), Some(want), "{name}");
        }
        for bad in [
            "README",
            "12345678",
            "20181340_1000.h5",
            "x_19000101_000000.h5",
        ] {
            assert_eq!(time_from_name(bad), None, "{bad}");
        }
    }
}
