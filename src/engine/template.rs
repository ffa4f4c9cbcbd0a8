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
            Template::Input {
                name,
                map,
                if_blank,
                or,
            } => {
                let given = |n: &String| inputs.get(n).filter(|v| !v.is_null());
                let Some(v) = given(name).or_else(|| or.iter().find_map(given)) else {
                    let (option, send) = if_blank.as_ref()?;
                    return (options.get(option) == Some(&Value::Bool(true))).then(|| send.clone());
                };
                Some(match (map, v) {
                    (Some(map), Value::String(s)) => map.get(s).unwrap_or(v).clone(),
                    _ => v.clone(),
                })
            }
            Template::Option(name) => options.get(name).filter(|v| !v.is_null()).cloned(),
            // An object whose every field is absent is absent too (Erase Device's
            // ReturnToService is sent only when one of its inputs is given).
            Template::Object(fields) => {
                let rendered: Map<String, Value> = fields
                    .iter()
                    .filter_map(|(k, t)| Some((k.clone(), t.render(inputs, options)?)))
                    .collect();
                (!rendered.is_empty()).then_some(Value::Object(rendered))
            }
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
