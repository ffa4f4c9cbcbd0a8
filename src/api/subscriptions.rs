//! `/v1/events` (the event cards, `catalog:read`) and `/v1/subscriptions` (`events:manage` or
//! `admin`): subscribe a workflow's URL to an event card on a connection; every matching change
//! is POSTed to it as a signed webhook (Standard Webhooks, as stream callbacks). A key sees and
//! deletes the subscriptions it created; an `admin` key, every subscription.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::extract::query_limit;
use super::openapi::{InternalError, InvalidQuery, ReplayInvalid, SubscriptionInvalid};
use super::{AppJson, AppState};
use crate::catalog::events::EventCard;
use crate::error::{FieldError, Problem};
use crate::events::StoredCallback;
use crate::store::{DeliveryRecord, NewSubscription, Subscription};
use crate::streams::{CallbackUrl, WebhookSecret};

pub fn catalog_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, delete))
        .routes(routes!(deliveries))
        .routes(routes!(replay))
}

/// An event card as the catalog shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = EventCard)]
struct EventView<'a> {
    #[schema(examples("device_enrolled"))]
    id: &'a str,
    title: &'a str,
    description: &'a str,
    category: &'a str,
    /// JSON Schema of a subscription's `filters` (null: the event takes none).
    #[schema(value_type = Object, required = true)]
    filters_schema: Option<&'a Value>,
    /// JSON Schema of the payload POSTed for each event (common fields included).
    #[schema(value_type = Object)]
    output_schema: Value,
}

fn event_view(c: &EventCard) -> EventView<'_> {
    EventView {
        id: &c.def.id,
        title: &c.def.title,
        description: &c.def.description,
        category: &c.def.category,
        filters_schema: c.def.filters_schema.as_ref(),
        output_schema: c.full_output_schema(),
    }
}

#[derive(Serialize, ToSchema)]
struct EventList<'a> {
    events: Vec<EventView<'a>>,
}

/// List the event cards
///
/// Every event a subscription may deliver: its payload's schema and the filters it takes.
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "listEventCards", responses(
    (status = 200, description = "The event cards, by id.", body = EventList),
))]
async fn list_events(State(app): State<AppState>) -> Response {
    Json(EventList {
        events: app.catalog.events().map(|c| event_view(c)).collect(),
    })
    .into_response()
}

/// The event card's id, in the path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct EventId(#[param(example = "device_enrolled")] String);

/// Get an event card
#[utoipa::path(get, path = "/events/{id}", tag = "events", operation_id = "getEventCard", params(EventId), responses(
    (status = 200, description = "The event card.", body = EventView),
))]
async fn get_event(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let card = app
        .catalog
        .event(&id)
        .ok_or_else(|| Problem::not_found(format!("no event card {id:?}")))?;
    Ok(Json(event_view(card)).into_response())
}

/// A subscription as the API shows it (never its URL or secret).
#[derive(Serialize, ToSchema)]
#[schema(as = Subscription, example = json!({
    "id": "sub_3f1d0c9b8a7e4d6c5b4a39281706f5e4",
    "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
    "event": "device_enrolled",
    "filters": {"platform": "Mac"},
    "callback": "https://acme.workflows.okta.com",
    "created_at": "2024-06-03T09:00:00.000000Z",
}))]
struct View<'a> {
    id: &'a str,
    connection: &'a str,
    event: &'a str,
    #[schema(value_type = Object)]
    filters: &'a Value,
    /// Origin (scheme://host[:port]) of the URL; its path and query are never shown.
    callback: &'a str,
    created_at: DateTime<Utc>,
}

fn view(s: &Subscription) -> View<'_> {
    View {
        id: &s.id,
        connection: &s.connection_id,
        event: &s.event,
        filters: &s.filters,
        callback: &s.callback_origin,
        created_at: s.created_at,
    }
}

#[derive(Serialize, ToSchema)]
struct SubscriptionList<'a> {
    subscriptions: Vec<View<'a>>,
}

/// A new subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "connection": "conn_5f0c2b7d9a8e4c1f8b3a6d2e1c0f9a7b",
    "event": "device_enrolled",
    "url": "https://acme.workflows.okta.com/api/flo/3c1e…/invoke?clientToken=…",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "filters": {"platform": "Mac"},
}))]
struct CreateBody {
    /// The connection (Kandji tenant) whose changes to deliver.
    connection: String,
    /// An event card's id (`GET /v1/events`).
    event: String,
    /// Where each event is POSTed: https (plain http and non-public addresses only when
    /// `KANDJI_CONNECTOR_CALLBACK_ALLOW` lists them), as stream callbacks.
    url: String,
    /// `whsec_<base64 of 24 to 64 bytes>`: each POST is then signed (`webhook-signature`).
    secret: Option<String>,
    /// The event card's filters (its `filters_schema`); absent: every event.
    #[schema(value_type = Object)]
    filters: Option<Value>,
}

/// Subscribe to an event
///
/// From now on every change of this kind on the connection is POSTed to `url` as JSON (the
/// event card's payload) with Standard Webhooks headers: `webhook-id` (the same on every retry
/// and replay of the event to this subscription), `webhook-timestamp` and, with a `secret`,
/// `webhook-signature`. Answers other than 2xx are retried on the streams' schedule (429, 5xx,
/// 408, timeouts) or recorded as failed (other 4xx, 3xx); see `GET …/deliveries`. The
/// connection's audit log is polled once per `KANDJI_CONNECTOR_EVENTS_INTERVAL_MS`, however many
/// subscriptions it has.
#[utoipa::path(post, path = "/subscriptions", tag = "events", operation_id = "createSubscription", request_body = CreateBody, responses(
    (status = 201, description = "The subscription.", body = View),
    (status = 422, response = SubscriptionInvalid),
    (status = 500, response = InternalError),
))]
async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(body): AppJson<CreateBody>,
) -> Result<Response, Problem> {
    let mut errors = Vec::new();
    let conn = app.store.get_connection(&body.connection).await?;
    if conn.is_none() {
        errors.push(FieldError::new(
            &["connection"],
            "no such connection",
            "unknown_connection",
        ));
    }
    let card = app.catalog.event(&body.event);
    match card {
        None => errors.push(FieldError::new(
            &["event"],
            "no such event card (see GET /v1/events)",
            "unknown_event",
        )),
        // Inventory events come from the connection's device inventory sync.
        Some(c) if c.audit_match().is_none() && conn.as_ref().is_some_and(|c| !c.inventory_sync) => {
            errors.push(FieldError::new(
                &["event"],
                "this event is detected by the connection's device inventory: turn its inventory_sync on first (PATCH /v1/connections/{id})",
                "inventory_sync_off",
            ))
        }
        Some(_) => {}
    }
    let filters = body
        .filters
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let Some(card) = card
        && let Err(e) = card.check_filters(&filters)
    {
        for (name, msg) in e {
            let loc: Vec<&str> = if name.is_empty() {
                vec!["filters"]
            } else {
                vec!["filters", &name]
            };
            errors.push(FieldError::new(&loc, msg, "filter"));
        }
    }
    let allow = &app.streams.config().allow;
    let origin = match CallbackUrl::check(&body.url, allow).await {
        Ok(u) => Some(u.origin()),
        Err(e) => {
            errors.push(FieldError::new(
                &["url"],
                format!("the callback URL {e}"),
                "callback_url",
            ));
            None
        }
    };
    if let Some(s) = &body.secret
        && let Err(e) = WebhookSecret::parse(s)
    {
        errors.push(FieldError::new(&["secret"], e, "secret"));
    }
    let (Some(card), Some(origin)) = (card, origin) else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let sub = app
        .store
        .create_subscription(NewSubscription {
            owner: caller.key_id.clone(),
            connection_id: body.connection,
            event: card.id().to_string(),
            filters,
            helper: StoredCallback {
                url: body.url,
                secret: body.secret,
            }
            .seal(),
            callback_origin: origin,
        })
        .await?;
    tracing::info!(subscription = %sub.id, event = %sub.event, callback = %sub.callback_origin, "subscription created");
    let location = format!("/v1/subscriptions/{}", sub.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view(&sub)),
    )
        .into_response())
}

/// List subscriptions
///
/// The caller's subscriptions (every one for an `admin` key), newest first.
#[utoipa::path(get, path = "/subscriptions", tag = "events", operation_id = "listSubscriptions", responses(
    (status = 200, description = "Subscriptions, newest first.", body = SubscriptionList),
    (status = 500, response = InternalError),
))]
async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    let owner = caller.owner_filter();
    let subs = app.store.list_subscriptions(owner, 1000).await?;
    Ok(Json(SubscriptionList {
        subscriptions: subs.iter().map(view).collect(),
    })
    .into_response())
}

/// The subscription's id, in the path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct SubscriptionId(#[param(example = "sub_3f1d0c9b8a7e4d6c5b4a39281706f5e4")] String);

async fn visible(app: &AppState, caller: &Caller, id: &str) -> Result<Subscription, Problem> {
    match app.store.get_subscription(id).await? {
        Some(s) if caller.may_see(&s.owner) => Ok(s),
        _ => Err(Problem::not_found(format!("no subscription {id:?}"))),
    }
}

/// Get a subscription
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "events", operation_id = "getSubscription", params(SubscriptionId), responses(
    (status = 200, description = "The subscription.", body = View),
    (status = 500, response = InternalError),
))]
async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = visible(&app, &caller, &id).await?;
    Ok(Json(view(&s)).into_response())
}

/// Delete a subscription
///
/// Nothing more is delivered to it (a POST in flight may still arrive); its deliveries are
/// forgotten.
#[utoipa::path(delete, path = "/subscriptions/{id}", tag = "events", operation_id = "deleteSubscription", params(SubscriptionId), responses(
    (status = 204, description = "Deleted."),
    (status = 500, response = InternalError),
))]
async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    visible(&app, &caller, &id).await?;
    app.store.delete_subscription(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A delivery of one event to the subscription.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
struct DeliveryView<'a> {
    /// The `webhook-id` header of every attempt.
    webhook_id: &'a str,
    event_id: &'a str,
    event: &'a str,
    occurred_at: DateTime<Utc>,
    /// `pending` (not yet posted, or waiting to retry), `delivered` or `failed` (refused for
    /// good or out of retries).
    state: &'a str,
    attempts: u32,
    /// The callback's HTTP status at the last attempt; null when it never answered.
    #[schema(required = true)]
    last_status: Option<u16>,
    #[schema(required = true)]
    last_error: Option<&'a str>,
    /// The start (at most 1 KiB) of the callback's last answer, when it failed.
    #[schema(required = true)]
    last_body: Option<&'a str>,
    #[schema(required = true)]
    last_attempt_at: Option<DateTime<Utc>>,
}

fn delivery_view(d: &DeliveryRecord) -> DeliveryView<'_> {
    DeliveryView {
        webhook_id: &d.webhook_id,
        event_id: &d.event_id,
        event: &d.event,
        occurred_at: d.occurred_at,
        state: &d.state,
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error.as_deref(),
        last_body: d.last_body.as_deref(),
        last_attempt_at: d.last_attempt_at,
    }
}

#[derive(Serialize, ToSchema)]
struct DeliveryList<'a> {
    subscription_id: &'a str,
    deliveries: Vec<DeliveryView<'a>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<u32>,
}

/// Recent deliveries and failures
///
/// The subscription's deliveries, most recently attempted first, with the last attempt's
/// answer.
#[utoipa::path(get, path = "/subscriptions/{id}/deliveries", tag = "events", operation_id = "listSubscriptionDeliveries", params(SubscriptionId, DeliveriesQuery), responses(
    (status = 200, description = "Deliveries, most recent first.", body = DeliveryList),
    (status = 422, response = InvalidQuery),
    (status = 500, response = InternalError),
))]
async fn deliveries(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q: DeliveriesQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| Problem::invalid(vec![FieldError::new(&["query"], e.to_string(), "query")]))?;
    let limit = query_limit(q.limit, 100)?;
    visible(&app, &caller, &id).await?;
    let list = app.store.subscription_deliveries(&id, limit).await?;
    Ok(Json(DeliveryList {
        subscription_id: &id,
        deliveries: list.iter().map(delivery_view).collect(),
    })
    .into_response())
}

/// What to re-deliver.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "2024-06-03T09:00:00Z"}))]
struct ReplayBody {
    /// RFC 3339: every kept event of the subscription that occurred at or after this time.
    since: String,
}

#[derive(Serialize, ToSchema)]
struct Replayed {
    /// Events queued for delivery again.
    requeued: u64,
}

/// Most events one replay re-delivers.
const MAX_REPLAY: u32 = 10_000;

/// Re-deliver kept events
///
/// Queues again every kept event (events are kept `KANDJI_CONNECTOR_EVENTS_RETENTION_DAYS`) of
/// the subscription's kind and connection that occurred at or after `since` and passes its
/// filters, delivered or not, with the same `webhook-id` as before.
#[utoipa::path(post, path = "/subscriptions/{id}/replay", tag = "events", operation_id = "replaySubscription", params(SubscriptionId), request_body = ReplayBody, responses(
    (status = 202, description = "Queued.", body = Replayed),
    (status = 422, response = ReplayInvalid),
    (status = 500, response = InternalError),
))]
async fn replay(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AppJson(body): AppJson<ReplayBody>,
) -> Result<Response, Problem> {
    let sub = visible(&app, &caller, &id).await?;
    let since = DateTime::parse_from_rfc3339(body.since.trim())
        .map_err(|_| {
            Problem::invalid(vec![FieldError::new(
                &["since"],
                "must be an RFC 3339 date-time, e.g. 2024-06-03T09:00:00Z",
                "date_time",
            )])
        })?
        .with_timezone(&Utc);
    let card = app.catalog.event(&sub.event);
    let events = app
        .store
        .events_since(&sub.connection_id, &sub.event, since, MAX_REPLAY)
        .await?;
    let ids: Vec<String> = events
        .into_iter()
        .filter(|e| card.is_none_or(|c| c.passes(&sub.filters, &e.payload)))
        .map(|e| e.id)
        .collect();
    let requeued = app.store.requeue_deliveries(&sub.id, &ids).await?;
    app.events.wake();
    Ok((StatusCode::ACCEPTED, Json(Replayed { requeued })).into_response())
}
