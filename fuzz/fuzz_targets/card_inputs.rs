//! Card-input validation and request building must never panic, and whatever it accepts must
//! build a request whose path stays a clean path under /api/v1.
#![no_main]

use std::sync::OnceLock;

use kandji_connector::catalog::Catalog;
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| Catalog::load(None).expect("cards load"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let cards: Vec<_> = catalog().iter().collect();
    let card = cards[pick as usize % cards.len()];
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let (inputs, options) = match &value {
        serde_json::Value::Array(a) if a.len() == 2 => (a[0].clone(), a[1].clone()),
        other => (other.clone(), serde_json::json!({})),
    };
    if let Ok(p) = kandji_connector::engine::prepare(card, &inputs, &options) {
        let path = p.request.path.as_str();
        assert!(path.starts_with('/'), "{path}");
        assert!(!path.split('/').any(|s| s == ".." || s == "."), "{path}");
        assert!(!path.contains('\\') && !path.contains("//"), "{path}");
    }
});
