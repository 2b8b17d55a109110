//! One object: recognise its kind, check it as the API server would, and
//! put it into the snapshot.

use std::fmt;

use bulkhead_policy::convert::{self, ConvertError};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::locate::{self, Position, Step};
use super::{strip_location, Inventory, LoadError, Location};
use crate::validate::{self, Violation};

/// The kinds the compiler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Pod.
    Pod,
    /// core/v1 Node.
    Node,
    /// bulkhead.dev/v1alpha1 ExternalNode.
    ExternalNode,
    /// bulkhead.dev/v1alpha1 LabelMapping.
    LabelMapping,
    /// bulkhead.dev/v1alpha1 SegmentationPolicy.
    SegmentationPolicy,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// bulkhead.dev/v1alpha1 SegmentationException (checked and kept;
    /// compiled only where the operator's status says it is enforced:
    /// only the operator knows whether it was approved in time).
    SegmentationException,
    /// discovery.k8s.io/v1 EndpointSlice: the backends of `service` peers.
    EndpointSlice,
}

const BULKHEAD: &str = "bulkhead.dev/v1alpha1";

impl Kind {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "Namespace" => Kind::Namespace,
            "Pod" => Kind::Pod,
            "Node" => Kind::Node,
            "ExternalNode" => Kind::ExternalNode,
            "LabelMapping" => Kind::LabelMapping,
            "SegmentationPolicy" => Kind::SegmentationPolicy,
            "NetworkPolicy" => Kind::NetworkPolicy,
            "SegmentationException" => Kind::SegmentationException,
            "EndpointSlice" => Kind::EndpointSlice,
            _ => return None,
        })
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Pod | Kind::Node => "v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            _ => BULKHEAD,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The text an object came from, and where in it.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub at: Location,
}

impl Source<'_> {
    /// The path from the document's root to the object.
    fn prefix(&self) -> Vec<Step> {
        match self.at.item {
            Some(i) => vec![Step::Key("items".into()), Step::Index(i)],
            None => Vec::new(),
        }
    }

    /// Where a field of the object is; for a field that is absent, where its
    /// closest present parent is.
    fn locate(&self, field: &str) -> Location {
        let prefix = self.prefix();
        let steps = locate::parse_path(field);
        let position: Option<Position> = (0..=steps.len()).rev().find_map(|n| {
            let path = [prefix.as_slice(), &steps[..n]].concat();
            locate::position_of(self.text, self.at.document, &path)
        });
        self.at.at(position)
    }
}

/// Checks one object and adds it to the inventory, or records why not.
pub(super) fn load_object(
    src: &Source<'_>,
    value: Value,
    inv: &mut Inventory,
    errors: &mut Vec<LoadError>,
) {
    if !value.is_mapping() {
        let message =
            "expected a Kubernetes object (a mapping with apiVersion and kind)".to_string();
        errors.push(LoadError::NotAnObject {
            at: src.locate(""),
            message,
        });
        return;
    }
    let text_of = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind_name) = (text_of("apiVersion"), text_of("kind"));
    let name = display_name(&value);
    for (field, present) in [
        ("kind", !kind_name.is_empty()),
        ("apiVersion", !api_version.is_empty()),
    ] {
        if !present {
            let message =
                format!("object {name} has no {field}: every manifest needs apiVersion and kind");
            errors.push(LoadError::NotAnObject {
                at: src.locate(""),
                message,
            });
            return;
        }
    }
    let Some(kind) = Kind::parse(&kind_name) else {
        inv.warnings.push(format!(
            "{}: skipping {api_version} {kind_name} {name}: not an input of the compiler",
            src.at
        ));
        return;
    };
    let object = format!("{kind} {name}");
    if api_version != kind.api_version() {
        errors.push(invalid(
            src,
            &object,
            "apiVersion",
            format!(
                "{kind} is served as {}, not {api_version}",
                kind.api_version()
            ),
        ));
        return;
    }
    if let Err(mut errs) = add(kind, src, &object, &value, inv) {
        errors.append(&mut errs);
    }
}

fn add(
    kind: Kind,
    src: &Source<'_>,
    object: &str,
    value: &Value,
    inv: &mut Inventory,
) -> Result<(), Vec<LoadError>> {
    let one = |e: LoadError| vec![e];
    let checked = |violations: Vec<Violation>| -> Result<(), Vec<LoadError>> {
        if violations.is_empty() {
            return Ok(());
        }
        Err(violations
            .into_iter()
            .map(|v| invalid(src, object, &v.field, v.message))
            .collect())
    };
    let converted = |err: ConvertError| vec![convert_error(src, object, err)];
    checked(validate::unknown_fields_and_bounds(
        &kind.to_string(),
        value,
    ))?;
    let snapshot = &mut inv.snapshot;
    let name = match kind {
        Kind::Namespace => {
            let obj: core::Namespace = typed(src, object, value).map_err(one)?;
            let (name, entry) = convert::namespace(&obj).map_err(converted)?;
            snapshot.namespaces.insert(name.clone(), entry);
            name
        }
        Kind::Pod => {
            let obj: core::Pod = typed(src, object, value).map_err(one)?;
            let (key, entry) = convert::pod(&obj).map_err(converted)?;
            snapshot.pods.insert(key.clone(), entry);
            key.to_string()
        }
        Kind::Node => {
            let obj: core::Node = typed(src, object, value).map_err(one)?;
            let (name, entry) = convert::node(&obj).map_err(converted)?;
            snapshot.nodes.insert(name.clone(), entry);
            name
        }
        Kind::ExternalNode => {
            let obj: bulkhead_api::ExternalNode = typed(src, object, value).map_err(one)?;
            checked(validate::external_node(&obj.spec))?;
            let (name, entry) = convert::external_node(&obj).map_err(converted)?;
            snapshot.external_nodes.insert(name.clone(), entry);
            name
        }
        Kind::LabelMapping => {
            let obj: bulkhead_api::LabelMapping = typed(src, object, value).map_err(one)?;
            checked(validate::label_mapping(&obj.spec))?;
            let (name, spec) = convert::label_mapping(&obj).map_err(converted)?;
            snapshot.mappings.insert(name.clone(), spec);
            name
        }
        Kind::SegmentationPolicy => {
            let obj: bulkhead_api::SegmentationPolicy = typed(src, object, value).map_err(one)?;
            checked(validate::segmentation_policy(&obj.spec))?;
            let (name, spec) = convert::segmentation_policy(&obj).map_err(converted)?;
            snapshot.policies.insert(name.clone(), spec);
            name
        }
        Kind::NetworkPolicy => {
            checked(validate::network_policy(value))?;
            let obj: networking::NetworkPolicy = typed(src, object, value).map_err(one)?;
            let (key, policy) = convert::network_policy(&obj).map_err(converted)?;
            snapshot.network_policies.insert(key.clone(), policy);
            key.to_string()
        }
        Kind::EndpointSlice => {
            let obj: discovery::EndpointSlice = typed(src, object, value).map_err(one)?;
            let (key, slice) = convert::endpoint_slice(&obj).map_err(converted)?;
            snapshot.endpoint_slices.insert(key.clone(), slice);
            key.to_string()
        }
        Kind::SegmentationException => {
            let obj: bulkhead_api::SegmentationException =
                typed(src, object, value).map_err(one)?;
            checked(validate::segmentation_exception(&obj.spec))?;
            let name = kube::ResourceExt::name_any(&obj);
            inv.exceptions.insert(name.clone(), obj);
            name
        }
    };
    let here = src.locate("");
    if let Some(first) = inv.origins.insert((kind, name), here.clone()) {
        return Err(one(LoadError::Duplicate {
            object: object.to_string(),
            first: Box::new(first),
            second: Box::new(here),
        }));
    }
    Ok(())
}

/// Deserializes the object, and on failure parses the text again to name the
/// field and its line.
fn typed<T: DeserializeOwned>(
    src: &Source<'_>,
    object: &str,
    value: &Value,
) -> Result<T, LoadError> {
    serde_yaml::from_value(value.clone()).map_err(|err| {
        let Some(located) = locate::typed_error::<T>(src.text, src.at.document, &src.prefix())
        else {
            return LoadError::Invalid {
                at: src.locate(""),
                object: object.to_string(),
                message: err.to_string(),
            };
        };
        let position = located.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let mut message = strip_location(&located.to_string());
        if let Some(item) = src.at.item {
            let prefix = format!("items[{item}].");
            if let Some(rest) = message.strip_prefix(&prefix) {
                message = rest.to_string();
            }
        }
        LoadError::Invalid {
            at: src.at.at(position),
            object: object.to_string(),
            message: name_missing_field(message),
        }
    })
}

/// serde names the object a required field is missing from
/// (`spec.ingress[0]: missing field `action``); the API server names the
/// field itself (`spec.ingress[0].action: Required value`). Say it its way.
fn name_missing_field(message: String) -> String {
    let Some((path, rest)) = message.split_once(": missing field `") else {
        return message;
    };
    let Some(field) = rest.strip_suffix('`') else {
        return message;
    };
    format!("{path}.{field}: Required value")
}

fn invalid(src: &Source<'_>, object: &str, field: &str, message: impl fmt::Display) -> LoadError {
    LoadError::Invalid {
        at: src.locate(field),
        object: object.to_string(),
        message: format!("{field}: {message}"),
    }
}

fn convert_error(src: &Source<'_>, object: &str, err: ConvertError) -> LoadError {
    match err {
        ConvertError::MissingName { .. } => invalid(src, object, "metadata.name", "required"),
        ConvertError::BadAddress { field, value, .. } => invalid(
            src,
            object,
            &field,
            format!("{value:?} is not an IP address"),
        ),
        ConvertError::Invalid { field, message, .. } => invalid(src, object, &field, message),
    }
}

/// `name`, or `namespace/name` for pods and NetworkPolicies, as far as the
/// untyped value tells.
fn display_name(value: &Value) -> String {
    let meta = value.get("metadata");
    let get = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = get("name").unwrap_or("(no name)");
    let kind = value.get("kind").and_then(Value::as_str);
    if matches!(kind, Some("Pod" | "NetworkPolicy" | "EndpointSlice")) {
        format!("{}/{name}", get("namespace").unwrap_or("default"))
    } else {
        name.to_string()
    }
}
