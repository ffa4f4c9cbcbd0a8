//! Rendering a card's compiled templates: references replaced by the call's inputs and options.

use serde_json::{Map, Value};

use crate::catalog::Template;

impl Template {
    /// The rendered value; `None` when it is absent (its key is then dropped).
    pub fn render(
        &self,
        inputs: &Map<String, Value>,
        options: &Map<String, Value>,
    ) -> Option<Value> {
        match self {
            Template::Literal(v) => Some(v.clone()),
            Template::Input { name, map } => {
                let v = inputs.get(name).filter(|v| !v.is_null())?;
                Some(match (map, v) {
                    (Some(map), Value::String(s)) => map.get(s).unwrap_or(v).clone(),
                    _ => v.clone(),
                })
            }
            Template::Option(name) => options.get(name).filter(|v| !v.is_null()).cloned(),
            Template::Object(fields) => Some(Value::Object(
                fields
                    .iter()
                    .filter_map(|(k, t)| Some((k.clone(), t.render(inputs, options)?)))
                    .collect(),
            )),
            Template::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .filter_map(|t| t.render(inputs, options))
                    .collect(),
            )),
        }
    }
}

/// A scalar as Kandji expects it in a query string, form field or path segment.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
