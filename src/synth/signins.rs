//! Entra ID sign-in records in all four categories (interactive and non-interactive user,
//! service principal, managed identity), as diagnostic settings export them.

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use super::tenant::{BROWSERS, NOWHERE, USER_APPS};
use super::wire::{Prng, WireTime, guid, jitter, pick_weighted};
use super::{Browser, Event, Generator, Place, Principal, PrincipalKind};

/// (display name, app id) of the resource a token is issued for.
type Resource = (&'static str, &'static str);

pub(super) const COSMOS_RESOURCE: Resource = ("Azure Cosmos DB", "a232010e-820c-4083-83bb-3ace5fc29d0b");
const ARM_RESOURCE: Resource = ("Windows Azure Service Management API", "797f4846-ba00-4fd7-ba43-dac1f8f63013");
const GRAPH_RESOURCE: Resource = ("Microsoft Graph", "00000003-0000-0000-c000-000000000000");

const SPRAY_TOOL: Browser = Browser { os: "", browser: "Python Requests 2.31", agent: "python-requests/2.31.0" };

/// Password sprays use the resource-owner password flow of a public client.
const SPRAY_APP: usize = 1;

/// The fields of one sign-in record that vary between traffic and scenarios.
pub(super) struct SignIn<'a> {
    pub(super) time: DateTime<Utc>,
    pub(super) principal: &'a Principal,
    pub(super) interactive: bool,
    pub(super) ip: &'a str,
    pub(super) place: &'a Place,
    pub(super) resource: Resource,
    pub(super) app: (&'a str, &'a str, &'a str),
    pub(super) browser: Option<&'a Browser>,
    pub(super) error: u32,
    pub(super) risk: &'static str,
    pub(super) risk_events: &'static [&'static str],
    pub(super) conditional_access: &'static str,
}

impl<'a> SignIn<'a> {
    /// The token request that precedes data access: non-interactive for users.
    pub(super) fn token(
        p: &'a Principal,
        time: DateTime<Utc>,
        ip: &'a str,
        place: &'a Place,
        resource: Resource,
    ) -> Self {
        let user = p.kind == PrincipalKind::User;
        SignIn {
            time,
            principal: p,
            interactive: false,
            ip,
            place,
            resource,
            app: (&p.app_name, &p.app_id, p.client_app_used),
            browser: p.browser,
            error: 0,
            risk: "none",
            risk_events: &[],
            conditional_access: if user { "success" } else { "notApplied" },
        }
    }

    pub(super) fn interactive(p: &'a Principal, time: DateTime<Utc>, ip: &'a str, place: &'a Place) -> Self {
        SignIn { interactive: true, ..SignIn::token(p, time, ip, place, ARM_RESOURCE) }
    }

    /// A password-spray attempt through the ROPC flow, which conditional access does not cover.
    pub(super) fn spray(p: &'a Principal, time: DateTime<Utc>, ip: &'a str, place: &'a Place) -> Self {
        let (name, id, used) = USER_APPS[SPRAY_APP];
        SignIn {
            app: (name, id, used),
            browser: Some(&SPRAY_TOOL),
            conditional_access: "notApplied",
            ..SignIn::interactive(p, time, ip, place)
        }
    }
}

impl Generator {
    /// The sign-ins of one working session: for users an occasional interactive sign-in (now and
    /// then after a failed attempt), the token for Cosmos (or Graph) and some token refreshes.
    pub(super) fn session_sign_ins(
        &self,
        rng: &mut Prng,
        p: &Principal,
        at: DateTime<Utc>,
        ip: &str,
        out: &mut Vec<Event>,
    ) {
        let resource = if p.has_data() {
            COSMOS_RESOURCE
        } else if p.kind == PrincipalKind::User {
            GRAPH_RESOURCE
        } else {
            ARM_RESOURCE
        };
        if p.kind != PrincipalKind::User {
            out.push(self.sign_in_event(rng, &SignIn::token(p, at, ip, p.home, resource)));
            return;
        }
        if rng.random_bool(0.35) {
            let t = at - Duration::seconds(rng.random_range(5..90));
            if rng.random_bool(0.08) {
                let error = [50126, 50074, 50140].choose(rng).copied().unwrap_or(50126);
                let failed = t - Duration::seconds(rng.random_range(20..120));
                let attempt =
                    SignIn { error, conditional_access: "notApplied", ..SignIn::interactive(p, failed, ip, p.home) };
                out.push(self.sign_in_event(rng, &attempt));
            }
            let risk = baseline_risk(rng);
            out.push(self.sign_in_event(rng, &SignIn { risk, ..SignIn::interactive(p, t, ip, p.home) }));
        }
        out.push(self.sign_in_event(rng, &SignIn::token(p, at, ip, p.home, resource)));
        for _ in 0..rng.random_range(0..=3) {
            let t = at + jitter(rng, Duration::minutes(55));
            let other = if rng.random_bool(0.5) { GRAPH_RESOURCE } else { ARM_RESOURCE };
            out.push(self.sign_in_event(rng, &SignIn::token(p, t, ip, p.home, other)));
        }
    }

    pub(super) fn sign_in_event(&self, rng: &mut Prng, s: &SignIn) -> Event {
        let p = s.principal;
        let tenant = &self.tenant.tenant_id;
        let (id, correlation) = (guid(rng), guid(rng));
        let category = match (p.kind, s.interactive) {
            (PrincipalKind::User, true) => "SignInLogs",
            (PrincipalKind::User, false) => "NonInteractiveUserSignInLogs",
            (PrincipalKind::ServicePrincipal, _) => "ServicePrincipalSignInLogs",
            (PrincipalKind::ManagedIdentity, _) => "ManagedIdentitySignInLogs",
        };
        let managed = p.kind == PrincipalKind::ManagedIdentity;
        let (ip, place) = if managed { ("", &NOWHERE) } else { (s.ip, s.place) };
        let failure = failure_reason(s.error);
        let mut status = json!({ "errorCode": s.error });
        if s.error != 0 {
            status["failureReason"] = json!(failure);
        }
        let at_risk = matches!(s.risk, "medium" | "high");
        let mut props = json!({
            "id": id,
            "createdDateTime": WireTime(s.time, "+00:00").to_string(),
            "appId": s.app.1,
            "appDisplayName": s.app.0,
            "ipAddress": ip,
            "status": status,
            "location": {
                "city": place.city, "state": place.state, "countryOrRegion": place.country,
                "geoCoordinates": { "latitude": place.latitude, "longitude": place.longitude },
            },
            "correlationId": correlation,
            "conditionalAccessStatus": s.conditional_access,
            "appliedConditionalAccessPolicies": [],
            "isInteractive": s.interactive,
            "tokenIssuerName": "",
            "tokenIssuerType": "AzureAD",
            "processingTimeInMilliseconds": rng.random_range(15..400),
            "riskDetail": "none",
            "riskLevelAggregated": s.risk,
            "riskLevelDuringSignIn": s.risk,
            "riskState": if at_risk { "atRisk" } else { "none" },
            "riskEventTypes": s.risk_events,
            "riskEventTypes_v2": s.risk_events,
            "resourceDisplayName": s.resource.0,
            "resourceId": s.resource.1,
            "resourceTenantId": tenant,
            "homeTenantId": tenant,
            "flaggedForReview": false,
            "isTenantRestricted": false,
            "crossTenantAccessType": "none",
            "uniqueTokenIdentifier": token_identifier(rng),
            "incomingTokenType": "none",
            "authenticationProtocol": if s.app.0 == USER_APPS[SPRAY_APP].0 && s.interactive { "ropc" } else { "none" },
        });
        if !managed {
            props["autonomousSystemNumber"] = json!(place.asn);
        }
        if p.kind == PrincipalKind::User {
            let browser = s.browser.unwrap_or(&BROWSERS[0]);
            let mfa = s.interactive && s.error == 0 && s.conditional_access == "success";
            props["userId"] = json!(p.object_id);
            props["userPrincipalName"] = json!(p.name);
            props["userDisplayName"] = json!(p.display_name);
            props["userType"] = json!("Member");
            props["servicePrincipalId"] = json!("");
            props["originalRequestId"] = json!(id);
            props["clientAppUsed"] = json!(s.app.2);
            props["userAgent"] = json!(browser.agent);
            props["deviceDetail"] =
                json!({ "deviceId": "", "operatingSystem": browser.os, "browser": browser.browser });
            props["mfaDetail"] = json!({});
            props["authenticationRequirement"] =
                json!(if mfa { "multiFactorAuthentication" } else { "singleFactorAuthentication" });
        } else {
            props["userId"] = Value::Null;
            props["servicePrincipalId"] = json!(p.object_id);
            props["servicePrincipalName"] = json!(p.name);
            if p.kind == PrincipalKind::ServicePrincipal {
                props["servicePrincipalCredentialKeyId"] = json!(p.credential_key_id);
            }
        }
        let mut record = json!({
            "time": WireTime(s.time, "Z").to_string(),
            "resourceId": format!("/tenants/{tenant}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": category,
            "tenantId": tenant,
            "resultType": s.error.to_string(),
            "resultSignature": "None",
            "durationMs": 0,
            "correlationId": correlation,
            "Level": 4,
            "properties": props,
        });
        // As in the managed identity sample: no caller address and no country at top level.
        if !managed {
            record["callerIpAddress"] = json!(ip);
            record["location"] = json!(place.country);
        }
        if p.kind == PrincipalKind::User {
            record["identity"] = json!(p.display_name);
        }
        if s.error != 0 {
            record["resultDescription"] = json!(failure);
        }
        Event { time: s.time, category, record }
    }
}

fn baseline_risk(rng: &mut Prng) -> &'static str {
    pick_weighted(rng, &[("none", 960), ("low", 30), ("medium", 8), ("high", 2)])
}

fn failure_reason(code: u32) -> &'static str {
    match code {
        0 => "",
        50126 => "Error validating credentials due to invalid username or password.",
        50074 => "Strong Authentication is required.",
        50140 => "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
        _ => "Other.",
    }
}

/// The base64url form `uniqueTokenIdentifier` takes (22 characters for 128 bits).
fn token_identifier(rng: &mut Prng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: u128 = rng.random();
    (0..22).map(|i| char::from(ALPHABET[((bits >> (i * 6)) & 63) as usize])).collect()
}
