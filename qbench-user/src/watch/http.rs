//! The minimal HTTP/1.1 responder behind `--metrics`: `GET /metrics` answers the exposition,
//! anything else 404 (or 405 for another method), one response per connection, then close.
//! A scraper needs nothing more, and a web framework would be most of the binary.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::metrics::{CONTENT_TYPE, Metrics};

/// A request head larger than this is refused (a scraper's is a few hundred bytes).
const MAX_HEAD: usize = 8192;
/// A client that sends no complete head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let reply = response(&head, || metrics.encode());
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// The whole response to a request `head` (pure, for tests); `body` is called for /metrics only.
pub fn response(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        (_, _) if !text.contains("\r\n\r\n") => ("400 Bad Request", "text/plain", String::new()),
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, body()),
        (_, "/metrics") => ("405 Method Not Allowed", "text/plain", String::new()),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n".to_string(),
        ),
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        reply.extend_from_slice(body.as_bytes());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> String {
        let reply = String::from_utf8(response(head.as_bytes(), || "m 1\n".into())).expect("utf8");
        reply.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn routes() {
        for (head, want) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            ("GET /metrics?x=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK"),
            ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            ("GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                "POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            ("GET /metrics HTTP/1.1\r\n", "HTTP/1.1 400 Bad Request"),
            ("", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(head), want, "{head:?}");
        }
        let reply = response(b"GET /metrics HTTP/1.1\r\n\r\n", || "m 1\n".into());
        let reply = String::from_utf8(reply).expect("utf8");
        assert!(reply.contains("Content-Length: 4\r\n") && reply.ends_with("\r\n\r\nm 1\n"));
        assert!(reply.contains("Connection: close\r\n"));
        let head = String::from_utf8(response(b"HEAD /metrics HTTP/1.1\r\n\r\n", || {
            "m 1\n".into()
        }))
        .expect("utf8");
        assert!(head.ends_with("\r\n\r\n"));
    }
}
