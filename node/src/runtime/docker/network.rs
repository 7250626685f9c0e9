//! This node's workload networks and workload addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, Ipam, IpamConfig, NetworkCreateRequest};
use tracing::info;

use super::{DockerRuntime, engine, lock, status_of};
use crate::runtime::netpolicy::{self, Policy};
use crate::runtime::{RuntimeError, WorkloadId};

impl DockerRuntime {
    /// This node's workload network: with `egress`, the routed one; without, the internal one.
    pub fn network_name(&self, egress: bool) -> String {
        let suffix = if egress { "wl" } else { "wl-int" };
        format!("{}-{}-{suffix}", self.config.label_prefix, self.config.node)
    }

    fn subnet(&self, egress: bool) -> Option<&str> {
        if egress {
            self.config.egress_subnet.as_deref()
        } else {
            self.config.internal_subnet.as_deref()
        }
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
                let bridge = existing
                    .options
                    .as_ref()
                    .and_then(|o| o.get("com.docker.network.bridge.name"));
                if bridge != Some(&netpolicy::bridge_name(&name)) {
                    return Err(RuntimeError::Docker(format!(
                        "network {name} has another bridge than {}; remove it",
                        netpolicy::bridge_name(&name)
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
                    options: Some(HashMap::from([
                        (
                            "com.docker.network.bridge.enable_icc".into(),
                            "false".into(),
                        ),
                        // A known bridge name, so the policy's rules can name it.
                        (
                            "com.docker.network.bridge.name".into(),
                            netpolicy::bridge_name(&name),
                        ),
                    ])),
                    // A configured subnet, or the engine's default pools.
                    ipam: self.subnet(egress).map(|subnet| Ipam {
                        config: Some(vec![IpamConfig {
                            subnet: Some(subnet.to_owned()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
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

    /// Installs the policy on both workload networks' bridges (replacing what a previous
    /// node process installed): the egress network gets the provider's policy, the internal
    /// one no egress at all; neither reaches the host.
    pub(super) async fn install_policy(&self) -> Result<(), RuntimeError> {
        for (egress, policy) in [
            (true, self.policy.clone()),
            (
                false,
                Policy {
                    egress: false,
                    ..self.policy.clone()
                },
            ),
        ] {
            let network = self.network_name(egress);
            // Absent rules make the removal fail as a whole, which is fine.
            let _ = netpolicy::restore(&netpolicy::bridge_remove_script(&network)).await;
            netpolicy::restore(&netpolicy::bridge_install_script(&network, &policy)).await?;
        }
        Ok(())
    }

    /// Removes this node's workload networks and their rules (a provider retiring the
    /// runtime; tests). Networks still holding containers stay.
    ///
    /// # Errors
    /// The engine refusing for another reason than containers still attached.
    pub async fn remove_networks(&self) -> Result<(), RuntimeError> {
        for egress in [true, false] {
            let network = self.network_name(egress);
            let _ = netpolicy::restore(&netpolicy::bridge_remove_script(&network)).await;
            match self.bounded(self.docker.remove_network(&network)).await {
                Ok(()) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(engine(&format!("remove network {network}"), &e)),
            }
            lock(&self.networks).remove(&network);
        }
        Ok(())
    }
}
