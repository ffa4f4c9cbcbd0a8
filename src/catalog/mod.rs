//! Card definitions: loading, validation against `schemas/card.schema.json`, and the Card types.

mod model;

pub use model::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use serde_json::Value;

static BUILTIN_CARDS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/cards");
pub const META_SCHEMA: &str = include_str!("../../schemas/card.schema.json");

/// A card that failed to load: the file and the JSON pointer of the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {pointer}: {message}")]
pub struct CardError {
    pub file: String,
    pub pointer: String,
    pub message: String,
}

impl CardError {
    fn new(file: &str, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let pointer = pointer.into();
        Self {
            file: file.to_string(),
            pointer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            message: message.into(),
        }
    }
}

/// Every card the server hosts, by id.
#[derive(Clone, Default)]
pub struct Catalog {
    cards: BTreeMap<String, Arc<Card>>,
}

impl Catalog {
    /// The cards compiled into the binary, then those of `extra_dir` (which add or replace by id).
    pub fn load(extra_dir: Option<&Path>) -> Result<Self, Vec<CardError>> {
        let meta = meta_validator();
        let mut cards = BTreeMap::new();
        let mut errors = Vec::new();
        let mut builtin: Vec<_> = BUILTIN_CARDS
            .files()
            .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
            .collect();
        builtin.sort_by_key(|f| f.path().to_path_buf());
        for file in builtin {
            let name = format!("cards/{}", file.path().display());
            match Card::parse(&meta, &name, file.contents()) {
                Ok(card) => {
                    cards.insert(card.def.id.clone(), Arc::new(card));
                }
                Err(e) => errors.extend(e),
            }
        }
        if let Some(dir) = extra_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut paths: Vec<_> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "json"))
                        .collect();
                    paths.sort();
                    for path in paths {
                        let name = path.display().to_string();
                        match std::fs::read(&path) {
                            Ok(bytes) => match Card::parse(&meta, &name, &bytes) {
                                Ok(card) => {
                                    cards.insert(card.def.id.clone(), Arc::new(card));
                                }
                                Err(e) => errors.extend(e),
                            },
                            Err(e) => errors.push(CardError::new(&name, "", e.to_string())),
                        }
                    }
                }
                Err(e) => errors.push(CardError::new(
                    &dir.display().to_string(),
                    "",
                    format!("cannot read the cards folder: {e}"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self { cards })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Card>> {
        self.cards.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Card>> {
        self.cards.values()
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }
}

fn meta_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(META_SCHEMA).expect("schemas/card.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("schemas/card.schema.json is a valid JSON Schema")
}

impl Card {
    fn parse(
        meta: &jsonschema::Validator,
        file: &str,
        bytes: &[u8],
    ) -> Result<Card, Vec<CardError>> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| vec![CardError::new(file, "", format!("not valid JSON: {e}"))])?;
        let errors: Vec<CardError> = meta
            .iter_errors(&raw)
            .map(|e| CardError::new(file, e.instance_path().as_str(), e.to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let def: CardDef = serde_json::from_value(raw.clone())
            .map_err(|e| vec![CardError::new(file, "", e.to_string())])?;
        let stem = Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        let mut errors = Vec::new();
        if stem != def.id {
            errors.push(CardError::new(
                file,
                "/id",
                format!("the id {:?} must match the file name", def.id),
            ));
        }
        let compile = |schema: &Value, pointer: &str, errors: &mut Vec<CardError>| {
            match jsonschema::options()
                .should_validate_formats(false)
                .build(schema)
            {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(CardError::new(
                        file,
                        pointer,
                        format!("not a valid JSON Schema: {e}"),
                    ));
                    None
                }
            }
        };
        let input_validator = compile(&def.input_schema, "/input_schema", &mut errors);
        let options_validator = def
            .options_schema
            .as_ref()
            .and_then(|s| compile(s, "/options_schema", &mut errors));
        errors.extend(def.check_references(file));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Card {
            returns_secrets: def.has_secret_outputs(),
            def,
            raw,
            input_validator: input_validator.expect("compiled"),
            options_validator,
        })
    }
}

/// Cross-references the meta-schema cannot express: placeholders, templates and result-set ids
/// must name inputs, options and result sets the card declares.
impl CardDef {
    fn check_references(&self, file: &str) -> Vec<CardError> {
        let mut errors = Vec::new();
        let inputs = self.input_names();
        let options: Vec<String> = self
            .options_schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (i, rule) in self.rules.iter().enumerate() {
            for name in &rule.at_least_one {
                if !inputs.contains(name) {
                    errors.push(CardError::new(
                        file,
                        format!("/rules/{i}"),
                        format!("{name:?} is not an input"),
                    ));
                }
            }
        }
        let check_template = |v: &Value, ptr: String, errors: &mut Vec<CardError>| {
            for (name, is_option) in template_refs(v) {
                let known = if is_option {
                    options.contains(&name)
                } else {
                    inputs.contains(&name)
                };
                if !known {
                    errors.push(CardError::new(
                        file,
                        ptr.clone(),
                        format!("{name:?} is not declared"),
                    ));
                }
            }
        };
        for (i, req) in self.requests.iter().enumerate() {
            let base = format!("/requests/{i}");
            if let Some(path) = &req.path {
                for name in path_placeholders(path) {
                    if !inputs.contains(&name) {
                        errors.push(CardError::new(
                            file,
                            format!("{base}/path"),
                            format!("{{{name}}} is not an input"),
                        ));
                    }
                }
            }
            for (k, v) in &req.query {
                check_template(v, format!("{base}/query/{k}"), &mut errors);
            }
            if let Some(body) = &req.body {
                if let Some(t) = &body.template {
                    check_template(t, format!("{base}/body/template"), &mut errors);
                }
                if let Some(name) = &body.input
                    && !inputs.contains(name)
                {
                    errors.push(CardError::new(
                        file,
                        format!("{base}/body/input"),
                        format!("{name:?} is not an input"),
                    ));
                }
            }
            for (k, v) in &req.args {
                check_template(v, format!("{base}/args/{k}"), &mut errors);
            }
            if let Some(pick) = &req.pick {
                for (k, v) in &pick.r#where {
                    check_template(v, format!("{base}/pick/where/{k}"), &mut errors);
                }
            }
            for (field, name) in [
                ("relative_url_input", &req.relative_url_input),
                ("query_input", &req.query_input),
                ("headers_input", &req.headers_input),
            ] {
                if let Some(name) = name
                    && !inputs.contains(name)
                {
                    errors.push(CardError::new(
                        file,
                        format!("{base}/{field}"),
                        format!("{name:?} is not an input"),
                    ));
                }
            }
        }
        for (i, l) in self.lookups.iter().enumerate() {
            for name in path_placeholders(&l.path) {
                if !inputs.contains(&name) {
                    errors.push(CardError::new(
                        file,
                        format!("/lookups/{i}/path"),
                        format!("{{{name}}} is not an input"),
                    ));
                }
            }
        }
        let result_set_ids: Vec<&str> = self.result_sets.iter().map(|r| r.id.as_str()).collect();
        if let Some(props) = self
            .output_schema
            .get("properties")
            .and_then(Value::as_object)
        {
            for (key, prop) in props {
                if let Some(ids) = prop.get("x-result-sets").and_then(Value::as_array) {
                    for id in ids.iter().filter_map(Value::as_str) {
                        if !result_set_ids.contains(&id) {
                            errors.push(CardError::new(
                                file,
                                format!("/output_schema/properties/{key}/x-result-sets"),
                                format!("{id:?} is not one of the card's result sets"),
                            ));
                        }
                    }
                }
            }
        }
        if !self.result_sets.is_empty() && !options.iter().any(|o| o == "result_set") {
            errors.push(CardError::new(
                file,
                "/options_schema",
                "a card with result sets needs a result_set option",
            ));
        }
        errors
    }
}

/// `{name}` placeholders of a path template.
pub fn path_placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

/// Inputs (false) and options (true) a template refers to.
fn template_refs(v: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            if let Some(Value::String(name)) = m.get("$input") {
                out.push((name.clone(), false));
            } else if let Some(Value::String(name)) = m.get("$option") {
                out.push((name.clone(), true));
            } else {
                for v in m.values() {
                    out.extend(template_refs(v));
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| out.extend(template_refs(v))),
        _ => {}
    }
    out
}

/// The catalog as a Markdown table: id, title, category, result sets.
pub fn markdown_table(catalog: &Catalog) -> String {
    let mut out = String::from("| id | title | category | result sets |\n|---|---|---|---|\n");
    for c in catalog.iter() {
        let d = &c.def;
        let rs: Vec<&str> = d.result_sets.iter().map(|r| r.label.as_str()).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.id,
            d.title,
            d.category,
            rs.join(", ")
        ));
    }
    out
}
