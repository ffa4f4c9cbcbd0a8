//! Delivery: claim due deliveries (any replica), post each once, record the outcome; retries are
//! due again after the streams' retry schedule.

use std::sync::Arc;

use bytes::Bytes;

use super::{Shared, StoredCallback};
use crate::store::{DeliveryOutcome, DueDelivery};
use crate::streams::delivery::Attempt;

pub(super) async fn run(shared: Arc<Shared>) {
    // Each delivery holds a permit while it posts: a slow callback holds one, not the others.
    let permits = shared.permits.clone();
    loop {
        let Ok(first) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut held = vec![first];
        while let Ok(p) = permits.clone().try_acquire_owned() {
            held.push(p);
        }
        let lease = shared.callback_timeout + std::time::Duration::from_secs(10);
        let lease_until = chrono::Utc::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let claimed = shared
            .store
            .claim_deliveries(&shared.owner, lease_until, held.len() as u32)
            .await;
        let full = match claimed {
            Ok(due) => {
                let full = due.len() == held.len();
                for d in due {
                    let permit = held.pop().expect("one permit per claimed delivery");
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        deliver(&shared, d).await;
                        drop(permit);
                    });
                }
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "events: due deliveries could not be claimed");
                false
            }
        };
        drop(held);
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(shared.config.delivery_tick) => {}
                _ = shared.wake.notified() => {}
            }
        }
    }
}

async fn deliver(shared: &Shared, d: DueDelivery) {
    let outcome = match StoredCallback::open(&d.helper, &shared.allow) {
        Err(error) => DeliveryOutcome::Failed {
            status: None,
            error,
            body: None,
        },
        Ok((url, secret)) => {
            let body = Bytes::from(serde_json::to_vec(&d.payload).expect("JSON serialises"));
            match shared
                .client
                .post(url.as_url(), &d.id, body, secret.as_ref())
                .await
            {
                Attempt::Delivered => DeliveryOutcome::Delivered,
                Attempt::Refused {
                    status,
                    error,
                    body,
                } => DeliveryOutcome::Failed {
                    status,
                    error,
                    body,
                },
                Attempt::Retry {
                    status,
                    retry_after,
                    error,
                    body,
                } => match shared.retry.delay(d.attempts as usize, retry_after) {
                    Some(wait) => DeliveryOutcome::Retry {
                        at: chrono::Utc::now()
                            + chrono::Duration::from_std(wait)
                                .unwrap_or(chrono::Duration::seconds(60)),
                        status,
                        error,
                        body,
                    },
                    None => DeliveryOutcome::Failed {
                        status,
                        error: format!("{error}; gave up after {} attempts", d.attempts + 1),
                        body,
                    },
                },
            }
        }
    };
    if let Err(e) = shared
        .store
        .finish_delivery(&d.id, &shared.owner, &outcome)
        .await
    {
        // The lease lapses and the delivery is posted again, with the same webhook-id.
        tracing::warn!(delivery = %d.id, error = %e, "events: a delivery's outcome could not be saved");
    }
}
