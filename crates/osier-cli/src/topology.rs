//! `osier topology`: what oslo.messaging has declared on the broker for a topic (its
//! exchanges, queues, bindings and consumers), read from RabbitMQ's management HTTP API. The
//! names are oslo's: the control exchange (`openstack` unless configured) and
//! `<topic>_fanout`; the queues `<topic>`, `<topic>.<server>`, `<topic>_fanout_<id>`, and for
//! notifications `<topic>.<priority>`.

use std::time::Duration;

use base64::Engine;
use clap::Args;
use osier_messaging::Transport;
use serde_json::{json, Value};

use crate::exit::Exit;
use crate::{Done, Outcome};

/// `osier topology`.
#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The management API (default: http://<the transport's first host>:15672). The
    /// transport URL's user and password log in.
    #[arg(long)]
    pub management_url: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why the management API gave nothing.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(
        "RabbitMQ's management API does not answer at {url} ({why}). Enable it on the broker with \
         `rabbitmq-plugins enable rabbitmq_management` (it listens on port 15672), or point \
         --management-url at it"
    )]
    Unreachable { url: String, why: String },
    #[error("the management API at {url} refused the login of user {user:?} (HTTP 401): the user needs the management tag")]
    Refused { url: String, user: String },
    #[error("the management API at {url} answered {what}")]
    Bad { url: String, what: String },
}

impl From<ApiError> for Outcome {
    fn from(e: ApiError) -> Self {
        let exit = match e {
            ApiError::Unreachable { .. } | ApiError::Refused { .. } => Exit::Unreachable,
            ApiError::Bad { .. } => Exit::Failed,
        };
        Outcome::failed(exit, e.to_string())
    }
}

struct Api {
    base: String,
    auth: String,
    user: String,
    agent: ureq::Agent,
}

impl Api {
    fn get(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let url = format!("{}{path}", self.base);
        let r = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth)
            .call();
        let mut resp = match r {
            Ok(r) => r,
            Err(ureq::Error::StatusCode(401)) => {
                return Err(ApiError::Refused {
                    url: self.base.clone(),
                    user: self.user.clone(),
                })
            }
            Err(ureq::Error::StatusCode(code)) => {
                return Err(ApiError::Bad {
                    url: self.base.clone(),
                    what: format!("HTTP {code} for {path}"),
                })
            }
            Err(e) => {
                return Err(ApiError::Unreachable {
                    url: self.base.clone(),
                    why: e.to_string(),
                })
            }
        };
        let v: Value = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .map_err(|e| ApiError::Bad {
                url: self.base.clone(),
                what: format!("something that is not JSON for {path}: {e}"),
            })?;
        match v {
            Value::Array(a) => Ok(a),
            _ => Err(ApiError::Bad {
                url: self.base.clone(),
                what: format!("something that is not a list for {path}"),
            }),
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Whether a queue is one oslo declares for `topic`.
fn oslo_queue(topic: &str, name: &str) -> bool {
    name == topic
        || name
            .strip_prefix(topic)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("_fanout_"))
}

/// Reads and prints the topic's part of the broker.
pub fn topology(transport: &Transport, a: &TopologyArgs) -> Done {
    let url = transport.url();
    let host = url.hosts().first();
    let (user, pass) = host
        .map(|h| {
            (
                h.username.clone().unwrap_or_default(),
                h.password.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    let base = a
        .management_url
        .clone()
        .unwrap_or_else(|| {
            let name = host.map_or("127.0.0.1", |h| h.hostname.as_str());
            let name = if name.contains(':') {
                format!("[{name}]")
            } else {
                name.to_string()
            };
            format!("http://{name}:15672")
        })
        .trim_end_matches('/')
        .to_string();
    if !base.starts_with("http://") {
        return Err(Outcome::usage("--management-url must be an http:// URL"));
    }
    // oslo's empty virtual host is RabbitMQ's default, `/`.
    let vhost_name = url.virtual_host().filter(|v| !v.is_empty()).unwrap_or("/");
    let vhost =
        percent_encoding::utf8_percent_encode(vhost_name, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let api = Api {
        auth: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ),
        user,
        base,
        agent: ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(true)
            .build()
            .into(),
    };
    let exchanges = api.get(&format!("/api/exchanges/{vhost}"))?;
    let queues = api.get(&format!("/api/queues/{vhost}"))?;
    let bindings = api.get(&format!("/api/bindings/{vhost}"))?;
    let topic = &a.topic;
    let control = transport.options().control_exchange.clone();
    let fanout = format!("{topic}_fanout");
    let exchanges: Vec<Value> = exchanges
        .into_iter()
        .filter(|e| {
            let n = text(e, "name");
            n == control || n == fanout
        })
        .map(|e| json!({"name": text(&e, "name"), "type": text(&e, "type"), "durable": e.get("durable")}))
        .collect();
    let queues: Vec<Value> = queues
        .into_iter()
        .filter(|q| oslo_queue(topic, &text(q, "name")))
        .map(|q| {
            json!({
                "name": text(&q, "name"),
                "messages": q.get("messages").cloned().unwrap_or(Value::Null),
                "consumers": q.get("consumers").cloned().unwrap_or(Value::Null),
                "durable": q.get("durable"),
                "type": q.get("type").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let names: Vec<String> = queues.iter().map(|q| text(q, "name")).collect();
    let bindings: Vec<Value> = bindings
        .into_iter()
        .filter(|b| text(b, "destination_type") == "queue" && names.contains(&text(b, "destination")))
        .filter(|b| !text(b, "source").is_empty())
        .map(|b| json!({"exchange": text(&b, "source"), "routing_key": text(&b, "routing_key"), "queue": text(&b, "destination")}))
        .collect();
    if a.json {
        return Ok(Outcome::output(
            json!({"topic": topic, "exchanges": exchanges, "queues": queues, "bindings": bindings})
                .to_string(),
        ));
    }
    let mut out = format!(
        "topic {topic} on {} (vhost {})\n\nexchanges:\n",
        transport.url(),
        vhost_name
    );
    for e in &exchanges {
        out.push_str(&format!("  {} ({})\n", text(e, "name"), text(e, "type")));
    }
    out.push_str("\nqueues (messages ready, consumers):\n");
    for q in &queues {
        out.push_str(&format!(
            "  {}  {} messages, {} consumers\n",
            text(q, "name"),
            q["messages"],
            q["consumers"]
        ));
    }
    out.push_str("\nbindings:\n");
    for b in &bindings {
        out.push_str(&format!(
            "  {} --[{}]--> {}\n",
            text(b, "exchange"),
            text(b, "routing_key"),
            text(b, "queue")
        ));
    }
    if queues.is_empty() {
        out.push_str(&format!(
            "\nno queue of topic {topic}: no server or listener has declared one yet\n"
        ));
    }
    Ok(Outcome::output(out.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::oslo_queue;

    #[test]
    fn the_topics_queues_are_the_ones_oslo_names() {
        for q in [
            "compute",
            "compute.host-1",
            "compute_fanout_1a2b",
            "compute.info",
        ] {
            assert!(oslo_queue("compute", q), "{q}");
        }
        for q in ["computer", "reply_1a2b", "scheduler"] {
            assert!(!oslo_queue("compute", q), "{q}");
        }
    }
}
