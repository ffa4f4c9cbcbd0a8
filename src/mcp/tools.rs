//! Tools from card data: a card's id, title, description, `effect`, `idempotent`, schemas and
//! result sets become one MCP tool; nothing here knows a particular card.
//!
//! **Arguments.** A tool takes the card's inputs and options as one flat object, plus
//! `connection` (which tenant; may be left out when the connector has exactly one) and, for a
//! card with a stream result set, the stream's `helper_flow` and `record_limit`. The flat form
//! needs every name to be unique: when an input and an option share a name, or either is
//! called `connection`, `helper_flow` or `record_limit`, or a card's input or options schema
//! has more than properties at its top (e.g. `allOf`, which a merge would lose), that card's
//! tool takes the HTTP body's own shape instead, `{"connection", "inputs": {...}, "options":
//! {...}}`, with the card's schemas as they are. No built-in card needs that today.

use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::catalog::{Card, Effect, ResultSetKind, strip_sources};
use crate::error::FieldError;

/// Names the connector itself puts beside the card's inputs and options.
const CONNECTION: &str = "connection";
const STREAM_OPTIONS: [&str; 2] = ["helper_flow", "record_limit"];
/// Keywords a flat merge keeps; a schema with any other at its top takes the nested shape.
const MERGEABLE: [&str; 7] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "title",
    "description",
    // Names properties, which keep their names when merged (Erase Device's ReturnToService).
    "dependentRequired",
];

/// How a card's tool takes its arguments.
pub struct Shape {
    /// Flat (the card's input and option names, side by side) or the HTTP body's shape.
    flat: bool,
    options: BTreeSet<String>,
    stream: bool,
}

fn properties(schema: Option<&Value>) -> BTreeSet<String> {
    schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn mergeable(schema: Option<&Value>) -> bool {
    schema.is_none_or(|s| {
        s.as_object()
            .is_some_and(|m| m.keys().all(|k| MERGEABLE.contains(&k.as_str())))
    })
}

impl Shape {
    pub fn of(card: &Card) -> Self {
        let d = &card.def;
        let inputs = properties(Some(&d.input_schema));
        let options = properties(d.options_schema.as_ref());
        let stream = d
            .result_sets
            .iter()
            .any(|r| r.kind == ResultSetKind::Stream);
        let mut reserved = vec![CONNECTION];
        if stream {
            reserved.extend(STREAM_OPTIONS);
        }
        let clash = inputs.intersection(&options).next().is_some()
            || reserved
                .iter()
                .any(|r| inputs.contains(*r) || options.contains(*r));
        let flat =
            !clash && mergeable(Some(&d.input_schema)) && mergeable(d.options_schema.as_ref());
        Self {
            flat,
            options,
            stream,
        }
    }

    pub fn is_flat(&self) -> bool {
        self.flat
    }

    /// The invocation body (`{"connection", "inputs", "options"}`, in that order, as an HTTP
    /// caller would write it, so that one idempotency key serves both surfaces) of a tool
    /// call's arguments and connection. A name that is none of the card's goes with the inputs,
    /// where validation names it as unknown.
    pub fn body(&self, mut arguments: Map<String, Value>, connection: String) -> Value {
        let (inputs, options) = if self.flat {
            let mut inputs = Map::new();
            let mut options = Map::new();
            for (k, v) in arguments {
                if self.options.contains(&k)
                    || (self.stream && STREAM_OPTIONS.contains(&k.as_str()))
                {
                    options.insert(k, v);
                } else {
                    inputs.insert(k, v);
                }
            }
            (Value::Object(inputs), Value::Object(options))
        } else {
            let inputs = arguments.remove("inputs").unwrap_or_else(|| json!({}));
            let options = arguments.remove("options").unwrap_or_else(|| json!({}));
            // Anything else is refused by name, like an HTTP body's unknown field.
            let mut body = Map::new();
            body.insert("connection".into(), connection.into());
            body.insert("inputs".into(), inputs);
            body.insert("options".into(), options);
            body.extend(arguments);
            return Value::Object(body);
        };
        json!({"connection": connection, "inputs": inputs, "options": options})
    }

    /// Where a field error points in the tool's arguments: a flat tool's inputs and options are
    /// top-level names (`["inputs", "device_id"]` is `["device_id"]`).
    pub fn loc(&self, e: &FieldError) -> Vec<String> {
        match e.loc.first().map(String::as_str) {
            Some("inputs" | "options") if self.flat && e.loc.len() > 1 => e.loc[1..].to_vec(),
            _ => e.loc.clone(),
        }
    }
}

fn connection_schema() -> Value {
    json!({
        "type": "string",
        "title": "Connection",
        "description": "Id of the connection (Kandji tenant) to run against (`conn_…`). May be left out when the connector has exactly one connection.",
    })
}

fn helper_flow_schema() -> Value {
    json!({
        "type": "object",
        "title": "Helper Flow",
        "description": "Only with a stream result set (required then): where each record is POSTed. https URL (plain http and non-public hosts only where the operator allowed them), optional Standard Webhooks secret (`whsec_…`) to sign callbacks, optional `state` passed through in every callback.",
        "additionalProperties": false,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "secret": {"type": "string", "pattern": "^whsec_"},
            "state": {},
        },
    })
}

fn record_limit_schema() -> Value {
    json!({
        "type": "integer",
        "minimum": 0,
        "title": "Record Limit",
        "description": "Only with a stream result set: the most records to deliver (absent: every record).",
    })
}

/// The tool's `inputSchema`: the card's inputs and options as one object (see the module doc).
fn input_schema(card: &Card, shape: &Shape) -> JsonObject {
    let d = &card.def;
    let options_schema = d.options_schema.clone().unwrap_or_else(
        || json!({"type": "object", "properties": {}, "additionalProperties": false}),
    );
    let mut props = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut dependent = Map::new();
    if shape.flat {
        for schema in [&d.input_schema, &options_schema] {
            if let Some(p) = schema.get("properties").and_then(Value::as_object) {
                props.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if let Some(r) = schema.get("required").and_then(Value::as_array) {
                required.extend(r.iter().cloned());
            }
            if let Some(r) = schema.get("dependentRequired").and_then(Value::as_object) {
                dependent.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        if shape.stream {
            props.insert("helper_flow".into(), helper_flow_schema());
            props.insert("record_limit".into(), record_limit_schema());
        }
    } else {
        let mut options = options_schema;
        if shape.stream
            && let Some(p) = options.get_mut("properties").and_then(Value::as_object_mut)
        {
            p.insert("helper_flow".into(), helper_flow_schema());
            p.insert("record_limit".into(), record_limit_schema());
        }
        props.insert("inputs".into(), d.input_schema.clone());
        props.insert("options".into(), options);
        required.push("inputs".into());
    }
    props.insert(CONNECTION.into(), connection_schema());
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    if !dependent.is_empty() {
        schema.insert("dependentRequired".into(), Value::Object(dependent));
    }
    schema.insert("additionalProperties".into(), false.into());
    schema
}

/// The tool's `outputSchema`: the card's output schema, plus what every answer may carry
/// (`status_code` always, `error` when Kandji answered 4xx/5xx) and, for a card with a stream
/// result set, the started stream's `stream_id` and `status_url`.
fn output_schema(card: &Card) -> JsonObject {
    let mut schema = match strip_sources(&card.def.output_schema) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    schema.insert("type".into(), "object".into());
    let props = schema
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("an output schema's properties are an object");
    props.entry("status_code").or_insert_with(|| {
        json!({"title": "Status Code", "type": "integer", "description": "HTTP status Kandji answered with"})
    });
    props.insert(
        "error".into(),
        json!({"title": "Error", "type": "string", "description": "Kandji's message, present only when status_code is 400 or more"}),
    );
    let streams: Vec<&str> = card
        .def
        .result_sets
        .iter()
        .filter(|r| r.kind == ResultSetKind::Stream)
        .map(|r| r.id.as_str())
        .collect();
    if !streams.is_empty() {
        props.insert(
            "stream_id".into(),
            json!({"title": "Stream ID", "type": "string", "description": "The started stream (status_code 202); read its progress with the get_stream tool", "x-result-sets": streams}),
        );
        props.insert(
            "status_url".into(),
            json!({"title": "Status URL", "type": "string", "description": "The started stream's status, GET with the same API key", "x-result-sets": streams}),
        );
    }
    schema.insert("required".into(), json!(["status_code"]));
    schema
}

/// The MCP tool of a card.
pub fn card_tool(card: &Card) -> Tool {
    let d = &card.def;
    let shape = Shape::of(card);
    let annotations = match d.effect {
        Effect::Read => ToolAnnotations::with_title(&d.title).read_only(true),
        Effect::Change => ToolAnnotations::with_title(&d.title)
            .read_only(false)
            .destructive(false),
        Effect::Destructive => ToolAnnotations::with_title(&d.title)
            .read_only(false)
            .destructive(true),
    }
    .idempotent(d.is_idempotent())
    // The tool acts on one configured Kandji tenant, not an open world.
    .open_world(false);
    Tool::new(
        d.id.clone(),
        d.description.clone(),
        Arc::new(input_schema(card, &shape)),
    )
    .with_title(&d.title)
    .with_raw_output_schema(Arc::new(output_schema(card)))
    .with_annotations(annotations)
}
