//! The traffic generator as a source: baseline traffic plus attack scenarios on a
//! fixed schedule, as a pure function of the time window.
//!
//! Because [`GeneratedSource::events_between`] depends only on (seed, window), the
//! checkpoint is just the event time generated up to: a restarted demo regenerates
//! exactly the window after it, so nothing is stored twice or skipped.

use crate::record::Origin;
use crate::source::chunk::{Chunk, Units};
use crate::store::{Checkpoint, SourceKind};
use crate::synth::{Event, Generator, GroundTruth, Profile, Scenario, Tenant};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};

/// How often a scenario starts in generated traffic.
pub const SCENARIO_EVERY: TimeDelta = TimeDelta::minutes(45);
/// How far a window looks back for scenarios still running: the longest one lasts, and an hour.
fn scenario_span() -> TimeDelta {
    Scenario::all().iter().map(Scenario::lasts).max().unwrap_or_default() + TimeDelta::hours(1)
}

pub struct GeneratedSource {
    generator: Generator,
    seed: u64,
    pub source_id: String,
}

impl GeneratedSource {
    pub fn new(seed: u64, scale: f64) -> GeneratedSource {
        let generator = Generator::new(Tenant::new(seed), seed).with_scale(scale);
        GeneratedSource { generator, seed, source_id: format!("generator:seed={seed}") }
    }

    /// The kind of tenant generated ([`Profile::Tidy`] unless set). The position does not
    /// depend on it: a demo resumed under another profile goes on from where it was.
    pub fn with_profile(mut self, profile: Profile) -> GeneratedSource {
        self.generator = self.generator.with_profile(profile);
        self
    }

    /// The scenario starting in slot `slot` (slots are SCENARIO_EVERY long since the epoch).
    fn scheduled(&self, slot: i64) -> (Scenario, DateTime<Utc>) {
        let all = Scenario::all();
        let mix = (slot as u64 ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let scenario = all[(mix >> 32) as usize % all.len()];
        let offset = TimeDelta::seconds((mix % 600) as i64);
        let start = DateTime::<Utc>::UNIX_EPOCH + SCENARIO_EVERY * slot as i32 + offset;
        (scenario, start)
    }

    /// Every event with time in `[from, to)`, sorted, and the scenarios that start in it.
    pub fn events_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> (Vec<Event>, Vec<GroundTruth>) {
        let mut events = Vec::new();
        let mut hour = from.duration_trunc(TimeDelta::hours(1)).unwrap_or(from);
        while hour < to {
            let next = hour + Duration::hours(1);
            events.extend(self.generator.baseline(hour, next).into_iter().filter(|e| e.time >= from && e.time < to));
            hour = next;
        }
        let mut truths = Vec::new();
        let every = SCENARIO_EVERY.num_seconds();
        let span = scenario_span();
        let first = (from - span).timestamp().div_euclid(every);
        let last = to.timestamp().div_euclid(every);
        for slot in first..=last {
            let (scenario, start) = self.scheduled(slot);
            if start >= to || start + span < from {
                continue;
            }
            let (scenario_events, truth) = self.generator.scenario(scenario, start);
            events.extend(scenario_events.into_iter().filter(|e| e.time >= from && e.time < to));
            if truth.start >= from && truth.start < to {
                truths.push(truth);
            }
        }
        events.sort_by_key(|e| e.time);
        (events, truths)
    }

    /// The window as one chunk that leaves the source at `to`.
    pub fn chunk(&self, from: DateTime<Utc>, to: DateTime<Utc>, flush: bool) -> (Chunk, Vec<GroundTruth>) {
        let (events, truths) = self.events_between(from, to);
        let mut data = Vec::with_capacity(events.len() * 1200);
        let mut units = Vec::with_capacity(events.len());
        let origin = Origin { source: self.source_id.clone(), ..Origin::default() };
        for event in &events {
            let start = data.len();
            serde_json::to_writer(&mut data, &event.record).expect("a JSON value serializes");
            units.push((start..data.len(), origin.clone()));
        }
        let mut checkpoint = Checkpoint::new(self.source_id.clone(), SourceKind::Generator);
        checkpoint.event_time = Some(to.timestamp_micros());
        (
            Chunk {
                data: data.into(),
                units: Units::Listed(units),
                rejected: Vec::new(),
                checkpoints: vec![checkpoint],
                flush,
                remaining: None,
                recycle: None,
            },
            truths,
        )
    }
}
