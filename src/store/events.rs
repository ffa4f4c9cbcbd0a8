//! Kandji events (see `src/events/`): subscriptions, each connection's audit-log position, the
//! events detected (kept for replay) and their deliveries, one per event and subscription.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;

use super::StoreError;
use super::sql::Ts;

/// A subscription to be recorded.
pub struct NewSubscription {
    pub owner: String,
    pub connection_id: String,
    pub event: String,
    pub filters: Value,
    /// `{"url", "secret"}` as JSON; encrypted at rest.
    pub helper: SecretString,
    pub callback_origin: String,
}

/// A subscription as the API shows it (never its URL or secret).
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub owner: String,
    pub connection_id: String,
    pub event: String,
    pub filters: Value,
    pub callback_origin: String,
    pub created_at: DateTime<Utc>,
}

/// An event detected on a connection, with the subscriptions it is delivered to.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: String,
    pub event: String,
    pub source_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Value,
    pub subscriptions: Vec<String>,
}

/// An event as kept (for replay).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub connection_id: String,
    pub event: String,
    pub source_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Value,
}

/// A delivery this replica has claimed and should post now.
pub struct DueDelivery {
    /// The `webhook-id`.
    pub id: String,
    pub subscription_id: String,
    pub payload: Value,
    /// `{"url", "secret"}`, decrypted.
    pub helper: SecretString,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `at`.
    Retry {
        at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
        body: Option<String>,
    },
    /// Refused for good, or out of retries.
    Failed {
        status: Option<u16>,
        error: String,
        body: Option<String>,
    },
}

/// A delivery as `GET /v1/subscriptions/{id}/deliveries` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    pub webhook_id: String,
    pub event_id: String,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub state: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_body: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Subscriptions, audit positions, events and their deliveries.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Records a subscription; the connection's audit position starts now if it had no
    /// subscription.
    async fn create_subscription(&self, new: NewSubscription) -> Result<Subscription, StoreError>;

    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;

    /// Newest first; only `owner`'s when given.
    async fn list_subscriptions(
        &self,
        owner: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Every subscription of a connection (to match new events against).
    async fn connection_subscriptions(
        &self,
        connection: &str,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Deletes a subscription and its deliveries; `false` when there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// The connections that have at least one subscription (those polled).
    async fn event_connections(&self) -> Result<Vec<String>, StoreError>;

    /// Where the connection's audit-log poll goes on from.
    async fn event_position(&self, connection: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// In one transaction: records the events not yet recorded (by id), a pending delivery
    /// for each of their subscriptions, and moves the audit position to `position` (when
    /// given). Returns how many events were new.
    async fn ingest_events(
        &self,
        connection: &str,
        position: Option<DateTime<Utc>>,
        events: &[NewEvent],
    ) -> Result<u64, StoreError>;

    /// Claims, for this replica (`owner`) until `lease_until`, up to `limit` pending deliveries
    /// that are due and not claimed by a live replica, and returns them.
    async fn claim_deliveries(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records an attempt's outcome, if this replica still holds the delivery.
    async fn finish_delivery(
        &self,
        id: &str,
        owner: &str,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError>;

    /// A subscription's deliveries, most recently changed first.
    async fn subscription_deliveries(
        &self,
        subscription: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Kept events of a connection and event card that occurred at or after `since`, oldest
    /// first.
    async fn events_since(
        &self,
        connection: &str,
        event: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Makes the deliveries of these events to `subscription` pending again, due now (created
    /// when missing). Returns how many.
    async fn requeue_deliveries(
        &self,
        subscription: &str,
        event_ids: &[String],
    ) -> Result<u64, StoreError>;

    /// Deletes up to `limit` events recorded before `before` (with their deliveries).
    async fn delete_old_events(&self, before: DateTime<Utc>, limit: u32)
    -> Result<u64, StoreError>;
}

/// The `webhook-id` of an event's delivery to a subscription.
pub fn delivery_id(event_id: &str, subscription_id: &str) -> String {
    format!(
        "msg_{}_{}",
        event_id.trim_start_matches("evt_"),
        subscription_id.trim_start_matches("sub_")
    )
}

/// The columns of a [`SubscriptionRow`], for `concat!` (sqlx takes only `&'static str` queries).
macro_rules! subscription_columns {
    () => {
        "id, owner, connection_id, event, filters, callback_origin, created_at"
    };
}
pub(super) use subscription_columns;

#[derive(sqlx::FromRow)]
pub(super) struct SubscriptionRow {
    id: String,
    owner: String,
    connection_id: String,
    event: String,
    filters: String,
    callback_origin: String,
    created_at: Ts,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;
    fn try_from(r: SubscriptionRow) -> Result<Self, StoreError> {
        Ok(Subscription {
            filters: json("event_subscriptions.filters", &r.filters)?,
            id: r.id,
            owner: r.owner,
            connection_id: r.connection_id,
            event: r.event,
            callback_origin: r.callback_origin,
            created_at: r.created_at.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: String,
    connection_id: String,
    event: String,
    source_id: String,
    occurred_at: Ts,
    payload: String,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            payload: json("events.payload", &r.payload)?,
            id: r.id,
            connection_id: r.connection_id,
            event: r.event,
            source_id: r.source_id,
            occurred_at: r.occurred_at.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DueRow {
    pub(super) id: String,
    pub(super) subscription_id: String,
    pub(super) payload: String,
    pub(super) helper_ciphertext: String,
    pub(super) attempts: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    event: String,
    occurred_at: Ts,
    state: String,
    attempts: i64,
    last_status: Option<i32>,
    last_error: Option<String>,
    last_body: Option<String>,
    last_attempt_at: Option<Ts>,
    updated_at: Ts,
}

impl From<DeliveryRow> for DeliveryRecord {
    fn from(r: DeliveryRow) -> Self {
        DeliveryRecord {
            webhook_id: r.id,
            event_id: r.event_id,
            event: r.event,
            occurred_at: r.occurred_at.0,
            state: r.state,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            last_status: r.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: r.last_error,
            last_body: r.last_body,
            last_attempt_at: r.last_attempt_at.map(|t| t.0),
            updated_at: r.updated_at.0,
        }
    }
}

pub(super) fn json(col: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Db(format!("invalid JSON in {col}")))
}

/// `impl EventStore` for `SqlStore<$db>` (see `sql.rs` for why a macro).
macro_rules! event_store {
    ($db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use secrecy::ExposeSecret;

            use $crate::store::events::{
                DeliveryOutcome, DeliveryRecord, DeliveryRow, DueDelivery, DueRow, EventRow,
                EventStore, NewEvent, NewSubscription, StoredEvent, Subscription, SubscriptionRow,
                delivery_id, json, subscription_columns,
            };
            use $crate::store::sql::{SqlStore, Ts};
            use $crate::store::{StoreError, new_subscription_id, now};

            #[async_trait::async_trait]
            impl EventStore for SqlStore<$db> {
                async fn create_subscription(
                    &self,
                    new: NewSubscription,
                ) -> Result<Subscription, StoreError> {
                    let id = new_subscription_id();
                    let at = now();
                    let cipher = self.cipher.read().await;
                    let sealed = cipher.encrypt(&id, new.helper.expose_secret());
                    let mut tx = self.begin_write().await?;
                    // A connection's first subscription (again) starts its audit position now:
                    // changes made while nothing was subscribed are not delivered.
                    sqlx::query(
                        "INSERT INTO event_positions (connection_id, audit_after, updated_at) \
                         VALUES ($1, $2, $2) ON CONFLICT (connection_id) DO UPDATE SET \
                         audit_after = excluded.audit_after, updated_at = excluded.updated_at \
                         WHERE NOT EXISTS (SELECT 1 FROM event_subscriptions s \
                         WHERE s.connection_id = excluded.connection_id)",
                    )
                    .bind(new.connection_id.as_str())
                    .bind(Ts(at))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO event_subscriptions (id, owner, connection_id, event, \
                         filters, helper_ciphertext, callback_origin, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(id.as_str())
                    .bind(new.owner.as_str())
                    .bind(new.connection_id.as_str())
                    .bind(new.event.as_str())
                    .bind(new.filters.to_string())
                    .bind(sealed)
                    .bind(new.callback_origin.as_str())
                    .bind(Ts(at))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(Subscription {
                        id,
                        owner: new.owner,
                        connection_id: new.connection_id,
                        event: new.event,
                        filters: new.filters,
                        callback_origin: new.callback_origin,
                        created_at: at,
                    })
                }

                async fn get_subscription(
                    &self,
                    id: &str,
                ) -> Result<Option<Subscription>, StoreError> {
                    let row: Option<SubscriptionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        subscription_columns!(),
                        " FROM event_subscriptions WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(Subscription::try_from).transpose()
                }

                async fn list_subscriptions(
                    &self,
                    owner: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<Subscription>, StoreError> {
                    let rows: Vec<SubscriptionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        subscription_columns!(),
                        " FROM event_subscriptions WHERE ($1 IS NULL OR owner = $1) \
                         ORDER BY created_at DESC, id LIMIT $2"
                    ))
                    .bind(owner)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(Subscription::try_from).collect()
                }

                async fn connection_subscriptions(
                    &self,
                    connection: &str,
                ) -> Result<Vec<Subscription>, StoreError> {
                    let rows: Vec<SubscriptionRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        subscription_columns!(),
                        " FROM event_subscriptions WHERE connection_id = $1 \
                         ORDER BY created_at, id"
                    ))
                    .bind(connection)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(Subscription::try_from).collect()
                }

                async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query("DELETE FROM event_subscriptions WHERE id = $1")
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn event_connections(&self) -> Result<Vec<String>, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT DISTINCT connection_id FROM event_subscriptions \
                         ORDER BY connection_id",
                    )
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn event_position(
                    &self,
                    connection: &str,
                ) -> Result<Option<DateTime<Utc>>, StoreError> {
                    let at: Option<Ts> = sqlx::query_scalar(
                        "SELECT audit_after FROM event_positions WHERE connection_id = $1",
                    )
                    .bind(connection)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(at.map(|t| t.0))
                }

                async fn ingest_events(
                    &self,
                    connection: &str,
                    position: Option<DateTime<Utc>>,
                    events: &[NewEvent],
                ) -> Result<u64, StoreError> {
                    let at = now();
                    let mut tx = self.begin_write().await?;
                    let mut new = 0;
                    for e in events {
                        let inserted = sqlx::query(
                            "INSERT INTO events (id, connection_id, event, source_id, \
                             occurred_at, payload, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(e.id.as_str())
                        .bind(connection)
                        .bind(e.event.as_str())
                        .bind(e.source_id.as_str())
                        .bind(Ts(e.occurred_at))
                        .bind(e.payload.to_string())
                        .bind(Ts(at))
                        .execute(&mut *tx)
                        .await?;
                        if inserted.rows_affected() == 0 {
                            continue;
                        }
                        new += 1;
                        for sub in &e.subscriptions {
                            sqlx::query(
                                "INSERT INTO event_deliveries (id, event_id, \
                                 subscription_id, state, next_attempt_at, updated_at) \
                                 SELECT $1, $2, id, 'pending', $3, $3 \
                                 FROM event_subscriptions WHERE id = $4 \
                                 ON CONFLICT (id) DO NOTHING",
                            )
                            .bind(delivery_id(&e.id, sub))
                            .bind(e.id.as_str())
                            .bind(Ts(at))
                            .bind(sub.as_str())
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    if let Some(position) = position {
                        sqlx::query(
                            "INSERT INTO event_positions (connection_id, audit_after, polls, \
                             updated_at) VALUES ($1, $2, 1, $3) \
                             ON CONFLICT (connection_id) DO UPDATE SET \
                             audit_after = excluded.audit_after, \
                             polls = event_positions.polls + 1, \
                             updated_at = excluded.updated_at",
                        )
                        .bind(connection)
                        .bind(Ts(position))
                        .bind(Ts(at))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(new)
                }

                async fn claim_deliveries(
                    &self,
                    owner: &str,
                    lease_until: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<DueDelivery>, StoreError> {
                    let at = now();
                    // The claim's conditions are repeated outside the sub-select: PostgreSQL
                    // re-checks them on a row another replica has just claimed, and skips it.
                    let ids: Vec<String> = sqlx::query_scalar(
                        "UPDATE event_deliveries SET lease_owner = $1, lease_until = $2 \
                         WHERE id IN (SELECT id FROM event_deliveries \
                           WHERE state = 'pending' AND next_attempt_at <= $3 \
                           AND (lease_until IS NULL OR lease_until < $3) \
                           ORDER BY next_attempt_at, id LIMIT $4) \
                         AND state = 'pending' \
                         AND (lease_until IS NULL OR lease_until < $3) \
                         RETURNING id",
                    )
                    .bind(owner)
                    .bind(Ts(lease_until))
                    .bind(Ts(at))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut due = Vec::with_capacity(ids.len());
                    let cipher = self.cipher.read().await;
                    for id in ids {
                        let row: Option<DueRow> = sqlx::query_as(
                            "SELECT d.id, d.subscription_id, e.payload, \
                             s.helper_ciphertext, d.attempts \
                             FROM event_deliveries d \
                             JOIN events e ON e.id = d.event_id \
                             JOIN event_subscriptions s ON s.id = d.subscription_id \
                             WHERE d.id = $1",
                        )
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                        let Some(row) = row else { continue };
                        due.push(DueDelivery {
                            helper: cipher.decrypt(&row.subscription_id, &row.helper_ciphertext)?,
                            payload: json("events.payload", &row.payload)?,
                            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                            id: row.id,
                            subscription_id: row.subscription_id,
                        });
                    }
                    Ok(due)
                }

                async fn finish_delivery(
                    &self,
                    id: &str,
                    owner: &str,
                    outcome: &DeliveryOutcome,
                ) -> Result<(), StoreError> {
                    let at = now();
                    let (state, next, status, error, body) = match outcome {
                        DeliveryOutcome::Delivered => ("delivered", at, None, None, None),
                        DeliveryOutcome::Retry {
                            at: next,
                            status,
                            error,
                            body,
                        } => ("pending", *next, *status, Some(error), body.as_ref()),
                        DeliveryOutcome::Failed {
                            status,
                            error,
                            body,
                        } => ("failed", at, *status, Some(error), body.as_ref()),
                    };
                    sqlx::query(
                        "UPDATE event_deliveries SET state = $1, next_attempt_at = $2, \
                         attempts = attempts + 1, last_status = $3, last_error = $4, \
                         last_body = $5, last_attempt_at = $6, updated_at = $6, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE id = $7 AND lease_owner = $8 AND state = 'pending'",
                    )
                    .bind(state)
                    .bind(Ts(next))
                    .bind(status.map(i32::from))
                    .bind(error.map(String::as_str))
                    .bind(body.map(String::as_str))
                    .bind(Ts(at))
                    .bind(id)
                    .bind(owner)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn subscription_deliveries(
                    &self,
                    subscription: &str,
                    limit: u32,
                ) -> Result<Vec<DeliveryRecord>, StoreError> {
                    let rows: Vec<DeliveryRow> = sqlx::query_as(
                        "SELECT d.id, d.event_id, e.event, e.occurred_at, d.state, \
                         d.attempts, d.last_status, d.last_error, d.last_body, \
                         d.last_attempt_at, d.updated_at \
                         FROM event_deliveries d JOIN events e ON e.id = d.event_id \
                         WHERE d.subscription_id = $1 \
                         ORDER BY d.updated_at DESC, d.id LIMIT $2",
                    )
                    .bind(subscription)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().map(DeliveryRecord::from).collect())
                }

                async fn events_since(
                    &self,
                    connection: &str,
                    event: &str,
                    since: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<StoredEvent>, StoreError> {
                    let rows: Vec<EventRow> = sqlx::query_as(
                        "SELECT id, connection_id, event, source_id, occurred_at, payload \
                         FROM events \
                         WHERE connection_id = $1 AND event = $2 AND occurred_at >= $3 \
                         ORDER BY occurred_at, id LIMIT $4",
                    )
                    .bind(connection)
                    .bind(event)
                    .bind(Ts(since))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter().map(StoredEvent::try_from).collect()
                }

                async fn requeue_deliveries(
                    &self,
                    subscription: &str,
                    event_ids: &[String],
                ) -> Result<u64, StoreError> {
                    let at = now();
                    let mut tx = self.begin_write().await?;
                    let mut n = 0;
                    for event in event_ids {
                        let done = sqlx::query(
                            "INSERT INTO event_deliveries (id, event_id, subscription_id, \
                             state, next_attempt_at, updated_at) \
                             VALUES ($1, $2, $3, 'pending', $4, $4) \
                             ON CONFLICT (id) DO UPDATE SET state = 'pending', \
                             attempts = 0, next_attempt_at = excluded.next_attempt_at, \
                             lease_owner = NULL, lease_until = NULL, \
                             updated_at = excluded.updated_at",
                        )
                        .bind(delivery_id(event, subscription))
                        .bind(event.as_str())
                        .bind(subscription)
                        .bind(Ts(at))
                        .execute(&mut *tx)
                        .await?;
                        n += done.rows_affected();
                    }
                    tx.commit().await?;
                    Ok(n)
                }

                async fn delete_old_events(
                    &self,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    // Deliveries go with their event (ON DELETE CASCADE).
                    let done = sqlx::query(
                        "DELETE FROM events WHERE id IN (\
                         SELECT id FROM events WHERE created_at < $1 \
                         ORDER BY created_at LIMIT $2)",
                    )
                    .bind(Ts(before))
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(super) use event_store;
