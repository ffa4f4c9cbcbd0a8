//! Helper-flow callback URLs (checks that need no DNS): never panics; whatever is accepted with
//! an empty allow-list is https, carries no credentials, and has no non-public IP-literal host.
#![no_main]

use std::net::IpAddr;

use kandji_connector::streams::{CallbackPolicy, CallbackUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let policy = CallbackPolicy::parse("").expect("empty policy");
    if let Ok(cb) = CallbackUrl::check_static(s, &policy) {
        let url = cb.as_url();
        assert_eq!(url.scheme(), "https", "{s:?}");
        assert!(url.username().is_empty() && url.password().is_none(), "{s:?}");
        match url.host() {
            Some(url::Host::Ipv4(ip)) => assert!(kandji_connector::streams::callback::non_public(IpAddr::V4(ip)).is_none(), "{s:?}"),
            Some(url::Host::Ipv6(ip)) => assert!(kandji_connector::streams::callback::non_public(IpAddr::V6(ip)).is_none(), "{s:?}"),
            Some(url::Host::Domain(_)) => {}
            None => panic!("accepted a URL without a host: {s:?}"),
        }
    }
});
