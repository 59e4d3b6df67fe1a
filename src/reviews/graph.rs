//! A review's decisions in the shape of Microsoft Graph's `accessReviewInstanceDecisionItem`
//! (`GET /identityGovernance/accessReviews/definitions/{id}/instances/{id}/decisions`), so
//! tools that read Entra ID access reviews read ours: one item per assignment, its latest
//! decision (NotReviewed when none), who reviewed it and when. Decisions are not applied
//! by TokenTrail (it holds no write access to Azure): `applyResult` is `New`.

use anyhow::Result;
use serde_json::{Value, json};

/// The decisions of review `review` (its id), or None when there is no such review.
pub fn decisions(conn: &duckdb::Connection, review: i64) -> Result<Option<Value>> {
    let uuid: Option<String> =
        match conn.query_row("SELECT uuid FROM access_reviews WHERE id = ?", [review], |r| r.get(0)) {
            Ok(uuid) => Some(uuid),
            Err(duckdb::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(e.into()),
        };
    let Some(uuid) = uuid else { return Ok(None) };
    let mut stmt = conn.prepare(include_str!("sql/graph_decisions.sql"))?;
    let rows = stmt.query_map([review], |r| {
        let text = |i: usize| r.get::<_, Option<String>>(i);
        Ok(json!({
            "id": text(0)?,
            "accessReviewId": uuid,
            "decision": text(1)?.unwrap_or_else(|| "NotReviewed".into()),
            "justification": text(2)?.unwrap_or_default(),
            "reviewedBy": match text(3)? {
                Some(id) => json!({ "id": id, "displayName": text(4)?, "userPrincipalName": Value::Null }),
                None => json!({ "id": "00000000-0000-0000-0000-000000000000", "displayName": Value::Null }),
            },
            "reviewedDateTime": text(5)?,
            "recommendation": text(6)?,
            "principal": {
                "@odata.type": text(7)?,
                "id": text(8)?,
                "displayName": text(9)?,
            },
            "principalLink": text(10)?,
            "resource": { "id": text(11)?, "displayName": text(12)?, "type": text(13)? },
            "resourceLink": Value::Null,
            "appliedBy": { "id": "00000000-0000-0000-0000-000000000000", "displayName": Value::Null },
            "appliedDateTime": Value::Null,
            "applyResult": "New",
            "applyDescription": "TokenTrail records decisions; removing access is done in Azure",
            "insights": [],
            "target": {
                "@odata.type": "#microsoft.graph.accessReviewInstanceDecisionItemAzureRoleAssignmentTarget",
                "roleAssignmentId": text(14)?,
                "roleDefinitionId": text(15)?,
                "roleName": text(16)?,
                "scope": text(17)?,
                "plane": text(18)?,
                "lastUse": text(19)?,
                "usedActions": r.get::<_, Option<String>>(20)?.and_then(|t| serde_json::from_str::<Value>(&t).ok()),
                "tokentrailAdvice": text(21)?,
            },
        }))
    })?;
    let value: Vec<Value> = rows.collect::<duckdb::Result<_>>()?;
    Ok(Some(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.accessReviewInstanceDecisionItem)",
        "value": value,
    })))
}
