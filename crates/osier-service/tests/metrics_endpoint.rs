//! The Prometheus endpoint, scraped over HTTP as Prometheus would: RPC metrics under
//! oslo.metrics' names, labels and buckets, and the launcher's health gauge.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::json;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One test: the recorder is process-wide, so everything is checked in one scrape.
#[test]
fn a_scrape_shows_rpc_metrics_under_oslo_names_and_refuses_port_zero() {
    assert!(matches!(
        osier_service::metrics_endpoint(([127, 0, 0, 1], 0).into()),
        Err(osier_service::MetricsEndpointError::NoPort(_))
    ));
    let addr = free_port();
    let endpoint = osier_service::metrics_endpoint(addr).unwrap();
    assert_eq!(endpoint.address(), addr);
    assert!(
        matches!(
            osier_service::metrics_endpoint(free_port()),
            Err(osier_service::MetricsEndpointError::AlreadyInstalled)
                | Err(osier_service::MetricsEndpointError::Listen { .. })
        ),
        "a second recorder is refused"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Transport::new("memory://").unwrap();
        let target = Target::default().with_topic("metered").with_server("s1");
        let server = RpcServer::builder(&t, target)
            .endpoint(
                Endpoint::new("api")
                    .method("add", |_ctx, args: serde_json::Value| {
                        Ok(args["a"].as_i64().unwrap_or(0) + 1)
                    })
                    .method("boom", |_ctx, _args: serde_json::Value| {
                        Err::<i64, _>(EndpointError::new("ValueError", "no"))
                    }),
            )
            .build()
            .unwrap();
        server.start().await.unwrap();
        let client = RpcClient::new(&t, Target::topic("metered")).timeout(Duration::from_secs(5));
        let ctx = RequestContext::new();
        for _ in 0..3 {
            let v: i64 = client.call(&ctx, "add", json!({"a": 1})).await.unwrap();
            assert_eq!(v, 2);
        }
        assert!(client.call::<i64>(&ctx, "boom", json!({})).await.is_err());
        // A method no endpoint has: oslo counts nothing on the server for it.
        assert!(client
            .call::<i64>(&ctx, "crafted_name_1", json!({}))
            .await
            .is_err());
        server.stop().await.unwrap();
        server.wait().await.unwrap();
    });

    let body = scrape(addr);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let line = |name: &str, parts: &[&str]| {
        body.lines()
            .find(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
    };
    let start = line(
        "oslo_messaging_rpc_client_invocation_start_total{",
        &[
            r#"method="add""#,
            r#"call_type="call""#,
            r#"topic="metered""#,
            r#"server="None""#,
            r#"fanout="False""#,
        ],
    )
    .unwrap_or_else(|| panic!("client start counter in\n{body}"));
    assert!(start.ends_with(" 3"), "{start}");
    let exc = line(
        "oslo_messaging_rpc_client_exception_total{",
        &[r#"method="boom""#, r#"exception="ValueError""#],
    )
    .unwrap_or_else(|| panic!("client exception counter in\n{body}"));
    assert!(exc.ends_with(" 1"), "{exc}");
    let served = line(
        "oslo_messaging_rpc_server_invocation_end_total{",
        &[r#"method="add""#, r#"endpoint="api""#, r#"server="s1""#],
    )
    .unwrap_or_else(|| panic!("server end counter in\n{body}"));
    assert!(served.ends_with(" 3"), "{served}");
    assert!(
        line(
            "oslo_messaging_rpc_server_exception_total{",
            &[r#"method="boom""#, r#"exception="ValueError""#]
        )
        .is_some(),
        "{body}"
    );
    assert!(
        line(
            "oslo_messaging_rpc_server_processing_seconds_bucket{",
            &[r#"method="add""#, r#"le="0.01""#]
        )
        .is_some(),
        "oslo.metrics' buckets: {body}"
    );
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("oslo_messaging_rpc_server") && l.contains("crafted_name_1")),
        "no server label for a method no endpoint has"
    );
    assert!(body.contains("# HELP oslo_messaging_rpc_client_invocation_start_total"));
}
