//! Who may call what: the access table read from the OpenAPI document's `security`
//! requirements. A route that declares no roles is refused ([`crate::http::api::guard`]
//! fails closed).

use crate::auth::{Caller, Role};
use axum::http::Method;
use std::collections::HashMap;

/// Who may call what: (method, route template) → roles, read from the OpenAPI
/// document's `security` requirements.
#[derive(Debug, Default)]
pub struct AccessTable {
    routes: HashMap<(String, String), Vec<Role>>,
}

impl AccessTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> AccessTable {
        let doc = serde_json::to_value(doc).expect("the OpenAPI document serialises");
        let mut routes = HashMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let roles: Vec<Role> = operation["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|req| req["entra"].as_array().cloned().unwrap_or_default())
                    .filter_map(|r| r.as_str().and_then(Role::from_claim))
                    .collect();
                routes.insert((method.to_ascii_uppercase(), path.clone()), roles);
            }
        }
        AccessTable { routes }
    }

    /// Whether any method of `route` is declared.
    pub fn has_route(&self, route: &str) -> bool {
        self.routes.keys().any(|(_, r)| r == route)
    }

    /// The roles that may call `method route`; None when the route declares none.
    pub fn roles(&self, method: &Method, route: &str) -> Option<&[Role]> {
        // HEAD is served by the GET handler, so it has the GET's roles.
        let method = if method == Method::HEAD { "GET" } else { method.as_str() };
        self.routes.get(&(method.to_string(), route.to_string())).map(|r| r.as_slice()).filter(|r| !r.is_empty())
    }
}

/// The caller and the role that let it in, for handlers.
#[derive(Clone)]
pub struct Granted {
    pub caller: Caller,
    pub role: Role,
}

impl Granted {
    /// How a person appears in finding history: name, then the ids that identify them.
    pub fn who(&self) -> String {
        let c = &self.caller;
        match &c.name {
            Some(name) => format!("{name} (oid {} tid {})", c.oid, c.tid),
            None => format!("oid {} tid {}", c.oid, c.tid),
        }
    }
}
