//! Kandji's answer -> the card's outputs: sources, type coercion, Kandji's error messages.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::catalog::When;

/// Everything an output's `x-source` can name.
pub struct Answer<'a> {
    pub status: u16,
    pub headers: Value,
    /// Kandji's body: JSON when it parsed, else its text, else null.
    pub body: Value,
    pub error: Option<String>,
    pub inputs: &'a Map<String, Value>,
    pub options: &'a Map<String, Value>,
    pub records: Option<Vec<Value>>,
    pub count: Option<u64>,
    pub lookups: HashMap<String, Value>,
    pub result_set: Option<String>,
}

impl Answer<'_> {
    fn resolve(&self, source: &str) -> Option<Value> {
        if source.is_empty() || source.starts_with('/') {
            // An error body is Kandji's message (in `$error`, raw in `$body`), never the record
            // the output describes: `{"content": ["This field may not be blank."]}` is no note.
            if self.status >= 400 {
                return None;
            }
            return self.body.pointer(source).cloned();
        }
        let (head, ptr) = match source.find('/') {
            Some(i) => (&source[..i], &source[i..]),
            None => (source, ""),
        };
        let at = |v: &Value| v.pointer(ptr).cloned();
        match head {
            "$status" => Some(Value::from(self.status)),
            "$headers" => Some(self.headers.clone()),
            "$body" | "$picked" => at(&self.body),
            "$error" => self.error.clone().map(Value::String),
            "$inputs" => map_pointer(self.inputs, ptr),
            "$options" => map_pointer(self.options, ptr),
            "$records" => self.records.clone().map(Value::Array),
            "$record" => self.records.as_ref().and_then(|r| r.first()).and_then(at),
            "$count" => self.count.map(Value::from),
            other => self.lookups.get(other.trim_start_matches('$')).and_then(at),
        }
    }

    /// The card's outputs for this answer.
    pub fn outputs(&self, output_schema: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(props) = output_schema.get("properties").and_then(Value::as_object) {
            for (key, prop) in props {
                if !self.shown(prop) {
                    continue;
                }
                out.insert(key.clone(), self.output(prop, None));
            }
        }
        out.insert("status_code".into(), Value::from(self.status));
        if let Some(e) = &self.error {
            out.insert("error".into(), Value::String(e.clone()));
        }
        out
    }

    fn shown(&self, prop: &Value) -> bool {
        if let Some(ids) = prop.get("x-result-sets").and_then(Value::as_array) {
            let Some(rs) = &self.result_set else {
                return false;
            };
            if !ids.iter().any(|i| i.as_str() == Some(rs)) {
                return false;
            }
        }
        if let Some(when) = prop
            .get("x-when")
            .and_then(|w| serde_json::from_value::<When>(w.clone()).ok())
        {
            return when_matches(&when, self.inputs, self.options);
        }
        true
    }

    /// One output: from its sources (relative to `parent` for "/ptr" sources of a nested group).
    fn output(&self, prop: &Value, parent: Option<&Value>) -> Value {
        let sources: Vec<&str> = match prop.get("x-source") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let mut value = Value::Null;
        for s in &sources {
            let raw = match parent {
                Some(p) if s.is_empty() || s.starts_with('/') => p.pointer(s).cloned(),
                _ => self.resolve(s),
            };
            if let Some(v) = raw {
                let c = coerce(v, prop);
                if !c.is_null() && type_matches(&c, prop) {
                    value = c;
                    break;
                }
            }
        }
        // A group whose members have their own sources is built member by member.
        if let Some(members) = prop.get("properties").and_then(Value::as_object)
            && members.values().any(|m| m.get("x-source").is_some())
        {
            if value.is_null() {
                return Value::Null;
            }
            let mut obj = Map::new();
            for (k, m) in members {
                let v = if m.get("x-source").is_some() {
                    self.output(m, Some(&value))
                } else {
                    value
                        .get(k)
                        .cloned()
                        .map(|v| coerce(v, m))
                        .unwrap_or(Value::Null)
                };
                obj.insert(k.clone(), v);
            }
            return Value::Object(obj);
        }
        value
    }
}

/// A JSON pointer into a map without cloning the map.
fn map_pointer(map: &Map<String, Value>, ptr: &str) -> Option<Value> {
    if ptr.is_empty() {
        return Some(Value::Object(map.clone()));
    }
    let rest = ptr.strip_prefix('/')?;
    let (first, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let key = first.replace("~1", "/").replace("~0", "~");
    map.get(&key)?.pointer(tail).cloned()
}

pub fn when_matches(
    when: &When,
    inputs: &Map<String, Value>,
    options: &Map<String, Value>,
) -> bool {
    if let Some(name) = &when.present {
        return inputs.get(name).is_some_and(|v| !v.is_null());
    }
    if let (Some(opt), Some(eq)) = (&when.option, &when.equals) {
        return options.get(opt) == Some(eq);
    }
    true
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn type_matches(v: &Value, schema: &Value) -> bool {
    let types = types_of(schema);
    types.is_empty()
        || types.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "null" => v.is_null(),
            _ => true,
        })
}

/// Normalises Kandji's quirks towards the declared type: `"True"` -> true, `""` -> null for
/// non-strings, numeric strings -> numbers, dates -> RFC 3339; recurses into properties and items.
pub fn coerce(v: Value, schema: &Value) -> Value {
    let types = types_of(schema);
    if types.is_empty() && schema.get("properties").is_none() && schema.get("items").is_none() {
        return v;
    }
    let wants = |t: &str| types.contains(&t);
    let is_date = schema.get("format").and_then(Value::as_str) == Some("date-time");
    match v {
        Value::String(s) if s.is_empty() && !wants("string") => Value::Null,
        Value::String(s) if s.is_empty() && is_date => Value::Null,
        Value::String(s) if wants("boolean") && !wants("string") => {
            match s.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(s),
            }
        }
        Value::String(s) if (wants("integer") || wants("number")) && !wants("string") => {
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
        Value::String(s) if is_date => Value::String(rfc3339(&s).unwrap_or(s)),
        Value::Number(n) if wants("string") && !wants("integer") && !wants("number") => {
            Value::String(n.to_string())
        }
        Value::Object(mut m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if let Some(val) = m.remove(k) {
                        m.insert(k.clone(), coerce(val, ps));
                    }
                }
            }
            Value::Object(m)
        }
        Value::Array(a) => match schema.get("items") {
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
    use serde_json::json;

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
        let (inputs, options) = (Map::new(), Map::new());
        let answer = Answer {
            status: 400,
            headers: json!({}),
            body: json!({"content": ["This field may not be blank."]}),
            error: Some("content: This field may not be blank.".into()),
            inputs: &inputs,
            options: &options,
            records: None,
            count: None,
            lookups: HashMap::new(),
            result_set: None,
        };
        let schema = json!({"properties": {
            "note": {"type": ["object", "null"], "x-source": ""},
            "content": {"type": ["array", "null"], "x-source": "/content"},
            "body": {"type": ["object", "null"], "x-source": "$body"},
        }});
        assert_eq!(
            Value::Object(answer.outputs(&schema)),
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
