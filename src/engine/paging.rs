//! Kandji's paging styles behind one cursor: offset/limit bare arrays, DRF envelopes whose `next`
//! may name the wrong host (only its query is used, on the tenant's host), and page numbers.

use std::collections::HashSet;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::catalog::{ListDef, Paging};
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
    list: ListDef,
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
    pub fn new(base: KandjiRequest, list: ListDef) -> Self {
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
        self.list.page_size()
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

    /// Fetches the next page, asking for at most `want` records where the style takes a size.
    pub async fn next(
        &mut self,
        client: &KandjiClient,
        tenant: &Tenant,
        want: usize,
    ) -> Result<Option<Page>, KandjiError> {
        if self.done {
            return Ok(None);
        }
        let size = want.clamp(1, self.list.page_size());
        let mut req = self.base.clone();
        let follow = self.next_query.take();
        match (self.list.paging, &follow) {
            (Paging::Drf | Paging::Page, Some(q)) => {
                req.query.clear();
                req.raw_query = Some(q.clone());
            }
            (Paging::Offset | Paging::Drf, _) => {
                req.query
                    .push((self.list.size_param().to_string(), size.to_string()));
                req.query.push(("offset".into(), self.offset.to_string()));
            }
            (Paging::Page, None) => {
                if self.started {
                    req.query.push(("page".into(), self.page.to_string()));
                }
            }
            (Paging::None, _) => {}
        }
        self.started = true;
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
        let mut records = self.records_of(&body);
        if let Some(schema) = &self.list.record_schema {
            records = records.into_iter().map(|r| coerce(r, schema)).collect();
        }
        let count = body.get("count").and_then(Value::as_u64);
        let got = records.len();
        match self.list.paging {
            Paging::None => self.done = true,
            Paging::Offset => {
                self.offset += got;
                if got < size {
                    self.done = true;
                }
            }
            Paging::Drf | Paging::Page => {
                self.offset += got;
                self.page += 1;
                let next = body.get("next").and_then(Value::as_str).and_then(query_of);
                match next {
                    Some(q) if got > 0 && self.seen.insert(q.clone()) => self.next_query = Some(q),
                    _ => self.done = true,
                }
            }
        }
        if got == 0 {
            self.done = true;
        }
        Ok(Some(Page {
            status: resp.status,
            headers: resp.headers,
            error_body: None,
            records,
            count,
        }))
    }

    fn records_of(&self, body: &Value) -> Vec<Value> {
        for p in self.list.records.as_slice() {
            if let Some(Value::Array(a)) = body.pointer(p) {
                return a.clone();
            }
        }
        // Kandji's docs once show a single object where a list is expected: take it as one record.
        match body {
            Value::Object(m) if !m.contains_key("results") && !m.is_empty() => vec![body.clone()],
            _ => Vec::new(),
        }
    }
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
