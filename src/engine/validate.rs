//! Inputs and options against the card's schemas and rules; every offending field is named.

use serde_json::{Map, Value};

use crate::catalog::Card;
use crate::error::FieldError;

/// Validates `inputs` and `options`; on success returns inputs with schema defaults filled in.
pub fn validate(
    card: &Card,
    inputs: &Value,
    options: &Value,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let inputs = &integers_as_text(card, inputs);
    schema_errors(&card.input_validator, inputs, "inputs", &mut errors);
    match &card.options_validator {
        Some(v) => schema_errors(v, options, "options", &mut errors),
        None => {
            if let Some(m) = options.as_object() {
                for k in m.keys() {
                    errors.push(FieldError::new(
                        &["options", k],
                        "this card takes no options",
                        "unknown_field",
                    ));
                }
            }
        }
    }
    if let Some(obj) = inputs.as_object() {
        for rule in &card.def.rules {
            let given: Vec<&String> = rule
                .at_most_one
                .iter()
                .filter(|k| obj.get(k.as_str()).is_some_and(|v| !v.is_null()))
                .collect();
            if given.len() > 1 {
                let msg = rule.message.clone().unwrap_or_else(|| {
                    format!("give at most one of: {}", rule.at_most_one.join(", "))
                });
                for k in given {
                    errors.push(FieldError::new(&["inputs", k], msg.clone(), "at_most_one"));
                }
            }
            if rule.at_least_one.is_empty() {
                continue;
            }
            let switched_on = |k: &String| options.get(k.as_str()) == Some(&Value::Bool(true));
            let present = rule
                .at_least_one
                .iter()
                .any(|k| obj.get(k).is_some_and(|v| !v.is_null()))
                || rule.or_options.iter().any(switched_on);
            if !present {
                let msg = rule.message.clone().unwrap_or_else(|| {
                    format!("give at least one of: {}", rule.at_least_one.join(", "))
                });
                for k in &rule.at_least_one {
                    errors.push(FieldError::new(&["inputs", k], msg.clone(), "at_least_one"));
                }
                for k in &rule.or_options {
                    errors.push(FieldError::new(
                        &["options", k],
                        msg.clone(),
                        "at_least_one",
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut filled = inputs.as_object().cloned().unwrap_or_default();
    for (k, d) in &card.plan.defaults {
        if !filled.contains_key(k) {
            filled.insert(k.clone(), d.clone());
        }
    }
    Ok(filled)
}

/// Inputs as loose as the card lists' types, no looser: each non-negative integer given for a
/// text input that is numeric by nature (`x-integer-as-text`) replaced by its decimal text
/// (`123456` -> `"123456"`), and each text given for a list of texts (`x-text-as-list`) by its
/// comma-separated parts (`"vip, loaner"` -> `["vip", "loaner"]`). The schema then judges the
/// result (a 5-digit PIN is still refused); anywhere else an integer is not text, nor a text a list.
/// An input that may be left blank to clear it (`if_blank`) is not given when blank (`""`, `[]`).
fn integers_as_text(card: &Card, inputs: &Value) -> Value {
    let mut out = inputs.clone();
    if let Some(obj) = out.as_object_mut() {
        for key in &card.plan.integer_as_text {
            if let Some(v) = obj.get_mut(key)
                && let Some(n) = v.as_u64()
            {
                *v = Value::String(n.to_string());
            }
        }
        for key in &card.plan.text_as_list {
            if let Some(v) = obj.get_mut(key)
                && let Some(text) = v.as_str()
            {
                *v = text
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(Value::from)
                    .collect();
            }
        }
        for key in &card.plan.blank_is_absent {
            let blank = match obj.get(key) {
                Some(Value::String(t)) => t.trim().is_empty(),
                Some(Value::Array(items)) => items.is_empty(),
                _ => false,
            };
            if blank {
                obj.remove(key);
            }
        }
    }
    out
}

fn schema_errors(
    validator: &jsonschema::Validator,
    value: &Value,
    root: &str,
    out: &mut Vec<FieldError>,
) {
    for e in validator.iter_errors(value) {
        let mut loc = vec![root.to_string()];
        loc.extend(e.instance_path().iter().map(|s| s.to_string()));
        let kind = e.kind().keyword().to_string();
        match e.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let mut l = loc.clone();
                    l.push(name.clone());
                    out.push(FieldError {
                        loc: l,
                        msg: "is not a field of this card".into(),
                        kind: "unknown_field".into(),
                    });
                }
            }
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let mut l = loc.clone();
                l.push(property.as_str().unwrap_or_default().to_string());
                out.push(FieldError {
                    loc: l,
                    msg: "is required".into(),
                    kind: "required".into(),
                });
            }
            _ => out.push(FieldError {
                loc,
                // masked: the offending value (maybe a PIN) is never echoed back
                msg: e.masked().to_string(),
                kind,
            }),
        }
    }
}
