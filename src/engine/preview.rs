//! A dry run's plan: what an invocation would send to Kandji, built without any I/O from the
//! same [`Prepared`] a real run sends, so the two cannot drift: the request (a list's first
//! page, with its paging parameters), the follow-up lookups, and how a list goes on paging.
//! A resolver variant sends nothing of its own: its resolver says what it may send
//! ([`super::Resolver::preview`]).

use serde_json::{Map, Value};

use super::{MAX_PICK_PAGES, Prepared};
use crate::catalog::{Action, ListPlan, Paging, ResultSetKind};
use crate::kandji::KandjiRequest;

/// Why a planned request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The card's one request.
    Request,
    /// A list's first page.
    FirstPage,
    /// A follow-up read whose body some outputs come from, sent only when Kandji accepted
    /// the request.
    Lookup(String),
}

#[derive(Debug, Clone)]
pub struct PlannedRequest {
    pub role: Role,
    pub request: KandjiRequest,
}

/// How a list goes on after its first page.
#[derive(Debug, Clone)]
pub struct PagingPlan {
    pub style: Paging,
    /// Kandji's largest page for this list.
    pub page_size: usize,
    /// The query parameter carrying the page size (offset and drf lists).
    pub size_param: Option<String>,
    /// Records read before stopping; `None`: every record (a stream without `record_limit`).
    pub records_wanted: Option<u64>,
    /// A pick reads pages until a record matches, at most this many.
    pub max_pages: Option<usize>,
    /// In words: how the next page is asked for, and when paging stops.
    pub continues: String,
}

/// What an invocation would send.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub requests: Vec<PlannedRequest>,
    pub paging: Option<PagingPlan>,
    /// A resolver variant: the resolver's name and its rendered arguments.
    pub resolver: Option<(String, Map<String, Value>)>,
}

impl Prepared<'_> {
    /// The dry run of this invocation. `record_limit` is a stream's (its `options.record_limit`):
    /// a stream asks for at most that many records, and for none at all when it is 0.
    pub fn plan(&self, record_limit: Option<u64>) -> Plan {
        let http = match &self.variant.action {
            Action::Resolve { resolver, args } => {
                let args = args
                    .iter()
                    .filter_map(|(k, t)| Some((k.clone(), t.render(&self.inputs, &self.options)?)))
                    .collect();
                return Plan {
                    resolver: Some((resolver.clone(), args)),
                    ..Plan::default()
                };
            }
            Action::Send(http) => http,
        };
        let stream = self
            .result_set
            .is_some_and(|rs| rs.kind == ResultSetKind::Stream);
        let mut requests = Vec::new();
        let paging = match &http.list {
            None => {
                requests.push(PlannedRequest {
                    role: Role::Request,
                    request: self.request.clone(),
                });
                None
            }
            Some(list) => {
                let (wanted, max_pages) = match (&http.pick, stream) {
                    (Some(_), _) => (Some(list.page_size as u64), Some(MAX_PICK_PAGES)),
                    (None, true) => (record_limit, None),
                    (None, false) => (Some(self.limit(list) as u64), None),
                };
                // A stream asks for the fewest records that answer its limit, as a first
                // result set does; none when the limit is 0.
                let want = wanted.map_or(list.page_size, |w| {
                    usize::try_from(w).unwrap_or(usize::MAX).min(list.page_size)
                });
                if wanted != Some(0)
                    && let Some((first, _)) = self.pager(list).request(want)
                {
                    requests.push(PlannedRequest {
                        role: Role::FirstPage,
                        request: first,
                    });
                }
                let picking = http.pick.is_some();
                Some(paging_plan(list, wanted, max_pages, picking))
            }
        };
        if !stream {
            requests.extend(
                self.card
                    .plan
                    .lookups
                    .iter()
                    .zip(self.lookup_requests())
                    .filter_map(|(l, r)| {
                        r.map(|request| PlannedRequest {
                            role: Role::Lookup(l.name.clone()),
                            request,
                        })
                    }),
            );
        }
        Plan {
            requests,
            paging,
            resolver: None,
        }
    }
}

fn paging_plan(
    list: &ListPlan,
    wanted: Option<u64>,
    max_pages: Option<usize>,
    picking: bool,
) -> PagingPlan {
    let size = list.page_size;
    let sized = matches!(list.paging, Paging::Offset | Paging::Drf);
    let order = match &list.ordering {
        Some(o) => format!(
            ", every page in the stable order `ordering={o}` unless the request has its own"
        ),
        None => String::new(),
    };
    let how = match list.paging {
        Paging::Offset => format!(
            "each further page asks for the next records with `offset` (the records read so far) and `{}`{order}; paging stops at a page shorter than asked for or empty",
            list.size_param
        ),
        Paging::Drf => "each further page is the query of the answer's `next` link, sent to the tenant's own host (the link's host and path are ignored); paging stops when `next` is null or repeats, or a page is empty".to_string(),
        Paging::Page => format!(
            "pages of {size} records; each further page is the query of the answer's `next` link (`page=2`, `3`, …), sent to the tenant's own host; paging stops when `next` is null or repeats, or a page is empty"
        ),
        Paging::Cursor => "Kandji's page takes no size: each further page is exactly the query of the answer's `next` link (an opaque cursor), sent to the tenant's own host; paging stops when `next` is null or repeats, or a page is empty".to_string(),
        Paging::None => "one request: the answer is the whole list".to_string(),
    };
    let until = match (picking, wanted) {
        (true, _) => format!(
            "pages are read until a record matches, at most {} pages",
            max_pages.unwrap_or(MAX_PICK_PAGES)
        ),
        (false, Some(0)) => "nothing is read (record_limit 0)".to_string(),
        (false, Some(n)) => format!("reading stops once {n} records are read"),
        (false, None) => "every record is read".to_string(),
    };
    PagingPlan {
        style: list.paging,
        page_size: size,
        size_param: sized.then(|| list.size_param.clone()),
        records_wanted: wanted,
        max_pages,
        continues: format!("{how}; {until}."),
    }
}
