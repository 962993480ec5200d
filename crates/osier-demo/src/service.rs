//! The metering service of each stage, assembled from its parts: [`build`] returns what a
//! launcher runs. Stages 0 to 2 are a [`GreenService`] (their lifecycle is green code, as an
//! eventlet service's is); stage 3 is an async [`Service`].

use std::sync::Arc;
use std::time::Duration;

use osier_messaging::{NotificationListener, RpcServer, Target, Transport};
use osier_service::{BoxError, Green, GreenService, Service};

use crate::aggregator::{AsyncAggregator, GreenAggregator, Round};
use crate::api;
use crate::listener::{self, Refused};
use crate::stage::Stage;
use crate::store::{AsyncStore, BlockingStore, DbUrl};

/// What a metering service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where samples are kept.
    pub db: DbUrl,
    /// The host name the RPC server answers as (`Target.server`).
    pub host: String,
    /// How often the periodic task folds samples into aggregates.
    pub aggregate_every: Duration,
}

/// Builds the service of `stage`, ready for a launcher (`Arc<dyn Service>` is a `Service`);
/// its listener counts what it drops in `refused`. Call it on the launcher's tokio runtime:
/// the async stores connect here.
pub async fn build(
    stage: Stage,
    transport: &Transport,
    bridge: &osier_bridge::Bridge,
    config: &Config,
    refused: Arc<Refused>,
) -> Result<Arc<dyn Service>, BoxError> {
    let target = Target::topic(api::TOPIC).with_server(&config.host);
    let server = |endpoint| {
        RpcServer::builder(transport, target.clone())
            .bridge(bridge.clone())
            .endpoint(endpoint)
            .build()
    };
    let listen = |endpoint| listener::listener(transport, endpoint, bridge.clone());
    let every = config.aggregate_every;
    let metering: Arc<dyn Service> = match stage {
        Stage::AllGreen | Stage::AsyncListener => {
            let db = config.db.clone();
            let store = Arc::new(
                bridge
                    .run_blocking(move || BlockingStore::open(&db))
                    .await??,
            );
            let endpoint = if stage == Stage::AllGreen {
                listener::green_on_blocking(store.clone(), refused.clone())
            } else {
                listener::async_on_blocking(store.clone(), bridge.clone(), refused.clone())
            };
            let s = store.clone();
            let round: Round = Arc::new(move || {
                let s = s.clone();
                osier_green::tpool::execute(move || s.aggregate())
            });
            Arc::new(Green::new(
                GreenMetering {
                    server: server(api::green_on_blocking(store))?,
                    listener: listen(endpoint),
                    aggregator: GreenAggregator::new(every, round),
                },
                bridge.clone(),
            ))
        }
        Stage::AsyncStorage => {
            let store = AsyncStore::open(&config.db).await?;
            let s = store.clone();
            let round: Round = Arc::new(move || {
                osier_bridge::yield_future(s.aggregate())
                    .map_err(|e| crate::store::StoreError::Interrupted(e.to_string()))?
            });
            Arc::new(Green::new(
                GreenMetering {
                    server: server(api::green_on_async(store.clone()))?,
                    listener: listen(listener::async_on_async(store, refused.clone())),
                    aggregator: GreenAggregator::new(every, round),
                },
                bridge.clone(),
            ))
        }
        Stage::AsyncMain => {
            let store = AsyncStore::open(&config.db).await?;
            Arc::new(AsyncMetering {
                server: server(api::async_on_async(store.clone()))?,
                listener: listen(listener::async_on_async(store.clone(), refused)),
                aggregator: AsyncAggregator::new(every, store),
            })
        }
    };
    Ok(metering)
}

/// Stages 0 to 2: the lifecycle runs in green threads, and waits on async parts through
/// `yield_future`, as an eventlet service with an asyncio part would (aioeventlet).
#[derive(Debug)]
pub struct GreenMetering {
    server: RpcServer,
    listener: NotificationListener,
    aggregator: GreenAggregator,
}

impl GreenService for GreenMetering {
    fn start(&self) -> Result<(), BoxError> {
        osier_bridge::yield_future(self.listener.start())??;
        osier_bridge::yield_future(self.server.start())??;
        self.aggregator.start();
        tracing::info!("metering service started (green)");
        Ok(())
    }

    fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        osier_bridge::yield_future(self.server.stop())??;
        osier_bridge::yield_future(self.listener.stop())?;
        self.aggregator.stop();
        Ok(())
    }

    fn wait(&self) -> Result<(), BoxError> {
        osier_bridge::yield_future(self.server.wait())??;
        osier_bridge::yield_future(self.listener.wait())?;
        self.aggregator.wait();
        tracing::info!("metering service stopped");
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        healthy(&self.server, &self.listener)
    }
}

fn healthy(server: &RpcServer, listener: &NotificationListener) -> Result<(), String> {
    if let Some(p) = server.health().problem() {
        return Err(format!("RPC server: {p}"));
    }
    if let Some(p) = listener.health().problem() {
        return Err(format!("notification listener: {p}"));
    }
    Ok(())
}

/// Stage 3: every part async.
#[derive(Debug)]
pub struct AsyncMetering {
    server: RpcServer,
    listener: NotificationListener,
    aggregator: AsyncAggregator,
}

#[async_trait::async_trait]
impl Service for AsyncMetering {
    async fn start(&self) -> Result<(), BoxError> {
        self.listener.start().await?;
        self.server.start().await?;
        self.aggregator.start();
        tracing::info!("metering service started (async)");
        Ok(())
    }

    async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        self.server.stop().await?;
        self.listener.stop().await;
        self.aggregator.stop();
        Ok(())
    }

    async fn wait(&self) -> Result<(), BoxError> {
        self.server.wait().await?;
        self.listener.wait().await;
        self.aggregator.wait().await;
        tracing::info!("metering service stopped");
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        healthy(&self.server, &self.listener)
    }
}
