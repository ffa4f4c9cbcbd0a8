//! The console: a single-page app at `GET /` for designers and operators (browse the catalog,
//! try a card with a preview of what Kandji would get, watch streams, manage connections).
//!
//! Its files (`assets/`: HTML, CSS and plain JavaScript modules, no build step, no library) are
//! embedded in the binary and served without a key; the pages call the `/v1` API with the key
//! the user pastes, kept in the tab's `sessionStorage` only. Every answer carries a strict
//! Content-Security-Policy: scripts and styles from this origin only (no inline script or
//! style, no `eval`), Trusted Types required with no policy (so an `innerHTML` assignment
//! throws: values are rendered with `textContent` and DOM calls), no framing, no `<base>`, no
//! form submissions.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::error::Problem;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/src/console/assets");

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; form-action 'none'; frame-ancestors 'none'; \
    base-uri 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The console's files and their media types (a test checks that every file is listed).
pub fn assets() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS
        .files()
        .filter_map(|f| Some((f.path().to_str()?, f.contents())))
}

fn media_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

fn serve(name: &str) -> Result<Response, Problem> {
    let file = ASSETS
        .get_file(name)
        .filter(|_| !name.contains('/'))
        .ok_or_else(|| Problem::not_found(format!("no console file {name:?}")))?;
    let media =
        media_type(name).ok_or_else(|| Problem::not_found(format!("no console file {name:?}")))?;
    let mut resp = file.contents().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Embedded in the binary: an upgrade changes them, so browsers revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The console
///
/// A single-page app to browse the card catalog, try a card (a form built from its schemas, a preview of the Kandji request, a run), watch and cancel streams, and manage connections. No key is needed to load it; its pages call the `/v1` API with the API key pasted into it, which is kept only in the browser tab's session storage.
#[utoipa::path(get, path = "/", tag = "console", operation_id = "console", responses(
    (status = 200, description = "The console's page (with a strict Content-Security-Policy).", content_type = "text/html"),
))]
pub async fn index() -> Result<Response, Problem> {
    serve("index.html")
}

/// A file of the console
///
/// The console's scripts and style sheet, embedded in the binary.
#[utoipa::path(get, path = "/console/{asset}", tag = "console", operation_id = "consoleAsset",
    params(("asset" = String, Path, description = "A file name, e.g. `main.js`.", example = "main.js")),
    responses(
        (status = 200, description = "The file.", content_type = "text/javascript"),
        (status = 404, description = "No such file.", body = crate::error::ProblemBody, content_type = "application/problem+json"),
    ),
)]
pub async fn asset(Path(asset): Path<String>) -> Result<Response, Problem> {
    serve(&asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_media_type_and_no_inline_script_or_style() {
        let mut names = Vec::new();
        for (name, bytes) in assets() {
            assert!(media_type(name).is_some(), "{name} has no media type");
            assert!(!name.contains('/'), "{name}: assets are one flat folder");
            let text = std::str::from_utf8(bytes).expect("text assets");
            if name.ends_with(".html") {
                // Every script is a file of ours; no style element or attribute, no handler.
                let lower = text.to_ascii_lowercase();
                for banned in ["<style", " style=", "javascript:"] {
                    assert!(!lower.contains(banned), "{name} has {banned:?}");
                }
                assert!(!has_event_attribute(&lower), "{name} has an on… attribute");
                for script in text.split("<script").skip(1) {
                    assert!(
                        script.contains("src=\"/console/"),
                        "{name}: an inline script"
                    );
                }
            }
            if name.ends_with(".js") {
                for banned in [
                    ".innerHTML",
                    ".outerHTML",
                    "insertAdjacentHTML",
                    "eval(",
                    "document.write",
                    "localStorage",
                ] {
                    assert!(!text.contains(banned), "{name} uses {banned}");
                }
            }
            names.push(name);
        }
        assert!(names.contains(&"index.html") && names.contains(&"main.js"));
    }

    fn has_event_attribute(html: &str) -> bool {
        html.split('<').skip(1).any(|tag| {
            let tag = tag.split('>').next().unwrap_or("");
            tag.split_whitespace()
                .skip(1)
                .any(|attr| attr.starts_with("on") && attr.contains('='))
        })
    }
}
