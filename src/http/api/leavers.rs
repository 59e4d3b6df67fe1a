//! `POST /api/leavers`: an Admin uploads a list of leavers (CSV), stored as `tokentrail
//! leavers import` stores it (`inventory::leavers::import`), with who loaded it.

use super::{AuditNote, Granted};
use crate::http::error::{ApiError, ApiResult, ErrorBody, Query};
use crate::http::state::AppState;
use crate::inventory::leavers::{self, ListError};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
pub struct ImportQuery {
    /// The list's file name, as it will be named in the evidence (`list:<file_name>`);
    /// default `upload.csv`.
    pub file_name: Option<String>,
}

/// What was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub list_id: i64,
    pub rows: usize,
    /// SHA-256 of the body, lower-case hex.
    pub sha256: String,
    pub loaded_by: String,
}

/// Stores a list of leavers for the CC6.2 evidence. The body is CSV (UTF-8): a header naming
/// who left (principal_id / object id, or upn / email; name optional) and when (left_at,
/// leave date, termination date: 2025-03-04, 2025-03-04 17:00 UTC, or RFC 3339), one leaver
/// a line. A bad value refuses the whole list, naming its line.
#[utoipa::path(post, path = "/api/leavers", tag = "evidence", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The list of leavers (CSV)"),
    security(("entra" = ["TokenTrail.Admin"])),
    responses(
        (status = 200, body = Imported),
        (status = 400, description = "A value or the header is not right: the message names the line", body = ErrorBody),
        (status = 413, description = "Larger than 16 MiB", body = ErrorBody),
        (status = 415, description = "Not sent as text/csv", body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    Extension(granted): Extension<Granted>,
    Extension(note): Extension<AuditNote>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<Imported>> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !["text/csv", "application/csv", "text/plain"].contains(&essence.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the list as text/csv (the body was {:?})", content_type),
        ));
    }
    let file_name = query.file_name.unwrap_or_else(|| "upload.csv".into());
    if file_name.is_empty() || file_name.len() > 255 || file_name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("file_name: 1 to 255 characters, no control characters"));
    }
    // Read up to the bound, never whole beyond it.
    let body = super::bounded_body(body, leavers::MAX_BYTES).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "list_too_large",
            format!("the list is larger than {} MiB, or its upload broke off: split it", leavers::MAX_BYTES >> 20),
        )
    })?;
    note.add("file_name", file_name.clone());
    note.add("bytes", body.len());
    let who = granted.who();
    let loaded_by = who.clone();
    let imported = super::db(&state, move |store| -> ApiResult<leavers::Imported> {
        leavers::import(&store, &file_name, &body, &who).map_err(|error| match error.downcast::<ListError>() {
            Ok(list) => ApiError::bad_request(list.to_string()),
            Err(error) => ApiError::from(error),
        })
    })
    .await?;
    note.add("list_id", imported.list_id);
    Ok(axum::Json(Imported { list_id: imported.list_id, rows: imported.rows, sha256: imported.sha256, loaded_by }))
}
