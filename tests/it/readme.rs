//! The README's card list is generated from the catalog; this fails when they drift.

#[test]
fn readme_card_table_matches_the_catalog() {
    let readme = crate::harness::repo_file("README.md");
    let start = readme.find("<!-- cards:start -->\n").expect("start marker")
        + "<!-- cards:start -->\n".len();
    let end = readme.find("<!-- cards:end -->").expect("end marker");
    let catalog = kandji_connector::catalog::Catalog::load(None).expect("cards load");
    let want = kandji_connector::catalog::markdown_table(&catalog);
    assert_eq!(
        &readme[start..end],
        want,
        "README.md's card list is out of date: replace it with the output of `cargo run -- cards list`"
    );
}
