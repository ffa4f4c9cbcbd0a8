//! Metric handles found again by their label values, without building a key.
//!
//! The `metrics` macros build a [`metrics::Key`] of owned strings on every call, and the
//! Prometheus recorder copies it again before looking it up: half a dozen allocations and two
//! hashes a metric, several thousand instructions a request (bench/invoke.sh, PROFILE=callgrind).
//! A [`Family`] registers a set of label values with the recorder the first time it sees them and
//! afterwards finds the handle by the borrowed values: one hash, one read lock, no allocation.
//!
//! Label sets stay bounded as before (the values are connection ids, card ids, route templates,
//! fixed words), so a family holds at most as many handles as the recorder holds series.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::{PoisonError, RwLock};

use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Histogram, Label};

/// One metric's handles by the values of its `N` labels. An empty value leaves its label out
/// (a request no route matched has no `http_route`).
pub(crate) struct Family<H, const N: usize> {
    name: &'static str,
    labels: [&'static str; N],
    handles: RwLock<HashMap<Values<N>, H>>,
}

/// Registers a handle with the installed recorder (one of [`counter`], [`histogram`]).
pub(crate) type Register<H> = fn(&'static str, Vec<Label>) -> H;

pub(crate) fn counter(name: &'static str, labels: Vec<Label>) -> Counter {
    metrics::counter!(name, labels)
}

pub(crate) fn histogram(name: &'static str, labels: Vec<Label>) -> Histogram {
    metrics::histogram!(name, labels)
}

impl<H: Clone, const N: usize> Family<H, N> {
    pub(crate) fn new(name: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            name,
            labels,
            handles: RwLock::new(HashMap::new()),
        }
    }

    /// The handle of these label values, registered through `register` the first time.
    /// Calls `f` with the handle of these values (registered on first use), without cloning it.
    pub(crate) fn with(&self, values: [&str; N], register: Register<H>, f: impl FnOnce(&H)) {
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ValuesRef(values))
        {
            return f(h);
        }
        f(&self.get(values, register))
    }

    pub(crate) fn get(&self, values: [&str; N], register: Register<H>) -> H {
        let wanted = ValuesRef(values);
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&wanted)
        {
            return h.clone();
        }
        let labels = self
            .labels
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        let handle = register(self.name, labels);
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(Values(values.map(Box::from)))
            .or_insert(handle)
            .clone()
    }
}

/// The handle a thread used last at one call site, with its label values: a request's metrics
/// are found again without the family's lock (shared by every thread: its reference count moves
/// between cores at each lookup) or a hash. Kept in a `thread_local!` of the call site; values
/// are compared by content.
pub(crate) struct Last<H, const N: usize>(RefCell<Option<(Values<N>, H)>>);

impl<H: Clone, const N: usize> Last<H, N> {
    pub(crate) const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// Calls `f` with the handle of these values: the last one if its values are these, else the
    /// family's (which becomes the last).
    pub(crate) fn with(
        &self,
        family: &Family<H, N>,
        values: [&str; N],
        register: Register<H>,
        f: impl FnOnce(&H),
    ) {
        // A handle's `Debug` or a recorder does not log, but a call within a call is not this
        // cache's business: it then goes to the family.
        let Ok(mut last) = self.0.try_borrow_mut() else {
            return family.with(values, register, f);
        };
        match &*last {
            Some((kept, h)) if ValuesRef(values).equivalent(kept) => f(h),
            _ => {
                let h = family.get(values, register);
                f(&h);
                *last = Some((Values(values.map(Box::from)), h));
            }
        }
    }
}

impl<H: Clone + 'static, const N: usize> Family<H, N> {
    /// [`Family::with`] through the calling thread's last handle of this call site (`last`).
    pub(crate) fn with_last(
        &self,
        last: &'static std::thread::LocalKey<Last<H, N>>,
        values: [&str; N],
        register: Register<H>,
        f: impl FnOnce(&H),
    ) {
        last.with(|last| last.with(self, values, register, f))
    }
}

/// Owned label values: a key of the map.
#[derive(PartialEq, Eq)]
struct Values<const N: usize>([Box<str>; N]);

/// Borrowed label values: what a lookup is made with. Hashes exactly as [`Values`] does.
struct ValuesRef<'a, const N: usize>([&'a str; N]);

impl<const N: usize> Hash for Values<N> {
    fn hash<S: Hasher>(&self, state: &mut S) {
        self.0.iter().for_each(|v| (**v).hash(state));
    }
}

impl<const N: usize> Hash for ValuesRef<'_, N> {
    fn hash<S: Hasher>(&self, state: &mut S) {
        self.0.iter().for_each(|v| v.hash(state));
    }
}

impl<const N: usize> Equivalent<Values<N>> for ValuesRef<'_, N> {
    fn equivalent(&self, key: &Values<N>) -> bool {
        self.0.iter().zip(&key.0).all(|(a, b)| *a == &**b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_set_of_values_is_its_own_series_registered_once() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let family: Family<Counter, 2> = Family::new("t_total", ["card", "route"]);
        metrics::with_local_recorder(&recorder, || {
            family.get(["a", "/x"], counter).increment(1);
            family.get(["a", "/x"], counter).increment(2);
            family.get(["b", "/x"], counter).increment(5);
            // An empty value is no label.
            family.get(["a", ""], counter).increment(7);
        });
        // Through the last handle used: the same series, registered once.
        let last: Last<Counter, 2> = Last::new();
        metrics::with_local_recorder(&recorder, || {
            for (card, n) in [("a", 10), ("a", 20), ("b", 100), ("a", 40)] {
                last.with(&family, [card, "/x"], counter, |c| c.increment(n));
            }
        });
        assert_eq!(family.handles.read().unwrap().len(), 3);
        let text = recorder.handle().render();
        let mut series: Vec<&str> = text.lines().filter(|l| l.starts_with("t_total")).collect();
        series.sort();
        assert_eq!(
            series,
            [
                "t_total{card=\"a\",route=\"/x\"} 73",
                "t_total{card=\"a\"} 7",
                "t_total{card=\"b\",route=\"/x\"} 105",
            ]
        );
    }
}
