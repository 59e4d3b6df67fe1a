//! Arrow record batches for the four public tables, filled by the parser.
//!
//! [`Rows`] is the [`RecordSink`] the parser writes into: each accepted or rejected
//! record becomes one row of `cosmos_requests`, `signins`, `raw_events` or
//! `quarantine`. Column names equal the table's (inserts are `BY NAME`), and
//! `tests/it/store.rs` checks each schema against the migrated tables.

use crate::record::{
    Accepted, ArmPath, Category, Origin, RecordSink, Rejection, SignInKind, resource_path_segment, tenant_of_resource,
};
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::sync::Arc;

/// Longest raw record kept whole in `quarantine.raw`; longer ones keep this prefix,
/// their full size and `truncated = true`.
pub const MAX_QUARANTINED_BYTES: usize = 1 << 20;

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Declares one table's builders; `$kind` picks the Arrow type and builder.
macro_rules! arrow_table {
    ($(#[$meta:meta])* $name:ident { $($column:ident : $kind:ident,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $(pub $column: arrow_table!(@builder $kind),)*
            len: usize,
        }

        impl $name {
            pub fn schema() -> SchemaRef {
                Arc::new(Schema::new(vec![$(Field::new(stringify!($column), arrow_table!(@type $kind), true),)*]))
            }

            fn new() -> Self {
                Self { $($column: arrow_table!(@new $kind),)* len: 0 }
            }

            pub fn len(&self) -> usize {
                self.len
            }

            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// The rows so far as one batch; the builders start over.
            pub fn finish(&mut self) -> Option<RecordBatch> {
                if self.len == 0 {
                    return None;
                }
                self.len = 0;
                let columns: Vec<ArrayRef> = vec![$(Arc::new(self.$column.finish()),)*];
                Some(RecordBatch::try_new(Self::schema(), columns).expect("builders match the schema"))
            }
        }
    };
    (@builder text) => { StringBuilder };
    (@builder int) => { Int32Builder };
    (@builder bigint) => { Int64Builder };
    (@builder double) => { Float64Builder };
    (@builder bool) => { BooleanBuilder };
    (@builder time) => { TimestampMicrosecondBuilder };
    (@builder blob) => { BinaryBuilder };
    (@builder list) => { ListBuilder<StringBuilder> };
    (@type text) => { DataType::Utf8 };
    (@type int) => { DataType::Int32 };
    (@type bigint) => { DataType::Int64 };
    (@type double) => { DataType::Float64 };
    (@type bool) => { DataType::Boolean };
    (@type time) => { utc() };
    (@type blob) => { DataType::Binary };
    (@type list) => { DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))) };
    (@new time) => { TimestampMicrosecondBuilder::new().with_timezone("UTC") };
    (@new list) => { ListBuilder::new(StringBuilder::new()) };
    (@new $kind:ident) => { <arrow_table!(@builder $kind)>::new() };
}

arrow_table! {
    /// `cosmos_requests`: one row per Cosmos DB data-plane request.
    CosmosRows {
        time: time,
        account: text,
        subscription_id: text,
        resource_group: text,
        region: text,
        operation: text,
        status_code: int,
        duration_ms: double,
        request_charge: double,
        request_length: bigint,
        response_length: bigint,
        client_ip: text,
        user_agent: text,
        principal_id: text,
        role_assignment_id: text,
        auth_token_type: text,
        key_type: text,
        connection_mode: text,
        database_name: text,
        collection_name: text,
        request_resource_type: text,
        request_resource_id: text,
        partition_id: text,
        activity_id: text,
        resource_token_permission_id: text,
        resource_token_permission_mode: text,
        resource_token_user_rid: text,
        level: text,
        source: text,
        line: bigint,
        record_index: int,
        partition: text,
        sequence_number: bigint,
        record_sha256: blob,
    }
}

arrow_table! {
    /// `signins`: one row per Entra ID sign-in of any of the four kinds.
    SignInRows {
        time: time,
        kind: text,
        category: text,
        signin_id: text,
        tenant_id: text,
        principal_id: text,
        principal_name: text,
        user_display_name: text,
        app_id: text,
        app_display_name: text,
        ip_address: text,
        country: text,
        state: text,
        city: text,
        latitude: double,
        longitude: double,
        autonomous_system_number: bigint,
        error_code: int,
        failure_reason: text,
        risk_level: text,
        risk_level_aggregated: text,
        risk_state: text,
        risk_detail: text,
        risk_event_types: list,
        conditional_access_status: text,
        is_interactive: bool,
        resource_id: text,
        resource_display_name: text,
        resource_tenant_id: text,
        home_tenant_id: text,
        authentication_requirement: text,
        client_app_used: text,
        user_agent: text,
        device_os: text,
        device_browser: text,
        unique_token_identifier: text,
        incoming_token_type: text,
        authentication_protocol: text,
        credential_key_id: text,
        cross_tenant_access_type: text,
        user_type: text,
        correlation_id: text,
        log_time: time,
        source: text,
        line: bigint,
        record_index: int,
        partition: text,
        sequence_number: bigint,
        record_sha256: blob,
    }
}

arrow_table! {
    /// `raw_events`: records of categories TokenTrail does not type, kept whole.
    RawRows {
        time: time,
        category: text,
        source: text,
        line: bigint,
        record_index: int,
        partition: text,
        sequence_number: bigint,
        record: text,
    }
}

arrow_table! {
    /// `quarantine`: records that could not be read, with their bytes and why.
    QuarantineRows {
        time: time,
        reason: text,
        category: text,
        source: text,
        line: bigint,
        record_index: int,
        partition: text,
        sequence_number: bigint,
        raw: blob,
        raw_size: bigint,
        truncated: bool,
    }
}

/// Where a typed record came from and the SHA-256 of its bytes as received
/// (`Accepted::raw`), into the position columns `cosmos_requests` and `signins` share
/// (migration 17). The digest lives on the stack: no allocation per record.
macro_rules! push_position {
    ($table:expr, $accepted:expr, $origin:expr, $index:expr) => {{
        let t = &mut *$table;
        t.source.append_value(&$origin.source);
        t.line.append_option($origin.line);
        t.record_index.append_option($index);
        t.partition.append_option($origin.partition.as_deref());
        t.sequence_number.append_option($origin.sequence);
        t.record_sha256.append_value(Sha256::digest($accepted.raw));
    }};
}

/// An object id as stored ([`crate::record::object_id`]): GUIDs lower-cased, so joins do
/// not depend on every exporter's casing; anything else ("ParseMe") as it came.
fn object_id(text: Option<&str>) -> Option<Cow<'_, str>> {
    text.map(crate::record::object_id)
}

fn lower_case(text: &str) -> Cow<'_, str> {
    match text.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(text.to_ascii_lowercase()),
        false => Cow::Borrowed(text),
    }
}

/// Rows of all four tables from one stretch of input.
pub struct Rows {
    pub cosmos: CosmosRows,
    pub signins: SignInRows,
    pub raw: RawRows,
    pub quarantine: QuarantineRows,
    /// When rejected rows were quarantined (microseconds, UTC).
    pub now: i64,
}

impl Default for Rows {
    fn default() -> Self {
        Rows::new(chrono::Utc::now().timestamp_micros())
    }
}

impl Rows {
    pub fn new(now: i64) -> Rows {
        Rows {
            cosmos: CosmosRows::new(),
            signins: SignInRows::new(),
            raw: RawRows::new(),
            quarantine: QuarantineRows::new(),
            now,
        }
    }

    pub fn len(&self) -> usize {
        self.cosmos.len() + self.signins.len() + self.raw.len() + self.quarantine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_cosmos(&mut self, a: &Accepted<'_, '_>, origin: &Origin, index: Option<i32>) {
        let (r, p, c) = (a.record, &a.record.properties, &mut self.cosmos);
        let arm = ArmPath::parse(r.resource_id.get().unwrap_or(""));
        let resource = p.request_resource_id.get();
        c.time.append_option(a.time);
        c.account.append_option(arm.account.map(lower_case));
        c.subscription_id.append_option(object_id(p.subscription_id.get().or(arm.subscription)));
        c.resource_group.append_option(arm.resource_group);
        c.region.append_option(p.region.get());
        c.operation.append_option(r.operation_name.get());
        c.status_code.append_option(p.status_code.0.and_then(|s| i32::try_from(s).ok()));
        c.duration_ms.append_option(p.duration.0.or(r.duration_ms.0));
        c.request_charge.append_option(p.request_charge.0);
        c.request_length.append_option(p.request_length.0);
        c.response_length.append_option(p.response_length.0);
        c.client_ip.append_option(p.client_ip.get().or(r.caller_ip.get()));
        c.user_agent.append_option(p.user_agent.get());
        c.principal_id.append_option(object_id(p.aad_principal_id.get()));
        c.role_assignment_id.append_option(p.aad_role_assignment_id.get());
        c.auth_token_type.append_option(p.auth_token_type.get());
        c.key_type.append_option(p.key_type.get());
        c.connection_mode.append_option(p.connection_mode.get());
        let database = p.database_name.get().or_else(|| resource.and_then(|r| resource_path_segment(r, "dbs")));
        c.database_name.append_option(database);
        let collection = p.collection_name.get().or_else(|| resource.and_then(|r| resource_path_segment(r, "colls")));
        c.collection_name.append_option(collection);
        c.request_resource_type.append_option(p.request_resource_type.get());
        c.request_resource_id.append_option(resource);
        c.partition_id.append_option(p.partition_id.get());
        c.activity_id.append_option(p.activity_id.get());
        c.resource_token_permission_id.append_option(p.resource_token_permission_id.get());
        c.resource_token_permission_mode.append_option(p.resource_token_permission_mode.get());
        c.resource_token_user_rid.append_option(p.resource_token_user_rid.get());
        c.level.append_option(r.level.get());
        push_position!(c, a, origin, index);
        c.len += 1;
    }

    fn push_signin(&mut self, a: &Accepted<'_, '_>, kind: SignInKind, origin: &Origin, index: Option<i32>) {
        let (r, p, s) = (a.record, &a.record.properties, &mut self.signins);
        let (user, sp) = (p.user_id.get(), p.service_principal_id.get());
        // The principal that Cosmos DB logs as aadPrincipalId (formats.md).
        let principal = if kind.is_user() { user.or(sp) } else { sp.or(user) };
        let name = if kind.is_user() {
            p.user_principal_name.get().or(p.user_display_name.get())
        } else {
            p.service_principal_name.get().or(p.app_display_name.get())
        };
        let location = &p.location;
        let (lat, lon) = (location.coordinates.latitude.0, location.coordinates.longitude.0);
        // 0,0 with no place named is how Entra says "unknown", not the Gulf of Guinea.
        let unknown_place = location.country.get().is_none() && location.city.get().is_none();
        let coordinates = if unknown_place && lat.unwrap_or(0.0) == 0.0 && lon.unwrap_or(0.0) == 0.0 {
            (None, None)
        } else {
            (lat, lon)
        };
        let error_code = p.status.error_code.0.or_else(|| r.result_type.get().and_then(|t| t.trim().parse().ok()));
        s.time.append_option(a.time);
        s.kind.append_value(kind.as_str());
        s.category.append_option(r.category.get());
        s.signin_id.append_option(p.id.get());
        let tenant = r.tenant_id.get().or_else(|| r.resource_id.get().and_then(tenant_of_resource));
        s.tenant_id.append_option(object_id(tenant));
        s.principal_id.append_option(object_id(principal));
        s.principal_name.append_option(name);
        s.user_display_name.append_option(p.user_display_name.get());
        s.app_id.append_option(object_id(p.app_id.get()));
        s.app_display_name.append_option(p.app_display_name.get());
        s.ip_address.append_option(p.ip_address.get().or(r.caller_ip.get()));
        s.country.append_option(location.country.get().or(r.location.get()));
        s.state.append_option(location.state.get());
        s.city.append_option(location.city.get());
        s.latitude.append_option(coordinates.0);
        s.longitude.append_option(coordinates.1);
        s.autonomous_system_number.append_option(p.autonomous_system_number.0);
        s.error_code.append_option(error_code.and_then(|c| i32::try_from(c).ok()));
        s.failure_reason.append_option(p.status.failure_reason.get().or(r.result_description.get()));
        s.risk_level.append_option(p.risk_level_during_sign_in.get());
        s.risk_level_aggregated.append_option(p.risk_level_aggregated.get());
        s.risk_state.append_option(p.risk_state.get());
        s.risk_detail.append_option(p.risk_detail.get());
        match &p.risk_event_types.0 {
            Some(types) => {
                for t in types {
                    s.risk_event_types.values().append_value(t);
                }
                s.risk_event_types.append(true);
            }
            None => s.risk_event_types.append(false),
        }
        s.conditional_access_status.append_option(p.conditional_access_status.get());
        s.is_interactive.append_option(p.is_interactive.0.or(Some(kind == SignInKind::UserInteractive)));
        s.resource_id.append_option(object_id(p.resource_id.get()));
        s.resource_display_name.append_option(p.resource_display_name.get());
        s.resource_tenant_id.append_option(object_id(p.resource_tenant_id.get()));
        s.home_tenant_id.append_option(object_id(p.home_tenant_id.get()));
        s.authentication_requirement.append_option(p.authentication_requirement.get());
        s.client_app_used.append_option(p.client_app_used.get());
        s.user_agent.append_option(p.user_agent.get());
        s.device_os.append_option(p.device_detail.operating_system.get());
        s.device_browser.append_option(p.device_detail.browser.get());
        s.unique_token_identifier.append_option(p.unique_token_identifier.get());
        s.incoming_token_type.append_option(p.incoming_token_type.get());
        s.authentication_protocol.append_option(p.authentication_protocol.get());
        s.credential_key_id.append_option(p.credential_key_id.get());
        s.cross_tenant_access_type.append_option(p.cross_tenant_access_type.get());
        s.user_type.append_option(p.user_type.get());
        s.correlation_id.append_option(p.correlation_id.get().or(r.correlation_id.get()));
        s.log_time.append_option(r.time.get().and_then(crate::record::time::parse_timestamp));
        push_position!(s, a, origin, index);
        s.len += 1;
    }

    fn push_raw(&mut self, a: &Accepted<'_, '_>, origin: &Origin, index: Option<i32>) {
        let w = &mut self.raw;
        w.time.append_option(a.time);
        w.category.append_option(a.record.category.get());
        w.source.append_value(&origin.source);
        w.line.append_option(origin.line);
        w.record_index.append_option(index);
        w.partition.append_option(origin.partition.as_deref());
        w.sequence_number.append_option(origin.sequence);
        // Accepted records were read as JSON, so they are UTF-8.
        w.record.append_value(String::from_utf8_lossy(a.raw));
        w.len += 1;
    }
}

impl RecordSink for Rows {
    fn accept(&mut self, record: Accepted<'_, '_>, origin: &Origin, index: Option<i32>) {
        match record.category {
            Category::DataPlaneRequests => self.push_cosmos(&record, origin, index),
            Category::SignIn(kind) => self.push_signin(&record, kind, origin, index),
            Category::Other => self.push_raw(&record, origin, index),
        }
    }

    fn reject(&mut self, rejection: Rejection<'_>, origin: &Origin, index: Option<i32>) {
        let q = &mut self.quarantine;
        let kept = &rejection.raw[..rejection.raw.len().min(MAX_QUARANTINED_BYTES)];
        q.time.append_value(self.now);
        q.reason.append_value(&rejection.reason);
        q.category.append_option(rejection.category.as_deref());
        q.source.append_value(&origin.source);
        q.line.append_option(origin.line);
        q.record_index.append_option(index);
        q.partition.append_option(origin.partition.as_deref());
        q.sequence_number.append_option(origin.sequence);
        q.raw.append_value(kept);
        q.raw_size.append_value(rejection.size as i64);
        q.truncated.append_value(kept.len() < rejection.size);
        q.len += 1;
    }
}

/// The finished batches of one commit, table by table.
#[derive(Default)]
pub struct TableBatches {
    pub cosmos: Vec<RecordBatch>,
    pub signins: Vec<RecordBatch>,
    pub raw: Vec<RecordBatch>,
    pub quarantine: Vec<RecordBatch>,
}

impl TableBatches {
    /// Moves `rows`' contents in; `rows` is left empty for reuse.
    pub fn take_from(&mut self, rows: &mut Rows) {
        self.cosmos.extend(rows.cosmos.finish());
        self.signins.extend(rows.signins.finish());
        self.raw.extend(rows.raw.finish());
        self.quarantine.extend(rows.quarantine.finish());
    }

    /// Memory held by the batches' buffers.
    pub fn memory_size(&self) -> usize {
        [&self.cosmos, &self.signins, &self.raw, &self.quarantine]
            .iter()
            .flat_map(|batches| batches.iter())
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    pub fn counts(&self) -> RowCounts {
        let n = |b: &[RecordBatch]| b.iter().map(|b| b.num_rows() as u64).sum();
        RowCounts {
            cosmos: n(&self.cosmos),
            signins: n(&self.signins),
            raw: n(&self.raw),
            quarantined: n(&self.quarantine),
        }
    }
}

/// Rows per table; what ingest reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RowCounts {
    pub cosmos: u64,
    pub signins: u64,
    pub raw: u64,
    pub quarantined: u64,
}

impl RowCounts {
    pub fn total(&self) -> u64 {
        self.cosmos + self.signins + self.raw + self.quarantined
    }

    /// The rows of the table with the most.
    pub fn largest(&self) -> u64 {
        self.cosmos.max(self.signins).max(self.raw).max(self.quarantined)
    }
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, other: RowCounts) {
        self.cosmos += other.cosmos;
        self.signins += other.signins;
        self.raw += other.raw;
        self.quarantined += other.quarantined;
    }
}
