//! Post texts: short, local time, an intensity word, the source radar.
//!
//! **Intensity bands** (area rate, mm/h), after the usual meteorological
//! convention (UK Met Office / WMO rain-rate classes):
//!
//! | word | rate |
//! |---|---|
//! | light | < 2.5 mm/h |
//! | moderate | 2.5 – 10 mm/h |
//! | heavy | ≥ 10 mm/h |
//!
//! **Length.** X counts most Latin, Greek, Cyrillic… characters as 1 and
//! others (CJK, emoji) as 2, with a limit of 280 ([`weighted_len`]). A text
//! that is too long loses its hashtags first (last one first), then the place
//! name is shortened with an ellipsis.
//!
//! **Times** are shown in the place's time zone with its abbreviation
//! (`14:35 CEST`).

use crate::events::{Event, EventKind};
use crate::place::Place;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Maximum weighted length of a post on X.
pub const MAX_POST_LEN: usize = 280;

/// The intensity bands are the algorithms' ([`Intensity::of_rain`]: an
/// event's rate is rain, so it reads at least "light").
pub use raincast_algorithms::nowcast::Intensity;

/// X's weighted length: 1 for code points in U+0000–U+10FF, U+2000–U+200D,
/// U+2010–U+201F and U+2032–U+2037, 2 for every other code point.
pub fn weighted_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => 1,
            _ => 2,
        })
        .sum()
}

/// Local `HH:MM ZONE` of `t` in the place's time zone.
pub fn local_time(place: &Place, t: DateTime<Utc>) -> String {
    t.with_timezone(&place.time_zone)
        .format("%H:%M %Z")
        .to_string()
}

/// A rate for humans: one decimal below 10 mm/h, whole numbers above.
pub fn format_rate(rate_mm_h: f32) -> String {
    if rate_mm_h < 10.0 {
        format!("{:.1} mm/h", rate_mm_h.max(0.0))
    } else {
        format!("{:.0} mm/h", rate_mm_h)
    }
}

/// Minutes rounded to the nearest 5 (at least 5), for "in about N min".
pub fn about_minutes(min: u32) -> u32 {
    (((min + 2) / 5) * 5).max(5)
}

fn capitalise(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The intensity a text tells: of the peak for an expected rain ("Heavy
/// rain expected … up to 16 mm/h"), of the rate now otherwise. Webhook
/// bodies carry the same word, so the two never disagree.
pub fn told_intensity(event: &Event) -> Intensity {
    match event.kind {
        EventKind::RainExpected => Intensity::of_rain(event.peak_mm_h),
        _ => Intensity::of_rain(event.rate_mm_h),
    }
}

fn body(event: &Event, place: &Place, name: &str) -> String {
    let radius = format!("{:.0} km", event.radius_km);
    let mut s = String::new();
    // `write!` into a String cannot fail.
    let _ = match event.kind {
        EventKind::RainExpected => {
            let lead = event.lead_min.unwrap_or(0);
            write!(
                s,
                "{} rain expected at {name} in about {} min (around {}), up to {} within {radius}.",
                capitalise(told_intensity(event).word()),
                about_minutes(lead),
                local_time(place, event.start_time),
                format_rate(event.peak_mm_h),
            )
        }
        EventKind::RainStarted => {
            let until = match event.easing_after_min {
                Some(m) => format!("Likely to stop in about {} min.", about_minutes(m)),
                None => format!("More rain over the next {} min.", event.horizon_min),
            };
            write!(
                s,
                "Rain has started at {name} ({}): {}, about {} within {radius}. {until}",
                local_time(place, event.start_time),
                told_intensity(event).word(),
                format_rate(event.rate_mm_h),
            )
        }
        EventKind::HeavyRain => {
            let until = match event.easing_after_min {
                Some(m) => format!("Easing in about {} min.", about_minutes(m)),
                None => format!("No easing expected within {} min.", event.horizon_min),
            };
            write!(
                s,
                "Heavy rain at {name} now ({}): about {} within {radius}. {until}",
                local_time(place, event.start_time),
                format_rate(event.rate_mm_h),
            )
        }
        EventKind::Clearing => write!(
            s,
            "Rain is clearing at {name} ({}). No more rain expected in the next {} min.",
            local_time(place, event.start_time),
            event.horizon_min,
        ),
    };
    let _ = write!(s, " Radar: {}.", event.radar_name);
    s
}

fn with_tags(body: &str, tags: &[String]) -> String {
    let mut s = body.to_string();
    for t in tags {
        let t = t.trim().trim_start_matches('#');
        if !t.is_empty() {
            s.push_str(" #");
            s.extend(t.chars().filter(|c| !c.is_whitespace()));
        }
    }
    s
}

/// The post text for `event` at `place`, at most [`MAX_POST_LEN`] weighted characters.
pub fn compose(event: &Event, place: &Place) -> String {
    let full = body(event, place, &place.name);
    for keep in (0..=place.hashtags.len()).rev() {
        let s = with_tags(&full, &place.hashtags[..keep]);
        if weighted_len(&s) <= MAX_POST_LEN {
            return s;
        }
    }
    // Still too long: shorten the place name.
    let mut name: Vec<char> = place.name.chars().collect();
    while !name.is_empty() {
        name.pop();
        let short: String = name.iter().collect::<String>() + "…";
        let s = body(event, place, &short);
        if weighted_len(&s) <= MAX_POST_LEN {
            return s;
        }
    }
    // Only reachable with an absurd radar name: hard cut.
    let mut out = String::new();
    for c in full.chars() {
        if weighted_len(&out) + weighted_len(c.encode_utf8(&mut [0; 4])) > MAX_POST_LEN - 1 {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{evaluate, tests::shower_outlook, PlaceState};

    fn brussels() -> Place {
        let mut p = Place::new("Brussels", 50.85, 4.35)
            .with_time_zone("Europe/Brussels")
            .expect("zone");
        p.hashtags = vec!["Brussels".into(), "#rain".into()];
        p.clearing = true;
        p
    }

    fn shower_events(place: &Place) -> Vec<Event> {
        let mut state = PlaceState::default();
        let mut all = Vec::new();
        for s in 0..40 {
            let ev = evaluate(place, &state, &shower_outlook(s));
            all.extend(ev.events);
            state = ev.state;
        }
        all
    }

    #[test]
    fn intensity_bands() {
        assert_eq!(Intensity::of(0.1), Intensity::Light);
        assert_eq!(Intensity::of(2.49), Intensity::Light);
        assert_eq!(Intensity::of(2.5), Intensity::Moderate);
        assert_eq!(Intensity::of(9.99), Intensity::Moderate);
        assert_eq!(Intensity::of(10.0), Intensity::Heavy);
        assert_eq!(Intensity::of(80.0).word(), "heavy");
        // An event's rate is rain: below 0.1 mm/h it still reads "light".
        assert_eq!(Intensity::of_rain(0.05).word(), "light");
    }

    #[test]
    fn texts_for_each_kind() {
        let place = brussels();
        let events = shower_events(&place);
        let texts: Vec<String> = events.iter().map(|e| compose(e, &place)).collect();
        assert_eq!(events.len(), 4);
        // 12:00 UTC on 1 June is 14:00 CEST.
        assert_eq!(
            texts[0],
            "Light rain expected at Brussels in about 40 min (around 14:40 CEST), up to 1.5 mm/h \
             within 10 km. Radar: RMI composite. #Brussels #rain"
        );
        assert_eq!(
            texts[1],
            "Rain has started at Brussels (14:40 CEST): light, about 1.5 mm/h within 10 km. \
             More rain over the next 60 min. Radar: RMI composite. #Brussels #rain"
        );
        assert_eq!(
            texts[2],
            "Heavy rain at Brussels now (15:10 CEST): about 14 mm/h within 10 km. Easing in \
             about 20 min. Radar: RMI composite. #Brussels #rain"
        );
        assert_eq!(
            texts[3],
            "Rain is clearing at Brussels (16:05 CEST). No more rain expected in the next 60 \
             min. Radar: RMI composite. #Brussels #rain"
        );
        for t in &texts {
            assert!(weighted_len(t) <= MAX_POST_LEN);
        }
    }

    #[test]
    fn local_time_follows_the_zone() {
        let mut place = brussels();
        let events = shower_events(&place);
        place.time_zone = chrono_tz::Australia::Sydney;
        // 12:40 UTC = 22:40 AEST (June: no daylight saving).
        assert!(compose(&events[0], &place).contains("(around 22:40 AEST)"));
        place.time_zone = chrono_tz::UTC;
        assert!(compose(&events[0], &place).contains("(around 12:40 UTC)"));
    }

    #[test]
    fn long_texts_drop_hashtags_then_shorten_the_name() {
        let mut place = brussels();
        let events = shower_events(&place);
        place.hashtags = (0..40).map(|i| format!("tag{i}")).collect();
        let t = compose(&events[0], &place);
        assert!(weighted_len(&t) <= MAX_POST_LEN, "{}", weighted_len(&t));
        assert!(t.contains("#tag0") && !t.contains("#tag39"));
        place.name = "東京".repeat(100);
        let t = compose(&events[1], &place);
        assert!(weighted_len(&t) <= MAX_POST_LEN);
        assert!(t.contains('…') && t.contains("Radar: RMI composite."));
    }

    #[test]
    fn weights_and_helpers() {
        assert_eq!(weighted_len("abc"), 3);
        assert_eq!(weighted_len("東京"), 4);
        assert_eq!(weighted_len("é—"), 2);
        assert_eq!(about_minutes(0), 5);
        assert_eq!(about_minutes(13), 15);
        assert_eq!(about_minutes(42), 40);
        assert_eq!(format_rate(0.46), "0.5 mm/h");
        assert_eq!(format_rate(14.4), "14 mm/h");
    }
}
