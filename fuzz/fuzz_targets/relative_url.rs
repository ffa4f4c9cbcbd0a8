//! The Custom API Action's relative URL: whatever is accepted must stay on the tenant's host,
//! under /api/v1, with no dot segments.
#![no_main]

use kandji_connector::kandji::{ApiBaseUrl, RelativeUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let base = ApiBaseUrl::parse("https://accuhive.api.kandji.io").unwrap();
    if let Ok(rel) = RelativeUrl::parse(s) {
        let url = base
            .endpoint(&rel.path, rel.query.as_deref(), &[])
            .unwrap_or_else(|e| panic!("accepted {s:?} but could not build it: {e}"));
        assert_eq!(url.host_str(), Some("accuhive.api.kandji.io"), "{s:?} -> {url}");
        assert_eq!(url.scheme(), "https");
        assert!(url.path().starts_with("/api/v1/"), "{s:?} -> {url}");
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(!url.path().split('/').any(|seg| seg == ".." || seg == "."), "{s:?} -> {url}");
    }
});
