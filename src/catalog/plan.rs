//! A card compiled once at load ([`super::compile`]): every reference in it resolved and checked,
//! so that the engine (`src/engine/`) only substitutes values per call.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Map, Value};

use super::{Encoding, Paging};

pub struct Plan {
    /// Request variants, in order; the first whose `when` holds is sent.
    pub variants: Vec<Variant>,
    /// Follow-up `GET`s whose bodies outputs read as `$<name>/…`.
    pub lookups: Vec<LookupPlan>,
    pub outputs: Vec<OutputPlan>,
    /// Defaults of top-level inputs, filled in before the request is built.
    pub defaults: Vec<(String, Value)>,
    /// Text inputs that are numeric by nature (`"x-integer-as-text": true`): a caller's
    /// non-negative integer is taken as its decimal text before the schema is checked.
    pub integer_as_text: Vec<String>,
    /// Lists of texts a caller may give as one text (`"x-text-as-list": true`): its
    /// comma-separated parts, trimmed, empty ones left out.
    pub text_as_list: Vec<String>,
    /// Inputs a caller may "leave blank" (an `if_blank` template's): blank text, or a text list
    /// with no item, is taken as not given, so that the clear option decides.
    pub blank_is_absent: Vec<String>,
}

pub struct Variant {
    pub when: Option<Cond>,
    pub action: Action,
}

impl Variant {
    /// The list this variant pages through, if it lists records.
    pub fn list(&self) -> Option<&Arc<ListPlan>> {
        match &self.action {
            Action::Send(http) => http.list.as_ref(),
            Action::Resolve { .. } => None,
        }
    }
}

pub enum Action {
    /// Answered by a resolver built into the server, with these rendered arguments.
    Resolve {
        resolver: String,
        args: Vec<(String, Template)>,
    },
    /// One Kandji request (paged when `list` is set).
    Send(Box<HttpPlan>),
}

pub struct HttpPlan {
    pub method: MethodPlan,
    pub target: Target,
    pub query: Vec<(String, Template)>,
    /// An object input merged into the query.
    pub query_input: Option<String>,
    /// An object input sent as headers.
    pub headers_input: Option<String>,
    pub body: Option<BodyPlan>,
    pub list: Option<Arc<ListPlan>>,
    pub pick: Option<PickPlan>,
}

pub enum MethodPlan {
    Fixed(Method),
    FromOption(String),
}

pub enum Target {
    /// A path template whose `{placeholders}` name inputs (checked at load).
    Path(String),
    /// The Custom API Action's relative URL, from this input.
    RelativeUrlInput(String),
}

pub struct BodyPlan {
    pub encoding: Encoding,
    pub content: BodyContent,
}

pub enum BodyContent {
    /// This input, verbatim.
    Input(String),
    Template(Template),
}

/// How a list is read: paging style, where the records are, page size.
#[derive(Debug, Clone)]
pub struct ListPlan {
    pub paging: Paging,
    /// JSON pointers to the records of a page; the first that is an array wins.
    pub records: Vec<String>,
    /// Kandji's largest page for this list.
    pub page_size: usize,
    /// The query parameter that carries the page size (offset and drf lists).
    pub size_param: String,
    /// Sent as `ordering` with every page the list asks for by offset, unless the request
    /// already has one: Kandji's default order may change between requests (devices check in),
    /// which makes offset pages repeat and skip records.
    pub ordering: Option<String>,
    /// Normalises each record.
    pub record_shape: Option<Shape>,
}

impl ListPlan {
    pub fn new(paging: Paging, records: &[&str], page_size: usize) -> Self {
        Self {
            paging,
            records: records.iter().map(|r| r.to_string()).collect(),
            page_size,
            size_param: "limit".into(),
            ordering: None,
            record_shape: None,
        }
    }

    /// Pages in this stable order (Kandji's `ordering` parameter).
    pub fn ordered_by(mut self, ordering: &str) -> Self {
        self.ordering = Some(ordering.to_string());
        self
    }
}

pub struct PickPlan {
    /// (JSON pointer into a record, the value it must equal).
    pub r#where: Vec<(String, Template)>,
    pub not_found: String,
}

pub struct LookupPlan {
    pub name: String,
    pub path: String,
}

/// A request's `when`, an output's `x-when`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// This input is given (and not null).
    Present(String),
    /// At least one of these inputs is given (and not null).
    AnyPresent(Vec<String>),
    /// This option equals this value.
    OptionEquals { option: String, value: Value },
}

impl Cond {
    pub fn holds(&self, inputs: &Map<String, Value>, options: &Map<String, Value>) -> bool {
        match self {
            Cond::Present(name) => inputs.get(name).is_some_and(|v| !v.is_null()),
            Cond::AnyPresent(names) => names
                .iter()
                .any(|name| inputs.get(name).is_some_and(|v| !v.is_null())),
            Cond::OptionEquals { option, value } => options.get(option) == Some(value),
        }
    }
}

/// A JSON value with references to inputs and options (rendered by `src/engine/template.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// No reference inside: used as is.
    Literal(Value),
    /// `{"$input": name, "or"?: [names], "map"?: {...}, "if_blank"?: {"option": o, "send": v}}`
    Input {
        name: String,
        map: Option<Map<String, Value>>,
        /// "Leave blank to clear": when the input is absent and this boolean option is true,
        /// the key is sent with this value (`null`, `[]`) instead of being dropped.
        if_blank: Option<(String, Value)>,
        /// Other names of the same input (a 2025 label beside the seed's): when `name` is
        /// absent, the first of these that is given.
        or: Vec<String>,
    },
    /// `{"$option": name}`
    Option(String),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

/// One output: where its value comes from, how it is normalised, when it is shown.
pub struct OutputPlan {
    pub key: String,
    /// The first that yields a non-null value of the declared type wins.
    pub sources: Vec<Source>,
    pub shape: Shape,
    /// `x-result-sets`: shown only for these result sets.
    pub result_sets: Option<Vec<String>>,
    /// `x-when`: shown only when this holds.
    pub when: Option<Cond>,
    /// A group built member by member; members' pointer sources are relative to its value.
    pub members: Vec<OutputPlan>,
}

/// An `x-source` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `"/ptr"` or `""`: into Kandji's body (into the parent's value for a group member).
    Pointer(String),
    Status,
    Headers,
    /// `$body/ptr`, `$picked/ptr`
    Body(String),
    Error,
    Inputs(String),
    Options(String),
    Records,
    /// `$record/ptr`: the first record.
    Record(String),
    Count,
    /// `$lookup_error`: what the lookups could not read, and why (null when all were read).
    LookupError,
    /// `$<lookup>/ptr`: by the lookup's index in [`Plan::lookups`].
    Lookup {
        index: usize,
        pointer: String,
    },
}

/// The declared type of a value, compiled from its JSON Schema for coercion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// `type`; empty means any.
    pub types: Vec<JsonType>,
    /// `format: date-time`
    pub date: bool,
    pub properties: Vec<(String, Shape)>,
    pub items: Option<Box<Shape>>,
    /// No `type`, `properties` or `items`: values pass unchanged.
    pub passthrough: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    Null,
    /// A type name JSON Schema does not have: matches anything.
    Other,
}

impl Shape {
    pub fn of(schema: &Value) -> Self {
        let types: Vec<JsonType> = match schema.get("type") {
            Some(Value::String(t)) => vec![JsonType::named(t)],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(JsonType::named)
                .collect(),
            _ => vec![],
        };
        Self {
            passthrough: types.is_empty()
                && schema.get("properties").is_none()
                && schema.get("items").is_none(),
            types,
            date: schema.get("format").and_then(Value::as_str) == Some("date-time"),
            properties: schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, s)| (k.clone(), Shape::of(s))).collect())
                .unwrap_or_default(),
            items: schema.get("items").map(|s| Box::new(Shape::of(s))),
        }
    }

    pub fn wants(&self, t: JsonType) -> bool {
        self.types.contains(&t)
    }

    /// Whether `v` is of one of the declared types (any, when none is declared).
    pub fn admits(&self, v: &Value) -> bool {
        self.types.is_empty()
            || self.types.iter().any(|t| match t {
                JsonType::String => v.is_string(),
                JsonType::Integer => v.is_i64() || v.is_u64(),
                JsonType::Number => v.is_number(),
                JsonType::Boolean => v.is_boolean(),
                JsonType::Object => v.is_object(),
                JsonType::Array => v.is_array(),
                JsonType::Null => v.is_null(),
                JsonType::Other => true,
            })
    }
}

impl JsonType {
    fn named(t: &str) -> Self {
        match t {
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            "null" => Self::Null,
            _ => Self::Other,
        }
    }
}
