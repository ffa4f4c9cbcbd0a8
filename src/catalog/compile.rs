//! Compiles a card into its [`Plan`], checking on the way every rule the meta-schema cannot
//! express: each reference names something the card declares, so that a card author's typo is
//! refused at load (with the file and the JSON pointer of the place) instead of becoming a
//! silent null at run time. The rules are listed in `docs/card-format.md` ("What `cards check`
//! verifies"); `tests/card_rules.rs` has one broken card per rule.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use reqwest::Method;
use serde_json::{Map, Value};

use super::plan::*;
use super::{BodyDef, CardDef, CardError, Encoding, ListDef, MethodDef, Paging, PickDef};
use super::{Pointers, RequestDef, When};

/// Methods a request may use (also what a `{"$option": …}` method's option may offer).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Source names the engine gives a meaning; a lookup by one of these names could not be read.
const BUILTIN_SOURCES: &[&str] = &[
    "status",
    "headers",
    "body",
    "error",
    "records",
    "record",
    "count",
    "inputs",
    "options",
    "picked",
    "lookup_error",
];

pub(super) fn compile(file: &str, def: &CardDef) -> Result<Plan, Vec<CardError>> {
    let mut c = Compiler::new(file, def);
    c.card_rules();
    c.integer_as_text_rules();
    c.result_set_rules();
    let variants = c.variants();
    let lookups = c.lookups();
    let outputs = c.outputs();
    c.path_input_rules();
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let defaults = c
        .inputs
        .iter()
        .filter_map(|(k, p)| p.get("default").map(|d| (k.clone(), d.clone())))
        .collect();
    let marked = |keyword: &str| -> Vec<String> {
        c.inputs
            .iter()
            .filter(|(_, p)| p.get(keyword) == Some(&Value::Bool(true)))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let integer_as_text = marked("x-integer-as-text");
    let text_as_list = marked("x-text-as-list");
    let blank_is_absent = std::mem::take(&mut c.clearable).into_iter().collect();
    Ok(Plan {
        variants,
        lookups,
        outputs,
        defaults,
        integer_as_text,
        text_as_list,
        blank_is_absent,
    })
}

static NO_PROPERTIES: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

struct Compiler<'a> {
    file: &'a str,
    def: &'a CardDef,
    inputs: &'a Map<String, Value>,
    options: &'a Map<String, Value>,
    required: Vec<&'a str>,
    /// Inputs that fill a path placeholder (each needs `"minLength": 1`).
    path_inputs: BTreeSet<&'a str>,
    /// Inputs of an `if_blank` template ("leave blank to clear"), and their other names.
    clearable: BTreeSet<String>,
    errors: Vec<CardError>,
}

fn properties(schema: Option<&Value>) -> &Map<String, Value> {
    schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or(&NO_PROPERTIES)
}

fn names<'v>(schema: Option<&'v Value>, key: &str) -> Vec<&'v str> {
    schema
        .and_then(|s| s.get(key))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `base` + one JSON pointer segment (escaped).
fn at(base: &str, key: impl std::fmt::Display) -> String {
    format!(
        "{base}/{}",
        key.to_string().replace('~', "~0").replace('/', "~1")
    )
}

/// `""` or `/…`, with `~` only in `~0` and `~1`.
fn is_pointer(p: &str) -> bool {
    let b = p.as_bytes();
    (b.is_empty() || b[0] == b'/')
        && b.iter()
            .enumerate()
            .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// The key a pointer's first segment names (`/device_id/x` -> `device_id`).
fn first_key(pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix('/')?;
    let seg = rest.split('/').next().unwrap_or(rest);
    Some(seg.replace("~1", "/").replace("~0", "~"))
}

impl<'a> Compiler<'a> {
    fn new(file: &'a str, def: &'a CardDef) -> Self {
        Self {
            file,
            def,
            inputs: properties(Some(&def.input_schema)),
            options: properties(def.options_schema.as_ref()),
            required: names(Some(&def.input_schema), "required"),
            path_inputs: BTreeSet::new(),
            clearable: BTreeSet::new(),
            errors: Vec::new(),
        }
    }

    fn err(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(CardError::new(self.file, pointer, message));
    }

    fn input(&mut self, name: &str, pointer: String) -> bool {
        let known = self.inputs.contains_key(name);
        if !known {
            self.err(pointer, format!("{name:?} is not an input"));
        }
        known
    }

    fn option(&mut self, name: &str, pointer: String) -> bool {
        let known = self.options.contains_key(name);
        if !known {
            self.err(pointer, format!("{name:?} is not an option"));
        }
        known
    }

    /// An option that must be a boolean (a switch such as "leave blank to clear").
    fn boolean_option(&mut self, name: &str, pointer: String) {
        if self.option(name, pointer.clone())
            && !Shape::of(&self.options[name])
                .types
                .eq(&[JsonType::Boolean])
        {
            self.err(pointer, format!("the option {name:?} must be a boolean"));
        }
    }

    /// `"x-integer-as-text": true` marks a top-level text input that is numeric by nature (a
    /// PIN, a Kandji user id): only there, and only on a string input, may an integer stand in.
    /// `"x-text-as-list": true` marks a top-level list of texts that a caller may give as one
    /// text (Update Device's Tags, a String in Kandji's 2025 card).
    fn integer_as_text_rules(&mut self) {
        for (key, p) in self.inputs {
            let ptr = |kw: &str| at(&at("/input_schema/properties", key), kw);
            match p.get("x-integer-as-text") {
                None | Some(Value::Bool(false)) => {}
                Some(Value::Bool(true)) => {
                    if !Shape::of(p).types.eq(&[JsonType::String]) {
                        self.err(
                            ptr("x-integer-as-text"),
                            "only a text input (\"type\": \"string\") takes an integer as its text",
                        );
                    }
                }
                Some(_) => self.err(ptr("x-integer-as-text"), "must be true or false"),
            }
            match p.get("x-text-as-list") {
                None | Some(Value::Bool(false)) => {}
                Some(Value::Bool(true)) => {
                    let items = p.get("items").map(Shape::of);
                    if !Shape::of(p).types.eq(&[JsonType::Array])
                        || !items.is_some_and(|i| i.types.eq(&[JsonType::String]))
                    {
                        self.err(
                            ptr("x-text-as-list"),
                            "only a list of texts (\"type\": \"array\", \"items\": {\"type\": \"string\"}) takes a text as its list",
                        );
                    }
                }
                Some(_) => self.err(ptr("x-text-as-list"), "must be true or false"),
            }
        }
    }

    /// An input that must be of this JSON type (the engine reads nothing from another).
    fn typed_input(&mut self, name: &str, pointer: String, t: JsonType, what: &str) {
        if self.input(name, pointer.clone()) && !Shape::of(&self.inputs[name]).types.eq(&[t]) {
            self.err(pointer, format!("the input {name:?} must be {what}"));
        }
    }

    /// Keys are the snake_case of their titles (docs/card-format.md, "Naming").
    fn naming(&mut self, props: &'a Map<String, Value>, base: &str) {
        for (key, p) in props {
            if let Some(title) = p.get("title").and_then(Value::as_str) {
                let want = snake(title);
                if &want != key {
                    self.err(
                        at(base, key),
                        format!(
                            "the key should be {want:?}, the snake_case of its title {title:?}"
                        ),
                    );
                }
            }
        }
    }

    fn card_rules(&mut self) {
        let d = self.def;
        for (i, name) in names(Some(&d.input_schema), "required")
            .into_iter()
            .enumerate()
        {
            self.input(name, format!("/input_schema/required/{i}"));
        }
        for (i, name) in names(d.options_schema.as_ref(), "required")
            .into_iter()
            .enumerate()
        {
            self.option(name, format!("/options_schema/required/{i}"));
        }
        for (i, rule) in d.rules.iter().enumerate() {
            for (j, name) in rule.at_least_one.iter().enumerate() {
                self.input(name, format!("/rules/{i}/at_least_one/{j}"));
            }
            for (j, name) in rule.or_options.iter().enumerate() {
                self.boolean_option(name, format!("/rules/{i}/or_options/{j}"));
            }
            for (j, name) in rule.at_most_one.iter().enumerate() {
                self.input(name, format!("/rules/{i}/at_most_one/{j}"));
            }
        }
        self.naming(self.inputs, "/input_schema/properties");
        self.naming(self.options, "/options_schema/properties");
    }

    fn result_set_rules(&mut self) {
        let d = self.def;
        let mut ids = Vec::new();
        for (i, rs) in d.result_sets.iter().enumerate() {
            let ptr = format!("/result_sets/{i}/id");
            if ids.contains(&rs.id.as_str()) {
                self.err(ptr, format!("{:?} is used by two result sets", rs.id));
            } else if snake(&rs.label) != rs.id {
                let want = snake(&rs.label);
                self.err(
                    ptr,
                    format!(
                        "should be {want:?}, the snake_case of its label {:?}",
                        rs.label
                    ),
                );
            }
            ids.push(&rs.id);
        }
        let option = self.options.get("result_set");
        match (ids.is_empty(), option) {
            (true, None) => return,
            (true, Some(_)) => {
                return self.err(
                    "/options_schema/properties/result_set",
                    "the card has no result_sets to choose from",
                );
            }
            (false, None) => self.err(
                "/options_schema",
                "a card with result sets needs a result_set option",
            ),
            (false, Some(o)) => {
                let offered: BTreeSet<&str> = names(Some(o), "enum").into_iter().collect();
                let ids: BTreeSet<&str> = ids.iter().copied().collect();
                if offered != ids {
                    self.err(
                        "/options_schema/properties/result_set",
                        format!(
                            "its enum must list exactly the result set ids: {}",
                            Vec::from_iter(ids).join(", ")
                        ),
                    );
                }
                if !names(d.options_schema.as_ref(), "required").contains(&"result_set") {
                    self.err("/options_schema/required", "must include \"result_set\"");
                }
            }
        }
        for (i, r) in d.requests.iter().enumerate() {
            if r.list.is_none() || r.pick.is_some() {
                self.err(
                    format!("/requests/{i}"),
                    "a card with result sets lists records (a list without pick) in every request",
                );
            }
        }
    }

    fn variants(&mut self) -> Vec<Variant> {
        let mut always: Option<usize> = None;
        let mut out = Vec::new();
        for (i, r) in self.def.requests.iter().enumerate() {
            let base = format!("/requests/{i}");
            if let Some(first) = always {
                self.err(
                    &base,
                    format!("is never sent: request {first} has no \"when\" and is always chosen"),
                );
            }
            if r.when.is_none() {
                always.get_or_insert(i);
            }
            out.push(self.variant(r, &base));
        }
        out
    }

    fn variant(&mut self, r: &'a RequestDef, base: &str) -> Variant {
        let when = r.when.as_ref().map(|w| self.when(w, &at(base, "when")));
        let action = match &r.resolver {
            Some(resolver) => Action::Resolve {
                resolver: resolver.clone(),
                args: self.templates(&r.args, &at(base, "args")),
            },
            None => Action::Send(Box::new(self.http(r, base))),
        };
        Variant { when, action }
    }

    fn when(&mut self, w: &When, base: &str) -> Cond {
        if let Some(name) = &w.present {
            self.input(name, at(base, "present"));
            return Cond::Present(name.clone());
        }
        if let Some(names) = &w.any_present {
            for (i, name) in names.iter().enumerate() {
                self.input(name, at(&at(base, "any_present"), i));
            }
            return Cond::AnyPresent(names.clone());
        }
        let option = w.option.clone().unwrap_or_default();
        let value = w.equals.clone().unwrap_or(Value::Null);
        if self.option(&option, at(base, "option"))
            && let Some(values) = self.options[&option].get("enum").and_then(Value::as_array)
            && !values.contains(&value)
        {
            self.err(
                at(base, "equals"),
                format!(
                    "{value} is not one of the option's values {}",
                    Value::from(values.clone())
                ),
            );
        }
        Cond::OptionEquals { option, value }
    }

    fn http(&mut self, r: &'a RequestDef, base: &str) -> HttpPlan {
        let method = match &r.method {
            Some(MethodDef::FromOption { option }) => {
                let ptr = at(&at(base, "method"), "$option");
                if self.option(option, ptr.clone()) {
                    let values = names(Some(&self.options[option]), "enum");
                    if values.is_empty() || values.iter().any(|m| !METHODS.contains(m)) {
                        self.err(
                            ptr,
                            format!(
                                "the option {option:?} must be an enum of {}",
                                METHODS.join(", ")
                            ),
                        );
                    }
                }
                MethodPlan::FromOption(option.clone())
            }
            // The meta-schema allows only METHODS here, and no method only on a resolver.
            Some(MethodDef::Fixed(m)) => MethodPlan::Fixed(m.parse().unwrap_or(Method::GET)),
            None => MethodPlan::Fixed(Method::GET),
        };
        let guard = r.when.as_ref().and_then(|w| w.present.as_deref());
        let target = match (&r.path, &r.relative_url_input) {
            (Some(path), _) => {
                self.path(path, &at(base, "path"), guard, false);
                Target::Path(path.clone())
            }
            (None, Some(name)) => {
                let ptr = at(base, "relative_url_input");
                self.typed_input(name, ptr, JsonType::String, "a string");
                Target::RelativeUrlInput(name.clone())
            }
            (None, None) => Target::Path("/".into()),
        };
        let query = self.templates(&r.query, &at(base, "query"));
        for (field, name) in [
            ("query_input", &r.query_input),
            ("headers_input", &r.headers_input),
        ] {
            if let Some(name) = name {
                self.typed_input(name, at(base, field), JsonType::Object, "an object");
            }
        }
        let body = r
            .body
            .as_ref()
            .and_then(|b| self.body(b, &at(base, "body")));
        let list = r
            .list
            .as_ref()
            .map(|l| Arc::new(self.list(l, &at(base, "list"))));
        let pick = r.pick.as_ref().map(|p| {
            if r.list.is_none() {
                self.err(
                    at(base, "pick"),
                    "a pick chooses among listed records: it needs a list",
                );
            }
            self.pick(p, &at(base, "pick"))
        });
        HttpPlan {
            method,
            target,
            query,
            query_input: r.query_input.clone(),
            headers_input: r.headers_input.clone(),
            body,
            list,
            pick,
        }
    }

    /// `{placeholders}` name inputs the request can always fill: required ones, or the one its
    /// `when.present` guards (a lookup has no guard).
    fn path(&mut self, template: &'a str, ptr: &str, guard: Option<&str>, lookup: bool) {
        let mut rest = template;
        loop {
            match (rest.find('{'), rest.find('}')) {
                (None, None) => break,
                (Some(s), Some(e)) if s < e && !rest[s + 1..e].contains('{') => {
                    let name = &rest[s + 1..e];
                    rest = &rest[e + 1..];
                    if !self.inputs.contains_key(name) {
                        self.err(ptr, format!("{{{name}}} is not an input"));
                    } else if !self.required.contains(&name) && guard != Some(name) {
                        let why = if lookup {
                            "a lookup runs whatever the inputs, so it must be required"
                        } else {
                            "it must be required, or the request guarded by {\"when\": {\"present\": …}}"
                        };
                        self.err(ptr, format!("{{{name}}} may be absent: {why}"));
                    } else {
                        self.path_inputs.insert(name);
                    }
                }
                _ => {
                    self.err(ptr, "has an unbalanced '{' or '}'");
                    break;
                }
            }
        }
    }

    /// An empty value would make an empty path segment: the input schema must refuse it.
    fn path_input_rules(&mut self) {
        for name in std::mem::take(&mut self.path_inputs) {
            let min = self.inputs[name].get("minLength").and_then(Value::as_u64);
            if min.unwrap_or(0) < 1 {
                self.err(
                    at("/input_schema/properties", name),
                    "fills a path placeholder, so it needs \"minLength\": 1",
                );
            }
        }
    }

    fn templates(
        &mut self,
        m: &'a std::collections::BTreeMap<String, Value>,
        base: &str,
    ) -> Vec<(String, Template)> {
        m.iter()
            .map(|(k, v)| (k.clone(), self.template(v, &at(base, k))))
            .collect()
    }

    fn template(&mut self, v: &Value, ptr: &str) -> Template {
        match v {
            Value::Object(m) if m.contains_key("$input") || m.contains_key("$option") => {
                self.reference(m, ptr)
            }
            Value::Object(m) => {
                let fields: Vec<(String, Template)> = m
                    .iter()
                    .map(|(k, v)| (k.clone(), self.template(v, &at(ptr, k))))
                    .collect();
                if fields
                    .iter()
                    .all(|(_, t)| matches!(t, Template::Literal(_)))
                {
                    Template::Literal(v.clone())
                } else {
                    Template::Object(fields)
                }
            }
            Value::Array(a) => {
                let items: Vec<Template> = a
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.template(v, &at(ptr, i)))
                    .collect();
                if items.iter().all(|t| matches!(t, Template::Literal(_))) {
                    Template::Literal(v.clone())
                } else {
                    Template::Array(items)
                }
            }
            other => Template::Literal(other.clone()),
        }
    }

    /// `{"$input": name, "map"?: {…}}` or `{"$option": name}`.
    fn reference(&mut self, m: &Map<String, Value>, ptr: &str) -> Template {
        let (key, allowed): (&str, &[&str]) = if m.contains_key("$input") {
            ("$input", &["$input", "or", "map", "if_blank"])
        } else {
            ("$option", &["$option"])
        };
        for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.err(
                at(ptr, k),
                format!("a {key} reference takes only {}", {
                    let (last, rest) = allowed.split_last().expect("never empty");
                    match rest {
                        [] => last.to_string(),
                        _ => format!("{} and {last}", rest.join(", ")),
                    }
                }),
            );
        }
        let Some(name) = m[key].as_str() else {
            self.err(at(ptr, key), "must be a name (a string)");
            return Template::Literal(Value::Null);
        };
        if key == "$option" {
            self.option(name, at(ptr, key));
            return Template::Option(name.to_string());
        }
        let map = match m.get("map") {
            None => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(_) => {
                self.err(at(ptr, "map"), "must be an object (value -> replacement)");
                None
            }
        };
        if self.input(name, at(ptr, key))
            && let Some(map) = &map
        {
            let missing: Vec<&str> = names(Some(&self.inputs[name]), "enum")
                .into_iter()
                .filter(|v| !map.contains_key(*v))
                .collect();
            if !missing.is_empty() {
                self.err(
                    at(ptr, "map"),
                    format!("does not translate {missing:?} of the input's enum"),
                );
            }
        }
        let if_blank = m.get("if_blank").and_then(|b| {
            let ptr = at(ptr, "if_blank");
            let option = b.get("option").and_then(Value::as_str);
            match (option, b.get("send"), b.as_object().map(Map::len)) {
                (Some(option), Some(send), Some(2)) => {
                    self.boolean_option(option, at(&ptr, "option"));
                    Some((option.to_string(), send.clone()))
                }
                _ => {
                    self.err(
                        ptr,
                        "must be {\"option\": <a boolean option>, \"send\": <the value that clears>}",
                    );
                    None
                }
            }
        });
        let mut or = Vec::new();
        match m.get("or") {
            None => {}
            Some(Value::Array(names)) if !names.is_empty() => {
                for (i, n) in names.iter().enumerate() {
                    match n.as_str() {
                        Some(n) => {
                            self.input(n, at(&at(ptr, "or"), i));
                            or.push(n.to_string());
                        }
                        None => self.err(at(&at(ptr, "or"), i), "must be a name (a string)"),
                    }
                }
            }
            Some(_) => self.err(at(ptr, "or"), "must be a list of input names"),
        }
        if if_blank.is_some() {
            self.clearable.insert(name.to_string());
            self.clearable.extend(or.iter().cloned());
        }
        Template::Input {
            name: name.to_string(),
            map,
            if_blank,
            or,
        }
    }

    fn body(&mut self, b: &BodyDef, base: &str) -> Option<BodyPlan> {
        let content = match (&b.input, &b.template) {
            (Some(_), Some(_)) => {
                self.err(base, "give a template or an input, not both");
                return None;
            }
            (None, None) => {
                self.err(base, "needs a template or an input");
                return None;
            }
            (Some(name), None) => {
                self.input(name, at(base, "input"));
                BodyContent::Input(name.clone())
            }
            (None, Some(t)) => {
                let ptr = at(base, "template");
                if b.encoding == Encoding::Form {
                    self.flat(t, &ptr);
                }
                BodyContent::Template(self.template(t, &ptr))
            }
        };
        Some(BodyPlan {
            encoding: b.encoding,
            content,
        })
    }

    /// A form body is one object of scalars (dotted keys stand for nesting).
    fn flat(&mut self, t: &Value, ptr: &str) {
        let Some(m) = t.as_object() else {
            self.err(ptr, "a form body is an object of fields");
            return;
        };
        for (k, v) in m {
            let reference = v
                .as_object()
                .is_some_and(|o| o.contains_key("$input") || o.contains_key("$option"));
            if (v.is_object() || v.is_array()) && !reference {
                self.err(
                    at(ptr, k),
                    "a form body is flat: use dotted keys instead of nesting",
                );
            }
        }
    }

    fn list(&mut self, l: &ListDef, base: &str) -> ListPlan {
        let records = l.records.as_slice();
        let ptr = at(base, "records");
        if records.is_empty() {
            self.err(&ptr, "names no JSON pointer");
        }
        for (i, p) in records.iter().enumerate() {
            if !is_pointer(p) {
                let ptr = match &l.records {
                    Pointers::One(_) => ptr.clone(),
                    Pointers::Many(_) => at(&ptr, i),
                };
                self.err(ptr, format!("{p:?} is not a JSON pointer (\"\" or \"/…\")"));
            }
        }
        if l.size_param.is_some() && !matches!(l.paging, Paging::Offset | Paging::Drf) {
            self.err(
                at(base, "size_param"),
                "only offset and drf lists send a page size",
            );
        }
        if l.ordering.is_some() && !matches!(l.paging, Paging::Offset | Paging::Drf) {
            self.err(
                at(base, "ordering"),
                "only offset and drf lists page by offset (the others follow Kandji's own links)",
            );
        }
        ListPlan {
            paging: l.paging,
            records: records.to_vec(),
            page_size: l.page_size(),
            size_param: l.size_param().to_string(),
            ordering: l.ordering.clone(),
            record_shape: l.record_schema.as_ref().map(Shape::of),
        }
    }

    fn pick(&mut self, p: &PickDef, base: &str) -> PickPlan {
        let mut r#where = Vec::new();
        for (pointer, t) in &p.r#where {
            let ptr = at(&at(base, "where"), pointer);
            if !is_pointer(pointer) {
                self.err(
                    &ptr,
                    format!("{pointer:?} is not a JSON pointer into a record (\"/…\")"),
                );
            }
            r#where.push((pointer.clone(), self.template(t, &ptr)));
        }
        PickPlan {
            r#where,
            not_found: p
                .not_found
                .clone()
                .unwrap_or_else(|| "No record matched exactly".into()),
        }
    }

    fn lookups(&mut self) -> Vec<LookupPlan> {
        let mut out: Vec<LookupPlan> = Vec::new();
        for (i, l) in self.def.lookups.iter().enumerate() {
            let base = format!("/lookups/{i}");
            if BUILTIN_SOURCES.contains(&l.name.as_str()) {
                self.err(
                    at(&base, "name"),
                    format!(
                        "${} is a built-in source: name the lookup otherwise",
                        l.name
                    ),
                );
            } else if out.iter().any(|o| o.name == l.name) {
                self.err(
                    at(&base, "name"),
                    format!("{:?} is used by two lookups", l.name),
                );
            }
            self.path(&l.path, &at(&base, "path"), None, true);
            out.push(LookupPlan {
                name: l.name.clone(),
                path: l.path.clone(),
            });
        }
        out
    }

    fn outputs(&mut self) -> Vec<OutputPlan> {
        let props = properties(Some(&self.def.output_schema));
        let base = "/output_schema/properties";
        self.naming(props, base);
        props
            .iter()
            .map(|(k, p)| self.output(k, p, &at(base, k), true))
            .collect()
    }

    fn output(&mut self, key: &str, prop: &'a Value, ptr: &str, top: bool) -> OutputPlan {
        let src = at(ptr, "x-source");
        let sources = match prop.get("x-source") {
            Some(Value::String(s)) => vec![self.source(s, &src)],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_str().map(|s| self.source(s, &at(&src, i))))
                .collect(),
            _ => Vec::new(),
        };
        let mut result_sets = None;
        if let Some(ids) = prop.get("x-result-sets").and_then(Value::as_array) {
            let base = at(ptr, "x-result-sets");
            for (i, id) in ids.iter().enumerate() {
                let id = id.as_str().unwrap_or_default();
                if self.def.result_set(id).is_none() {
                    self.err(
                        at(&base, i),
                        format!("{id:?} is not one of the card's result sets"),
                    );
                }
            }
            result_sets = Some(
                names(Some(prop), "x-result-sets")
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        let when = prop
            .get("x-when")
            .and_then(|w| serde_json::from_value::<When>(w.clone()).ok())
            .map(|w| self.when(&w, &at(ptr, "x-when")));
        if !top {
            for hides in ["x-result-sets", "x-when"]
                .into_iter()
                .filter(|k| prop.get(*k).is_some())
            {
                self.err(
                    at(ptr, hides),
                    "only a top-level output can be shown or hidden",
                );
            }
        }
        let mut members = Vec::new();
        if let Some(props) = prop.get("properties").and_then(Value::as_object) {
            let base = at(ptr, "properties");
            self.naming(props, &base);
            for (k, m) in props {
                members.push(self.output(k, m, &at(&base, k), false));
            }
        }
        OutputPlan {
            key: key.to_string(),
            sources,
            shape: Shape::of(prop),
            result_sets,
            when,
            members,
        }
    }

    fn source(&mut self, s: &str, ptr: &str) -> Source {
        if s.is_empty() || s.starts_with('/') {
            if !is_pointer(s) {
                self.err(ptr, format!("{s:?} is not a JSON pointer"));
            }
            return Source::Pointer(s.to_string());
        }
        let (head, tail) = s.split_at(s.find('/').unwrap_or(s.len()));
        if !is_pointer(tail) {
            self.err(ptr, format!("{tail:?} is not a JSON pointer"));
        }
        let needs = |what: bool, msg: &str| (!what).then(|| format!("{head} {msg}"));
        let lists = self.def.requests.iter().any(|r| r.list.is_some());
        let picks = self.def.requests.iter().any(|r| r.pick.is_some());
        let (source, problem) = match head {
            "$status" | "$headers" | "$error" | "$records" | "$count" | "$lookup_error"
                if !tail.is_empty() =>
            {
                (Source::Status, Some(format!("{head} takes no pointer")))
            }
            "$status" => (Source::Status, None),
            "$headers" => (Source::Headers, None),
            "$error" => (Source::Error, None),
            "$lookup_error" => (
                Source::LookupError,
                needs(!self.def.lookups.is_empty(), "needs a lookup"),
            ),
            "$body" => (Source::Body(tail.into()), None),
            "$picked" => (
                Source::Body(tail.into()),
                needs(picks, "needs a request with a pick"),
            ),
            "$records" => (Source::Records, needs(lists, "needs a list request")),
            "$count" => (Source::Count, needs(lists, "needs a list request")),
            "$record" => (
                Source::Record(tail.into()),
                needs(lists, "needs a list request"),
            ),
            "$inputs" | "$options" => {
                if let Some(name) = first_key(tail) {
                    if head == "$inputs" {
                        self.input(&name, ptr.to_string());
                    } else {
                        self.option(&name, ptr.to_string());
                    }
                }
                let p = tail.to_string();
                let source = if head == "$inputs" {
                    Source::Inputs(p)
                } else {
                    Source::Options(p)
                };
                (source, None)
            }
            _ => {
                let name = head.trim_start_matches('$');
                match self.def.lookups.iter().position(|l| l.name == name) {
                    Some(index) => (
                        Source::Lookup {
                            index,
                            pointer: tail.into(),
                        },
                        None,
                    ),
                    None => (
                        Source::Status,
                        Some(format!("{head}: {name:?} is not a lookup of this card")),
                    ),
                }
            }
        };
        if let Some(problem) = problem {
            self.err(ptr, problem);
        }
        source
    }
}

/// Apple and Kandji product names, and plural acronyms, that are one word in a key.
const ONE_WORD: &[(&str, &str)] = &[
    ("FileVault", "Filevault"),
    ("iPadOS", "Ipados"),
    ("iPad", "Ipad"),
    ("iPhone", "Iphone"),
    ("macOS", "Macos"),
    ("iOS", "Ios"),
    ("tvOS", "Tvos"),
    ("AppleTV", "Appletv"),
    ("IDs", "Ids"),
];

/// The key of a label (docs/card-format.md, "Naming"): lower-case, camelCase split into
/// words, every run of other characters -> `_` ("User Email - Exact" -> `user_email_exact`).
pub fn snake(label: &str) -> String {
    let mut s = label.to_string();
    for (word, repl) in ONE_WORD {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while let Some(found) = s[i..].find(word) {
            let (start, end) = (i + found, i + found + word.len());
            let alone = !s[..start].ends_with(|c: char| c.is_ascii_alphabetic())
                && !s[end..].starts_with(|c: char| c.is_ascii_lowercase());
            if alone {
                out.push_str(&s[i..start]);
                out.push_str(repl);
                i = end;
            } else {
                let next = start + s[start..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&s[i..next]);
                i = next;
            }
        }
        out.push_str(&s[i..]);
        s = out;
    }
    let chars: Vec<char> = s.chars().collect();
    let mut split = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let camel = prev.is_ascii_lowercase() || prev.is_ascii_digit();
            let acronym_end = prev.is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if camel || acronym_end {
                split.push('_');
            }
        }
        split.push(c);
    }
    let mut out = String::with_capacity(split.len());
    for c in split.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::snake;

    #[test]
    fn snake_case_of_labels() {
        for (label, key) in [
            ("User Email - Exact", "user_email_exact"),
            ("PreserveDataPlan", "preserve_data_plan"),
            ("FileVault Enabled", "filevault_enabled"),
            ("Library Item IDs", "library_item_ids"),
            ("Device ID", "device_id"),
            ("MDM Enabled", "mdm_enabled"),
            ("iPadOS Version", "ipados_version"),
            ("First 200 Matching Records", "first_200_matching_records"),
            ("Apple Remote Desktop (ARD)", "apple_remote_desktop_ard"),
        ] {
            assert_eq!(snake(label), key, "{label}");
        }
    }
}
