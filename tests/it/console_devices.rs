//! The console's devices page (issue 15 point 7, "shown as a QR code in the console"; issue
//! 14): a dispatcher issues a one-time enrollment code for a technician's new device, seen
//! once with its expiry in branch time, the command and a QR code; the code enrolls a real
//! device; the device is then listed. An analyst reads the list but gets no form and a 403;
//! a post without the CSRF token changes nothing; the audit log names who issued it.

use std::time::Duration;

use fieldsync_client::{ClientTls, Device};
use reqwest::StatusCode;

use crate::console::{Browser, audit_actions, console_server};
use fieldsync_tests::{eventually, temp_dir};

/// The code on the page: `XXXX-XXXX-XXXX` inside `<p class="code" id="code"><strong>`.
fn code_on(page: &str) -> Option<String> {
    let at = page.find("id=\"code\"><strong>")? + "id=\"code\"><strong>".len();
    let rest = &page[at..];
    Some(rest[..rest.find('<')?].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_issues_an_enrollment_code_in_the_console_and_it_enrolls_a_device_once()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(&dir.path().join("edge")).await?;

    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get("/devices").await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"no-devices\""), "{}", page.body);
    let csrf = page.csrf()?;

    // Without the form's token: refused, and no code exists.
    let forged = li
        .post(
            "/devices/code",
            &[("technician", "tech-zhang"), ("csrf", "forged")],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(code_on(&forged.body).is_none());

    // A technician id that is not one: refused in words, what was typed kept.
    let bad = li
        .post(
            "/devices/code",
            &[("technician", "tech zhang!"), ("csrf", &csrf)],
        )
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("id=\"notice\"") && bad.body.contains("value=\"tech zhang!\""));
    assert!(code_on(&bad.body).is_none());

    let issued = li
        .post(
            "/devices/code",
            &[("technician", "tech-zhang"), ("csrf", &csrf)],
        )
        .await?;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let code = code_on(&issued.body).expect("the code is shown");
    assert_eq!(code.len(), 14, "{code}");
    assert!(issued.body.contains("<svg") && issued.body.contains("id=\"enrollment-qr\""));
    assert!(
        issued.body.contains(&format!(
            "fieldsync-tech init --server {} --code {code}",
            server.ws_url()
        )),
        "{}",
        issued.body
    );
    // The default lifetime (a day) from 10:00 Shanghai time, said in branch time.
    assert!(
        issued
            .body
            .contains("<span id=\"code-expires\">2026-11-21 10:00"),
        "{}",
        issued.body
    );
    // Shown once: the list page does not show it again.
    let again = li.get("/devices").await?;
    assert!(code_on(&again.body).is_none());

    // The code enrolls a real device over the network, once.
    let tls = ClientTls::system();
    let (device, enrolled) = Device::enroll_with_code(
        dir.path().join("zhang.sqlite"),
        dir.path().join("zhang.key"),
        &server.ws_url(),
        &tls,
        &code,
    )
    .await?;
    assert_eq!(enrolled.technician.to_string(), "tech-zhang");
    device.close().await;
    let twice = Device::enroll_with_code(
        dir.path().join("zhang2.sqlite"),
        dir.path().join("zhang2.key"),
        &server.ws_url(),
        &tls,
        &code,
    )
    .await;
    assert!(twice.is_err(), "a used code enrolled a second device");
    let listed = eventually(Duration::from_secs(10), "the device is listed", || async {
        let page = li.get("/devices").await.ok()?;
        (page.body.contains("id=\"devices\"") && page.body.contains("tech-zhang")).then_some(page)
    })
    .await?;
    assert!(listed.body.contains("/technicians/tech-zhang"));

    // An analyst reads the list, gets no form, and a post is refused.
    let zhao = Browser::signed_in(&server, "zhao").await?;
    let read = zhao.get("/devices").await?;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body.contains("tech-zhang") && !read.body.contains("id=\"code-form\""));
    let zhao_csrf = read.csrf()?;
    let refused = zhao
        .post(
            "/devices/code",
            &[("technician", "tech-zhao"), ("csrf", &zhao_csrf)],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The audit log: one code issued, by li (the code itself is never written there).
    let wang = Browser::signed_in(&server, "wang").await?;
    let csv = wang.get("/audit.csv").await?.body;
    let issued: Vec<(String, String)> = audit_actions(&csv)
        .into_iter()
        .filter(|(_, action)| action == "enrollment_code_issue")
        .collect();
    assert_eq!(
        issued,
        [("li".to_owned(), "enrollment_code_issue".to_owned())],
        "{csv}"
    );
    assert!(!csv.contains(&code));
    server.stop().await
}
