//! Card templates: JSON values where `{"$input": name}` / `{"$option": name}` are replaced.

use serde_json::{Map, Value};

/// Renders a template; `None` when the value is absent (its key is then dropped).
pub fn render(
    t: &Value,
    inputs: &Map<String, Value>,
    options: &Map<String, Value>,
) -> Option<Value> {
    match t {
        Value::Object(m) => {
            if let Some(Value::String(name)) = m.get("$input") {
                let v = inputs.get(name).filter(|v| !v.is_null())?.clone();
                return Some(match m.get("map").and_then(Value::as_object) {
                    Some(map) => match &v {
                        Value::String(s) => map.get(s).cloned().unwrap_or(v),
                        _ => v,
                    },
                    None => v,
                });
            }
            if let Some(Value::String(name)) = m.get("$option") {
                return options.get(name).filter(|v| !v.is_null()).cloned();
            }
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(r) = render(v, inputs, options) {
                    out.insert(k.clone(), r);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .filter_map(|v| render(v, inputs, options))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// A scalar as Kandji expects it in a query string or form field.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
