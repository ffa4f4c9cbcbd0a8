//! Card definitions: loading, validation against `schemas/card.schema.json` and the rules of
//! [`compile`], and the Card types: as written ([`model`]) and compiled ([`plan`]).

mod compile;
pub mod events;
mod model;
mod plan;

pub use compile::snake;
pub use model::*;
pub use plan::*;

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
    /// Event cards (`cards/events/`), by id.
    events: BTreeMap<String, Arc<events::EventCard>>,
}

impl Catalog {
    /// The cards compiled into the binary, then those of `extra_dir` (which add or replace by id).
    pub fn load(extra_dir: Option<&Path>) -> Result<Self, Vec<CardError>> {
        let meta = meta_validator();
        let (events, mut errors) = events::load_builtin(BUILTIN_CARDS.get_dir("events"));
        let (mut cards, card_errors) = parse_builtin(
            &BUILTIN_CARDS,
            |name, bytes| Card::parse(&meta, name, bytes),
            |card| &card.def.id,
        );
        errors.extend(card_errors);
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
            Ok(Self { cards, events })
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

    pub fn event(&self, id: &str) -> Option<&Arc<events::EventCard>> {
        self.events.get(id)
    }

    pub fn events(&self) -> impl Iterator<Item = &Arc<events::EventCard>> {
        self.events.values()
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }
}

/// The `.json` files of a folder of built-in cards (not its sub-folders), in path order, each
/// read by `parse` (with its name, `cards/<path>`): the cards by `id`, and every error.
pub(crate) fn parse_builtin<T>(
    dir: &include_dir::Dir<'static>,
    parse: impl Fn(&str, &[u8]) -> Result<T, Vec<CardError>>,
    id: impl Fn(&T) -> &str,
) -> (BTreeMap<String, Arc<T>>, Vec<CardError>) {
    let mut cards = BTreeMap::new();
    let mut errors = Vec::new();
    let mut files: Vec<_> = dir
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort_by_key(|f| f.path().to_path_buf());
    for file in files {
        let name = format!("cards/{}", file.path().display());
        match parse(&name, file.contents()) {
            Ok(card) => {
                cards.insert(id(&card).to_string(), Arc::new(card));
            }
            Err(e) => errors.extend(e),
        }
    }
    (cards, errors)
}

fn meta_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(META_SCHEMA).expect("schemas/card.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("schemas/card.schema.json is a valid JSON Schema")
}

/// A card file's JSON, checked against its meta-schema (`meta`), and its definition.
pub(crate) fn read_checked<T: serde::de::DeserializeOwned>(
    meta: &jsonschema::Validator,
    file: &str,
    bytes: &[u8],
) -> Result<(Value, T), Vec<CardError>> {
    let raw: Value = serde_json::from_slice(bytes)
        .map_err(|e| vec![CardError::new(file, "", format!("not valid JSON: {e}"))])?;
    let errors: Vec<CardError> = meta
        .iter_errors(&raw)
        .map(|e| CardError::new(file, e.instance_path().as_str(), e.to_string()))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let def = serde_json::from_value(raw.clone())
        .map_err(|e| vec![CardError::new(file, "", e.to_string())])?;
    Ok((raw, def))
}

/// A schema a card file holds at `pointer`, compiled (formats are not checked); `None`, with
/// the reason in `errors`, when it is not a valid JSON Schema.
pub(crate) fn compile_schema(
    file: &str,
    pointer: &str,
    schema: &Value,
    errors: &mut Vec<CardError>,
) -> Option<jsonschema::Validator> {
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
}

/// A card's id is its file's name without `.json`.
pub(crate) fn check_id_is_file_name(file: &str, id: &str, errors: &mut Vec<CardError>) {
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    if stem != id {
        errors.push(CardError::new(
            file,
            "/id",
            format!("the id {id:?} must match the file name"),
        ));
    }
}

impl Card {
    /// One card from the bytes of its file (named `file`), checked as [`Catalog::load`] does.
    pub fn from_json(file: &str, bytes: &[u8]) -> Result<Card, Vec<CardError>> {
        Card::parse(&meta_validator(), file, bytes)
    }

    fn parse(
        meta: &jsonschema::Validator,
        file: &str,
        bytes: &[u8],
    ) -> Result<Card, Vec<CardError>> {
        let (raw, def): (Value, CardDef) = read_checked(meta, file, bytes)?;
        let mut errors = Vec::new();
        check_id_is_file_name(file, &def.id, &mut errors);
        let input_validator = compile_schema(file, "/input_schema", &def.input_schema, &mut errors);
        let options_validator = def
            .options_schema
            .as_ref()
            .and_then(|s| compile_schema(file, "/options_schema", s, &mut errors));
        let plan = compile::compile(file, &def).map_err(|e| errors.extend(e));
        match (plan, input_validator) {
            (Ok(plan), Some(input_validator)) if errors.is_empty() => Ok(Card {
                returns_secrets: def.has_secret_outputs(),
                plan,
                def,
                raw,
                input_validator,
                options_validator,
            }),
            _ => Err(errors),
        }
    }
}

/// A schema without the engine's wiring (`x-source`); designers' marks stay.
pub fn strip_sources(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "x-source")
                .map(|(k, v)| (k.clone(), strip_sources(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_sources).collect()),
        other => other.clone(),
    }
}

/// The catalog as a Markdown table: id, title, category, result sets.
pub fn markdown_table(catalog: &Catalog) -> String {
    let mut out =
        String::from("| id | title | category | effect | result sets |\n|---|---|---|---|---|\n");
    for c in catalog.iter() {
        let d = &c.def;
        let rs: Vec<&str> = d.result_sets.iter().map(|r| r.label.as_str()).collect();
        let effect = match d.effect {
            Effect::Read => "read",
            Effect::Change => "change",
            Effect::Destructive => "**destructive**",
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.id,
            d.title,
            d.category,
            effect,
            rs.join(", ")
        ));
    }
    out
}
