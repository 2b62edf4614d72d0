//! A `CONNECT` relay on 127.0.0.1 for the length of one network operation.
//!
//! libgit2 is told it is a proxy. It tunnels TLS to exactly one `host:port` and drops every
//! socket when `stop` fires, which makes a libgit2 call blocked on a silent server return.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest `CONNECT` request head we read.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its `CONNECT` head.
const HEAD_DEADLINE: Duration = Duration::from_secs(30);
/// Most tunnels one operation opens (libgit2 opens one per HTTP connection).
const MAX_TUNNELS: usize = 64;

/// A running relay; everything stops when `stop` fires (the caller drops its guard).
#[derive(Debug)]
pub(crate) struct Relay {
    addr: SocketAddr,
}

impl Relay {
    /// Listen on 127.0.0.1 and tunnel to `target` only, until `stop` fires.
    pub(crate) async fn start(
        target: (String, u16),
        stop: CancellationToken,
    ) -> std::io::Result<Relay> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(accept_loop(listener, target, stop));
        Ok(Relay { addr })
    }

    /// The proxy URL to give libgit2.
    pub(crate) fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn accept_loop(listener: TcpListener, target: (String, u16), stop: CancellationToken) {
    let mut tunnels = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                // Only libgit2 in this process should be talking to us.
                if !client.peer_addr().is_ok_and(|a| a.ip().is_loopback()) || tunnels.len() >= MAX_TUNNELS {
                    continue;
                }
                tunnels.spawn(tunnel(client, target.clone(), stop.clone()));
            }
            Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
        }
    }
    // Dropping the set aborts every tunnel, closing both of its sockets.
    tunnels.abort_all();
}

async fn tunnel(mut client: TcpStream, target: (String, u16), stop: CancellationToken) {
    let work = async {
        let head = tokio::time::timeout(HEAD_DEADLINE, read_head(&mut client))
            .await
            .ok()??;
        let Some(asked) = connect_target(&head) else {
            let _ = client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                .await;
            return None;
        };
        if !same_target(&asked, &target) {
            tracing::debug!(asked = %asked, "git relay: refusing a tunnel to another host");
            let _ = client
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await;
            return None;
        }
        let mut upstream = match TcpStream::connect((target.0.as_str(), target.1)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, host = %target.0, "git relay: connecting upstream failed");
                let _ = client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return None;
            }
        };
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .ok()?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        Some(())
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = work => {}
    }
}

/// Read up to the blank line that ends the request head (libgit2 sends nothing after it
/// before our reply).
async fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || client.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// `host:port` of a `CONNECT host:port HTTP/1.1` head.
fn connect_target(head: &str) -> Option<String> {
    let mut parts = head.lines().next()?.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    method
        .eq_ignore_ascii_case("CONNECT")
        .then(|| target.to_string())
}

fn same_target(asked: &str, (host, port): &(String, u16)) -> bool {
    let Some((asked_host, asked_port)) = asked.rsplit_once(':') else {
        return false;
    };
    let asked_host = asked_host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    asked_host.eq_ignore_ascii_case(host) && asked_port.parse::<u16>().ok() == Some(*port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_heads() {
        assert_eq!(
            connect_target("CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n")
                .as_deref(),
            Some("github.com:443")
        );
        assert_eq!(connect_target("GET http://x/ HTTP/1.1\r\n\r\n"), None);
        let target = ("github.com".to_string(), 443);
        assert!(same_target("GitHub.com:443", &target));
        assert!(!same_target("github.com:444", &target));
        assert!(!same_target("evil.example:443", &target));
        assert!(same_target("[::1]:8443", &("::1".to_string(), 8443)));
    }

    #[tokio::test]
    async fn tunnels_to_the_target_only_and_cuts_everything_on_stop() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = upstream.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let relay = Relay::start(("127.0.0.1".into(), port), stop.clone())
            .await
            .unwrap();
        let addr = relay.proxy_url().trim_start_matches("http://").to_string();

        let mut refused = TcpStream::connect(&addr).await.unwrap();
        refused
            .write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        refused.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");

        let mut client = TcpStream::connect(&addr).await.unwrap();
        client
            .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (mut server_side, _) = upstream.accept().await.unwrap();
        let mut ok = [0u8; 39];
        client.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok[..], b"HTTP/1.1 200 Connection Established\r\n\r\n");
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server_side.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        // The upstream never answers; stop must close the client's socket.
        stop.cancel();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "the tunnel was not closed: {n:?}"
        );
    }
}
