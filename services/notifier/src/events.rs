//! Rain events: pure decisions from a place's state and a new outlook.
//!
//! [`evaluate`] takes the stored [`PlaceState`] of a (place, radar) pair and the
//! [`Outlook`] for a new scan, and returns the events to post plus the next
//! state. It has no clock and no I/O: the same inputs always give the same
//! events with the same keys, which is what lets several notifier instances
//! agree on what to claim (see [`crate::claims`]).
//!
//! Kinds:
//! * [`EventKind::RainExpected`]: not raining now, and a nowcast lead within
//!   the horizon (default 60 min) has an area rate ≥ `rain_mm_h` (and, when
//!   the nowcast gives one, a probability ≥ `min_probability`);
//! * [`EventKind::RainStarted`]: the observed area rate rises to ≥ `rain_mm_h`;
//! * [`EventKind::HeavyRain`]: the observed area rate rises to ≥ `heavy_mm_h`
//!   (when rain starts heavy, only this one is posted);
//! * [`EventKind::Clearing`] (opt-in per place): rain ended and no lead within
//!   the horizon reaches `rain_mm_h`.
//!
//! Flip-flop protection, two layers:
//! * **hysteresis**: a state switches on at the "on" threshold and switches off
//!   only after `dry_scans` consecutive scans below the lower "off" threshold;
//! * **cool-down**: an event of the same kind for the same place is not posted
//!   again until `cooldown_min` after the last one (by scan time), even if
//!   the state went off and on again. The claim store enforces the same
//!   cool-down across instances (see [`crate::claims`]).
//!
//! Scan times at or before the state's last scan are ignored (replays and
//! out-of-order scans never post). When the disk has no data the state is
//! held and nothing is posted: no data is not "dry".

use crate::outlook::Outlook;
use crate::place::{slug, Place};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Rain is expected within the horizon; not raining now.
    RainExpected,
    /// Rain started at the place.
    RainStarted,
    /// The rate rose above the heavy threshold.
    HeavyRain,
    /// Rain ended and none is expected within the horizon.
    Clearing,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 4] = [
        EventKind::RainExpected,
        EventKind::RainStarted,
        EventKind::HeavyRain,
        EventKind::Clearing,
    ];

    /// The kind named `name` (snake case, as [`EventKind::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Snake-case name, as in JSON and event keys.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RainExpected => "rain_expected",
            EventKind::RainStarted => "rain_started",
            EventKind::HeavyRain => "heavy_rain",
            EventKind::Clearing => "clearing",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rain event for one place, ready to be claimed and posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic key, see [`event_key`].
    pub key: String,
    /// What happened.
    pub kind: EventKind,
    /// Place name.
    pub place: String,
    /// Radar id.
    pub radar: String,
    /// Radar display name.
    pub radar_name: String,
    /// The scan that revealed the event (UTC).
    pub scan_time: DateTime<Utc>,
    /// When the rain starts (expected) or started/ended (observed), UTC.
    pub start_time: DateTime<Utc>,
    /// For [`EventKind::RainExpected`]: minutes from the scan to the start.
    pub lead_min: Option<u32>,
    /// Representative area rate, mm/h: at the expected start, or now.
    pub rate_mm_h: f32,
    /// Highest area rate now or within the horizon, mm/h.
    pub peak_mm_h: f32,
    /// For [`EventKind::RainStarted`]: the first lead (minutes) at which the
    /// nowcast drops below `rain_off_mm_h` (rain stops); for
    /// [`EventKind::HeavyRain`]: below `heavy_off_mm_h` (rain eases). `None`
    /// when that does not happen within the horizon.
    pub easing_after_min: Option<u32>,
    /// Horizon used, minutes.
    pub horizon_min: u32,
    /// Radius of the place's disk, km.
    pub radius_km: f64,
    /// Data time after which posting it is pointless (UTC). Compared with
    /// the latest scan time, not the wall clock, so replays of past days work.
    pub expires_at: DateTime<Utc>,
}

/// Stored state of one (place, radar) pair between scans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaceState {
    /// Latest scan evaluated.
    pub last_scan: Option<DateTime<Utc>>,
    /// Raining at the place (hysteresis state).
    pub raining: bool,
    /// Consecutive scans below `rain_off_mm_h` while raining.
    pub dry_count: u32,
    /// Heavy rain at the place.
    pub heavy: bool,
    /// Consecutive scans below `heavy_off_mm_h` while heavy.
    pub below_heavy_count: u32,
    /// Rain is expected (an expected-rain episode is under way).
    pub expecting: bool,
    /// Consecutive scans without expected rain while expecting.
    pub unexpected_count: u32,
    /// Scan time of the last event posted per kind (cool-down).
    pub last_fired: BTreeMap<EventKind, DateTime<Utc>>,
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Events to claim and post, in [`EventKind::ALL`] order.
    pub events: Vec<Event>,
    /// Events whose state transition happened during their cool-down.
    pub suppressed: Vec<EventKind>,
    /// The state to store.
    pub state: PlaceState,
    /// False when the outlook was ignored (not newer than the state).
    pub applied: bool,
}

/// `yyyymmddTHHMMZ` of `t` floored to a multiple of `bucket_min` minutes since the epoch.
pub fn time_bucket(t: DateTime<Utc>, bucket_min: u32) -> String {
    let step = i64::from(bucket_min.max(1)) * 60;
    let floored = t.timestamp().div_euclid(step) * step;
    Utc.timestamp_opt(floored, 0)
        .single()
        .unwrap_or(t)
        .format("%Y%m%dT%H%MZ")
        .to_string()
}

/// Deterministic event key: `place:kind:radar:bucket`, where `bucket` is the
/// event's start time floored to the place's cool-down length. Slugs keep the
/// key ASCII, free of `:` inside fields, and usable as a file name stem.
pub fn event_key(place: &Place, kind: EventKind, radar: &str, start: DateTime<Utc>) -> String {
    format!(
        "{}:{}:{}:{}",
        place.slug(),
        kind.as_str(),
        slug(radar),
        time_bucket(start, place.thresholds.cooldown_min)
    )
}

/// Decides the events for `place` given its stored `state` and a new `outlook`.
pub fn evaluate(place: &Place, state: &PlaceState, outlook: &Outlook) -> Evaluation {
    let t = outlook.scan_time;
    if state.last_scan.is_some_and(|last| t <= last) {
        return Evaluation {
            events: Vec::new(),
            suppressed: Vec::new(),
            state: state.clone(),
            applied: false,
        };
    }
    let th = &place.thresholds;
    let mut next = state.clone();
    next.last_scan = Some(t);
    let Some(now) = outlook.now else {
        // No data over the disk: hold everything.
        return Evaluation {
            events: Vec::new(),
            suppressed: Vec::new(),
            state: next,
            applied: true,
        };
    };
    let rate = now.rate_mm_h;
    let horizon: Vec<_> = outlook
        .leads
        .iter()
        .filter(|l| l.lead_min > 0 && l.lead_min <= th.horizon_min)
        .collect();
    let lead_rate = |l: &crate::outlook::LeadRain| l.rate_mm_h.unwrap_or(0.0);
    let peak_ahead = horizon.iter().map(|l| lead_rate(l)).fold(0.0f32, f32::max);
    let first_below = |off: f32| {
        horizon
            .iter()
            .find(|l| l.rate_mm_h.is_some_and(|r| r < off))
            .map(|l| l.lead_min)
    };
    let dry_after = first_below(th.rain_off_mm_h);
    let heavy_easing = first_below(th.heavy_off_mm_h);

    let mut transitions: Vec<(EventKind, Event)> = Vec::new();
    let make = |kind: EventKind,
                start: DateTime<Utc>,
                lead: Option<u32>,
                rep_rate: f32,
                easing: Option<u32>| {
        let ttl_min = match lead {
            Some(l) => i64::from(l.clamp(10, 30)),
            None => 30,
        };
        Event {
            key: event_key(place, kind, &outlook.radar, start),
            kind,
            place: place.name.clone(),
            radar: outlook.radar.clone(),
            radar_name: outlook.radar_name.clone(),
            scan_time: t,
            start_time: start,
            lead_min: lead,
            rate_mm_h: rep_rate,
            peak_mm_h: rep_rate.max(rate).max(peak_ahead),
            easing_after_min: easing,
            horizon_min: th.horizon_min,
            radius_km: place.radius_km,
            expires_at: t + Duration::minutes(ttl_min),
        }
    };

    // Rain now (hysteresis on rate and on consecutive dry scans).
    let mut started = false;
    let mut ended = false;
    if state.raining {
        if rate < th.rain_off_mm_h {
            next.dry_count = state.dry_count + 1;
            if next.dry_count >= th.dry_scans {
                next.raining = false;
                next.dry_count = 0;
                ended = true;
            }
        } else {
            next.dry_count = 0;
        }
    } else if rate >= th.rain_mm_h {
        next.raining = true;
        next.dry_count = 0;
        started = true;
    }

    // Heavy rain (same pattern, heavy thresholds).
    let mut heavy_started = false;
    if state.heavy {
        if rate < th.heavy_off_mm_h {
            next.below_heavy_count = state.below_heavy_count + 1;
            if next.below_heavy_count >= th.dry_scans {
                next.heavy = false;
                next.below_heavy_count = 0;
            }
        } else {
            next.below_heavy_count = 0;
        }
    } else if rate >= th.heavy_mm_h {
        next.heavy = true;
        next.below_heavy_count = 0;
        heavy_started = true;
    }

    // Rain expected: only while not raining.
    let first_on = horizon.iter().find(|l| {
        l.rate_mm_h.is_some_and(|r| r >= th.rain_mm_h)
            && l.probability.is_none_or(|p| p >= th.min_probability)
    });
    let holds = horizon
        .iter()
        .any(|l| l.rate_mm_h.is_some_and(|r| r >= th.rain_off_mm_h));
    if next.raining {
        next.expecting = false;
        next.unexpected_count = 0;
    } else if let Some(lead) = first_on {
        if !state.expecting {
            let start = t + Duration::minutes(i64::from(lead.lead_min));
            transitions.push((
                EventKind::RainExpected,
                make(
                    EventKind::RainExpected,
                    start,
                    Some(lead.lead_min),
                    lead_rate(lead),
                    None,
                ),
            ));
        }
        next.expecting = true;
        next.unexpected_count = 0;
    } else if state.expecting {
        if holds {
            next.unexpected_count = 0;
        } else {
            next.unexpected_count = state.unexpected_count + 1;
            if next.unexpected_count >= th.dry_scans {
                next.expecting = false;
                next.unexpected_count = 0;
            }
        }
    }

    if heavy_started {
        transitions.push((
            EventKind::HeavyRain,
            make(EventKind::HeavyRain, t, None, rate, heavy_easing),
        ));
    }
    if started {
        // Rain that starts heavy is one post (heavy), not two. The started
        // kind still enters its cool-down below.
        let ev = make(EventKind::RainStarted, t, None, rate, dry_after);
        if heavy_started {
            next.last_fired.insert(EventKind::RainStarted, t);
        } else {
            transitions.push((EventKind::RainStarted, ev));
        }
    }
    if ended && place.clearing && first_on.is_none() {
        transitions.push((
            EventKind::Clearing,
            make(EventKind::Clearing, t, None, rate, None),
        ));
    }

    // Cool-down per kind.
    let cooldown = Duration::minutes(i64::from(th.cooldown_min));
    let mut events = Vec::new();
    let mut suppressed = Vec::new();
    for (kind, ev) in transitions {
        let cooling = state
            .last_fired
            .get(&kind)
            .is_some_and(|&last| t - last < cooldown);
        if cooling {
            suppressed.push(kind);
        } else {
            next.last_fired.insert(kind, t);
            events.push(ev);
        }
    }
    events.sort_by_key(|e| e.kind);
    Evaluation {
        events,
        suppressed,
        state: next,
        applied: true,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outlook::{AreaRain, LeadRain};

    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    pub(crate) fn area(rate: f32) -> Option<AreaRain> {
        Some(AreaRain {
            rate_mm_h: rate,
            max_mm_h: rate * 1.5,
            wet_fraction: if rate > 0.0 { 0.3 } else { 0.0 },
            valid_fraction: 1.0,
        })
    }

    /// An outlook at `t0 + 5 min × step` with `now` observed and `leads` as
    /// (lead_min, rate) pairs.
    pub(crate) fn outlook(step: i64, now: Option<AreaRain>, leads: &[(u32, f32)]) -> Outlook {
        Outlook {
            radar: "be-rmi".into(),
            radar_name: "RMI composite".into(),
            scan_time: t0() + Duration::minutes(5 * step),
            now,
            leads: leads
                .iter()
                .map(|&(lead_min, r)| LeadRain {
                    lead_min,
                    rate_mm_h: Some(r),
                    probability: None,
                })
                .collect(),
        }
    }

    /// Synthetic shower moving over the place: the place's area rate at
    /// minute `m` after t0 (dry until 40, light 40–70, heavy 70–90, easing,
    /// dry from 120).
    pub(crate) fn shower_rate(m: i64) -> f32 {
        match m {
            ..40 => 0.0,
            40..70 => 1.5,
            70..90 => 14.0,
            90..120 => 3.0,
            _ => 0.0,
        }
    }

    /// A perfect nowcast of [`shower_rate`] issued at step `step`.
    pub(crate) fn shower_outlook(step: i64) -> Outlook {
        let m = 5 * step;
        let leads: Vec<(u32, f32)> = (1..=12)
            .map(|k| (k * 10, shower_rate(m + i64::from(k) * 10)))
            .collect();
        outlook(step, area(shower_rate(m)), &leads)
    }

    fn run(place: &Place, outlooks: impl IntoIterator<Item = Outlook>) -> (Vec<Event>, PlaceState) {
        let mut state = PlaceState::default();
        let mut all = Vec::new();
        for o in outlooks {
            let ev = evaluate(place, &state, &o);
            all.extend(ev.events);
            state = ev.state;
        }
        (all, state)
    }

    fn kinds(events: &[Event]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_passing_shower_fires_each_kind_once() {
        let mut place = Place::new("Brussels", 50.85, 4.35);
        place.clearing = true;
        let (events, state) = run(&place, (0..40).map(shower_outlook));
        assert_eq!(kinds(&events), EventKind::ALL.to_vec());
        let expected = &events[0];
        // First seen at t0 (lead 40 ≤ 60): start at 12:40.
        assert_eq!(expected.scan_time, t0());
        assert_eq!(expected.lead_min, Some(40));
        assert_eq!(expected.start_time, t0() + Duration::minutes(40));
        assert_eq!(expected.rate_mm_h, 1.5);
        assert_eq!(expected.key, "brussels:rain_expected:be-rmi:20250601T1200Z");
        let started = &events[1];
        assert_eq!(started.start_time, t0() + Duration::minutes(40));
        assert_eq!(started.rate_mm_h, 1.5);
        assert_eq!(started.peak_mm_h, 14.0);
        // Wet over the whole 60 min horizon (dry only from minute 120).
        assert_eq!(started.easing_after_min, None);
        // Heavy from 70 to 90: the nowcast drops below heavy_off at lead 20.
        assert_eq!(events[2].easing_after_min, Some(20));
        let heavy = &events[2];
        assert_eq!(heavy.start_time, t0() + Duration::minutes(70));
        assert_eq!(heavy.rate_mm_h, 14.0);
        // Clearing: the first dry scan is at 120, two dry scans needed.
        let clearing = &events[3];
        assert_eq!(clearing.start_time, t0() + Duration::minutes(125));
        assert!(!state.raining && !state.heavy && !state.expecting);
        // Keys are unique.
        let mut keys: Vec<_> = events.iter().map(|e| e.key.clone()).collect();
        keys.dedup();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn clearing_is_opt_in() {
        let place = Place::new("Brussels", 50.85, 4.35);
        let (events, _) = run(&place, (0..40).map(shower_outlook));
        assert!(!kinds(&events).contains(&EventKind::Clearing));
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn nothing_fires_without_rain() {
        let place = Place::new("Brussels", 50.85, 4.35);
        let leads: Vec<(u32, f32)> = (1..=12).map(|k| (k * 10, 0.0)).collect();
        let (events, state) = run(&place, (0..50).map(|s| outlook(s, area(0.0), &leads)));
        assert!(events.is_empty());
        assert!(!state.raining && !state.expecting);
        // Light drizzle under the threshold, and below-threshold forecasts: nothing.
        let leads: Vec<(u32, f32)> = (1..=12).map(|k| (k * 10, 0.3)).collect();
        let (events, _) = run(&place, (0..50).map(|s| outlook(s, area(0.4), &leads)));
        assert!(events.is_empty());
    }

    #[test]
    fn no_data_holds_state_and_posts_nothing() {
        let place = Place::new("Brussels", 50.85, 4.35);
        let wet: Vec<(u32, f32)> = (1..=6).map(|k| (k * 10, 5.0)).collect();
        let (events, state) = run(&place, (0..10).map(|s| outlook(s, None, &wet)));
        assert!(events.is_empty());
        assert_eq!(state.last_scan, Some(t0() + Duration::minutes(45)));
    }

    #[test]
    fn flip_flopping_rain_posts_once_within_cool_down() {
        let place = Place::new("Brussels", 50.85, 4.35);
        // Rate alternates around the threshold every scan for 100 min.
        let seq = (0..20).map(|s| {
            let r = if s % 2 == 0 { 0.6 } else { 0.1 };
            outlook(s, area(r), &[(10, r), (20, r)])
        });
        let (events, _) = run(&place, seq);
        assert_eq!(kinds(&events), vec![EventKind::RainStarted]);
        // Longer on/off cycles (two dry scans each time) still post once:
        // the hysteresis lets rain go off, the cool-down holds.
        let seq = (0..24).map(|s| {
            let r = if (s / 3) % 2 == 0 { 0.8 } else { 0.0 };
            outlook(s, area(r), &[])
        });
        let (events, state) = run(&place, seq);
        assert_eq!(kinds(&events), vec![EventKind::RainStarted]);
        assert_eq!(state.last_fired.get(&EventKind::RainStarted), Some(&t0()));
    }

    #[test]
    fn cool_down_expires() {
        let mut place = Place::new("Brussels", 50.85, 4.35);
        place.thresholds.cooldown_min = 30;
        // Rain on for 3 scans, off for 5, repeated: every cycle is 40 min > 30.
        let seq = (0..32).map(|s| {
            let r = if s % 8 < 3 { 2.0 } else { 0.0 };
            outlook(s, area(r), &[])
        });
        let (events, _) = run(&place, seq);
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|e| e.kind == EventKind::RainStarted));
        let mut keys: Vec<_> = events.iter().map(|e| &e.key).collect();
        keys.dedup();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn expected_rain_respects_horizon_and_probability() {
        let place = Place::new("Brussels", 50.85, 4.35);
        // Rain only at lead 70: beyond the 60 min horizon.
        let o = outlook(0, area(0.0), &[(60, 0.0), (70, 3.0)]);
        assert!(evaluate(&place, &PlaceState::default(), &o)
            .events
            .is_empty());
        // Rain at lead 30 but with low probability: not expected.
        let mut o = outlook(0, area(0.0), &[(30, 3.0)]);
        o.leads[0].probability = Some(0.2);
        assert!(evaluate(&place, &PlaceState::default(), &o)
            .events
            .is_empty());
        o.leads[0].probability = Some(0.7);
        let ev = evaluate(&place, &PlaceState::default(), &o);
        assert_eq!(kinds(&ev.events), vec![EventKind::RainExpected]);
        // The same expectation on the next scans does not post again.
        let o2 = outlook(1, area(0.0), &[(25, 3.0)]);
        let ev2 = evaluate(&place, &ev.state, &o2);
        assert!(ev2.events.is_empty());
        assert!(ev2.state.expecting);
    }

    #[test]
    fn replayed_or_old_scans_are_ignored() {
        let place = Place::new("Brussels", 50.85, 4.35);
        let o = outlook(3, area(2.0), &[]);
        let ev = evaluate(&place, &PlaceState::default(), &o);
        assert_eq!(ev.events.len(), 1);
        let again = evaluate(&place, &ev.state, &o);
        assert!(!again.applied && again.events.is_empty());
        let older = evaluate(&place, &ev.state, &outlook(1, area(0.0), &[]));
        assert!(!older.applied);
    }

    #[test]
    fn rain_starting_heavy_is_one_post() {
        let place = Place::new("Brussels", 50.85, 4.35);
        let ev = evaluate(&place, &PlaceState::default(), &outlook(0, area(25.0), &[]));
        assert_eq!(kinds(&ev.events), vec![EventKind::HeavyRain]);
        assert!(ev.state.raining && ev.state.heavy);
        assert!(ev.state.last_fired.contains_key(&EventKind::RainStarted));
    }

    #[test]
    fn keys_are_deterministic_and_bucketed() {
        let place = Place::new("São Paulo", -23.5, -46.6);
        let t = t0() + Duration::minutes(97);
        let k = event_key(&place, EventKind::HeavyRain, "BR/SP 1", t);
        assert_eq!(k, "sao-paulo:heavy_rain:br-sp-1:20250601T1200Z");
        assert_eq!(k, event_key(&place, EventKind::HeavyRain, "BR/SP 1", t));
        assert_eq!(time_bucket(t, 30), "20250601T1330Z");
    }
}
