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
            let present = rule
                .at_least_one
                .iter()
                .any(|k| obj.get(k).is_some_and(|v| !v.is_null()));
            if !present {
                let msg = rule.message.clone().unwrap_or_else(|| {
                    format!("give at least one of: {}", rule.at_least_one.join(", "))
                });
                for k in &rule.at_least_one {
                    errors.push(FieldError::new(&["inputs", k], msg.clone(), "at_least_one"));
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
