//! Kandji URLs: the tenant's API base (operator input), and the paths and relative URLs the
//! connector appends to it. Caller input never reaches `Url::join`; paths are built from checked
//! segments and the final URL's host is compared with the tenant's.

use std::net::IpAddr;

use url::Url;

/// The tenant's API origin, e.g. `https://accuhive.api.kandji.io` (no path; `/api/v1` is added per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBaseUrl(Url);

/// Kandji's published API host forms: US, EU, the legacy `clients` hosts, and the newer iru.com hosts.
const KANDJI_HOST_SUFFIXES: &[&str] = &[
    ".api.kandji.io",
    ".api.eu.kandji.io",
    ".clients.us-1.kandji.io",
    ".clients.eu.kandji.io",
    ".api.iru.com",
    ".api.eu.iru.com",
];

impl ApiBaseUrl {
    /// Accepts `https://<t>.api.kandji.io`, with or without a trailing `/` or `/api/v1`, the EU and
    /// iru.com forms, a bare host, or a bare subdomain (US). `http://` only for loopback hosts.
    pub fn parse(input: &str) -> Result<Self, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("is empty".into());
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        let with_scheme = if input.contains("://") {
            input.to_string()
        } else if !input.contains('.') && !input.contains(':') && !input.contains('/') {
            format!("https://{input}.api.kandji.io")
        } else {
            format!("https://{input}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| format!("is not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.query().is_some() {
            return Err("must not contain a query".into());
        }
        if url.fragment().is_some() {
            return Err("must not contain a fragment".into());
        }
        let host = url.host_str().ok_or("has no host")?.to_ascii_lowercase();
        let loopback = is_loopback_host(&host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(
                    "must use https (http is allowed only for a loopback simulator)".into(),
                );
            }
            other => return Err(format!("has an unsupported scheme {other:?}")),
        }
        if !loopback
            && !KANDJI_HOST_SUFFIXES
                .iter()
                .any(|s| host.ends_with(s) && host.len() > s.len())
        {
            return Err(format!(
                "host {host:?} is not a Kandji API host (expected <tenant>.api.kandji.io, <tenant>.api.eu.kandji.io, <tenant>.api.iru.com or similar)"
            ));
        }
        let path = url.path().trim_end_matches('/');
        if !(path.is_empty() || path == "/api/v1" || path == "/api") {
            return Err("must be the tenant's API address with no path other than /api/v1".into());
        }
        let mut base = url.clone();
        base.set_path("");
        Ok(Self(base))
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The origin as text, e.g. `https://accuhive.api.kandji.io`.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// `{base}/api/v1{path}?{query}`; `path` must come from [`ApiPath`] or [`RelativeUrl`].
    pub fn endpoint(
        &self,
        path: &ApiPath,
        raw_query: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<Url, String> {
        let mut url = self.0.clone();
        url.set_path(&format!("/api/v1{}", path.0));
        url.set_query(raw_query.filter(|q| !q.is_empty()));
        if !extra.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in extra {
                pairs.append_pair(k, v);
            }
        }
        if url.host_str() != self.0.host_str()
            || url.port() != self.0.port()
            || !url.path().starts_with("/api/v1/")
        {
            return Err("the request would leave the tenant's API".into());
        }
        Ok(url)
    }
}

impl std::fmt::Display for ApiBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A path below `/api/v1`, starting with `/`, made only of checked segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath(String);

impl ApiPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fills a card's path template; each value must be one safe segment.
    pub fn from_template(
        template: &str,
        mut value_of: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, (String, String)> {
        let mut out = String::with_capacity(template.len() + 40);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .map(|e| start + e)
                .unwrap_or(rest.len() - 1);
            let name = &rest[start + 1..end];
            let value =
                value_of(name).ok_or_else(|| (name.to_string(), "is required".to_string()))?;
            check_segment(&value).map_err(|m| (name.to_string(), m))?;
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(Self(out))
    }

    /// A path Kandji gave us (e.g. from a `next` link), kept only if it is under `/api/v1`.
    pub fn from_kandji_link(path: &str) -> Option<Self> {
        let p = path.strip_prefix("/api/v1")?;
        if !p.starts_with('/') || p.split('/').any(|s| s == ".." || s == ".") || p.contains('\\') {
            return None;
        }
        Some(Self(p.to_string()))
    }
}

/// A single path segment: unreserved characters only, and never `.` or `..`.
pub fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value == "." || value == ".." {
        return Err("must not be a relative path segment".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        return Err(format!(
            "must be a single path segment (letters, digits, '-', '_', '.', '~'); {:?} is not allowed",
            c
        ));
    }
    Ok(())
}

/// The Custom API Action's relative URL: the part after `/api/v1`, optionally with `?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativeUrl {
    pub path: ApiPath,
    pub query: Option<String>,
}

impl RelativeUrl {
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() {
            return Err("must not be empty".into());
        }
        if let Some(c) = input.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "must not contain whitespace or control characters ({c:?})"
            ));
        }
        if input.contains('\\') {
            return Err("must not contain backslashes".into());
        }
        if input.contains('#') {
            return Err("must not contain a fragment ('#')".into());
        }
        if !input.starts_with('/') {
            return Err("must start with '/' (the part after /api/v1, e.g. /devices); absolute URLs are not allowed".into());
        }
        if input.starts_with("//") {
            return Err("must not start with '//' (that names another host)".into());
        }
        let (path, query) = match input.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (input, None),
        };
        for segment in path.split('/').skip(1) {
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| "contains a percent-encoding that is not UTF-8".to_string())?;
            if decoded == "." || decoded == ".." {
                return Err("must not contain '.' or '..' segments (encoded or not)".into());
            }
            if decoded.contains('/') || decoded.contains('\\') {
                return Err("must not contain encoded slashes or backslashes".into());
            }
            if decoded.chars().any(|c| c.is_control()) {
                return Err("must not contain encoded control characters".into());
            }
            if segment.contains(':') && path.split('/').nth(1) == Some(segment) {
                return Err("must not start with a scheme or host".into());
            }
        }
        if let Some(q) = &query {
            let decoded = percent_encoding::percent_decode_str(q).decode_utf8_lossy();
            if decoded.chars().any(|c| c.is_control()) {
                return Err("must not contain encoded control characters".into());
            }
        }
        Ok(Self {
            path: ApiPath(path.to_string()),
            query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_forms() {
        for (input, want) in [
            (
                "https://accuhive.api.kandji.io",
                "https://accuhive.api.kandji.io",
            ),
            (
                "https://accuhive.api.kandji.io/",
                "https://accuhive.api.kandji.io",
            ),
            (
                "https://accuhive.api.kandji.io/api/v1/",
                "https://accuhive.api.kandji.io",
            ),
            (
                "accuhive.api.eu.kandji.io",
                "https://accuhive.api.eu.kandji.io",
            ),
            ("accuhive", "https://accuhive.api.kandji.io"),
            (
                "https://acme.api.iru.com/api/v1",
                "https://acme.api.iru.com",
            ),
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("http://localhost:9000/api/v1", "http://localhost:9000"),
        ] {
            assert_eq!(ApiBaseUrl::parse(input).unwrap().as_str(), want, "{input}");
        }
        for bad in [
            "http://accuhive.api.kandji.io",
            "https://user:pw@accuhive.api.kandji.io",
            "https://accuhive.api.kandji.io/?x=1",
            "https://accuhive.api.kandji.io/#f",
            "https://evil.example.com",
            "https://api.kandji.io.evil.com",
            "ftp://accuhive.api.kandji.io",
            "https://accuhive.api.kandji.io/other",
            "",
        ] {
            assert!(ApiBaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_urls() {
        let base = ApiBaseUrl::parse("https://t.api.kandji.io").unwrap();
        let ok = RelativeUrl::parse("/devices?limit=1").unwrap();
        let url = base.endpoint(&ok.path, ok.query.as_deref(), &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://t.api.kandji.io/api/v1/devices?limit=1"
        );
        for bad in [
            "//evil.com/x",
            "https://evil.com/x",
            "devices",
            "/\\evil.com",
            "/devices/../../x",
            "/devices/%2e%2e/x",
            "/devices/%2E%2E",
            "/devices/%2fx",
            "/devices\n",
            "/dev ices",
            "/devices#x",
            "/./devices",
            "/devices/%00",
        ] {
            assert!(RelativeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_templates() {
        let p = ApiPath::from_template("/devices/{device_id}/action/lock", |_| {
            Some("abc-123".into())
        })
        .unwrap();
        assert_eq!(p.as_str(), "/devices/abc-123/action/lock");
        for bad in ["../x", "a/b", "a?b", "..", ".", "a%2fb", "a#b", ""] {
            assert!(
                ApiPath::from_template("/devices/{id}", |_| Some(bad.into())).is_err(),
                "{bad}"
            );
        }
    }
}
