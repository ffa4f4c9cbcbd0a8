//! Kandji's paging styles behind one cursor: offset/limit bare arrays, DRF envelopes whose `next`
//! may name the wrong host (only its query is used, on the tenant's host), page numbers, and
//! opaque cursors that only `next` knows. An envelope may sit inside the body
//! (`{"device_id", "activity": {count, next, results}}`): it is the object holding the records.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::catalog::{ListPlan, Paging};
use crate::kandji::{KandjiClient, KandjiError, KandjiRequest, KandjiResponse, Tenant, Wait};

use super::outputs::coerce;

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    /// Kandji's parsed body when the page is not a success (for its error message).
    pub error_body: Option<Value>,
    pub records: Vec<Value>,
    pub count: Option<u64>,
}

pub struct Pager {
    base: KandjiRequest,
    list: Arc<ListPlan>,
    offset: usize,
    page: usize,
    next_query: Option<String>,
    seen: HashSet<String>,
    started: bool,
    done: bool,
    pub pages_fetched: usize,
    /// Cards wait for budget only so long; streams set `Wait::Forever`.
    pub wait: Wait,
    /// The card, for the client's counts.
    pub label: String,
}

impl Pager {
    pub fn new(base: KandjiRequest, list: Arc<ListPlan>) -> Self {
        Self {
            base,
            list,
            offset: 0,
            page: 1,
            next_query: None,
            seen: HashSet::new(),
            started: false,
            done: false,
            pages_fetched: 0,
            wait: Wait::Bounded,
            label: "-".into(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn page_size(&self) -> usize {
        self.list.page_size
    }

    /// Resumes an offset/page cursor (streams restart from a checkpoint).
    pub fn resume(&mut self, offset: usize, page: usize, next_query: Option<String>) {
        self.offset = offset;
        self.page = page.max(1);
        self.next_query = next_query;
        self.started = offset > 0 || page > 1;
    }

    /// Where the cursor stands: (offset, page, next query).
    pub fn cursor(&self) -> (usize, usize, Option<String>) {
        (self.offset, self.page, self.next_query.clone())
    }

    /// The request for the next page, asking for at most `want` records where the style takes
    /// a size, with that size; `None` once the list is done.
    pub(super) fn request(&mut self, want: usize) -> Option<(KandjiRequest, usize)> {
        if self.done {
            return None;
        }
        let size = want.clamp(1, self.list.page_size);
        let mut req = self.base.clone();
        let follow = self.next_query.take();
        match (self.list.paging, follow) {
            (Paging::Drf | Paging::Page | Paging::Cursor, Some(q)) => {
                req.query.clear();
                req.raw_query = Some(q);
            }
            (Paging::Offset | Paging::Drf, _) => {
                if let Some(ordering) = &self.list.ordering
                    && !has_ordering(&req)
                {
                    req.query.push(("ordering".into(), ordering.clone()));
                }
                req.query
                    .push((self.list.size_param.clone(), size.to_string()));
                req.query.push(("offset".into(), self.offset.to_string()));
            }
            (Paging::Page, None) => {
                if self.started {
                    req.query.push(("page".into(), self.page.to_string()));
                }
            }
            (Paging::Cursor, None) => {
                // Only `next` knows where a cursor list goes on; without it the list is over
                // (asking again would start from the first page).
                if self.started {
                    self.done = true;
                    return None;
                }
            }
            (Paging::None, _) => {}
        }
        self.started = true;
        Some((req, size))
    }

    /// Takes in a successful page: its records (normalised by the record schema), the list's
    /// `count` if the envelope has one, and where the next page is.
    fn absorb(&mut self, body: &Value, size: usize) -> (Vec<Value>, Option<u64>) {
        let (mut records, envelope) = self.records_of(body);
        if let Some(shape) = &self.list.record_shape {
            records = records.into_iter().map(|r| coerce(r, shape)).collect();
        }
        let count = envelope
            .and_then(|e| e.get("count"))
            .and_then(Value::as_u64);
        let got = records.len();
        match self.list.paging {
            Paging::None => self.done = true,
            Paging::Offset => {
                self.offset += got;
                if got < size {
                    self.done = true;
                }
            }
            Paging::Drf | Paging::Page | Paging::Cursor => {
                self.offset += got;
                self.page += 1;
                let next = envelope
                    .and_then(|e| e.get("next"))
                    .and_then(Value::as_str)
                    .and_then(query_of);
                match next {
                    Some(q) if got > 0 && self.seen.insert(q.clone()) => self.next_query = Some(q),
                    _ => self.done = true,
                }
            }
        }
        if got == 0 {
            self.done = true;
        }
        (records, count)
    }

    /// Fetches the next page, asking for at most `want` records where the style takes a size.
    pub async fn next(
        &mut self,
        client: &KandjiClient,
        tenant: &Tenant,
        want: usize,
    ) -> Result<Option<Page>, KandjiError> {
        let Some((req, size)) = self.request(want) else {
            return Ok(None);
        };
        let resp = client
            .send_with(tenant, &req, self.wait, &self.label)
            .await?;
        self.pages_fetched += 1;
        let body = parse_body(&resp);
        if !resp.is_success() {
            self.done = true;
            return Ok(Some(Page {
                status: resp.status,
                headers: resp.headers,
                error_body: Some(body),
                records: Vec::new(),
                count: None,
            }));
        }
        let (records, count) = self.absorb(&body, size);
        Ok(Some(Page {
            status: resp.status,
            headers: resp.headers,
            error_body: None,
            records,
            count,
        }))
    }

    /// The records of a page and their envelope: the object that holds them, whose `next` and
    /// `count` describe the list (`/activity` for `/activity/results`, the body for `/results`,
    /// none for a bare array).
    fn records_of<'b>(&self, body: &'b Value) -> (Vec<Value>, Option<&'b Value>) {
        for p in &self.list.records {
            if let Some(Value::Array(a)) = body.pointer(p) {
                let envelope = p
                    .rfind('/')
                    .and_then(|i| body.pointer(&p[..i]))
                    .filter(|e| e.is_object());
                return (a.clone(), envelope);
            }
        }
        // Kandji's docs once show a single object where a list is expected: take it as one
        // record, unless it is an envelope (it holds the first key of a records pointer).
        match body {
            Value::Object(m)
                if !m.is_empty()
                    && !m.contains_key("results")
                    && !self.holds_an_envelope_key(m) =>
            {
                (vec![body.clone()], None)
            }
            _ => (Vec::new(), None),
        }
    }

    fn holds_an_envelope_key(&self, m: &serde_json::Map<String, Value>) -> bool {
        self.list.records.iter().any(|p| {
            p.strip_prefix('/')
                .and_then(|rest| rest.split('/').next())
                .map(|key| key.replace("~1", "/").replace("~0", "~"))
                .is_some_and(|key| m.contains_key(&key))
        })
    }
}

/// Whether the request already asks for an order (the caller's own `ordering` wins).
fn has_ordering(req: &KandjiRequest) -> bool {
    req.query.iter().any(|(k, _)| k == "ordering")
        || req.raw_query.as_deref().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "ordering")
        })
}

/// Only the query of a `next` link is trusted; its host and path are ignored.
fn query_of(next: &str) -> Option<String> {
    let q = match url::Url::parse(next) {
        Ok(u) => u.query().map(str::to_string),
        Err(_) => next.split_once('?').map(|(_, q)| q.to_string()),
    }?;
    if q.is_empty()
        || q.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '#')
    {
        return None;
    }
    Some(q)
}

/// Kandji's body as JSON when it is JSON, else as text; empty -> null.
pub fn parse_body(resp: &KandjiResponse) -> Value {
    if resp.body.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&resp.body).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kandji::ApiPath;
    use serde_json::json;

    fn pager(path: &str, paging: Paging, records: &[&str]) -> Pager {
        let mut base = KandjiRequest::get(ApiPath::from_template(path, |_| None).unwrap());
        base.query.push(("email".into(), "ada".into()));
        Pager::new(base, Arc::new(ListPlan::new(paging, records, 300)))
    }

    /// (path, query pairs, raw query) of a request.
    fn shape(r: &KandjiRequest) -> (String, Vec<(String, String)>, Option<String>) {
        (
            r.path.as_str().to_string(),
            r.query.clone(),
            r.raw_query.clone(),
        )
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cursor_sends_no_paging_params_and_follows_next_on_the_tenants_host() {
        let mut p = pager("/users", Paging::Cursor, &["/results"]);
        let (req, _) = p.request(1).unwrap();
        assert_eq!(
            shape(&req),
            ("/users".into(), pairs(&[("email", "ada")]), None),
            "no size even for a single record: a cursor list takes none"
        );
        let (records, count) = p.absorb(
            &json!({
                "next": "https://accuhive.kandji.io/api/v1/users?cursor=cD0zMDA%3D&email=ada",
                "previous": null,
                "results": [{"id": "a"}, {"id": "b"}],
            }),
            1,
        );
        assert_eq!(records, [json!({"id": "a"}), json!({"id": "b"})]);
        assert_eq!(count, None, "no count in a cursor envelope");
        assert!(!p.is_done());
        let (req, _) = p.request(300).unwrap();
        assert_eq!(
            shape(&req),
            (
                "/users".into(),
                vec![],
                Some("cursor=cD0zMDA%3D&email=ada".into())
            ),
            "the query of next, verbatim, instead of the card's own"
        );
        assert_eq!(p.cursor().2, None);
        p.absorb(&json!({"next": null, "results": [{"id": "c"}]}), 300);
        assert!(p.is_done());
        assert!(p.request(300).is_none());
    }

    #[test]
    fn cursor_stops_on_a_repeated_next_an_empty_page_or_a_lost_cursor() {
        let next = json!({"next": "/api/v1/users?cursor=AAA", "results": [{"id": "a"}]});
        let mut p = pager("/users", Paging::Cursor, &["/results"]);
        p.request(300).unwrap();
        p.absorb(&next, 300);
        p.request(300).unwrap();
        p.absorb(&next, 300);
        assert!(p.is_done(), "the same cursor twice is a loop");

        let mut p = pager("/users", Paging::Cursor, &["/results"]);
        p.request(300).unwrap();
        p.absorb(
            &json!({"next": "/api/v1/users?cursor=AAA", "results": []}),
            300,
        );
        assert!(p.is_done(), "an empty page ends the list");

        // Resumed past the first page without a next query: nothing to ask for.
        let mut p = pager("/users", Paging::Cursor, &["/results"]);
        p.resume(300, 2, None);
        assert!(p.request(300).is_none());
        assert!(p.is_done());
        let mut p = pager("/users", Paging::Cursor, &["/results"]);
        p.resume(300, 2, Some("cursor=BBB".into()));
        assert_eq!(
            p.request(300).unwrap().0.raw_query.as_deref(),
            Some("cursor=BBB")
        );
    }

    #[test]
    fn a_nested_envelope_gives_next_and_count() {
        let mut p = pager("/devices/x/activity", Paging::Drf, &["/activity/results"]);
        let (req, size) = p.request(300).unwrap();
        assert_eq!(size, 300);
        assert_eq!(
            req.query,
            pairs(&[("email", "ada"), ("limit", "300"), ("offset", "0")])
        );
        let (records, count) = p.absorb(
            &json!({
                "device_id": "x",
                // A `next` outside the envelope is not the list's.
                "next": "https://elsewhere/api/v1/x?offset=99",
                "activity": {
                    "count": 3,
                    "next": "https://accuhive.kandji.io/api/v1/devices/x/activity?limit=2&offset=2",
                    "previous": null,
                    "results": [{"id": 1}, {"id": 2}],
                },
            }),
            size,
        );
        assert_eq!(records.len(), 2);
        assert_eq!(count, Some(3));
        let (req, _) = p.request(300).unwrap();
        assert_eq!(req.raw_query.as_deref(), Some("limit=2&offset=2"));
        let (records, count) = p.absorb(
            &json!({"device_id": "x", "activity": {"count": 3, "next": null, "results": [{"id": 3}]}}),
            300,
        );
        assert_eq!((records.len(), count), (1, Some(3)));
        assert!(p.is_done());
    }

    #[test]
    fn an_envelope_key_outside_the_envelope_is_ignored_and_an_envelope_is_no_record() {
        let mut p = pager("/devices/x/activity", Paging::Drf, &["/activity/results"]);
        p.request(300).unwrap();
        let (records, count) = p.absorb(
            &json!({"count": 7, "next": "/x?offset=1", "activity": {"next": null, "results": [{"id": 1}]}}),
            300,
        );
        assert_eq!((records.len(), count), (1, None));
        assert!(p.is_done());

        // An envelope without its records is an empty page, not one record.
        let mut p = pager("/devices/x/activity", Paging::Drf, &["/activity/results"]);
        p.request(300).unwrap();
        let (records, _) = p.absorb(&json!({"device_id": "x", "activity": {"count": 0}}), 300);
        assert!(records.is_empty());
        // A single object where a list was expected is still one record.
        let mut p = pager("/devices/x/activity", Paging::Drf, &["/activity/results"]);
        p.request(300).unwrap();
        let (records, _) = p.absorb(&json!({"id": 1}), 300);
        assert_eq!(records, [json!({"id": 1})]);
    }

    #[test]
    fn an_ordered_list_sends_its_ordering_with_every_page_unless_the_caller_gave_one() {
        let ordered = |base_query: &[(&str, &str)]| {
            let mut base =
                KandjiRequest::get(ApiPath::from_template("/devices", |_| None).unwrap());
            base.query = pairs(base_query);
            Pager::new(
                base,
                Arc::new(ListPlan::new(Paging::Offset, &[""], 2).ordered_by("device_id")),
            )
        };
        let mut p = ordered(&[("platform", "Mac")]);
        let (req, size) = p.request(2).unwrap();
        assert_eq!(
            req.query,
            pairs(&[
                ("platform", "Mac"),
                ("ordering", "device_id"),
                ("limit", "2"),
                ("offset", "0")
            ])
        );
        p.absorb(&json!([{"id": 1}, {"id": 2}]), size);
        let (req, _) = p.request(2).unwrap();
        assert_eq!(
            req.query,
            pairs(&[
                ("platform", "Mac"),
                ("ordering", "device_id"),
                ("limit", "2"),
                ("offset", "2")
            ]),
            "every page, resumed or not"
        );
        let mut p = ordered(&[("ordering", "-last_check_in")]);
        assert_eq!(
            p.request(2).unwrap().0.query,
            pairs(&[
                ("ordering", "-last_check_in"),
                ("limit", "2"),
                ("offset", "0")
            ]),
            "the caller's own ordering is kept, not doubled"
        );
    }

    #[test]
    fn top_level_envelopes_and_bare_arrays_page_as_before() {
        let mut p = pager("/devices", Paging::Offset, &["", "/results"]);
        let (req, size) = p.request(2).unwrap();
        assert_eq!(
            req.query,
            pairs(&[("email", "ada"), ("limit", "2"), ("offset", "0")])
        );
        let (records, count) = p.absorb(&json!([{"id": 1}, {"id": 2}]), size);
        assert_eq!((records.len(), count), (2, None));
        assert!(!p.is_done());
        let (req, _) = p.request(2).unwrap();
        assert_eq!(
            req.query,
            pairs(&[("email", "ada"), ("limit", "2"), ("offset", "2")])
        );
        p.absorb(&json!([{"id": 3}]), 2);
        assert!(p.is_done(), "a short page ends an offset list");

        let mut p = pager("/blueprints", Paging::Drf, &["/results"]);
        p.request(300).unwrap();
        let (_, count) = p.absorb(
            &json!({"count": 5, "next": "https://accuhive.kandji.io/api/v1/blueprints?limit=2&offset=2", "results": [{}, {}]}),
            300,
        );
        assert_eq!(count, Some(5));
        assert_eq!(
            p.request(300).unwrap().0.raw_query.as_deref(),
            Some("limit=2&offset=2")
        );

        let mut p = pager("/library/custom-apps", Paging::Page, &["/results"]);
        let (req, _) = p.request(300).unwrap();
        assert_eq!(
            req.query,
            pairs(&[("email", "ada")]),
            "page 1 is asked without page="
        );
    }
}
