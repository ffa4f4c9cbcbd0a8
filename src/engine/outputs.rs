//! Kandji's answer -> the card's outputs: sources, type coercion, Kandji's error messages.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use super::Prepared;
use crate::catalog::{JsonType, OutputPlan, Shape, Source};

/// What an invocation got back (from Kandji or a resolver), before it becomes outputs: everything
/// an output's source can name besides the inputs and options.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Kandji's response headers (as JSON only for an output that names `$headers`).
    pub headers: HeaderMap,
    /// Kandji's body: JSON when it parsed, else its text, else null.
    pub body: Value,
    /// Kandji's message when it answered 4xx/5xx (or the connector's, for a pick that failed).
    pub error: Option<String>,
    pub records: Option<Vec<Value>>,
    pub count: Option<u64>,
    /// The lookups' bodies, by their index in the card's plan (`None`: not made, or failed).
    pub lookups: Vec<Option<Value>>,
    /// What the lookups could not read, and why (`$lookup_error`).
    pub lookup_error: Option<String>,
}

impl Answer {
    /// An answer with this status and body; its error is Kandji's message when it is 4xx/5xx.
    pub fn new(status: u16, headers: HeaderMap, body: Value) -> Self {
        Self {
            error: (status >= 400).then(|| error_message(status, &body)),
            status,
            headers,
            body,
            ..Self::default()
        }
    }

    /// What `source` names, borrowed where it is part of the answer (nothing is copied until an
    /// output keeps it).
    fn resolve<'a>(&'a self, source: &Source, p: &'a Prepared<'_>) -> Option<Cow<'a, Value>> {
        let borrowed = |v: Option<&'a Value>| v.map(Cow::Borrowed);
        match source {
            // An error body is Kandji's message (in `$error`, raw in `$body`), never the record
            // the output describes: `{"content": ["This field may not be blank."]}` is no note.
            Source::Pointer(_) if self.status >= 400 => None,
            Source::Pointer(ptr) | Source::Body(ptr) => borrowed(pointer(&self.body, ptr)),
            Source::Status => Some(Cow::Owned(Value::from(self.status))),
            Source::Headers => Some(Cow::Owned(super::headers_json(&self.headers))),
            Source::Error => self.error.clone().map(|e| Cow::Owned(Value::String(e))),
            Source::Inputs(ptr) => map_pointer(&p.inputs, ptr),
            Source::Options(ptr) => map_pointer(&p.options, ptr),
            Source::Records => self.records.clone().map(|r| Cow::Owned(Value::Array(r))),
            Source::Record(ptr) => borrowed(pointer(self.records.as_ref()?.first()?, ptr)),
            Source::Count => self.count.map(|c| Cow::Owned(Value::from(c))),
            Source::LookupError => self
                .lookup_error
                .clone()
                .map(|e| Cow::Owned(Value::String(e))),
            Source::Lookup {
                index,
                pointer: ptr,
            } => borrowed(pointer(self.lookups.get(*index)?.as_ref()?, ptr)),
        }
    }

    /// The card's outputs for this answer.
    pub fn outputs(&self, p: &Prepared<'_>) -> Map<String, Value> {
        let mut out = Map::new();
        for o in &p.card.plan.outputs {
            if shown(o, p) {
                out.insert(o.key.clone(), self.output(o, None, p));
            }
        }
        out.insert("status_code".into(), Value::from(self.status));
        if let Some(e) = &self.error {
            out.insert("error".into(), Value::String(e.clone()));
        }
        out
    }

    /// One output: from its sources (pointers relative to `parent` for a group's members).
    fn output(&self, o: &OutputPlan, parent: Option<&Value>, p: &Prepared<'_>) -> Value {
        for s in &o.sources {
            let raw = match (parent, s) {
                (Some(parent), Source::Pointer(ptr)) => pointer(parent, ptr).map(Cow::Borrowed),
                _ => self.resolve(s, p),
            };
            let Some(v) = raw else { continue };
            // A group's members are drawn from the object as Kandji sent it, each coerced to
            // its own shape: the object itself is neither copied nor coerced.
            if !o.members.is_empty() && v.is_object() && o.shape.admits(&v) {
                return Value::Object(
                    o.members
                        .iter()
                        .map(|m| (m.key.clone(), self.output(m, Some(&v), p)))
                        .collect(),
                );
            }
            let c = coerce(v.into_owned(), &o.shape);
            if !c.is_null() && o.shape.admits(&c) {
                if o.members.is_empty() {
                    return c;
                }
                return Value::Object(
                    o.members
                        .iter()
                        .map(|m| (m.key.clone(), self.output(m, Some(&c), p)))
                        .collect(),
                );
            }
        }
        Value::Null
    }
}

/// `x-result-sets` and `x-when`.
fn shown(o: &OutputPlan, p: &Prepared<'_>) -> bool {
    if let Some(ids) = &o.result_sets
        && !p.result_set.as_ref().is_some_and(|rs| ids.contains(&rs.id))
    {
        return false;
    }
    o.when
        .as_ref()
        .is_none_or(|w| w.holds(&p.inputs, &p.options))
}

/// A JSON pointer into a map, borrowed (the whole map, for `""`, is a copy).
fn map_pointer<'a>(map: &'a Map<String, Value>, ptr: &str) -> Option<Cow<'a, Value>> {
    if ptr.is_empty() {
        return Some(Cow::Owned(Value::Object(map.clone())));
    }
    let rest = ptr.strip_prefix('/')?;
    let (first, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    pointer(map.get(unescape(first).as_ref())?, tail).map(Cow::Borrowed)
}

/// [`Value::pointer`] without its allocations (it unescapes every token into a new string):
/// only a token that holds `~` is unescaped.
pub fn pointer<'v>(mut v: &'v Value, ptr: &str) -> Option<&'v Value> {
    if ptr.is_empty() {
        return Some(v);
    }
    for token in ptr.strip_prefix('/')?.split('/') {
        let token = unescape(token);
        v = match v {
            Value::Object(m) => m.get(token.as_ref())?,
            // RFC 6901 array indices, as serde_json reads them: no sign, no leading zero.
            Value::Array(a)
                if !token.starts_with('+') && (token.len() == 1 || !token.starts_with('0')) =>
            {
                a.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Normalises Kandji's quirks towards the declared type: `"True"` -> true, `""` -> null for
/// non-strings, numeric strings -> numbers, dates -> RFC 3339; recurses into properties and items.
pub fn coerce(v: Value, shape: &Shape) -> Value {
    if shape.passthrough {
        return v;
    }
    let wants = |t| shape.wants(t);
    let text = wants(JsonType::String);
    match v {
        Value::String(s) if s.is_empty() && (!text || shape.date) => Value::Null,
        Value::String(s) if wants(JsonType::Boolean) && !text => {
            match s.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(s),
            }
        }
        Value::String(s) if (wants(JsonType::Integer) || wants(JsonType::Number)) && !text => {
            if let Ok(i) = s.trim().parse::<i64>() {
                Value::from(i)
            } else if let Ok(f) = s.trim().parse::<f64>() {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        }
        Value::String(s) if shape.date => Value::String(rfc3339(&s).unwrap_or(s)),
        Value::Number(n) if text && !wants(JsonType::Integer) && !wants(JsonType::Number) => {
            Value::String(n.to_string())
        }
        Value::Object(mut m) => {
            for (k, member) in &shape.properties {
                if let Some(val) = m.get_mut(k) {
                    *val = coerce(std::mem::take(val), member);
                }
            }
            Value::Object(m)
        }
        Value::Array(a) => match &shape.items {
            Some(items) => Value::Array(a.into_iter().map(|x| coerce(x, items)).collect()),
            None => Value::Array(a),
        },
        other => other,
    }
}

/// Kandji's dates (`2024-01-26 16:15:36.087016+00:00`, `…Z`, naive) as RFC 3339 in UTC.
pub fn rfc3339(s: &str) -> Option<String> {
    let t = s.trim();
    let parsed = DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)))
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%z"))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                .map(|n| n.and_utc())
        })?;
    Some(parsed.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Kandji's error message from any of its error body shapes: a JSON string, a list of strings,
/// `{"detail": …}`, `{"message": …}`, DRF field errors, HTML, or plain text.
pub fn error_message(status: u16, body: &Value) -> String {
    fn flat(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(flat)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            Value::Object(m) => {
                for k in ["detail", "message", "error", "errors"] {
                    if let Some(v) = m.get(k) {
                        return flat(v);
                    }
                }
                m.iter()
                    .map(|(k, v)| format!("{k}: {}", flat(v)))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    let msg = match body {
        Value::String(s) if looks_like_html(s) => html_text(s),
        Value::String(s) => s.trim().to_string(),
        other => flat(other),
    };
    let msg: String = msg.chars().take(1000).collect();
    if msg.is_empty() {
        format!("Kandji answered {status}")
    } else {
        msg
    }
}

fn looks_like_html(s: &str) -> bool {
    let head = s.trim_start().get(..15).unwrap_or("").to_ascii_lowercase();
    head.starts_with("<!doctype") || head.starts_with("<html")
}

/// The `<h1>` (or `<title>`) of an HTML error page, else its text.
fn html_text(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    for tag in ["h1", "title"] {
        if let Some(start) = lower.find(&format!("<{tag}"))
            && let Some(gt) = lower[start..].find('>')
        {
            let from = start + gt + 1;
            if let Some(end) = lower[from..].find(&format!("</{tag}")) {
                let t = s[from..from + end].trim();
                if !t.is_empty() {
                    return t.to_string();
                }
            }
        }
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Card;
    use serde_json::json;

    fn coerce(v: Value, schema: &Value) -> Value {
        super::coerce(v, &Shape::of(schema))
    }

    #[test]
    fn coercions() {
        assert_eq!(
            coerce(json!("True"), &json!({"type": "boolean"})),
            json!(true)
        );
        assert_eq!(
            coerce(json!("False"), &json!({"type": ["boolean", "null"]})),
            json!(false)
        );
        assert_eq!(
            coerce(json!(""), &json!({"type": ["object", "null"]})),
            Value::Null
        );
        assert_eq!(coerce(json!("12"), &json!({"type": "integer"})), json!(12));
        assert_eq!(
            coerce(
                json!("2024-01-26 16:15:36.087016+00:00"),
                &json!({"type": "string", "format": "date-time"})
            ),
            json!("2024-01-26T16:15:36.087016Z")
        );
        assert_eq!(
            coerce(
                json!("2024-07-23T14:11:37.150080Z"),
                &json!({"type": ["string", "null"], "format": "date-time"})
            ),
            json!("2024-07-23T14:11:37.150080Z")
        );
        assert_eq!(
            coerce(
                json!(""),
                &json!({"type": ["string", "null"], "format": "date-time"})
            ),
            Value::Null
        );
        assert_eq!(
            coerce(
                json!({"user": "", "x": 1}),
                &json!({"type": "object", "properties": {"user": {"type": ["object", "null"]}}})
            ),
            json!({"user": null, "x": 1})
        );
    }

    #[test]
    fn an_error_body_fills_no_output_but_body_and_error() {
        let card = json!({
            "id": "get_note", "title": "Get Note", "description": "A note.", "category": "Notes", "effect": "read",
            "input_schema": {"type": "object", "additionalProperties": false, "properties": {}},
            "requests": [{"method": "GET", "path": "/notes"}],
            "output_schema": {"type": "object", "properties": {
                "note": {"title": "Note", "type": ["object", "null"], "x-source": ""},
                "content": {"title": "Content", "type": ["array", "null"], "x-source": "/content"},
                "body": {"title": "Body", "type": ["object", "null"], "x-source": "$body"},
                "status_code": {"title": "Status Code", "type": "integer", "x-source": "$status"},
            }}
        });
        let card = Card::from_json("get_note.json", card.to_string().as_bytes()).unwrap();
        let p = super::super::prepare(&card, &json!({}), &json!({})).unwrap();
        let answer = Answer::new(
            400,
            HeaderMap::new(),
            json!({"content": ["This field may not be blank."]}),
        );
        assert_eq!(
            Value::Object(answer.outputs(&p)),
            json!({
                "note": null,
                "content": null,
                "body": {"content": ["This field may not be blank."]},
                "status_code": 400,
                "error": "content: This field may not be blank.",
            })
        );
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_message(400, &json!("This device is already locked.")),
            "This device is already locked."
        );
        assert_eq!(
            error_message(400, &json!(["Device is not in lost mode."])),
            "Device is not in lost mode."
        );
        assert_eq!(
            error_message(404, &json!({"detail": "Not found."})),
            "Not found."
        );
        assert_eq!(
            error_message(400, &json!({"dep_account": ["Enter a valid UUID."]})),
            "dep_account: Enter a valid UUID."
        );
        assert_eq!(
            error_message(
                404,
                &json!(
                    "<!doctype html><html><head><title>Not Found</title></head><body><h1>Not Found</h1><p>x</p></body></html>"
                )
            ),
            "Not Found"
        );
        assert_eq!(error_message(500, &Value::Null), "Kandji answered 500");
    }
}
