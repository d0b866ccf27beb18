//! The technician's app (issue 20) at `/app`: an installable offline web app on the
//! JavaScript automerge-repo client, built from `app/` by `app/build` into `server/assets/app/`
//! (committed; CI checks the build reproduces it) and embedded in the binary here.
//!
//! Every asset answers with its content type, `Cache-Control: no-cache` and an `ETag` (the
//! SHA-256 of its bytes), so a browser revalidates and gets `304` when nothing changed; the
//! service worker (`sw.js`, scope `/app/`) keeps the app shell for opening with no network.
//! The big ones (automerge's WebAssembly, the bundle) are sent gzipped to a browser that
//! accepts it, compressed once on first use. The page runs the app's own scripts and
//! WebAssembly only (`script-src 'self' 'wasm-unsafe-eval'`) and talks to this origin only
//! (the API, `/sync`).
//!
//! What the app writes into job documents is what a device may: the server's write authority
//! (`fieldsync_shared::authority`) judges its changes exactly like the Rust SDK's.

use std::io::Write;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file of the app.
#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// Sent gzipped to a browser that accepts it.
    pub compress: bool,
}

macro_rules! asset {
    ($name:literal, $type:literal, $compress:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../assets/app/", $name)),
            compress: $compress,
        }
    };
}

/// Everything `app/build` writes, by name.
pub static ASSETS: [Asset; 9] = [
    asset!("index.html", "text/html; charset=utf-8", true),
    asset!("app.js", "text/javascript; charset=utf-8", true),
    asset!("app.css", "text/css; charset=utf-8", true),
    asset!("sw.js", "text/javascript; charset=utf-8", true),
    asset!("manifest.webmanifest", "application/manifest+json", true),
    asset!("automerge.wasm", "application/wasm", true),
    asset!("icon.svg", "image/svg+xml", true),
    asset!("icon-192.png", "image/png", false),
    asset!("icon-512.png", "image/png", false),
];

/// The page's policy: its own scripts and WebAssembly, this origin for the API and the
/// WebSocket, nothing framed, no foreign forms.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/app` (to `/app/`), `/app/` (the page) and `/app/{file}`.
pub fn router() -> Router {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(|headers: HeaderMap| async move { answer("index.html", &headers) }))
        .route(
            "/app/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                answer(&file, &headers)
            }),
        )
}

/// The asset named `name`, or `None`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

struct Prepared {
    etag: HeaderValue,
    gzip: Option<Vec<u8>>,
}

/// Each asset's ETag and gzipped bytes, made once.
fn prepared(index: usize) -> &'static Prepared {
    static PREPARED: OnceLock<Vec<OnceLock<Prepared>>> = OnceLock::new();
    let all = PREPARED.get_or_init(|| ASSETS.iter().map(|_| OnceLock::new()).collect());
    all[index].get_or_init(|| {
        let a = &ASSETS[index];
        let digest = hex::encode(Sha256::digest(a.bytes));
        let etag = HeaderValue::from_str(&format!("\"{}\"", &digest[..32]))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
        let gzip = a.compress.then(|| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(a.bytes);
            encoder.finish().unwrap_or_default()
        });
        Prepared { etag, gzip }
    })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The answer to `GET /app/{name}` with the request's `headers`.
pub fn answer(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the app / 应用中没有此文件",
        )
            .into_response();
    };
    let asset = &ASSETS[index];
    let prepared = prepared(index);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == prepared.etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &prepared.gzip {
            Some(gzip) if accepts_gzip(headers) => {
                let mut r = gzip.clone().into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => asset.bytes.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, prepared.etag.clone());
    // Always revalidated: a new build is seen at once (the service worker is what works offline).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    if name == "sw.js" {
        // Its scope is the folder it is served from; said explicitly.
        h.insert("service-worker-allowed", HeaderValue::from_static("/app/"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn each_asset_of_the_build_is_served_with_its_content_type() {
        let built: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/app"))
                .map(|dir| {
                    dir.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        assert!(built.len() >= 9, "app/build wrote {built:?}");
        let expected = |name: &str| match name.rsplit('.').next() {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("webmanifest") => "application/manifest+json",
            Some("wasm") => "application/wasm",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            other => panic!("{name}: no content type known for {other:?}"),
        };
        for name in &built {
            let response = answer(name, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                expected(name),
                "{name}"
            );
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(response.headers().contains_key(header::ETAG), "{name}");
            let on_disk =
                std::fs::read(format!("{}/assets/app/{name}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap_or_default();
            assert_eq!(
                body(response).await,
                on_disk,
                "{name} is not the built file"
            );
        }
        // And nothing is embedded that the build did not write.
        for a in &ASSETS {
            assert!(built.iter().any(|b| b == a.name), "{} is not built", a.name);
        }
    }

    #[test]
    fn the_page_forbids_foreign_scripts_and_allows_its_webassembly() {
        let response = answer("index.html", &HeaderMap::new());
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }

    #[tokio::test]
    async fn gzip_when_accepted_and_not_modified_when_the_etag_matches() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1, gzip;q=0.8"),
        );
        let response = answer("automerge.wasm", &headers);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let etag = response.headers()[header::ETAG].clone();
        let zipped = body(response).await;
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(zipped.as_slice()),
            &mut plain,
        )
        .unwrap_or_default();
        assert_eq!(
            plain,
            asset("automerge.wasm").map(|a| a.bytes).unwrap_or_default()
        );
        assert!(
            zipped.len() < plain.len() / 2,
            "gzip: {} of {}",
            zipped.len(),
            plain.len()
        );

        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        let refused = answer("automerge.wasm", &headers);
        assert!(!refused.headers().contains_key(header::CONTENT_ENCODING));

        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            answer("automerge.wasm", &headers).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            answer("no-such.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
