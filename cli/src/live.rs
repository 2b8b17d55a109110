//! Today's cluster from the API server: the objects the operator compiles
//! (`snapshot` leaves pods out for `recommend` and `what-if`: history brings
//! its own endpoints; `report` and `unlabeled` judge today's pods, so
//! `snapshot_with_pods` reads them too).

use std::time::Duration;

use anyhow::{anyhow, Context};
use bulkhead_policy::convert;
use bulkhead_policy::snapshot::Snapshot;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn list<K>(client: &kube::Client) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&());
    let listed = tokio::time::timeout(TIMEOUT, api.list(&ListParams::default()))
        .await
        .map_err(|_| anyhow!("listing {kind}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("listing {kind}"))?;
    Ok(listed.items)
}

/// Namespaces, Nodes, ExternalNodes, LabelMappings, SegmentationPolicies
/// and NetworkPolicies, converted as the operator converts them.
pub fn snapshot() -> anyhow::Result<Snapshot> {
    read(false)
}

/// The same, every Pod and every EndpointSlice.
pub fn snapshot_with_pods() -> anyhow::Result<Snapshot> {
    read(true)
}

/// A runtime for one command, and a client of the API server (KUBECONFIG).
fn connect() -> anyhow::Result<(tokio::runtime::Runtime, kube::Client)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt
        .block_on(kube::Client::try_default())
        .context("connecting to the API server (KUBECONFIG)")?;
    Ok((rt, client))
}

/// Every SegmentationException with its status, by name.
pub fn exceptions(
) -> anyhow::Result<std::collections::BTreeMap<String, bulkhead_api::SegmentationException>> {
    let (rt, client) = connect()?;
    rt.block_on(async {
        let listed = list::<bulkhead_api::SegmentationException>(&client).await?;
        Ok(listed
            .into_iter()
            .map(|e| (kube::ResourceExt::name_any(&e), e))
            .collect())
    })
}

fn read(pods: bool) -> anyhow::Result<Snapshot> {
    let (rt, client) = connect()?;
    rt.block_on(async {
        let mut s = Snapshot::default();
        for o in list::<Namespace>(&client).await? {
            let (k, v) = convert::namespace(&o)?;
            s.namespaces.insert(k, v);
        }
        for o in list::<Node>(&client).await? {
            let (k, v) = convert::node(&o)?;
            s.nodes.insert(k, v);
        }
        for o in list::<bulkhead_api::ExternalNode>(&client).await? {
            let (k, v) = convert::external_node(&o)?;
            s.external_nodes.insert(k, v);
        }
        for o in list::<bulkhead_api::LabelMapping>(&client).await? {
            let (k, v) = convert::label_mapping(&o)?;
            s.mappings.insert(k, v);
        }
        for o in list::<bulkhead_api::SegmentationPolicy>(&client).await? {
            let (k, v) = convert::segmentation_policy(&o)?;
            s.policies.insert(k, v);
        }
        if pods {
            for o in list::<Pod>(&client).await? {
                let (k, v) = convert::pod(&o)?;
                s.pods.insert(k, v);
            }
            // `service` peers name the backends' pods: without pods they resolve to nothing.
            for o in list::<EndpointSlice>(&client).await? {
                let (k, v) = convert::endpoint_slice(&o)?;
                s.endpoint_slices.insert(k, v);
            }
        }
        for o in list::<NetworkPolicy>(&client).await? {
            let (k, v) = convert::network_policy(&o)?;
            s.network_policies.insert(k, v);
        }
        Ok(s)
    })
}
