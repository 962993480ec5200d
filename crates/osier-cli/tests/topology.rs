//! `osier topology` against a real management API. It needs a broker with the management
//! plugin, which the default node does not have and a test must not turn on there: `cargo
//! xtask chaos` (and so `cargo xtask ci`) runs it against node 1 of its own test cluster,
//! setting OSIER_MANAGEMENT_URL and OSIER_TOPOLOGY_URL.

use std::process::Command;
use std::time::Duration;

use osier_messaging::{Endpoint, EndpointError, RpcServer, Target, Transport};
use serde_json::Value;

fn names(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn topology_shows_the_topics_exchanges_queues_bindings_and_consumers() {
    let (Ok(management), Ok(url)) = (
        std::env::var("OSIER_MANAGEMENT_URL"),
        std::env::var("OSIER_TOPOLOGY_URL"),
    ) else {
        eprintln!(
            "not run: needs a broker with the management API; `cargo xtask chaos` runs it \
             against its test cluster"
        );
        return;
    };
    let topic = format!("cli-topology-{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let t = Transport::new(&url).unwrap();
        let ep = Endpoint::new("e").method_async("m", |_c, _a: Value| async move {
            Ok::<_, EndpointError>(Value::Null)
        });
        let s = RpcServer::builder(&t, Target::topic(&topic).with_server("h1"))
            .endpoint(ep)
            .build()
            .unwrap();
        s.start().await.unwrap();
        s
    });
    // The management API's figures lag the broker by up to a few seconds.
    let mut last = Value::Null;
    let mut seen = false;
    for _ in 0..40 {
        let o = Command::new(env!("CARGO_BIN_EXE_osier"))
            .args(["topology", "--topic", &topic, "--json"])
            .args(["--management-url", &management])
            .env("OSIER_URL", &url)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        last = serde_json::from_slice(&o.stdout).unwrap();
        let queues = names(&last, "queues");
        let exchanges = names(&last, "exchanges");
        let consumed = last["queues"]
            .as_array()
            .is_some_and(|a| a.iter().all(|q| q["consumers"].as_u64().unwrap_or(0) >= 1));
        let bound = last["bindings"]
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["routing_key"] == topic.as_str()));
        if queues.contains(&topic)
            && queues.contains(&format!("{topic}.h1"))
            && queues
                .iter()
                .any(|q| q.starts_with(&format!("{topic}_fanout_")))
            && exchanges.contains(&format!("{topic}_fanout"))
            && exchanges.contains(&"openstack".to_string())
            && bound
            && consumed
        {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    rt.block_on(async {
        server.stop().await.unwrap();
        server.wait().await.unwrap();
    });
    assert!(
        seen,
        "the topology never showed the server's queues, bindings and consumers: {last:#}"
    );
}
