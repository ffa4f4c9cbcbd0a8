//! The operator's API URL: never panics; whatever is accepted is a Kandji host over https, or loopback.
#![no_main]

use kandji_connector::kandji::{ApiBaseUrl, is_loopback_host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(base) = ApiBaseUrl::parse(s) {
        let url = url::Url::parse(base.as_str()).expect("the normalised base parses");
        let host = url.host_str().unwrap_or_default().to_string();
        if !is_loopback_host(&host) {
            assert_eq!(url.scheme(), "https", "{s:?}");
            assert!(host.ends_with(".kandji.io") || host.ends_with(".iru.com"), "{s:?} -> {host}");
        }
        assert!(url.query().is_none() && url.fragment().is_none() && url.username().is_empty());
    }
});
