//! A stub of Azure Resource Manager on loopback: the listings `tokentrail inventory` reads
//! (subscriptions, Cosmos DB accounts, their SQL role definitions and assignments, Azure
//! role assignments), in ARM's documented shapes, paged with `nextLink`. A real HTTP
//! server: the client under test speaks HTTP to it exactly as to Azure.
//!
//! Fault switches: 429 with `Retry-After` on the first N requests, 403 on chosen
//! subscriptions, a `nextLink` pointing at another host. Every request must carry
//! `Authorization: Bearer <the expected token>` (else 401), and every request is recorded.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the tenant holds: every resource as ARM returns it.
#[derive(Debug, Default, Clone)]
pub struct Tenant {
    pub subscriptions: Vec<String>,
    /// Accounts, role definitions, role assignments, Azure role assignments: ARM objects.
    pub items: Vec<Value>,
}

pub const ACCOUNT_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts";
pub const DEFINITION_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions";
pub const ASSIGNMENT_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments";
pub const AZURE_ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";

impl Tenant {
    pub fn subscription(&mut self, id: &str) -> &mut Tenant {
        self.subscriptions.push(id.to_owned());
        self
    }

    /// An account (ARM spells ids in mixed case); returns its id.
    pub fn account(&mut self, subscription: &str, group: &str, name: &str, disable_local_auth: bool) -> String {
        let id = format!(
            "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"
        );
        self.items.push(json!({
            "id": id, "name": name, "location": "West Europe", "type": ACCOUNT_TYPE, "kind": "GlobalDocumentDB",
            "properties": {
                "provisioningState": "Succeeded",
                "documentEndpoint": format!("https://{name}.documents.azure.com:443/"),
                "disableLocalAuth": disable_local_auth,
                "publicNetworkAccess": "Enabled",
                "ipRules": [{"ipAddressOrRange": "203.0.113.0/24"}],
                "virtualNetworkRules": [],
                "disableKeyBasedMetadataWriteAccess": false
            }
        }));
        id
    }

    /// A data-plane role definition of `account` (its id).
    pub fn role_definition(&mut self, account: &str, guid: &str, name: &str, builtin: bool, data_actions: &[&str]) {
        self.items.push(json!({
            "id": format!("{account}/sqlRoleDefinitions/{guid}"), "name": guid, "type": DEFINITION_TYPE,
            "properties": {
                "roleName": name,
                "type": if builtin { "BuiltInRole" } else { "CustomRole" },
                "assignableScopes": [account],
                "permissions": [{"dataActions": data_actions, "notDataActions": []}]
            }
        }));
    }

    /// The two built-in data roles, as ARM lists them for every account.
    pub fn builtin_roles(&mut self, account: &str) {
        let base = "Microsoft.DocumentDB/databaseAccounts";
        self.role_definition(
            account,
            "00000000-0000-0000-0000-000000000001",
            "Cosmos DB Built-in Data Reader",
            true,
            &[
                &format!("{base}/readMetadata"),
                &format!("{base}/sqlDatabases/containers/executeQuery"),
                &format!("{base}/sqlDatabases/containers/readChangeFeed"),
                &format!("{base}/sqlDatabases/containers/items/read"),
            ],
        );
        self.role_definition(
            account,
            "00000000-0000-0000-0000-000000000002",
            "Cosmos DB Built-in Data Contributor",
            true,
            &[
                &format!("{base}/readMetadata"),
                &format!("{base}/sqlDatabases/containers/*"),
                &format!("{base}/sqlDatabases/containers/items/*"),
            ],
        );
    }

    /// A data-plane role assignment at `account` + `below` (e.g. "/dbs/db/colls/c"); returns its id.
    pub fn role_assignment(&mut self, account: &str, guid: &str, principal: &str, role: &str, below: &str) -> String {
        let id = format!("{account}/sqlRoleAssignments/{guid}");
        self.items.push(json!({
            "id": id, "name": guid, "type": ASSIGNMENT_TYPE,
            "properties": {
                "roleDefinitionId": format!("{account}/sqlRoleDefinitions/{role}"),
                "scope": format!("{account}{below}"),
                "principalId": principal
            }
        }));
        id
    }

    /// An Azure role assignment at `scope`; returns its id.
    pub fn azure_role_assignment(
        &mut self,
        scope: &str,
        guid: &str,
        principal: &str,
        kind: &str,
        role: &str,
    ) -> String {
        let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}");
        let subscription = scope.split('/').nth(2).unwrap_or_default();
        self.items.push(json!({
            "id": id, "name": guid, "type": AZURE_ASSIGNMENT_TYPE,
            "properties": {
                "roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": principal, "principalType": kind, "scope": scope,
                "createdOn": "2026-01-05T10:00:00Z"
            }
        }));
        id
    }

    /// Removes the resource with this id.
    pub fn remove(&mut self, id: &str) {
        self.items.retain(|i| !i["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)));
    }
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path_and_query: String,
    pub status: u16,
}

/// The stub's switches and what it saw.
#[derive(Debug)]
pub struct State {
    pub tenant: Tenant,
    /// Items per page.
    pub page_size: usize,
    /// The token every request must bear.
    pub token: String,
    /// The next N requests get 429 with `Retry-After: retry_after`.
    pub throttle: usize,
    pub retry_after: String,
    /// Subscriptions whose every path answers 403.
    pub forbidden: HashSet<String>,
    /// A listing path (lower case, no query) whose first page's `nextLink` is this URL.
    pub foreign_next_link: Option<(String, String)>,
    pub seen: Vec<Seen>,
}

pub struct ArmStub {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArmStub {
    /// Serves `tenant` on a loopback port of its own, on a thread of its own.
    pub fn start(tenant: Tenant, token: &str) -> ArmStub {
        let state = Arc::new(Mutex::new(State {
            tenant,
            page_size: 2,
            token: token.to_owned(),
            throttle: 0,
            retry_after: "1".into(),
            forbidden: HashSet::new(),
            foreign_next_link: None,
            seen: Vec::new(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                    let state = shared.clone();
                    async move { answer(&state, address, &method, &uri, &headers) }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serving");
            });
        });
        ArmStub { address, state, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Changes the stub's state (the tenant, the switches).
    pub fn with<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        change(&mut self.state.lock().unwrap())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for ArmStub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn answer(state: &Mutex<State>, address: SocketAddr, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let mut state = state.lock().unwrap();
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let response = respond(&mut state, address, method, uri, headers);
    state.seen.push(Seen { path_and_query, status: response.status().as_u16() });
    response
}

fn respond(state: &mut State, address: SocketAddr, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(state.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "no valid Authorization: Bearer header");
    }
    if state.throttle > 0 {
        state.throttle -= 1;
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "throttled");
        response.headers_mut().insert("retry-after", state.retry_after.parse().unwrap());
        return response;
    }
    if method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "GET only");
    }
    let path = uri.path().trim_end_matches('/').to_ascii_lowercase();
    let query = uri.query().unwrap_or("");
    if !query.contains("api-version=") {
        return error(StatusCode::BAD_REQUEST, "MissingApiVersionParameter", "api-version is required");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 2
        && parts[1] == "subscriptions"
        && state.forbidden.iter().any(|s| s.eq_ignore_ascii_case(parts[2]))
    {
        return error(StatusCode::FORBIDDEN, "AuthorizationFailed", "the client does not have authorization");
    }
    let type_of = |i: &Value| i["type"].as_str().unwrap_or("").to_ascii_lowercase();
    let id_of = |i: &Value| i["id"].as_str().unwrap_or("").to_ascii_lowercase();
    let items: Vec<Value> = if path == "/subscriptions" {
        state
            .tenant
            .subscriptions
            .iter()
            .map(|s| json!({"id": format!("/subscriptions/{s}"), "subscriptionId": s, "displayName": s, "state": "Enabled"}))
            .collect()
    } else if let Some(sub) = path.strip_suffix("/providers/microsoft.documentdb/databaseaccounts") {
        let prefix = format!("{sub}/");
        state
            .tenant
            .items
            .iter()
            .filter(|i| type_of(i) == ACCOUNT_TYPE.to_ascii_lowercase() && id_of(i).starts_with(&prefix))
            .cloned()
            .collect()
    } else if let Some(sub) = path.strip_suffix("/providers/microsoft.authorization/roleassignments") {
        let prefix = format!("{sub}/");
        state
            .tenant
            .items
            .iter()
            .filter(|i| {
                type_of(i) == AZURE_ASSIGNMENT_TYPE.to_ascii_lowercase()
                    && (id_of(i).starts_with(&prefix) || id_of(i).starts_with(&format!("{sub}/providers/")))
            })
            .cloned()
            .collect()
    } else if let Some((account, kind)) = path
        .strip_suffix("/sqlroledefinitions")
        .map(|a| (a, DEFINITION_TYPE))
        .or_else(|| path.strip_suffix("/sqlroleassignments").map(|a| (a, ASSIGNMENT_TYPE)))
    {
        let exists = state.tenant.items.iter().any(|i| id_of(i) == account);
        if !exists {
            return error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such account");
        }
        let prefix = format!("{account}/");
        state
            .tenant
            .items
            .iter()
            .filter(|i| type_of(i) == kind.to_ascii_lowercase() && id_of(i).starts_with(&prefix))
            .cloned()
            .collect()
    } else {
        return error(StatusCode::NOT_FOUND, "InvalidResourceType", "not a listing this stub serves");
    };
    let skip: usize =
        query.split('&').find_map(|p| p.strip_prefix("$skiptoken=")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = items.iter().skip(skip).take(state.page_size).cloned().collect();
    let mut body = json!({"value": page});
    let api = query.split('&').find(|p| p.starts_with("api-version=")).unwrap_or("api-version=x");
    if skip == 0
        && let Some((foreign_path, link)) = &state.foreign_next_link
        && *foreign_path == path
    {
        body["nextLink"] = json!(link);
    } else if skip + state.page_size < items.len() {
        body["nextLink"] = json!(format!("http://{address}{}?{api}&$skiptoken={}", uri.path(), skip + state.page_size));
    }
    (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], Body::from(body.to_string()))
        .into_response()
}
