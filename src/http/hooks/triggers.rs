//! Answers remembered per `Ory-Webhook-Trigger-ID`, so that a call Kratos retries is answered
//! as the first one was and nothing is applied twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::answer::HookAnswer;

/// Answers remembered per `Ory-Webhook-Trigger-ID`, so a retried call is answered the same way.
pub struct TriggerCache {
    answers: Mutex<HashMap<String, (Instant, HookAnswer)>>,
    ttl: Duration,
    capacity: usize,
}

impl TriggerCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TriggerCache {
            answers: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    pub fn get(&self, trigger: &str) -> Option<HookAnswer> {
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(trigger)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, a)| a.clone())
    }

    pub fn put(&self, trigger: String, answer: HookAnswer) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= self.capacity {
            let ttl = self.ttl;
            answers.retain(|_, (at, _)| at.elapsed() < ttl);
            if answers.len() >= self.capacity {
                // Still full of live answers: forget the oldest rather than grow without bound.
                if let Some(oldest) = answers
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    answers.remove(&oldest);
                }
            }
        }
        answers.insert(trigger, (Instant::now(), answer));
    }
}
