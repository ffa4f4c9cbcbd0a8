//! Resolvers: named sources of answers that are not one Kandji request.
//!
//! A request variant with `"resolver": "<name>"` is answered by the resolver registered under
//! that name, with the variant's `args` rendered from the inputs. The resolver's JSON body is
//! then mapped to outputs exactly like Kandji's body (`x-source` pointers, coercion), so the
//! card stays data; only the way the answer is obtained is Rust. The names a card may use are
//! listed in `schemas/card.schema.json`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::RunError;
use crate::kandji::{KandjiRequest, Tenant};

/// What answering would send to Kandji, worked out without sending anything (a dry run).
#[derive(Debug, Clone)]
pub struct ResolverPreview {
    /// The requests it would send; none when it would answer from what it holds.
    pub requests: Vec<KandjiRequest>,
    /// In words: where the answer would come from.
    pub answer_from: String,
}

/// What a resolver answered: a status (as Kandji's would be) and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub status: u16,
    pub body: Value,
}

#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// Answers for `tenant` from the rendered `args` (validated by the card's input schema).
    async fn resolve(
        &self,
        tenant: &Tenant,
        args: &Map<String, Value>,
    ) -> Result<Resolved, RunError>;

    /// What [`Resolver::resolve`] would send for these `args` now, without sending it; it
    /// refuses the arguments `resolve` refuses, with the same errors.
    fn preview(
        &self,
        _tenant: &Tenant,
        _args: &Map<String, Value>,
    ) -> Result<ResolverPreview, RunError> {
        Ok(ResolverPreview {
            requests: Vec::new(),
            answer_from: "this resolver decides what it sends when it runs".into(),
        })
    }
}

/// The resolvers a server offers, by name.
#[derive(Clone, Default)]
pub struct Resolvers(HashMap<String, Arc<dyn Resolver>>);

impl Resolvers {
    pub fn with(mut self, name: &str, resolver: Arc<dyn Resolver>) -> Self {
        self.0.insert(name.to_string(), resolver);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Resolver>> {
        self.0.get(name)
    }
}
