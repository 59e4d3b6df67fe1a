//! Dashboards: the declarative pages of `dashboards/` (see its README), each panel a
//! read-only query (checked like the SQL console's) or a detection rule's findings,
//! over a period that ends at the newest data unless the caller gives one.

use super::console::{self, SqlResult};
use super::filter;
use super::results::{RowCount, objects};
use crate::http::error::{ApiError, ApiResult, Path, Query};
use crate::http::state::AppState;
use axum::Extension;
use axum::extract::State;
use duckdb::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use std::sync::atomic::AtomicBool;
use utoipa::ToSchema;

/// The files of `dashboards/`, compiled in. `tests/it/api.rs` checks this matches the folder.
pub const DASHBOARDS: &[(&str, &str)] = &[
    ("access-overview", include_str!("../../../dashboards/access-overview.toml")),
    ("data-movement", include_str!("../../../dashboards/data-movement.toml")),
    ("identity-hygiene", include_str!("../../../dashboards/identity-hygiene.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Default period, ending at the newest data: `24h`, `7d`, `30d`, ...
    pub range: String,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub title: String,
    pub chart: Chart,
    #[serde(default)]
    pub description: String,
    /// One SELECT with `$from` and `$to`.
    pub sql: Option<String>,
    /// A detection rule id: the panel lists its findings in the period.
    pub rule: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Chart {
    Line,
    Bar,
    Table,
    Number,
}

/// Parses dashboard `name` (its text compiled in), saying what is wrong with it.
pub fn parse(name: &str, text: &str) -> anyhow::Result<Dashboard> {
    use figment::providers::{Format, Toml};
    let dashboard: Dashboard = figment::Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| anyhow::anyhow!("dashboards/{name}.toml: {e}"))?;
    crate::rules::rule::parse_duration(&dashboard.range)
        .ok_or_else(|| anyhow::anyhow!("dashboards/{name}.toml: range {:?} is not like 24h or 7d", dashboard.range))?;
    for panel in &dashboard.panels {
        if panel.sql.is_some() == panel.rule.is_some() {
            anyhow::bail!("dashboards/{name}.toml: panel {:?} needs exactly one of sql and rule", panel.title);
        }
    }
    Ok(dashboard)
}

fn find(name: &str) -> ApiResult<Dashboard> {
    let (name, text) = DASHBOARDS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        ApiError::not_found(format!("there is no dashboard {name:?}; GET /api/dashboards lists them"))
    })?;
    parse(name, text).map_err(ApiError::internal)
}

#[derive(Serialize, ToSchema)]
pub struct DashboardSummary {
    pub name: String,
    pub title: String,
    pub description: String,
    pub panels: usize,
}

/// The dashboards.
#[utoipa::path(get, path = "/api/dashboards", tag = "dashboards",
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Vec<DashboardSummary>)))]
pub async fn list() -> ApiResult<axum::Json<Vec<DashboardSummary>>> {
    let mut out = Vec::new();
    for (name, _) in DASHBOARDS {
        let d = find(name)?;
        out.push(DashboardSummary {
            name: name.to_string(),
            title: d.title,
            description: d.description,
            panels: d.panels.len(),
        });
    }
    Ok(axum::Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct PanelResult {
    #[serde(flatten)]
    pub panel: Panel,
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<JsonValue>>,
    pub truncated: bool,
    pub elapsed_ms: f64,
    /// Why this panel has no rows, if it failed; the other panels still show.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Rendered {
    pub name: String,
    pub title: String,
    pub description: String,
    pub from: String,
    pub to: String,
    pub panels: Vec<PanelResult>,
}

const PANEL_ROWS: usize = 500;

/// One dashboard, every panel's rows over the period.
#[utoipa::path(get, path = "/api/dashboards/{name}", tag = "dashboards",
    params(("name" = String, Path, description = "Dashboard name (file name without .toml)"), filter::PeriodQuery),
    security(("entra" = ["TokenTrail.Responder", "TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = Rendered), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn render(
    State(state): State<AppState>,
    Extension(rows): Extension<RowCount>,
    Extension(granted): Extension<super::Granted>,
    Path(name): Path<String>,
    Query(q): Query<filter::PeriodQuery>,
) -> ApiResult<axum::Json<Rendered>> {
    let dashboard = find(&name)?;
    let to = q.to.as_deref().map(|t| crate::http::error::parse_time("to", t)).transpose()?;
    let from = q.from.as_deref().map(|t| crate::http::error::parse_time("from", t)).transpose()?;
    let roles = granted.caller.roles.clone();
    let rendered = super::db(&state, move |store| {
        let conn = store.connection()?;
        let to = match to {
            Some(t) => t,
            None => conn
                .query_row("SELECT epoch_us(history_end) + 1 FROM data_clock", [], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or_else(|| chrono::Utc::now().timestamp_micros()),
        };
        let range =
            crate::rules::rule::parse_duration(&dashboard.range).and_then(|d| d.num_microseconds()).unwrap_or(0);
        let from = from.unwrap_or(to - range);
        if from >= to {
            return Err(ApiError::bad_request("from must be before to"));
        }
        let params = [("from", filter::timestamp(from)), ("to", filter::timestamp(to))];
        let mut panels = Vec::new();
        for panel in dashboard.panels {
            let outcome = match (&panel.sql, &panel.rule) {
                (Some(query), _) => {
                    console::execute_with(&store, query, &params, &roles, PANEL_ROWS, &AtomicBool::new(false))
                }
                (None, Some(rule)) => rule_findings(&conn, rule, from, to),
                (None, None) => Err(ApiError::internal(anyhow::anyhow!("panel without a query"))),
            };
            panels.push(match outcome {
                Ok(SqlResult { columns, rows, truncated, elapsed_ms, .. }) => {
                    PanelResult { panel, columns, rows, truncated, elapsed_ms, error: None }
                }
                Err(error) => {
                    tracing::warn!(dashboard = %name, panel = %panel.title, error = %error.message, "panel failed");
                    PanelResult {
                        panel,
                        columns: vec![],
                        rows: vec![],
                        truncated: false,
                        elapsed_ms: 0.0,
                        error: Some(error.message),
                    }
                }
            });
        }
        let iso =
            |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339()).unwrap_or_default();
        Ok(Rendered {
            name,
            title: dashboard.title,
            description: dashboard.description,
            from: iso(from),
            to: iso(to),
            panels,
        })
    })
    .await?;
    rows.add(rendered.panels.iter().map(|p| p.rows.len() as i64).sum());
    Ok(axum::Json(rendered))
}

fn rule_findings(conn: &duckdb::Connection, rule: &str, from: i64, to: i64) -> ApiResult<SqlResult> {
    let started = std::time::Instant::now();
    let found = objects(
        conn,
        include_str!("sql/rule_findings.sql"),
        &[Value::Text(rule.to_string()), filter::timestamp(from), filter::timestamp(to)],
    )?;
    let columns: Vec<String> =
        ["id", "severity", "status", "principal_id", "entity", "first_seen", "last_seen", "count", "summary"]
            .map(String::from)
            .into();
    let rows = found
        .into_iter()
        .map(|mut row| columns.iter().map(|c| row.remove(c).unwrap_or(JsonValue::Null)).collect())
        .collect();
    Ok(SqlResult {
        columns,
        rows,
        truncated: false,
        cut_values: 0,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
