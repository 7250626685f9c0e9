//! This node's workload networks and workload addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, NetworkCreateRequest};
use tracing::info;

use super::{DockerRuntime, engine, lock, status_of};
use crate::runtime::{RuntimeError, WorkloadId};

impl DockerRuntime {
    /// This node's workload network: with `egress`, the routed one; without, the internal one.
    pub fn network_name(&self, egress: bool) -> String {
        let suffix = if egress { "wl" } else { "wl-int" };
        format!("{}-{}-{suffix}", self.config.label_prefix, self.config.node)
    }

    /// The workload's address on its network, `None` without network.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`], or the engine failing.
    pub async fn address(&self, id: &WorkloadId) -> Result<Option<IpAddr>, RuntimeError> {
        Ok(self.address_of(&self.inspect(id).await?))
    }

    pub(super) fn address_of(&self, info: &ContainerInspectResponse) -> Option<IpAddr> {
        let networks = info.network_settings.as_ref()?.networks.as_ref()?;
        [self.network_name(true), self.network_name(false)]
            .iter()
            .filter_map(|n| networks.get(n))
            .filter_map(|ep| ep.ip_address.as_deref())
            .find_map(|ip| ip.parse().ok())
    }

    /// Creates this node's network (egress or internal) unless it exists.
    pub(super) async fn ensure_network(&self, egress: bool) -> Result<String, RuntimeError> {
        let name = self.network_name(egress);
        if lock(&self.networks).contains(&name) {
            return Ok(name);
        }
        let _setup = self.network_setup.lock().await;
        if lock(&self.networks).contains(&name) {
            return Ok(name);
        }
        match self.bounded(self.docker.inspect_network(&name, None)).await {
            Ok(existing) => {
                let ours = existing
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&self.node_label()))
                    .is_some_and(|n| *n == self.config.node);
                if !ours {
                    return Err(RuntimeError::Docker(format!(
                        "network {name} exists but is not labelled {}={}; remove it or choose another node name",
                        self.node_label(),
                        self.config.node
                    )));
                }
                if existing.internal == Some(egress) {
                    return Err(RuntimeError::Docker(format!(
                        "network {name} exists with internal={}, expected {}; remove it",
                        !egress, !egress
                    )));
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    internal: Some(!egress),
                    labels: Some(HashMap::from([(
                        self.node_label(),
                        self.config.node.clone(),
                    )])),
                    options: Some(HashMap::from([(
                        "com.docker.network.bridge.enable_icc".into(),
                        "false".into(),
                    )])),
                    ..Default::default()
                };
                self.bounded(self.docker.create_network(request))
                    .await
                    .map_err(|e| engine(&format!("create network {name}"), &e))?;
                info!(network = %name, egress, "workload network created");
            }
            Err(e) => return Err(engine(&format!("inspect network {name}"), &e)),
        }
        lock(&self.networks).insert(name.clone());
        Ok(name)
    }
}
