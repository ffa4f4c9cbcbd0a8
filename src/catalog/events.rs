//! Event cards (`cards/events/<id>.json`, checked against `schemas/event.schema.json`): a change
//! in a Kandji tenant, where it is detected, the payload delivered to subscribers and the filters
//! a subscription may set. Data, like action cards: a new audit-log event needs no Rust.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{CardError, compile_schema, parse_builtin};

pub const EVENT_META_SCHEMA: &str = include_str!("../../schemas/event.schema.json");

/// The fields every payload carries, before the card's own.
pub const COMMON_FIELDS: [&str; 4] = ["event_id", "event", "occurred_at", "connection"];
/// The fields every audit-log event's payload carries too.
pub const AUDIT_FIELDS: [&str; 3] = ["audit_event_id", "actor_id", "actor_type"];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Audit(AuditMatch),
    Inventory(InventoryChange),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditMatch {
    #[serde(default)]
    pub target_type: Option<Vec<String>>,
    #[serde(default)]
    pub action: Option<Vec<String>>,
    #[serde(default)]
    pub target_component: Option<Vec<String>>,
}

impl AuditMatch {
    /// Whether an audit-log entry is this event.
    pub fn matches(&self, entry: &Value) -> bool {
        let is = |field: &str, allowed: &Option<Vec<String>>| match allowed {
            None => true,
            Some(list) => {
                let v = entry.get(field).and_then(Value::as_str).unwrap_or("");
                list.iter().any(|a| a == v)
            }
        };
        is("target_type", &self.target_type)
            && is("action", &self.action)
            && is("target_component", &self.target_component)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryChange {
    Missing,
    FoundAgain,
    OsUpdated,
    UserChanged,
    CheckInOverdue,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventCardDef {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub source: EventSource,
    #[serde(default)]
    pub filters_schema: Option<Value>,
    pub output_schema: Value,
}

/// One payload field: where it comes from.
#[derive(Debug, Clone)]
struct Output {
    name: String,
    pointer: String,
    map: Option<Map<String, Value>>,
}

/// A compiled event card.
pub struct EventCard {
    pub def: EventCardDef,
    /// The file as written.
    pub raw: Value,
    outputs: Vec<Output>,
    /// (filter name, payload field it compares with); `x-detect` filters are not listed.
    filters: Vec<(String, String)>,
    filters_validator: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for EventCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCard")
            .field("id", &self.def.id)
            .finish_non_exhaustive()
    }
}

impl EventCard {
    pub fn id(&self) -> &str {
        &self.def.id
    }

    pub fn audit_match(&self) -> Option<&AuditMatch> {
        match &self.def.source {
            EventSource::Audit(m) => Some(m),
            EventSource::Inventory(_) => None,
        }
    }

    /// The payload of this event for `entry` (an audit-log entry or an inventory change).
    pub fn payload(
        &self,
        event_id: &str,
        connection: &str,
        occurred_at: DateTime<Utc>,
        entry: &Value,
    ) -> Value {
        let mut m = Map::new();
        m.insert("event_id".into(), event_id.into());
        m.insert("event".into(), self.def.id.clone().into());
        m.insert(
            "occurred_at".into(),
            occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        m.insert("connection".into(), connection.into());
        if self.audit_match().is_some() {
            m.insert("audit_event_id".into(), field(entry, "/id"));
            m.insert("actor_id".into(), field(entry, "/actor_id"));
            m.insert("actor_type".into(), field(entry, "/actor_type"));
        }
        for o in &self.outputs {
            let mut v = field(entry, &o.pointer);
            if let (Some(map), Some(key)) = (&o.map, v.as_str())
                && let Some(mapped) = map.get(key)
            {
                v = mapped.clone();
            }
            m.insert(o.name.clone(), v);
        }
        Value::Object(m)
    }

    /// Checks a subscription's `filters`; the errors name each offending filter.
    pub fn check_filters(&self, filters: &Value) -> Result<(), Vec<(String, String)>> {
        if !filters.is_object() {
            return Err(vec![(String::new(), "must be an object".into())]);
        }
        match &self.filters_validator {
            None if filters.as_object().is_some_and(|m| !m.is_empty()) => Err(filters
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .map(|k| (k.clone(), "this event takes no filters".into()))
                .collect()),
            None => Ok(()),
            Some(v) => {
                let errors: Vec<(String, String)> = v
                    .iter_errors(filters)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        let name = at.trim_start_matches('/').split('/').next().unwrap_or("");
                        let name = if name.is_empty() {
                            // An unknown filter is reported at the object: name it.
                            match &e.kind() {
                                jsonschema::error::ValidationErrorKind::AdditionalProperties {
                                    unexpected,
                                } => unexpected.join(", "),
                                _ => String::new(),
                            }
                        } else {
                            name.to_string()
                        };
                        (name, e.to_string())
                    })
                    .collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                }
            }
        }
    }

    /// Whether a payload passes a subscription's filters.
    pub fn passes(&self, filters: &Value, payload: &Value) -> bool {
        self.filters.iter().all(|(name, field)| {
            let Some(want) = filters.get(name) else {
                return true;
            };
            let have = payload.get(field).unwrap_or(&Value::Null);
            match want {
                Value::Array(any) => any.contains(have),
                one => one == have,
            }
        })
    }

    /// The output schema with the common fields, as the catalog shows it.
    pub fn full_output_schema(&self) -> Value {
        let mut props = Map::new();
        let s = |title: &str, desc: &str| serde_json::json!({"title": title, "type": "string", "description": desc});
        props.insert(
            "event_id".into(),
            s(
                "Event ID",
                "Stable id of this event (the same on every delivery and replay)",
            ),
        );
        props.insert("event".into(), s("Event", "The event card's id"));
        props.insert(
            "occurred_at".into(),
            serde_json::json!({"title": "Occurred At", "type": "string", "format": "date-time"}),
        );
        props.insert(
            "connection".into(),
            s(
                "Connection",
                "The connection (Kandji tenant) it happened on",
            ),
        );
        if self.audit_match().is_some() {
            props.insert(
                "audit_event_id".into(),
                s("Audit Event ID", "The id of Kandji's audit-log entry"),
            );
            props.insert("actor_id".into(), s("Actor ID", "Who made the change"));
            props.insert("actor_type".into(), s("Actor Type", "user or api_token"));
        }
        if let Some(own) = self
            .def
            .output_schema
            .get("properties")
            .and_then(Value::as_object)
        {
            for (k, v) in own {
                props.insert(k.clone(), v.clone());
            }
        }
        serde_json::json!({"type": "object", "properties": props})
    }
}

fn field(entry: &Value, pointer: &str) -> Value {
    entry.pointer(pointer).cloned().unwrap_or(Value::Null)
}

pub(super) fn meta_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(EVENT_META_SCHEMA).expect("schemas/event.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("schemas/event.schema.json is a valid JSON Schema")
}

/// One event card from its file's bytes.
pub(super) fn parse(
    meta: &jsonschema::Validator,
    file: &str,
    bytes: &[u8],
) -> Result<EventCard, Vec<CardError>> {
    let (raw, def): (Value, EventCardDef) = super::read_checked(meta, file, bytes)?;
    let mut errors = Vec::new();
    super::check_id_is_file_name(file, &def.id, &mut errors);
    let mut outputs = Vec::new();
    let own = def.output_schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, p) in &own {
        let is_audit = matches!(def.source, EventSource::Audit(_));
        if is_audit && AUDIT_FIELDS.contains(&name.as_str()) {
            errors.push(CardError::new(
                file,
                format!("/output_schema/properties/{name}"),
                "is a field every audit event carries already",
            ));
        }
        outputs.push(Output {
            name: name.clone(),
            pointer: p["x-source"].as_str().unwrap_or("").to_string(),
            map: p.get("x-map").and_then(Value::as_object).cloned(),
        });
    }
    let mut filters = Vec::new();
    let filters_validator = match &def.filters_schema {
        None => None,
        Some(schema) => {
            for (name, p) in schema["properties"].as_object().into_iter().flatten() {
                if p.get("x-detect").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let field = p
                    .get("x-match")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_string();
                let known = own.contains_key(&field)
                    || COMMON_FIELDS.contains(&field.as_str())
                    || (matches!(def.source, EventSource::Audit(_))
                        && AUDIT_FIELDS.contains(&field.as_str()));
                if !known {
                    errors.push(CardError::new(
                        file,
                        format!("/filters_schema/properties/{name}"),
                        format!("compares with {field:?}, which is not a payload field"),
                    ));
                }
                filters.push((name.clone(), field));
            }
            compile_schema(file, "/filters_schema", schema, &mut errors)
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EventCard {
        def,
        raw,
        outputs,
        filters,
        filters_validator,
    })
}

/// Loads every event card of `dir` (the `events` folder of the built-in cards).
pub(super) fn load_builtin(
    dir: Option<&include_dir::Dir<'static>>,
) -> (BTreeMap<String, std::sync::Arc<EventCard>>, Vec<CardError>) {
    let meta = meta_validator();
    match dir {
        Some(dir) => parse_builtin(
            dir,
            |name, bytes| parse(&meta, name, bytes),
            |card| &card.def.id,
        ),
        None => Default::default(),
    }
}
