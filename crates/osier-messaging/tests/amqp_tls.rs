//! TLS (`ssl=true`, `ssl_ca_file`) for real: the test puts a TLS terminator with a
//! throw-away certificate for `localhost` in front of the local broker, and osier connects
//! through it with lapin's rustls support. The broker itself needs no TLS set-up.

use std::sync::Arc;
use std::time::Duration;

use osier_messaging::{BrokerError, MessagingError, RequestContext, RpcClient, Target, Transport};
use serde_json::json;
use tokio_rustls::rustls;

mod common;
use common::{bridge, clean_up, echo_server, failed_cast};

/// A TLS listener on 127.0.0.1 forwarding to the broker; returns its port and the CA file.
async fn tls_terminator() -> (u16, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_file = std::env::temp_dir().join(format!("osier-tls-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&ca_file, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker_addr = common::broker().addr();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let broker_addr = broker_addr.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return; // a client that did not trust us: its problem, not the proxy's
                };
                let Ok(mut broker) = tokio::net::TcpStream::connect(broker_addr).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    (port, ca_file)
}

/// `ssl=true` with `ssl_ca_file`: a call and its reply go through TLS.
#[test]
fn calls_go_through_tls_with_the_configured_ca() {
    let top = format!("osier-test-tls-{}", uuid::Uuid::new_v4().simple());
    bridge().tokio().block_on(async {
        let (port, ca) = tls_terminator().await;
        let url = format!(
            "rabbit://{}:{}@localhost:{port}/?ssl=true&ssl_ca_file={}",
            common::broker().user,
            common::broker().pass,
            ca.display()
        );
        let t = Transport::new(&url).unwrap();
        let s = echo_server(&t, &top, "s");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let v: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"tls": true}))
            .await
            .unwrap();
        assert_eq!(v, json!({"tls": true}));
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        // Delete the topic queues through the same TLS transport's broker, plainly.
        clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
        let _ = std::fs::remove_file(ca);
    });
}

/// A server certificate the client does not trust is a `BrokerError::Tls`, not retried forever.
#[test]
fn an_untrusted_certificate_is_a_tls_error() {
    bridge().tokio().block_on(async {
        let (port, ca) = tls_terminator().await;
        let _ = std::fs::remove_file(ca); // trust only the system roots
        let t =
            Transport::new(&format!("rabbit://guest:guest@localhost:{port}/?ssl=true")).unwrap();
        let e = failed_cast(&t).await;
        assert!(
            matches!(&e, MessagingError::Broker(BrokerError::Tls { .. })),
            "{e:?}"
        );
    });
}

/// A CA file that cannot be read is named in the error.
#[test]
fn a_missing_ca_file_is_a_tls_error_naming_it() {
    let t = Transport::new(
        "rabbit://guest:guest@localhost:5671/?ssl=true&ssl_ca_file=/nonexistent/ca.pem",
    )
    .unwrap();
    bridge().tokio().block_on(async {
        let e = failed_cast(&t).await;
        let text = e.to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    });
}

/// Client certificates are refused at load time with a clear error, not ignored.
#[test]
fn client_certificates_are_refused_clearly() {
    let e = Transport::new("rabbit://h/?ssl=true&ssl_cert_file=/c.pem&ssl_key_file=/k.pem")
        .unwrap_err();
    assert!(e.to_string().contains("ssl_cert_file"), "{e}");
}
