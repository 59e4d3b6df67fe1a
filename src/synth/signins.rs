//! Entra ID sign-in records in all four categories (interactive and non-interactive user,
//! service principal, managed identity), as diagnostic settings export them.

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use rand::seq::IndexedRandom;
use serde::Serialize;

use super::tenant::{BROWSERS, NOWHERE, USER_APPS};
use super::wire::{Prng, WireTime, as_text, guid, jitter, pick_weighted};
use super::{Browser, Event, Generator, Place, Principal, PrincipalKind};

/// (display name, app id) of the resource a token is issued for.
type Resource = (&'static str, &'static str);

pub(super) const COSMOS_RESOURCE: Resource = ("Azure Cosmos DB", "a232010e-820c-4083-83bb-3ace5fc29d0b");
pub(super) const ARM_RESOURCE: Resource =
    ("Windows Azure Service Management API", "797f4846-ba00-4fd7-ba43-dac1f8f63013");
pub(super) const EXCHANGE_RESOURCE: Resource = ("Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000");
/// Outlook on a phone: (name, app id, clientAppUsed).
pub(super) const OUTLOOK_MOBILE: (&str, &str, &str) =
    ("Microsoft Outlook", "27922004-5251-4030-b22d-91ecd9a37ea4", "Mobile Apps and Desktop clients");
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
        // Draw order is part of the output: ids, then processing time, then the token id.
        let (id, correlation) = (guid(rng), guid(rng));
        let processing_time_in_milliseconds: i32 = rng.random_range(15..400);
        let unique_token_identifier = token_identifier(rng);
        let category = match (p.kind, s.interactive) {
            (PrincipalKind::User, true) => "SignInLogs",
            (PrincipalKind::User, false) => "NonInteractiveUserSignInLogs",
            (PrincipalKind::ServicePrincipal, _) => "ServicePrincipalSignInLogs",
            (PrincipalKind::ManagedIdentity, _) => "ManagedIdentitySignInLogs",
        };
        let managed = p.kind == PrincipalKind::ManagedIdentity;
        let (ip, place) = if managed { ("", &NOWHERE) } else { (s.ip, s.place) };
        let failure = (s.error != 0).then(|| failure_reason(s.error));
        let at_risk = matches!(s.risk, "medium" | "high");
        let identity = if p.kind == PrincipalKind::User {
            let browser = s.browser.unwrap_or(&BROWSERS[0]);
            let mfa = s.interactive && s.error == 0 && s.conditional_access == "success";
            Identity::User(UserIdentity {
                user_id: &p.object_id,
                user_principal_name: &p.name,
                user_display_name: &p.display_name,
                user_type: "Member",
                service_principal_id: "",
                original_request_id: &id,
                client_app_used: s.app.2,
                user_agent: browser.agent,
                device_detail: DeviceDetail { device_id: "", operating_system: browser.os, browser: browser.browser },
                mfa_detail: MfaDetail {},
                authentication_requirement: if mfa {
                    "multiFactorAuthentication"
                } else {
                    "singleFactorAuthentication"
                },
            })
        } else {
            Identity::Application(AppIdentity {
                user_id: None,
                service_principal_id: &p.object_id,
                service_principal_name: &p.name,
                service_principal_credential_key_id: (p.kind == PrincipalKind::ServicePrincipal)
                    .then_some(p.credential_key_id.as_str()),
            })
        };
        let properties = SignInProperties {
            id: &id,
            created_date_time: WireTime(s.time, "+00:00"),
            app_id: s.app.1,
            app_display_name: s.app.0,
            ip_address: ip,
            status: Status { error_code: s.error, failure_reason: failure },
            location: Location {
                city: place.city,
                state: place.state,
                country_or_region: place.country,
                geo_coordinates: GeoCoordinates { latitude: place.latitude, longitude: place.longitude },
            },
            correlation_id: &correlation,
            conditional_access_status: s.conditional_access,
            applied_conditional_access_policies: &[],
            is_interactive: s.interactive,
            token_issuer_name: "",
            token_issuer_type: "AzureAD",
            processing_time_in_milliseconds,
            risk_detail: "none",
            risk_level_aggregated: s.risk,
            risk_level_during_sign_in: s.risk,
            risk_state: if at_risk { "atRisk" } else { "none" },
            risk_event_types: s.risk_events,
            risk_event_types_v2: s.risk_events,
            resource_display_name: s.resource.0,
            resource_id: s.resource.1,
            resource_tenant_id: tenant,
            home_tenant_id: tenant,
            flagged_for_review: false,
            is_tenant_restricted: false,
            cross_tenant_access_type: "none",
            unique_token_identifier,
            incoming_token_type: "none",
            authentication_protocol: if s.app.0 == USER_APPS[SPRAY_APP].0 && s.interactive { "ropc" } else { "none" },
            autonomous_system_number: (!managed).then_some(place.asn),
            identity,
        };
        let record = SignInRecord {
            time: WireTime(s.time, "Z"),
            resource_id: format!("/tenants/{tenant}/providers/Microsoft.aadiam"),
            operation_name: "Sign-in activity",
            operation_version: "1.0",
            category,
            tenant_id: tenant,
            result_type: s.error,
            result_signature: "None",
            duration_ms: 0,
            correlation_id: &correlation,
            level: 4,
            properties,
            // As in the managed identity sample: no caller address and no country at top level.
            caller_ip_address: (!managed).then_some(ip),
            location: (!managed).then_some(place.country),
            identity: (p.kind == PrincipalKind::User).then_some(p.display_name.as_str()),
            result_description: failure,
        };
        // A struct of strings, numbers and flags has no way to fail serialization.
        let record = serde_json::to_value(&record).expect("sign-in record serializes");
        Event { time: s.time, category, record }
    }
}

/// A sign-in record as diagnostic settings export it. Fields are declared in the order the
/// records were first built in; `Event::record` is a `Value`, whose keys serde_json sorts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInRecord<'a> {
    #[serde(serialize_with = "as_text")]
    time: WireTime,
    resource_id: String,
    operation_name: &'static str,
    operation_version: &'static str,
    category: &'static str,
    tenant_id: &'a str,
    /// The error code again, but as a string.
    #[serde(serialize_with = "as_text")]
    result_type: u32,
    result_signature: &'static str,
    duration_ms: u32,
    correlation_id: &'a str,
    #[serde(rename = "Level")]
    level: u32,
    properties: SignInProperties<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_ip_address: Option<&'a str>,
    /// Country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    /// The user's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_description: Option<&'static str>,
}

/// `properties` of a sign-in record, shared by all four categories.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInProperties<'a> {
    id: &'a str,
    #[serde(serialize_with = "as_text")]
    created_date_time: WireTime,
    app_id: &'a str,
    app_display_name: &'a str,
    ip_address: &'a str,
    status: Status,
    location: Location,
    correlation_id: &'a str,
    conditional_access_status: &'static str,
    applied_conditional_access_policies: &'static [&'static str],
    is_interactive: bool,
    token_issuer_name: &'static str,
    token_issuer_type: &'static str,
    processing_time_in_milliseconds: i32,
    risk_detail: &'static str,
    risk_level_aggregated: &'static str,
    risk_level_during_sign_in: &'static str,
    risk_state: &'static str,
    risk_event_types: &'static [&'static str],
    #[serde(rename = "riskEventTypes_v2")]
    risk_event_types_v2: &'static [&'static str],
    resource_display_name: &'static str,
    resource_id: &'static str,
    resource_tenant_id: &'a str,
    home_tenant_id: &'a str,
    flagged_for_review: bool,
    is_tenant_restricted: bool,
    cross_tenant_access_type: &'static str,
    unique_token_identifier: String,
    incoming_token_type: &'static str,
    authentication_protocol: &'static str,
    /// Managed identity sign-ins have no network, so no ASN.
    #[serde(skip_serializing_if = "Option::is_none")]
    autonomous_system_number: Option<u32>,
    #[serde(flatten)]
    identity: Identity<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    /// An int here, unlike the top level's `resultType`.
    error_code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    city: &'static str,
    state: &'static str,
    country_or_region: &'static str,
    geo_coordinates: GeoCoordinates,
}

#[derive(Serialize)]
struct GeoCoordinates {
    latitude: f64,
    longitude: f64,
}

/// Who signed in: the fields a user's sign-in has and an application's does not, and back.
#[derive(Serialize)]
#[serde(untagged)]
enum Identity<'a> {
    User(UserIdentity<'a>),
    Application(AppIdentity<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    user_id: &'a str,
    user_principal_name: &'a str,
    user_display_name: &'a str,
    user_type: &'static str,
    /// Present but empty for users.
    service_principal_id: &'static str,
    original_request_id: &'a str,
    client_app_used: &'a str,
    user_agent: &'static str,
    device_detail: DeviceDetail,
    mfa_detail: MfaDetail,
    authentication_requirement: &'static str,
}

/// A service principal or managed identity.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppIdentity<'a> {
    /// Always null: written as `"userId": null`, not left out.
    user_id: Option<&'a str>,
    service_principal_id: &'a str,
    service_principal_name: &'a str,
    /// Service principals only; managed identities have no credential of their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    service_principal_credential_key_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceDetail {
    device_id: &'static str,
    operating_system: &'static str,
    browser: &'static str,
}

/// Serialized as `{}`.
#[derive(Serialize)]
struct MfaDetail {}

fn baseline_risk(rng: &mut Prng) -> &'static str {
    pick_weighted(rng, &[("none", 960), ("low", 30), ("medium", 8), ("high", 2)])
}

fn failure_reason(code: u32) -> &'static str {
    match code {
        0 => "",
        50126 => "Error validating credentials due to invalid username or password.",
        50074 => "Strong Authentication is required.",
        50140 => "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
        50076 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource."
        }
        50053 => {
            "Account is locked because user tried to sign in too many times with an incorrect user ID or password."
        }
        50057 => "User account is disabled.",
        53003 => "Access has been blocked by Conditional Access policies.",
        70008 => "The provided authorization code or refresh token has expired due to inactivity.",
        700082 => "The refresh token has expired due to inactivity.",
        7000215 => "Invalid client secret is provided.",
        7000222 => "The provided client secret keys are expired.",
        _ => "Other.",
    }
}

/// The base64url form `uniqueTokenIdentifier` takes (22 characters for 128 bits).
fn token_identifier(rng: &mut Prng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: u128 = rng.random();
    (0..22).map(|i| char::from(ALPHABET[((bits >> (i * 6)) & 63) as usize])).collect()
}
