//! The console's devices page (issue 15 point 7, issue 14): `/devices` lists the branch's
//! enrolled devices (technician, device id, revoked or not) and, for dispatchers and
//! managers, issues a one-time enrollment code for a technician's new device
//! (`POST /devices/code`, the same `enrollment::issue_enrollment_code` as
//! `POST /api/enrollment-codes`, so the same audit entry). The code is shown once, with when
//! it expires (branch time), the command the technician runs and a QR code carrying
//! `fieldsync-enroll:?server=<sync URL>&code=<code>` for a device to scan. The answer to the
//! POST is the page itself, not a redirect: the code is stored nowhere, so it could not be
//! shown again. Analysts read the list; their POST is 403.

use std::fmt::Write as _;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use qrcodegen::{QrCode, QrCodeEcc};
use serde::Deserialize;

use super::Edge;
use super::enrollment::{IssuedCode, issue_enrollment_code};
use super::forms::{actor, posted, posted_by_field};
use crate::auth::{EVERYONE, STAFF};
use crate::console::{Chrome, Notice, Signed, render};

/// The page's routes (the edge's console router gives them its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route("/devices", get(devices_page))
        .route("/devices/code", post(code_post))
}

struct DeviceRow {
    technician: String,
    device: String,
    revoked: Option<String>,
}

/// A code just issued, as the page shows it once.
struct Issued {
    code: String,
    technician: String,
    expires: String,
    command: String,
    /// The QR code as inline SVG (server-made: the page runs no script).
    qr_svg: String,
}

#[derive(Template)]
#[template(path = "edge/devices.html")]
struct DevicesPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    devices: Vec<DeviceRow>,
    /// What was typed, kept when the code is refused.
    technician: String,
    issued: Option<Issued>,
    notice: Option<Notice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CodeForm {
    csrf: String,
    technician: String,
}

posted_by_field!(CodeForm);

/// The URL a device syncs with, from the address the browser used (its `Host`) and whether
/// the server speaks TLS: what `fieldsync-tech init --server` takes.
fn sync_url(edge: &Edge, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = if edge.node.tls.is_some() { "wss" } else { "ws" };
    format!("{scheme}://{host}/sync")
}

/// `text` as a QR code in SVG (one square per dark module, a four-module quiet zone).
pub(crate) fn qr_svg(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = qr.size();
    let full = size + 8;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                let _ = write!(path, "M{},{}h1v1h-1z", x + 4, y + 4);
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {full} {full}\" width=\"240\" \
         height=\"240\" role=\"img\" aria-labelledby=\"qr-title\" id=\"enrollment-qr\">\
         <title id=\"qr-title\">QR</title><rect width=\"{full}\" height=\"{full}\" \
         fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

fn devices_response(
    edge: &Edge,
    signed: &Signed,
    status: StatusCode,
    technician: String,
    issued: Option<Issued>,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let mut devices: Vec<DeviceRow> = edge
        .node
        .registry_read()
        .devices()
        .map(|d| DeviceRow {
            technician: d.technician.to_string(),
            device: d.device_id.to_string(),
            revoked: d.revoked_at.map(|at| console.time(at)),
        })
        .collect();
    devices.sort_by(|a, b| (&a.technician, &a.device).cmp(&(&b.technician, &b.device)));
    let page = DevicesPage {
        chrome: console.chrome(signed, lang.t("devices_page"), "/devices"),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        devices,
        technician,
        issued,
        notice,
    };
    render(status, &page)
}

/// `GET /devices`: the enrolled devices, and the code form for the staff.
async fn devices_page(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    match edge.console.require(&headers, "/devices", EVERYONE).await {
        Ok(signed) => devices_response(&edge, &signed, StatusCode::OK, String::new(), None, None),
        Err(answer) => answer,
    }
}

/// `POST /devices/code` (dispatcher, manager): a one-time enrollment code, shown once.
async fn code_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/devices", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    match issue_enrollment_code(&edge, &form.technician, &actor(&signed)).await {
        Ok(IssuedCode {
            code,
            technician,
            expires_at,
        }) => {
            let server = sync_url(&edge, &headers);
            let scan = format!("fieldsync-enroll:?server={server}&code={code}");
            let issued = Issued {
                command: format!("fieldsync-tech init --server {server} --code {code}"),
                qr_svg: qr_svg(&scan).unwrap_or_default(),
                expires: edge.console.time(expires_at.0),
                code,
                technician,
            };
            let notice = Some(Notice::done(lang, "done_code_issued"));
            devices_response(
                &edge,
                &signed,
                StatusCode::CREATED,
                String::new(),
                Some(issued),
                notice,
            )
        }
        Err(e) => {
            let notice = Some(Notice::refused(lang, &e));
            devices_response(&edge, &signed, e.status, form.technician, None, notice)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_of_dark_squares_in_a_quiet_zone() {
        let svg = qr_svg("fieldsync-enroll:?server=ws://branch:8080/sync&code=ABCD-EFGH-JKLM")
            .expect("encodes");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // Version 3 or so: 29 modules, 37 with the quiet zone; the finder pattern's corner
        // is dark at (4, 4).
        assert!(svg.contains("M4,4h1v1h-1z"), "{svg}");
        assert!(svg.matches("h1v1h-1z").count() > 100);
    }
}
