//! SOC 2 evidence packs over HTTP: the pack for chosen criteria and a period, built into
//! a temporary file on a blocking thread and streamed as it is read; and the public key
//! that verifies packs. The download is recorded in the access log like every call,
//! with the manifest's SHA-256 added.

use super::results::{RowCount, Streamed};
use super::{AuditNote, Granted};
use crate::evidence::pack::{self, PackRequest};
use crate::evidence::sign::{self, PackKey};
use crate::evidence::{Budget, Criterion, GeneratedBy, OverBudget, Period};
use crate::http::error::{ApiError, ApiResult, ErrorBody, Json, parse_time};
use crate::http::state::AppState;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackRequestBody {
    /// Comma-separated: `CC6.1`, `CC6.2` (or `CC6.3`), `CC7.2`, `CC7.3` (or `CC7.4`), `access_log`, or `all`.
    pub criteria: String,
    /// Start of the period (RFC 3339, e.g. 2025-01-01T00:00:00Z).
    pub from: String,
    /// End of the period, exclusive (RFC 3339).
    pub to: String,
}

/// A signed SOC 2 evidence pack (zip): populations as CSV and Parquet, report.html,
/// manifest.json with every file's SHA-256, SQL and parameters, its Ed25519 signature and
/// SHA256SUMS. A POST (with the session's `X-CSRF-Token`), so a link cannot make a
/// signed-in Auditor start one; bounded by `[evidence]` (period, rows, time) and
/// stopped when the client goes away.
#[utoipa::path(post, path = "/api/evidence", tag = "evidence", request_body = PackRequestBody,
    security(("entra" = ["TokenTrail.Auditor"])),
    responses(
        (status = 200, description = "The pack, streamed", content_type = "application/zip"),
        (status = 400, body = ErrorBody),
        (status = 422, description = "The pack would exceed its bounds (rows or time)", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Extension(rows): Extension<RowCount>,
    Json(q): Json<PackRequestBody>,
) -> ApiResult<Response> {
    note.add("criteria", q.criteria.clone());
    note.add("from", q.from.clone());
    note.add("to", q.to.clone());
    let criteria = Criterion::parse_list(&q.criteria).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (from, to) = (parse_time("from", &q.from)?, parse_time("to", &q.to)?);
    let to_time = |us: i64| chrono::DateTime::from_timestamp_micros(us).expect("parsed times are in range");
    let period = Period::new(to_time(from), to_time(to)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limits = &state.evidence;
    let days = (period.to - period.from) as f64 / 86_400e6;
    if days > limits.max_period_days as f64 {
        return Err(ApiError::bad_request(format!(
            "the period is {days:.1} days; a pack covers at most {} days (evidence.max_period_days): split it",
            limits.max_period_days
        )));
    }
    let caller = &granted.caller;
    let generated_by = GeneratedBy {
        oid: Some(caller.oid.clone()),
        tid: Some(caller.tid.clone()),
        name: caller.name.clone().unwrap_or_else(|| caller.oid.clone()),
    };
    let budget = Budget {
        max_rows: limits.max_rows,
        deadline: Some(Instant::now() + Duration::from_secs(limits.timeout_secs)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    // The client going away drops this future and stops the work.
    let _cancel = StopOnDrop(budget.stop.clone());
    let rules = state.rules.clone();
    // Checked when the service started (`ServeConfig::check`).
    let expected = state.evidence.expected_streams.clone();
    let development_signer = state.mode.contains("development sign-in");
    let removal_hours = state.evidence.removal_deadline_hours;
    let lake = state.lake.clone();
    let (file, summary) = super::db(&state, move |store| -> ApiResult<_> {
        let key = PackKey::load_or_create(&sign::key_path(store.path(), None), true)?;
        let request = PackRequest {
            criteria,
            period,
            generated_by,
            rules: &rules,
            budget,
            expected,
            development_signer,
            removal_hours,
            lake: lake.as_deref(),
        };
        let path = std::env::temp_dir().join(format!("tokentrail-evidence-{}.zip", unique()));
        let summary = pack::build_file(&store, &key, &request, &path, &|_, _, _| {});
        let opened = summary.and_then(|s| Ok((std::fs::File::open(&path)?, s)));
        // Unlinked at once: the open handle keeps it readable until the stream ends.
        let _ = std::fs::remove_file(&path);
        opened.map_err(|error| match error.downcast_ref::<OverBudget>() {
            Some(over) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "pack_too_large", over.to_string()),
            None => ApiError::from(error),
        })
    })
    .await?;
    note.add("manifest_sha256", summary.manifest_sha256.clone());
    rows.add(summary.manifest.files.iter().filter(|f| f.format == "csv").filter_map(|f| f.rows).sum::<u64>() as i64);
    let stream = futures::stream::unfold(tokio::fs::File::from_std(file), |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; 64 * 1024];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(chunk), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    let name = pack::file_name(&pack::criteria_of(&summary.manifest), &period);
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    response.extensions_mut().insert(Streamed);
    Ok(response)
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn unique() -> String {
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Ed25519 public key that verifies this service's packs.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// Always `Ed25519`.
    pub algorithm: String,
    /// First 16 hex digits of SHA-256 over the raw key, as in each pack's manifest.
    pub key_id: String,
    /// SubjectPublicKeyInfo PEM, for `tokentrail evidence verify --public-key`.
    pub public_key_pem: String,
}

#[utoipa::path(get, path = "/api/evidence/public-key", tag = "evidence",
    security(("entra" = ["TokenTrail.Auditor", "TokenTrail.Admin"])),
    responses((status = 200, body = PublicKey)))]
pub async fn public_key(State(state): State<AppState>) -> ApiResult<axum::Json<PublicKey>> {
    let key = super::db(&state, |store| -> ApiResult<PackKey> {
        Ok(PackKey::load_or_create(&sign::key_path(store.path(), None), true)?)
    })
    .await?;
    Ok(axum::Json(PublicKey { algorithm: "Ed25519".into(), key_id: key.key_id(), public_key_pem: key.public_pem() }))
}

/// The largest pack `POST /api/evidence/rerun` reads.
pub const MAX_RERUN_PACK_BYTES: usize = 256 * 1024 * 1024;

/// What running a pack's populations again found.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerunReport {
    /// Every population gave the same rows, byte for byte (same SHA-256 as in the pack).
    pub all_same: bool,
    /// The last ingest batch the pack's populations included (they are bounded by it).
    pub as_of_batch: Option<i64>,
    pub period_from: String,
    pub period_to: String,
    pub populations: Vec<pack::Rerun>,
}

/// Runs the populations of a pack this service signed again, with the SQL and parameters
/// its manifest states, and compares their SHA-256 with the pack's. The body is the pack
/// (the zip as downloaded). A pack that is not whole, or not signed by this service's key,
/// is refused (its SQL is run only when it is this service's own).
#[utoipa::path(post, path = "/api/evidence/rerun", tag = "evidence",
    request_body(content = String, content_type = "application/octet-stream",
        description = "The pack: the zip's bytes as downloaded (sent as application/octet-stream or application/zip)"),
    security(("entra" = ["TokenTrail.Auditor"])),
    responses(
        (status = 200, body = RerunReport),
        (status = 400, description = "Not a pack, not whole, or not signed by this service", body = ErrorBody),
        (status = 413, description = "Larger than 256 MiB", body = ErrorBody)))]
pub async fn rerun(
    State(state): State<AppState>,
    Extension(note): Extension<AuditNote>,
    body: Body,
) -> ApiResult<axum::Json<RerunReport>> {
    // Not the API's default JSON body limit: a pack is larger; read up to its own bound.
    let body = super::bounded_body(body, MAX_RERUN_PACK_BYTES).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "pack_too_large",
            format!("the pack is larger than {} MiB, or its upload broke off", MAX_RERUN_PACK_BYTES >> 20),
        )
    })?;
    note.add("pack_bytes", body.len());
    let lake = state.lake.clone();
    let report = super::db(&state, move |store| -> ApiResult<RerunReport> {
        let key = PackKey::load_or_create(&sign::key_path(store.path(), None), true)?;
        let checked = pack::verify_reader(std::io::Cursor::new(&body[..]), Some(&key.public()))
            .map_err(|e| ApiError::bad_request(format!("the body is not a readable evidence pack (zip): {e}")))?;
        if !checked.ok() {
            let problems: Vec<String> = checked.problems.iter().map(|p| p.to_string()).collect();
            return Err(ApiError::bad_request(format!(
                "the pack does not verify with this service's key, so its populations are not run again: {}",
                problems.join("; ")
            )));
        }
        let manifest = checked.manifest.expect("a verified pack has its manifest");
        let populations = pack::rerun(&store, &manifest, lake.as_deref())?;
        Ok(RerunReport {
            all_same: populations.iter().all(|p| p.same),
            as_of_batch: manifest.as_of.batch_id,
            period_from: manifest.period.from.clone(),
            period_to: manifest.period.to.clone(),
            populations,
        })
    })
    .await?;
    note.add("all_same", report.all_same.to_string());
    Ok(axum::Json(report))
}
