//! A process's gRPC health that follows one dependency (the registry's
//! store, the executor's Docker engine): checked every period, and the
//! services named SERVING or NOT_SERVING as its answer changes, with one log
//! line per change. Load balancers and frontends read that status.

use std::future::Future;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::periodic::Ticks;

/// Where a dependency's health is reported, and how its changes are logged.
pub struct HealthWatch {
    pub reporter: HealthReporter,
    /// The gRPC service names ("" is the whole server) whose status follows it.
    pub services: &'static [&'static str],
    /// Logged (with the reason) when it stops answering.
    pub down: &'static str,
    /// Logged when it answers again.
    pub up: &'static str,
}

impl HealthWatch {
    /// Sets every service's status.
    async fn report(&self, up: bool) {
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in self.services {
            self.reporter.set_service_status(*service, status).await;
        }
    }

    /// Reports `up` now, then in a task of its own runs `check` once per
    /// tick (`Err` says why the dependency is not ready) and reports each
    /// change, until the ticks stop.
    pub async fn start<F, Fut>(self, up: bool, ticks: Ticks, check: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.report(up).await;
        tokio::spawn(self.follow(up, ticks, check));
    }

    /// The task of `start`: `up` is what was reported last.
    async fn follow<F, Fut>(self, mut up: bool, ticks: Ticks, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        while ticks.next().await {
            match (up, check().await) {
                (true, Err(why)) => {
                    tracing::warn!(reason = %why, "{}; health is NOT_SERVING", self.down);
                    self.report(false).await;
                    up = false;
                }
                (false, Ok(())) => {
                    tracing::info!("{}; health is SERVING", self.up);
                    self.report(true).await;
                    up = true;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health;
    use tonic_health::server::HealthService;

    use super::*;

    async fn status_of(health: &HealthService, service: &str) -> i32 {
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        health.check(request).await.unwrap().into_inner().status
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_follows_each_change_of_the_checks() {
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        let watch = HealthWatch {
            reporter,
            services: &["", "test.Service"],
            down: "the dependency is down",
            up: "the dependency is back",
        };
        // Answers of successive checks: down twice, up, then down for good.
        let answers = Arc::new(Mutex::new(VecDeque::from([
            Err("gone".to_owned()),
            Err("still gone".to_owned()),
            Ok(()),
        ])));
        let checks = Arc::clone(&answers);
        let stop = CancellationToken::new();
        let period = Duration::from_secs(1);
        watch
            .start(true, Ticks::new(period, stop.clone()), move || {
                let next = checks.lock().unwrap().pop_front().unwrap_or(Err("down".to_owned()));
                async move { next }
            })
            .await;
        let serving = ServingStatus::Serving as i32;
        let not_serving = ServingStatus::NotServing as i32;
        // Before the first period nothing is checked: still SERVING.
        tokio::time::sleep(period / 2).await;
        for service in ["", "test.Service"] {
            assert_eq!(status_of(&health, service).await, serving);
        }
        let expected = [not_serving, not_serving, serving, not_serving];
        for (tick, want) in expected.into_iter().enumerate() {
            tokio::time::sleep(period).await;
            for name in ["", "test.Service"] {
                assert_eq!(status_of(&health, name).await, want, "after check {}", tick + 1);
            }
        }
        stop.cancel();
    }
}
