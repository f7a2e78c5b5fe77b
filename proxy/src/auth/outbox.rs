//! What this instance's doors saw, waiting to be shared with the other instances of the
//! catalogue (`services::door_sync` writes it out and applies what the others wrote).
//!
//! The throttle and the card registry stay synchronous and in memory, where every door asks
//! them; each local change is also noted here. A note is the change as it happened, with its
//! wall-clock time, so another instance can replay it on its own clock.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::Utc;
use recorder::catalogue::{DoorEvent, DoorEventKind};

/// Most notes kept while the catalogue cannot take them; beyond, the oldest are dropped (the
/// other instances then miss them, and this one still has them in memory).
const MAX_NOTES: usize = 10_000;

/// Notes not yet written to the catalogue.
#[derive(Debug, Default)]
pub struct Outbox {
    notes: Mutex<VecDeque<DoorEvent>>,
}

impl Outbox {
    /// Notes one event, now.
    pub fn note(&self, kind: DoorEventKind, user: &str, source: Option<IpAddr>) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if notes.len() >= MAX_NOTES {
            notes.pop_front();
        }
        notes.push_back(DoorEvent {
            id: uuid::Uuid::now_v7(),
            at: Utc::now(),
            kind,
            user: user.to_owned(),
            source,
        });
    }

    /// Takes every note, oldest first.
    pub fn take(&self) -> Vec<DoorEvent> {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.drain(..).collect()
    }

    /// Puts back notes that could not be written, ahead of newer ones.
    pub fn put_back(&self, mut events: Vec<DoorEvent>) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        events.extend(notes.drain(..));
        let excess = events.len().saturating_sub(MAX_NOTES);
        notes.extend(events.into_iter().skip(excess));
    }
}
