//! A raw HTTP/1.1 request, byte for byte, for the tests that drive `effc serve`
//! without a client library (so that what reaches the server is exactly this).

use std::fmt::Display;

/// `method path` with `Host`, `Connection: close`, `Content-Length` and
/// `headers`, then `body`.
pub fn request_bytes(
    host: impl Display,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    r += "\r\n";
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_has_its_length_and_headers() {
        let r = super::request_bytes("h:1", "POST", "/x", &[("A", "b".into())], b"hi");
        assert_eq!(
            r,
            b"POST /x HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\nContent-Length: 2\r\nA: b\r\n\r\nhi"
        );
    }
}
