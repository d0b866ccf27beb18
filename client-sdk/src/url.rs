//! The server's HTTP address from the WebSocket address the device syncs with: the same
//! host and port, `ws` as `http` and `wss` as `https`.

/// The HTTP URL of `path` on the server of a WebSocket URL.
pub(crate) fn http_url(ws_url: &str, path: &str) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(ws_url).ok()?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    url.set_path(path);
    url.set_query(None);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_follows_the_websocket_scheme() {
        assert_eq!(
            http_url("ws://127.0.0.1:3030/sync", "/api/me").map(|u| u.to_string()),
            Some("http://127.0.0.1:3030/api/me".into())
        );
        assert_eq!(
            http_url("wss://edge.example/sync?token=x", "/api/me").map(|u| u.to_string()),
            Some("https://edge.example/api/me".into())
        );
        assert!(http_url("ftp://x", "/").is_none());
    }
}
