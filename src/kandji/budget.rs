//! Per-connection request budget: a GCRA limiter (governor) sized to the tenant's hourly quota,
//! plus what Kandji's own rate-limit headers say, plus a rolling count for operators.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use serde::Serialize;

/// Kandji's documented limit: 10,000 requests an hour per tenant.
pub const DEFAULT_REQUESTS_PER_HOUR: u32 = 10_000;

pub struct Budget {
    pub per_hour: u32,
    /// GCRA emission interval (one request's worth of time) and burst tolerance, for the
    /// shared budget row when several replicas share the store.
    pub interval: Duration,
    pub tolerance: Duration,
    limiter: DefaultDirectRateLimiter,
    state: Mutex<BudgetState>,
}

struct BudgetState {
    /// Requests sent in each of the last 60 minutes (rolling window for the report).
    minutes: [(u64, u32); 60],
    /// Kandji asked us (through its headers) to hold off until then.
    pause_until: Option<Instant>,
}

/// The connection's Kandji request budget as the connector tracks it (per connector process),
/// as `GET /v1/connections/{id}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BudgetReport {
    /// The cap in force: the connection's `requests_per_hour`, or the default of 10,000
    /// (Kandji's documented limit) when that is null.
    #[schema(minimum = 1)]
    pub requests_per_hour: u32,
    /// Requests sent to Kandji for this connection in the last 60 minutes.
    pub used_last_hour: u32,
    /// Requests still available in the rolling hour.
    pub remaining_this_hour: u32,
    /// Seconds until the oldest request of the last hour leaves the window and frees a slot;
    /// null when none was sent.
    #[schema(required = true)]
    pub next_refill_in_seconds: Option<u64>,
}

fn minute_now(epoch: Instant) -> u64 {
    epoch.elapsed().as_secs() / 60
}

impl Budget {
    pub fn new(per_hour: u32) -> Self {
        let per_hour = per_hour.max(1);
        // About one second's worth of burst: 10,000/h -> 2, 3,600/h -> 1. Stays far under Kandji's 50/s.
        let burst = NonZeroU32::new((per_hour / 3600).clamp(1, 10)).expect("non-zero");
        let period = Duration::from_secs_f64(3600.0 / f64::from(per_hour));
        let quota = Quota::with_period(period)
            .expect("positive period")
            .allow_burst(burst);
        Self {
            per_hour,
            interval: period,
            tolerance: period * (burst.get() - 1),
            limiter: RateLimiter::direct(quota),
            state: Mutex::new(BudgetState {
                minutes: [(u64::MAX, 0); 60],
                pause_until: None,
            }),
        }
    }

    /// How long Kandji's headers asked us to hold off, if they did and it is not over.
    pub fn paused_for(&self) -> Option<Duration> {
        let st = self.state.lock().expect("budget lock");
        let now = Instant::now();
        st.pause_until.filter(|u| *u > now).map(|u| u - now)
    }

    /// Counts a request taken from a shared budget, for the report.
    pub fn count(&self, epoch: Instant) {
        let m = minute_now(epoch);
        let mut st = self.state.lock().expect("budget lock");
        let slot = &mut st.minutes[(m % 60) as usize];
        if slot.0 != m {
            *slot = (m, 0);
        }
        slot.1 += 1;
    }

    /// Takes one request's worth of budget, or says how long until one is available.
    pub fn try_acquire(&self, epoch: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.paused_for() {
            return Err(wait);
        }
        match self.limiter.check() {
            Ok(()) => {
                self.count(epoch);
                Ok(())
            }
            Err(not_until) => Err(not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))),
        }
    }

    /// Slows down before Kandji refuses: honours `ratelimit-*` / `x-ratelimit-*` headers when sent.
    pub fn observe(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut pause = None;
        let second_left =
            num("x-ratelimit-remaining-second").or_else(|| num("ratelimit-remaining"));
        if second_left == Some(0) {
            pause = Some(Duration::from_secs(
                num("ratelimit-reset").unwrap_or(1).clamp(1, 60),
            ));
        }
        if let (Some(left), Some(limit)) = (
            num("x-ratelimit-remaining-hour"),
            num("x-ratelimit-limit-hour"),
        ) {
            // Under 1% of the hour left: trickle (one request a minute) instead of hitting the wall.
            if left == 0 || left * 100 < limit {
                pause = Some(pause.unwrap_or_default().max(Duration::from_secs(60)));
            }
        }
        if let Some(p) = pause {
            let mut st = self.state.lock().expect("budget lock");
            let until = Instant::now() + p;
            st.pause_until = Some(st.pause_until.map_or(until, |u| u.max(until)));
        }
    }

    pub fn report(&self, epoch: Instant) -> BudgetReport {
        let m = minute_now(epoch);
        let st = self.state.lock().expect("budget lock");
        let live: Vec<(u64, u32)> = st
            .minutes
            .iter()
            .copied()
            .filter(|(min, n)| *min <= m && m - *min < 60 && *n > 0)
            .collect();
        let used: u32 = live.iter().map(|(_, n)| n).sum();
        let oldest = live.iter().map(|(min, _)| *min).min();
        let secs_into = epoch.elapsed().as_secs() % 60;
        let next_refill = oldest.map(|o| ((o + 60).saturating_sub(m)) * 60 - secs_into);
        BudgetReport {
            requests_per_hour: self.per_hour,
            used_last_hour: used,
            remaining_this_hour: self.per_hour.saturating_sub(used),
            next_refill_in_seconds: next_refill,
        }
    }
}

/// The budgets of every connection, created on first use and replaced when the quota changes.
#[derive(Default)]
pub struct Budgets {
    map: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    pub fn get(&self, connection_id: &str, per_hour: u32) -> Arc<Budget> {
        let mut map = self.map.lock().expect("budgets lock");
        match map.get(connection_id) {
            Some(b) if b.per_hour == per_hour.max(1) => b.clone(),
            _ => {
                let b = Arc::new(Budget::new(per_hour));
                map.insert(connection_id.to_string(), b.clone());
                b
            }
        }
    }

    /// Every budget, by connection.
    pub fn all(&self) -> Vec<(String, Arc<Budget>)> {
        let map = self.map.lock().expect("budgets lock");
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn peek(&self, connection_id: &str) -> Option<Arc<Budget>> {
        self.map
            .lock()
            .expect("budgets lock")
            .get(connection_id)
            .cloned()
    }
}
