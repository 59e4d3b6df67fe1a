//! Browser sessions and sign-ins in progress, in memory.
//!
//! A session id is 256 random bits, sent only in the HttpOnly cookie; the map is keyed
//! by its SHA-256, so the ids themselves are not kept. A session ends after
//! `idle` without use or `max` after sign-in. A restart signs everyone out, which is
//! acceptable for a handful of responders and auditors.

use super::Caller;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many sessions; beyond it the least recently used one ends.
const MAX_SESSIONS: usize = 100_000;
/// Sign-ins started (`/auth/login`) but not finished; unauthenticated, so bounded.
const MAX_PENDING: usize = 10_000;
/// How long a user has to finish signing in at the identity provider.
pub(crate) const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// 256 random bits, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

struct Session {
    caller: Caller,
    csrf: String,
    created: Instant,
    last_used: Instant,
}

pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    idle: Duration,
    max: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), idle, max }
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_used) < self.idle && now.duration_since(session.created) < self.max
    }

    /// A new session for `caller`: its id (for the cookie) and CSRF token.
    pub fn create(&self, caller: Caller) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| now.duration_since(s.last_used) < self.idle && now.duration_since(s.created) < self.max);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), Session { caller, csrf: csrf.clone(), created: now, last_used: now });
        (id, csrf)
    }

    /// The caller and CSRF token of a live session, marking it used.
    pub fn get(&self, id: &str) -> Option<(Caller, String)> {
        let key = digest(id);
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let session = map.get_mut(&key)?;
        if !self.live(session, now) {
            map.remove(&key);
            return None;
        }
        session.last_used = now;
        Some((session.caller.clone(), session.csrf.clone()))
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(&digest(id));
    }
}

/// A sign-in between `/auth/login` and `/auth/callback`, keyed by `state`.
pub(crate) struct Pending {
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    pub redirect_uri: String,
    created: Instant,
}

pub(crate) struct PendingLogins {
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingLogins {
    pub fn new() -> PendingLogins {
        PendingLogins { map: Mutex::new(HashMap::new()) }
    }

    /// Starts a sign-in; returns its state.
    pub fn start(&self, nonce: String, verifier: String, return_to: String, redirect_uri: String) -> String {
        let state = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().expect("pending lock");
        map.retain(|_, p| now.duration_since(p.created) < PENDING_LIFETIME);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map.iter().min_by_key(|(_, p)| p.created).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state.clone(), Pending { nonce, verifier, return_to, redirect_uri, created: now });
        state
    }

    /// Ends the sign-in of `state` (once: a replayed callback finds nothing).
    pub fn finish(&self, state: &str) -> Option<Pending> {
        let pending = self.map.lock().expect("pending lock").remove(state)?;
        (pending.created.elapsed() < PENDING_LIFETIME).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Via;

    fn caller() -> Caller {
        Caller { oid: "o".into(), tid: "t".into(), name: None, roles: vec![], via: Via::Session }
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let sessions = Sessions::new(Duration::from_millis(50), Duration::from_secs(60));
        let (id, csrf) = sessions.create(caller());
        assert_eq!(sessions.get(&id).unwrap().1, csrf);
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&id).is_none());

        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_millis(50));
        let (id, _) = sessions.create(caller());
        std::thread::sleep(Duration::from_millis(30));
        assert!(sessions.get(&id).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(sessions.get(&id).is_none(), "used, but past the maximum age");
    }

    #[test]
    fn pending_sign_ins_are_single_use() {
        let pending = PendingLogins::new();
        let state = pending.start("n".into(), "v".into(), "/".into(), "http://127.0.0.1/auth/callback".into());
        assert_eq!(pending.finish(&state).unwrap().nonce, "n");
        assert!(pending.finish(&state).is_none());
        assert!(pending.finish("made-up").is_none());
    }

    #[test]
    fn ids_are_random_and_compared_in_full() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
