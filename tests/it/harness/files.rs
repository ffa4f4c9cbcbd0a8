//! The repository's files, read by tests: any file (`repo_file`), a built-in card's definition
//! to change into an operator's card, and a folder of such cards for `TestAppBuilder::cards_dir`.

use serde_json::Value;

/// A file of the repository, by its path from the repository's root.
pub fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A built-in card's definition, `cards/{id}.json`.
pub fn builtin_card(id: &str) -> Value {
    serde_json::from_str(&repo_file(&format!("cards/{id}.json"))).unwrap()
}

/// A folder holding `cards`, each written as `{id}.json`; it lasts as long as the value.
pub fn operator_cards(cards: &[&Value]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for card in cards {
        let id = card["id"].as_str().expect("a card id");
        std::fs::write(dir.path().join(format!("{id}.json")), card.to_string()).unwrap();
    }
    dir
}
