//! TLS (`ssl=true`, `ssl_ca_file`, and client certificates: `ssl_cert_file`, `ssl_key_file`)
//! for real: the test puts a TLS terminator with a throw-away certificate for `localhost` in
//! front of the local broker (one that requires a client certificate signed by a throw-away CA
//! for mutual TLS), and osier connects through it with lapin's rustls support. The broker
//! itself needs no TLS set-up.

use std::sync::Arc;
use std::time::Duration;

use osier_messaging::{BrokerError, MessagingError, RequestContext, RpcClient, Target, Transport};
use serde_json::json;
use tokio_rustls::rustls;

mod common;
use common::{bridge, clean_up, echo_server, failed_cast};

fn temp_file(what: &str, content: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("osier-tls-{what}-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, content).unwrap();
    path
}

/// A throw-away CA for client certificates, and one client certificate it signed.
struct ClientPki {
    ca_der: rustls::pki_types::CertificateDer<'static>,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

fn client_pki() -> ClientPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["osier-client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    ClientPki {
        ca_der: ca.der().clone(),
        cert_file: temp_file("client-cert", &client.pem()),
        key_file: temp_file("client-key", &client_key.serialize_pem()),
    }
}

/// A TLS listener on 127.0.0.1 forwarding to the broker; returns its port and the CA file.
async fn tls_terminator() -> (u16, std::path::PathBuf) {
    tls_terminator_with(None).await
}

/// [`tls_terminator`] that, given a CA, requires client certificates it signed.
async fn tls_terminator_with(
    client_ca: Option<rustls::pki_types::CertificateDer<'static>>,
) -> (u16, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_file = temp_file("ca", &cert.cert.pem());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
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

/// Mutual TLS: with `ssl_cert_file` and `ssl_key_file` the client presents its certificate and
/// a broker (here its TLS terminator) that requires one lets the call through; without them
/// the handshake fails with a TLS error.
#[test]
fn client_certificates_authenticate_the_client() {
    let top = format!("osier-test-mtls-{}", uuid::Uuid::new_v4().simple());
    bridge().tokio().block_on(async {
        let pki = client_pki();
        let (port, ca) = tls_terminator_with(Some(pki.ca_der.clone())).await;
        let base = format!(
            "rabbit://{}:{}@localhost:{port}/?ssl=true&ssl_ca_file={}",
            common::broker().user,
            common::broker().pass,
            ca.display()
        );
        let anonymous = Transport::new(&base).unwrap();
        let e = failed_cast(&anonymous).await;
        assert!(matches!(&e, MessagingError::Broker(_)), "{e:?}");

        let url = format!(
            "{base}&ssl_cert_file={}&ssl_key_file={}",
            pki.cert_file.display(),
            pki.key_file.display()
        );
        let t = Transport::new(&url).unwrap();
        let s = echo_server(&t, &top, "s");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let v: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"mtls": true}))
            .await
            .unwrap();
        assert_eq!(v, json!({"mtls": true}));
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&[top.clone(), format!("{top}.s")], &[]).await;

        // rabbit_login_method=EXTERNAL reaches the broker: this one (behind the terminator,
        // without its TLS plugin) does not offer it and closes the connection, where the same
        // URL with the default mechanism just worked.
        let external = Transport::new(&format!("{url}&rabbit_login_method=EXTERNAL")).unwrap();
        let e = failed_cast(&external).await;
        assert!(matches!(&e, MessagingError::Broker(_)), "{e:?}");
        for f in [ca, pki.cert_file, pki.key_file] {
            let _ = std::fs::remove_file(f);
        }
    });
}

/// A key file without a certificate is refused when the transport is made, naming the option.
#[test]
fn a_key_without_a_certificate_is_refused() {
    let e = Transport::new("rabbit://h/?ssl=true&ssl_key_file=/k.pem").unwrap_err();
    assert!(
        matches!(&e, MessagingError::InvalidOption { option, .. } if option == "ssl_key_file"),
        "{e:?}"
    );
}
