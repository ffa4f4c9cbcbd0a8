//! The one engine that runs every card: inputs -> Kandji request; Kandji's answer -> outputs.

mod outputs;
mod paging;
mod resolver;
mod template;
mod validate;

pub use outputs::{Answer, coerce, error_message, rfc3339, when_matches};
pub use paging::{Page, Pager, parse_body};
pub use resolver::{Resolved, Resolver, Resolvers};

use std::collections::HashMap;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::catalog::{Card, Encoding, MethodDef, RequestDef, ResultSet, ResultSetKind};
use crate::error::FieldError;
use crate::kandji::{
    ApiPath, KandjiClient, KandjiError, KandjiRequest, RelativeUrl, RequestBody, Tenant, Wait,
};
use template::{render, scalar_text};

/// A checked invocation, ready to send: nothing reaches Kandji before this succeeds.
pub struct Prepared<'c> {
    pub card: &'c Card,
    pub inputs: Map<String, Value>,
    pub options: Map<String, Value>,
    pub variant: &'c RequestDef,
    /// What is sent to Kandji. A resolver variant sends nothing from it (it is `GET /api/v1/`):
    /// its resolver decides, from `variant.args`.
    pub request: KandjiRequest,
    pub result_set: Option<ResultSet>,
}

/// Headers a caller may not set on the Custom API Action: auth, host and message framing
/// (including Content-Type: the body is always JSON, labelled by the connector; the client adds
/// its own, so a caller's would travel as a second, conflicting header).
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "proxy-authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
];

/// Validates inputs and options and builds the Kandji request.
pub fn prepare<'c>(
    card: &'c Card,
    inputs: &Value,
    options: &Value,
) -> Result<Prepared<'c>, Vec<FieldError>> {
    let inputs = validate::validate(card, inputs, options)?;
    let options = options.as_object().cloned().unwrap_or_default();
    let result_set = match options.get("result_set").and_then(Value::as_str) {
        Some(id) => Some(card.def.result_set(id).cloned().ok_or_else(|| {
            vec![FieldError::new(
                &["options", "result_set"],
                "is not one of this card's result sets",
                "enum",
            )]
        })?),
        None => None,
    };
    let variant = card
        .def
        .requests
        .iter()
        .find(|r| {
            r.when
                .as_ref()
                .is_none_or(|w| when_matches(w, &inputs, &options))
        })
        .ok_or_else(|| {
            vec![FieldError::new(
                &["inputs"],
                "no request of this card fits these inputs",
                "no_variant",
            )]
        })?;
    let request = match variant.resolver {
        Some(_) => KandjiRequest::get(
            ApiPath::from_template("/", |_| None).expect("the root is a valid path"),
        ),
        None => build_request(variant, &inputs, &options)?,
    };
    Ok(Prepared {
        card,
        inputs,
        options,
        variant,
        request,
        result_set,
    })
}

fn build_request(
    v: &RequestDef,
    inputs: &Map<String, Value>,
    options: &Map<String, Value>,
) -> Result<KandjiRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let method = match &v.method {
        Some(MethodDef::Fixed(m)) => m.parse::<Method>().ok(),
        Some(MethodDef::FromOption { option }) => options
            .get(option)
            .and_then(Value::as_str)
            .and_then(|m| m.parse().ok()),
        None => None,
    };
    let (path, raw_query) = if let Some(name) = &v.relative_url_input {
        let text = inputs.get(name).and_then(Value::as_str).unwrap_or_default();
        match RelativeUrl::parse(text) {
            Ok(r) => (Some(r.path), r.query),
            Err(msg) => {
                errors.push(FieldError::new(&["inputs", name], msg, "relative_url"));
                (None, None)
            }
        }
    } else {
        let template = v.path.as_deref().unwrap_or("/");
        match ApiPath::from_template(template, |name| {
            inputs.get(name).filter(|v| !v.is_null()).map(scalar_text)
        }) {
            Ok(p) => (Some(p), None),
            Err((name, msg)) => {
                errors.push(FieldError::new(&["inputs", &name], msg, "path_segment"));
                (None, None)
            }
        }
    };
    let mut query = Vec::new();
    for (k, t) in &v.query {
        if let Some(val) = render(t, inputs, options) {
            query.push((k.clone(), scalar_text(&val)));
        }
    }
    if let Some(name) = &v.query_input
        && let Some(Value::Object(m)) = inputs.get(name)
    {
        for (k, val) in m {
            query.push((k.clone(), scalar_text(val)));
        }
    }
    let mut headers = Vec::new();
    if let Some(name) = &v.headers_input
        && let Some(Value::Object(m)) = inputs.get(name)
    {
        for (k, val) in m {
            let lower = k.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                errors.push(FieldError::new(
                    &["inputs", name, k],
                    "this header is set by the connector and cannot be overridden",
                    "forbidden_header",
                ));
                continue;
            }
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&scalar_text(val)),
            ) {
                (Ok(hn), Ok(hv)) => headers.push((hn, hv)),
                _ => errors.push(FieldError::new(
                    &["inputs", name, k],
                    "is not a valid HTTP header",
                    "header",
                )),
            }
        }
    }
    let body = match &v.body {
        None => RequestBody::None,
        Some(b) => {
            let rendered = match (&b.input, &b.template) {
                (Some(name), _) => inputs.get(name).filter(|v| !v.is_null()).cloned(),
                (None, Some(t)) => render(t, inputs, options),
                (None, None) => None,
            };
            match (b.encoding, rendered) {
                (_, None) => RequestBody::None,
                (Encoding::Json, Some(Value::Object(m))) if m.is_empty() && b.input.is_none() => {
                    RequestBody::None
                }
                (Encoding::Json, Some(val)) => {
                    RequestBody::Json(Bytes::from(serde_json::to_vec(&val).unwrap_or_default()))
                }
                (Encoding::Form, Some(Value::Object(m))) => {
                    let pairs: Vec<(String, String)> =
                        m.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect();
                    RequestBody::Form(Bytes::from(
                        serde_urlencoded::to_string(&pairs).unwrap_or_default(),
                    ))
                }
                (Encoding::Form, Some(_)) => RequestBody::None,
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(method) = method else {
        return Err(vec![FieldError::new(
            &["options"],
            "no HTTP method",
            "method",
        )]);
    };
    Ok(KandjiRequest {
        method,
        path: path.expect("checked"),
        raw_query,
        query,
        headers,
        body,
    })
}

/// Why an invocation did not produce outputs although its input was valid.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kandji(#[from] KandjiError),
    #[error("{0}")]
    Unsupported(String),
    /// A resolver refused its arguments.
    #[error("invalid arguments")]
    Invalid(Vec<FieldError>),
}

/// How many pages a name pick may read before giving up (each page is 300 records).
const MAX_PICK_PAGES: usize = 20;

/// Sends a prepared invocation and maps Kandji's answer to the card's outputs.
pub async fn run(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
) -> Result<Map<String, Value>, RunError> {
    run_with(client, tenant, p, &Resolvers::default()).await
}

/// [`run`], with the resolvers that answer resolver variants.
pub async fn run_with(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
    resolvers: &Resolvers,
) -> Result<Map<String, Value>, RunError> {
    if let Some(name) = &p.variant.resolver {
        let resolver = resolvers.get(name).ok_or_else(|| {
            RunError::Unsupported(format!("this server has no {name:?} resolver"))
        })?;
        let args: Map<String, Value> = p
            .variant
            .args
            .iter()
            .filter_map(|(k, t)| render(t, &p.inputs, &p.options).map(|v| (k.clone(), v)))
            .collect();
        let Resolved { status, body } = resolver.resolve(tenant, &args).await?;
        let answer = Answer {
            status,
            headers: Value::Object(Map::new()),
            error: (status >= 400).then(|| error_message(status, &body)),
            body,
            inputs: &p.inputs,
            options: &p.options,
            records: None,
            count: None,
            lookups: HashMap::new(),
            result_set: p.result_set.as_ref().map(|r| r.id.clone()),
        };
        return Ok(answer.outputs(&p.card.def.output_schema));
    }
    if let Some(rs) = &p.result_set
        && rs.kind == ResultSetKind::Stream
    {
        return Err(RunError::Unsupported(format!(
            "the {:?} result set streams; use the streaming API",
            rs.label
        )));
    }
    let label = p.card.def.id.as_str();
    // A `pick` that matched nothing: the connector's own 404, with its message as the error.
    let mut not_found = None;
    let (status, headers, body, records, count) = match (&p.variant.list, &p.variant.pick) {
        (Some(list), pick) => {
            let mut pager = Pager::new(p.request.clone(), list.clone());
            pager.label = label.to_string();
            let limit = p
                .result_set
                .as_ref()
                .and_then(|r| r.limit)
                .unwrap_or(list.page_size());
            let mut records = Vec::new();
            let mut last = None;
            let mut count = None;
            let mut picked = None;
            while !pager.is_done() {
                let want = if pick.is_some() {
                    list.page_size()
                } else {
                    limit - records.len()
                };
                let Some(page) = pager.next(client, tenant, want).await? else {
                    break;
                };
                count = count.or(page.count);
                if page.error_body.is_some() {
                    last = Some(page);
                    break;
                }
                if let Some(pick) = pick {
                    picked = page
                        .records
                        .iter()
                        .find(|r| picks(pick, r, &p.inputs, &p.options))
                        .cloned();
                    last = Some(page);
                    if picked.is_some() || pager.pages_fetched >= MAX_PICK_PAGES {
                        break;
                    }
                    continue;
                }
                records.extend(page.records.iter().cloned());
                last = Some(Page {
                    records: Vec::new(),
                    ..page
                });
                if records.len() >= limit {
                    records.truncate(limit);
                    break;
                }
            }
            let last = last.expect("at least one page");
            match (last.error_body, pick) {
                (Some(err), _) => (last.status, last.headers, err, None, None),
                (None, Some(pick)) => match picked {
                    Some(r) => (last.status, last.headers, r, None, None),
                    None => {
                        not_found = Some(
                            pick.not_found
                                .clone()
                                .unwrap_or_else(|| "No record matched exactly".into()),
                        );
                        (404, last.headers, Value::Null, None, None)
                    }
                },
                (None, None) => {
                    let n = count.unwrap_or(records.len() as u64);
                    (
                        last.status,
                        last.headers,
                        Value::Null,
                        Some(records),
                        Some(n),
                    )
                }
            }
        }
        (None, _) => {
            let resp = client
                .send_with(tenant, &p.request, Wait::Bounded, label)
                .await?;
            let body = parse_body(&resp);
            (resp.status, resp.headers, body, None, None)
        }
    };
    let error = not_found.or_else(|| (status >= 400).then(|| error_message(status, &body)));
    let mut lookups = HashMap::new();
    if status < 500 && ![401, 403, 404, 429].contains(&status) {
        for l in &p.card.def.lookups {
            let path = ApiPath::from_template(&l.path, |n| {
                p.inputs.get(n).filter(|v| !v.is_null()).map(scalar_text)
            });
            if let Ok(path) = path {
                let resp = client
                    .send_with(tenant, &KandjiRequest::get(path), Wait::Bounded, label)
                    .await?;
                if resp.is_success() {
                    lookups.insert(l.name.clone(), parse_body(&resp));
                }
            }
        }
    }
    let answer = Answer {
        status,
        headers: headers_json(&headers),
        body,
        error,
        inputs: &p.inputs,
        options: &p.options,
        count: records.as_ref().map(|_| count.unwrap_or_default()),
        records,
        lookups,
        result_set: p.result_set.as_ref().map(|r| r.id.clone()),
    };
    Ok(answer.outputs(&p.card.def.output_schema))
}

fn picks(
    pick: &crate::catalog::PickDef,
    record: &Value,
    inputs: &Map<String, Value>,
    options: &Map<String, Value>,
) -> bool {
    pick.r#where.iter().all(|(ptr, t)| {
        let want = render(t, inputs, options);
        want.is_some() && record.pointer(ptr) == want.as_ref()
    })
}

pub fn headers_json(h: &HeaderMap) -> Value {
    let mut m = Map::new();
    for name in h.keys() {
        let joined = h
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        m.insert(name.as_str().to_string(), Value::String(joined));
    }
    Value::Object(m)
}
