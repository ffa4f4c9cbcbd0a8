//! The Card types, as read from a card file (compiled into a [`super::Plan`] at load).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A loaded card: its definition, the file as written (served to designers), its compiled plan
/// (what the engine runs) and compiled validators.
pub struct Card {
    pub def: CardDef,
    pub plan: super::Plan,
    pub raw: Value,
    pub input_validator: jsonschema::Validator,
    pub options_validator: Option<jsonschema::Validator>,
    /// Whether any output is marked `x-secret` (computed once at load).
    pub returns_secrets: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardDef {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub effect: Effect,
    #[serde(default)]
    pub idempotent: Option<bool>,
    pub input_schema: Value,
    #[serde(default)]
    pub options_schema: Option<Value>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub result_sets: Vec<ResultSet>,
    pub requests: Vec<RequestDef>,
    #[serde(default)]
    pub lookups: Vec<Lookup>,
    pub output_schema: Value,
}

/// What running a card does to the tenant (the card's `effect`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Only reads.
    Read,
    /// Changes something that can be changed back.
    Change,
    /// Wipes, locks, restarts, removes or otherwise disrupts devices or their users, or may do
    /// anything (Custom API Action).
    Destructive,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub at_least_one: Vec<String>,
    /// Inputs of which at most one may be given (a seed label and its 2025 name).
    #[serde(default)]
    pub at_most_one: Vec<String>,
    /// Boolean options that count as given when true (Update Device's "leave blank to clear").
    #[serde(default)]
    pub or_options: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ResultSet {
    pub id: String,
    pub label: String,
    pub kind: ResultSetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// How a result set answers: `first` (up to its `limit` records, in the invocation's answer)
/// or `stream` (every record, POSTed one by one to a helper flow).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultSetKind {
    First,
    Stream,
}

#[derive(Debug, Clone, Deserialize)]
pub struct When {
    #[serde(default)]
    pub present: Option<String>,
    #[serde(default)]
    pub any_present: Option<Vec<String>>,
    #[serde(default)]
    pub option: Option<String>,
    #[serde(default)]
    pub equals: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MethodDef {
    Fixed(String),
    FromOption {
        #[serde(rename = "$option")]
        option: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestDef {
    #[serde(default)]
    pub when: Option<When>,
    /// Absent only on a resolver variant.
    #[serde(default)]
    pub method: Option<MethodDef>,
    /// Answered by this named resolver (e.g. `device_trust`, from the device inventory) instead
    /// of one Kandji request; the resolver decides what, if anything, it sends to Kandji.
    #[serde(default)]
    pub resolver: Option<String>,
    /// The resolver's arguments: templates over inputs and options.
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub relative_url_input: Option<String>,
    #[serde(default)]
    pub query: BTreeMap<String, Value>,
    #[serde(default)]
    pub query_input: Option<String>,
    #[serde(default)]
    pub headers_input: Option<String>,
    #[serde(default)]
    pub body: Option<BodyDef>,
    #[serde(default)]
    pub list: Option<ListDef>,
    #[serde(default)]
    pub pick: Option<PickDef>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Form,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BodyDef {
    pub encoding: Encoding,
    #[serde(default)]
    pub template: Option<Value>,
    #[serde(default)]
    pub input: Option<String>,
}

/// How a list is paged (see `docs/card-format.md`, "Paging styles").
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Paging {
    /// `limit`/`offset` params; stop on an empty or short page.
    Offset,
    /// `limit`/`offset` params; then follow the query of the envelope's `next`.
    Drf,
    /// `page=1,2,…` with a fixed page size; `next` followed as for `Drf`.
    Page,
    /// No paging params at all; every further page is the query of the envelope's `next`
    /// (an opaque `cursor=…`), on the tenant's host.
    Cursor,
    /// One request.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Pointers {
    One(String),
    Many(Vec<String>),
}

impl Pointers {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Pointers::One(p) => std::slice::from_ref(p),
            Pointers::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListDef {
    pub paging: Paging,
    pub records: Pointers,
    #[serde(default)]
    pub page_size: Option<usize>,
    #[serde(default)]
    pub size_param: Option<String>,
    /// Kandji's `ordering` for a stable order across offset pages (`device_id`).
    #[serde(default)]
    pub ordering: Option<String>,
    #[serde(default)]
    pub record_schema: Option<Value>,
}

impl ListDef {
    /// Kandji's largest page for this list (300 where documented).
    pub fn page_size(&self) -> usize {
        self.page_size.unwrap_or(300)
    }
    pub fn size_param(&self) -> &str {
        self.size_param.as_deref().unwrap_or("limit")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PickDef {
    pub r#where: BTreeMap<String, Value>,
    #[serde(default)]
    pub not_found: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lookup {
    pub name: String,
    pub path: String,
}

impl CardDef {
    /// Whether running the card again with the same inputs has no further effect: as the card
    /// says, else true for cards that only read.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or(self.effect == Effect::Read)
    }

    pub fn result_set(&self, id: &str) -> Option<&ResultSet> {
        self.result_sets.iter().find(|r| r.id == id)
    }

    /// Output properties whose `x-secret` is set, at any depth.
    pub fn has_secret_outputs(&self) -> bool {
        fn walk(v: &Value) -> bool {
            match v {
                Value::Object(m) => {
                    m.get("x-secret").and_then(Value::as_bool).unwrap_or(false)
                        || m.values().any(walk)
                }
                Value::Array(a) => a.iter().any(walk),
                _ => false,
            }
        }
        walk(&self.output_schema)
    }
}
