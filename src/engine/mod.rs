//! The one engine that runs every card: inputs -> Kandji request; Kandji's answer -> outputs.
//! Cards come compiled ([`crate::catalog::Plan`]): per call the engine only fills in values.

mod outputs;
mod paging;
mod preview;
mod resolver;
mod template;
mod validate;

pub use outputs::{Answer, coerce, error_message, rfc3339};
pub use paging::{Page, Pager, parse_body};
pub use preview::{PagingPlan, Plan, PlannedRequest, Role};
pub use resolver::{Resolved, Resolver, ResolverPreview, Resolvers};

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::catalog::{
    Action, BodyContent, BodyPlan, Card, Encoding, HttpPlan, ListPlan, MethodPlan, PickPlan,
    ResultSet, ResultSetKind, Target, Template, Variant,
};
use crate::error::FieldError;
use crate::kandji::{
    ApiPath, KandjiClient, KandjiError, KandjiRequest, RelativeUrl, RequestBody, Tenant, Wait,
};
use template::scalar_text;

/// A checked invocation, ready to send: nothing reaches Kandji before this succeeds.
pub struct Prepared<'c> {
    pub card: &'c Card,
    pub inputs: Map<String, Value>,
    pub options: Map<String, Value>,
    pub variant: &'c Variant,
    /// What is sent to Kandji (a list's pages add their paging parameters). A resolver variant
    /// sends nothing from it (it is `GET /api/v1/`): its resolver decides.
    pub request: KandjiRequest,
    pub result_set: Option<&'c ResultSet>,
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

/// Validates inputs and options, chooses the request variant and builds its Kandji request.
pub fn prepare<'c>(
    card: &'c Card,
    inputs: &Value,
    options: &Value,
) -> Result<Prepared<'c>, Vec<FieldError>> {
    let inputs = validate::validate(card, inputs, options)?;
    let options = options.as_object().cloned().unwrap_or_default();
    let result_set = match options.get("result_set").and_then(Value::as_str) {
        Some(id) => Some(card.def.result_set(id).ok_or_else(|| {
            vec![FieldError::new(
                &["options", "result_set"],
                "is not one of this card's result sets",
                "enum",
            )]
        })?),
        None => None,
    };
    let variant = card
        .plan
        .variants
        .iter()
        .find(|v| v.when.as_ref().is_none_or(|w| w.holds(&inputs, &options)))
        .ok_or_else(|| {
            vec![FieldError::new(
                &["inputs"],
                "no request of this card fits these inputs",
                "no_variant",
            )]
        })?;
    let request = match &variant.action {
        Action::Resolve { .. } => KandjiRequest::get(
            ApiPath::from_template("/", |_| None).expect("the root is a valid path"),
        ),
        Action::Send(http) => http.request(&inputs, &options)?,
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

/// A path template filled from the inputs; each value must be one safe segment.
fn fill_path(template: &str, inputs: &Map<String, Value>) -> Result<ApiPath, (String, String)> {
    ApiPath::from_template(template, |name| {
        inputs.get(name).filter(|v| !v.is_null()).map(scalar_text)
    })
}

impl HttpPlan {
    /// The Kandji request for these inputs and options (no I/O).
    fn request(
        &self,
        inputs: &Map<String, Value>,
        options: &Map<String, Value>,
    ) -> Result<KandjiRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let target = self.target(inputs).map_err(|e| errors.push(e)).ok();
        let headers = self.headers(inputs, &mut errors);
        let method = match &self.method {
            MethodPlan::Fixed(m) => Some(m.clone()),
            MethodPlan::FromOption(name) => options
                .get(name)
                .and_then(Value::as_str)
                .and_then(|m| m.parse::<Method>().ok()),
        };
        let (Some((path, raw_query)), true) = (target, errors.is_empty()) else {
            return Err(errors);
        };
        let Some(method) = method else {
            return Err(vec![FieldError::new(
                &["options"],
                "no HTTP method",
                "method",
            )]);
        };
        Ok(KandjiRequest {
            method,
            path,
            raw_query,
            query: self.query(inputs, options),
            headers,
            body: self
                .body
                .as_ref()
                .map_or(RequestBody::None, |b| b.render(inputs, options)),
        })
    }

    /// The path, and the verbatim query a relative URL may carry.
    fn target(&self, inputs: &Map<String, Value>) -> Result<(ApiPath, Option<String>), FieldError> {
        match &self.target {
            Target::Path(template) => fill_path(template, inputs)
                .map(|p| (p, None))
                .map_err(|(name, msg)| FieldError::new(&["inputs", &name], msg, "path_segment")),
            Target::RelativeUrlInput(name) => {
                let text = inputs.get(name).and_then(Value::as_str).unwrap_or_default();
                RelativeUrl::parse(text)
                    .map(|r| (r.path, r.query))
                    .map_err(|msg| FieldError::new(&["inputs", name], msg, "relative_url"))
            }
        }
    }

    /// Query parameters whose value is present, then the query input's.
    fn query(
        &self,
        inputs: &Map<String, Value>,
        options: &Map<String, Value>,
    ) -> Vec<(String, String)> {
        let mut query: Vec<(String, String)> = self
            .query
            .iter()
            .filter_map(|(k, t)| Some((k.clone(), scalar_text(&t.render(inputs, options)?))))
            .collect();
        if let Some(name) = &self.query_input
            && let Some(Value::Object(m)) = inputs.get(name)
        {
            query.extend(m.iter().map(|(k, v)| (k.clone(), scalar_text(v))));
        }
        query
    }

    /// The headers input's headers; each one the connector sets itself is refused.
    fn headers(
        &self,
        inputs: &Map<String, Value>,
        errors: &mut Vec<FieldError>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        let Some(name) = &self.headers_input else {
            return headers;
        };
        let Some(Value::Object(m)) = inputs.get(name) else {
            return headers;
        };
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
        headers
    }
}

impl BodyPlan {
    /// The body; none when its value is absent (or an empty JSON template).
    fn render(&self, inputs: &Map<String, Value>, options: &Map<String, Value>) -> RequestBody {
        let (value, verbatim) = match &self.content {
            BodyContent::Input(name) => (inputs.get(name).filter(|v| !v.is_null()).cloned(), true),
            BodyContent::Template(t) => (t.render(inputs, options), false),
        };
        match (self.encoding, value) {
            (_, None) => RequestBody::None,
            (Encoding::Json, Some(Value::Object(m))) if m.is_empty() && !verbatim => {
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
}

impl Prepared<'_> {
    /// The requests this invocation starts with, built without any I/O: the request (a list's
    /// first page, with its paging parameters), then the lookups that follow an answer Kandji
    /// accepted. None for a resolver variant: the resolver decides.
    pub fn planned_requests(&self) -> Vec<KandjiRequest> {
        let first = match &self.variant.action {
            Action::Resolve { .. } => return Vec::new(),
            Action::Send(http) => match &http.list {
                Some(list) => {
                    let want = match http.pick {
                        Some(_) => list.page_size,
                        None => self.limit(list),
                    };
                    self.pager(list).request(want).map(|(r, _)| r)
                }
                None => Some(self.request.clone()),
            },
        };
        first
            .into_iter()
            .chain(self.lookup_requests().into_iter().flatten())
            .collect()
    }

    /// One request per lookup of the card; `None` where an input cannot fill its path.
    fn lookup_requests(&self) -> Vec<Option<KandjiRequest>> {
        self.card
            .plan
            .lookups
            .iter()
            .map(|l| {
                fill_path(&l.path, &self.inputs)
                    .ok()
                    .map(KandjiRequest::get)
            })
            .collect()
    }

    fn pager(&self, list: &Arc<ListPlan>) -> Pager {
        let mut pager = Pager::new(self.request.clone(), list.clone());
        pager.label = self.card.def.id.clone();
        pager
    }

    /// How many records a list answers: its result set's limit, else one page.
    fn limit(&self, list: &ListPlan) -> usize {
        self.result_set
            .and_then(|r| r.limit)
            .unwrap_or(list.page_size)
    }
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
    let answer = match &p.variant.action {
        Action::Resolve { resolver, args } => resolve(tenant, p, resolvers, resolver, args).await?,
        Action::Send(http) => {
            if let Some(rs) = p.result_set
                && rs.kind == ResultSetKind::Stream
            {
                return Err(RunError::Unsupported(format!(
                    "the {:?} result set streams; use the streaming API",
                    rs.label
                )));
            }
            let mut answer = match (&http.list, &http.pick) {
                (Some(list), Some(pick)) => pick_record(client, tenant, p, list, pick).await?,
                (Some(list), None) => list_records(client, tenant, p, list).await?,
                (None, _) => send_one(client, tenant, p).await?,
            };
            // Follow-ups only make sense when Kandji accepted the request. They never fail the
            // invocation: the request went through (a command was sent), so its answer is
            // what the caller gets, with what could not be read in `$lookup_error`.
            if answer.status < 500 && ![401, 403, 404, 429].contains(&answer.status) {
                (answer.lookups, answer.lookup_error) = lookups(client, tenant, p).await;
            }
            answer
        }
    };
    Ok(answer.outputs(p))
}

/// A resolver variant: the resolver's status and body stand for Kandji's.
async fn resolve(
    tenant: &Tenant,
    p: &Prepared<'_>,
    resolvers: &Resolvers,
    name: &str,
    args: &[(String, Template)],
) -> Result<Answer, RunError> {
    let resolver = resolvers
        .get(name)
        .ok_or_else(|| RunError::Unsupported(format!("this server has no {name:?} resolver")))?;
    let args: Map<String, Value> = args
        .iter()
        .filter_map(|(k, t)| Some((k.clone(), t.render(&p.inputs, &p.options)?)))
        .collect();
    let Resolved { status, body } = resolver.resolve(tenant, &args).await?;
    Ok(Answer::new(status, HeaderMap::new(), body))
}

/// One request, one answer.
async fn send_one(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
) -> Result<Answer, RunError> {
    let resp = client
        .send_with(tenant, &p.request, Wait::Bounded, &p.card.def.id)
        .await?;
    let body = parse_body(&resp);
    Ok(Answer::new(resp.status, resp.headers, body))
}

/// A list: pages until the result set's limit (one page's worth without one) or the end.
async fn list_records(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
    list: &Arc<ListPlan>,
) -> Result<Answer, RunError> {
    let limit = p.limit(list);
    let mut pager = p.pager(list);
    let (mut records, mut count, mut last) = (Vec::new(), None, None);
    while !pager.is_done() {
        let Some(page) = pager.next(client, tenant, limit - records.len()).await? else {
            break;
        };
        if let Some(body) = page.error_body {
            return Ok(Answer::new(page.status, page.headers, body));
        }
        count = count.or(page.count);
        records.extend(page.records);
        last = Some((page.status, page.headers));
        if records.len() >= limit {
            records.truncate(limit);
            break;
        }
    }
    let (status, headers) = last.expect("a list reads at least one page");
    Ok(Answer {
        count: Some(count.unwrap_or(records.len() as u64)),
        records: Some(records),
        ..Answer::new(status, headers, Value::Null)
    })
}

/// A list searched for the first record whose fields equal the pick's values; none is the
/// connector's own 404 with the pick's message as the error.
async fn pick_record(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
    list: &Arc<ListPlan>,
    pick: &PickPlan,
) -> Result<Answer, RunError> {
    let wanted: Vec<(&str, Option<Value>)> = pick
        .r#where
        .iter()
        .map(|(ptr, t)| (ptr.as_str(), t.render(&p.inputs, &p.options)))
        .collect();
    let matches = |r: &Value| {
        wanted
            .iter()
            .all(|(ptr, want)| want.is_some() && r.pointer(ptr) == want.as_ref())
    };
    let mut pager = p.pager(list);
    let mut last = None;
    while !pager.is_done() {
        let Some(page) = pager.next(client, tenant, list.page_size).await? else {
            break;
        };
        if let Some(body) = page.error_body {
            return Ok(Answer::new(page.status, page.headers, body));
        }
        if let Some(record) = page.records.into_iter().find(|r| matches(r)) {
            return Ok(Answer::new(page.status, page.headers, record));
        }
        last = Some(page.headers);
        if pager.pages_fetched >= MAX_PICK_PAGES {
            break;
        }
    }
    Ok(Answer {
        status: 404,
        headers: last.expect("a pick reads at least one page"),
        error: Some(pick.not_found.clone()),
        ..Answer::default()
    })
}

/// The card's follow-up lookups (the device of the lost-mode cards), by their index in the
/// plan, and a note of those that could not be read. A lookup whose path the inputs cannot fill
/// is not made; one that times out, finds the budget spent, or that Kandji answers with an error
/// reads as absent, and the note says which and why.
async fn lookups(
    client: &KandjiClient,
    tenant: &Tenant,
    p: &Prepared<'_>,
) -> (Vec<Option<Value>>, Option<String>) {
    let mut bodies = Vec::new();
    let mut problems = Vec::new();
    for (plan, request) in p.card.plan.lookups.iter().zip(p.lookup_requests()) {
        let Some(req) = request else {
            bodies.push(None);
            continue;
        };
        let why = match client
            .send_with(tenant, &req, Wait::Bounded, &p.card.def.id)
            .await
        {
            Ok(resp) if resp.is_success() => {
                bodies.push(Some(parse_body(&resp)));
                continue;
            }
            Ok(resp) => format!(
                "Kandji answered {}: {}",
                resp.status,
                error_message(resp.status, &parse_body(&resp))
            ),
            Err(e) => e.to_string(),
        };
        tracing::warn!(card = %p.card.def.id, lookup = %plan.name, error = %why, "a follow-up read failed after the request went through");
        problems.push(format!(
            "the {} could not be read after the request went through ({why}); its fields are null",
            plan.name
        ));
        bodies.push(None);
    }
    let note = (!problems.is_empty()).then(|| problems.join("; "));
    (bodies, note)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::Catalog;

    /// `METHOD /path?query` of each request.
    fn lines(requests: &[KandjiRequest]) -> Vec<String> {
        requests
            .iter()
            .map(|r| {
                let q = serde_urlencoded::to_string(&r.query).unwrap();
                let sep = if q.is_empty() { "" } else { "?" };
                format!("{} {}{sep}{q}", r.method, r.path.as_str())
            })
            .collect()
    }

    #[test]
    fn planned_requests_are_what_the_run_would_send_first() {
        let catalog = Catalog::load(None).unwrap();
        let plan = |id: &str, inputs: Value, options: Value| {
            let p = prepare(catalog.get(id).unwrap(), &inputs, &options).unwrap();
            lines(&p.planned_requests())
        };
        assert_eq!(
            plan(
                "list_devices",
                json!({"serial_number": "C02"}),
                json!({"result_set": "first_200_matching_records"})
            ),
            ["GET /devices?serial_number=C02&ordering=device_id&limit=200&offset=0"],
            "a list's first page asks for the result set's limit"
        );
        assert_eq!(
            plan(
                "turn_on_lost_mode",
                json!({"device_id": "d-1", "lock_message": "Lost"}),
                json!({})
            ),
            [
                "POST /devices/d-1/action/enablelostmode",
                "GET /devices/d-1"
            ],
            "the command, then the lookup of the device"
        );
        assert_eq!(
            plan(
                "get_blueprint",
                json!({"blueprint_name": "Sales"}),
                json!({})
            ),
            ["GET /blueprints?name=Sales&limit=300&offset=0"],
            "a pick reads whole pages"
        );
        assert!(
            plan(
                "get_device_trust",
                json!({"serial_number": "C02"}),
                json!({})
            )
            .is_empty(),
            "a resolver decides what it sends"
        );
    }
}
