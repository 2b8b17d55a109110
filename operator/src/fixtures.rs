//! A fake API server for unit tests: a `kube::Client` over `tower_test`'s
//! mock service, answered by a small object store that records every call.
//!
//! It serves what the operator uses: get, list, create, replace, server-side
//! apply (stored as sent, `metadata.generation` moving when the spec
//! changes), status patches (merged into the stored status), delete, and
//! Event creation. Requests a test marks with [`FakeApi::stall`] are held
//! and never answered, as by a paused API server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// One request the operator made.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

impl Call {
    /// `PATCH /apis/…/noderulemaps/n1`, for readable assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

type Stall = Box<dyn Fn(&Call) -> bool + Send>;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    stall: Option<Stall>,
    version: u64,
}

/// The store and the calls made, shared with the serving task.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").finish_non_exhaustive()
    }
}

impl FakeApi {
    /// A client served by a fresh fake API.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = FakeApi::default();
        let serving = api.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let api = serving.clone();
                tokio::spawn(async move {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let call = Call {
                        method: parts.method,
                        path: parts.uri.path().to_string(),
                        body,
                    };
                    let Some((status, value)) = api.answer(call) else {
                        // Held: the reply is never sent, and never dropped
                        // while the test runs.
                        std::future::pending::<()>().await;
                        return;
                    };
                    let bytes = serde_json::to_vec(&value).unwrap_or_default();
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(bytes));
                    if let Ok(response) = response {
                        reply.send_response(response);
                    }
                });
            }
        });
        (Client::new(service, "default"), api)
    }

    /// Holds every later request that `which` accepts.
    pub fn stall(&self, which: impl Fn(&Call) -> bool + Send + 'static) {
        self.lock().stall = Some(Box::new(which));
    }

    /// Answers requests again.
    pub fn resume(&self) {
        self.lock().stall = None;
    }

    /// Every call so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Puts an object at `path` (its item path, `/apis/…/kind/name`).
    pub fn put(&self, path: &str, mut object: Value) {
        let mut state = self.lock();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        state.objects.insert(path.to_string(), object);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn answer(&self, call: Call) -> Option<(StatusCode, Value)> {
        let mut state = self.lock();
        state.calls.push(call.clone());
        if state.stall.as_ref().is_some_and(|s| s(&call)) {
            return None;
        }
        state.version += 1;
        let version = state.version.to_string();
        let path = call.path.trim_end_matches('/').to_string();
        let (item, status_sub) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.clone(), false),
        };
        let not_found = || {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("{item} not found"), "reason": "NotFound", "code": 404});
            (StatusCode::NOT_FOUND, status)
        };
        Some(match call.method {
            Method::GET if state.objects.contains_key(&item) => {
                (StatusCode::OK, state.objects[&item].clone())
            }
            Method::GET => {
                let prefix = format!("{item}/");
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                    .map(|(_, o)| o.clone())
                    .collect();
                if items.is_empty() && is_item_path(&item) {
                    not_found()
                } else {
                    let list = json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": version}, "items": items});
                    (StatusCode::OK, list)
                }
            }
            Method::POST => {
                let mut object = call.body.clone();
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("created")
                    .to_string();
                let at = format!("{item}/{name}");
                match state.objects.entry(at) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        let status = json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "reason": "AlreadyExists", "code": 409});
                        (StatusCode::CONFLICT, status)
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        object["metadata"]["resourceVersion"] = json!(version);
                        slot.insert(object.clone());
                        (StatusCode::CREATED, object)
                    }
                }
            }
            Method::PUT => {
                let mut object = call.body.clone();
                object["metadata"]["resourceVersion"] = json!(version);
                state.objects.insert(item, object.clone());
                (StatusCode::OK, object)
            }
            Method::PATCH if status_sub => {
                let Some(object) = state.objects.get_mut(&item) else {
                    return Some(not_found());
                };
                if let Some(st) = call.body.get("status") {
                    merge(&mut object["status"], st);
                }
                object["metadata"]["resourceVersion"] = json!(version);
                (StatusCode::OK, object.clone())
            }
            Method::PATCH => {
                let mut object = call.body.clone();
                let old = state.objects.get(&item);
                let generation = match old {
                    Some(o) if o["spec"] == object["spec"] => o["metadata"]["generation"].clone(),
                    Some(o) => json!(o["metadata"]["generation"].as_i64().unwrap_or(0) + 1),
                    None => json!(1),
                };
                if let Some(st) = old.map(|o| o["status"].clone()).filter(|s| !s.is_null()) {
                    object["status"] = st;
                }
                object["metadata"]["generation"] = generation;
                object["metadata"]["resourceVersion"] = json!(version);
                state.objects.insert(item, object.clone());
                (StatusCode::OK, object)
            }
            Method::DELETE => match state.objects.remove(&item) {
                Some(o) => (StatusCode::OK, o),
                None => not_found(),
            },
            _ => not_found(),
        })
    }
}

/// Whether `path` names one object rather than a collection: the segment
/// count of `/api/v1/<plural>/<name>`, `/apis/<group>/<version>/<plural>/<name>`
/// and their namespaced forms.
fn is_item_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if parts.first() == Some(&"api") { 2 } else { 3 };
    let rest = parts.len().saturating_sub(base);
    let namespaced = parts.get(base) == Some(&"namespaces");
    if namespaced {
        rest == 4
    } else {
        rest == 2
    }
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}
