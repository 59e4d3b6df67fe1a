//! Rule files: one detection rule per `.sql` file, a metadata header in SQL comments and
//! one `SELECT`. Parsing never fails the set: each file gives a [`Rule`] or a
//! [`RuleError`] naming the file and the reason, and the others load regardless.
//!
//! The format (documented for users in `queries/README.md`):
//! ```sql
//! -- id: password_spray
//! -- title: Password spray from one address
//! -- severity: high
//! -- soc2: CC6.1, CC7.2
//! -- mitre: T1110.003 Brute Force: Password Spraying
//! -- window: 1h
//! -- description: One address fails to sign in as many users...
//! --   (more lines, indented, continue a field)
//! -- remediation: Block the address...
//! -- param: min_users = 5
//! --   Distinct users that must fail from the address.
//! SELECT ...   -- uses $from, $to and $min_users
//! ```

use chrono::TimeDelta;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a finding of the rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter value: what a rule file declares as default and what configuration sets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl ParamValue {
    /// `5`, `2.5` or `'text'` (SQL quoting: `''` is a quote).
    pub fn parse(text: &str) -> Option<ParamValue> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            // Inside, a quote is written twice; a lone one means this was not one string.
            return (!inner.replace("''", "").contains('\'')).then(|| ParamValue::Text(inner.replace("''", "'")));
        }
        if let Ok(int) = text.parse::<i64>() {
            return Some(ParamValue::Int(int));
        }
        text.parse::<f64>().ok().filter(|f| f.is_finite()).map(ParamValue::Float)
    }

    pub fn to_duckdb(&self) -> duckdb::types::Value {
        match self {
            ParamValue::Int(v) => duckdb::types::Value::BigInt(*v),
            ParamValue::Float(v) => duckdb::types::Value::Double(*v),
            ParamValue::Text(v) => duckdb::types::Value::Text(v.clone()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ParamValue::Int(_) => "an integer",
            ParamValue::Float(_) => "a number",
            ParamValue::Text(_) => "a string",
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v:?}"),
            ParamValue::Text(v) => write!(f, "'{}'", v.replace('\'', "''")),
        }
    }
}

/// A parameter a rule declares: `-- param: name = default`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub default: ParamValue,
    /// What configuration set instead of the default, if anything.
    pub value: Option<ParamValue>,
    pub description: String,
}

impl Param {
    /// The largest value the rule's window allows, where its description says so ("(at most
    /// 60)"): a larger one would look past the `window` the engine re-evaluates and miss
    /// matches across batches.
    pub fn limit(&self) -> Option<f64> {
        let (_, rest) = self.description.split_once("(at most ")?;
        rest.split(')').next()?.trim().parse().ok()
    }

    /// The value the rule runs with.
    pub fn effective(&self) -> &ParamValue {
        self.value.as_ref().unwrap_or(&self.default)
    }
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into TokenTrail (`queries/` of the source tree).
    BuiltIn(&'static str),
    /// A file of the rules folder.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn(name) => write!(f, "built-in {name}"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A parsed detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// SOC 2 trust services criteria, e.g. `CC6.1`.
    pub soc2: Vec<String>,
    /// MITRE ATT&CK technique, e.g. `T1110.003 Brute Force: Password Spraying`.
    pub mitre: String,
    pub description: String,
    pub remediation: String,
    /// How far after an event data can still change whether it matches; the engine
    /// re-evaluates this far back when new data arrives ([`Rule::reach`]). Where the header
    /// names a parameter, its default.
    pub window: TimeDelta,
    /// The integer parameter, in minutes, the header's `window` names, if it does.
    pub window_param: Option<String>,
    pub params: Vec<Param>,
    /// The query, without a trailing semicolon.
    pub sql: String,
    pub origin: Origin,
}

impl Rule {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// How far before a batch's earliest event the engine evaluates this rule again: its
    /// `window`, or the value (configured or default) of the parameter it names, in
    /// minutes. A rule whose reach follows its parameter reads no more than that needs.
    pub fn reach(&self) -> TimeDelta {
        let param = self.window_param.as_deref().and_then(|name| self.param(name));
        param.and_then(|p| minutes(p.effective())).unwrap_or(self.window)
    }
}

/// An integer parameter's value as a window: whole minutes, 0 or more.
fn minutes(value: &ParamValue) -> Option<TimeDelta> {
    match value {
        ParamValue::Int(minutes) if *minutes >= 0 => TimeDelta::try_minutes(*minutes),
        _ => None,
    }
}

/// A rule file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file (or `config` for a configuration problem).
    pub origin: String,
    /// The rule id, when it got that far.
    pub rule_id: Option<String>,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule_id {
            Some(id) => write!(f, "{} (rule {id}): {}", self.origin, self.reason),
            None => write!(f, "{}: {}", self.origin, self.reason),
        }
    }
}

impl std::error::Error for RuleError {}

/// Names the engine binds itself.
pub const RESERVED_PARAMS: [&str; 2] = ["from", "to"];

const FIELDS: [&str; 8] = ["id", "title", "severity", "soc2", "mitre", "window", "description", "remediation"];

/// Parses one rule file. `file_stem` must equal the rule id (one rule per file, named after it).
pub fn parse(text: &str, origin: Origin, file_stem: &str) -> Result<Rule, RuleError> {
    let fail = |rule_id: Option<&str>, reason: String| RuleError {
        origin: origin.to_string(),
        rule_id: rule_id.map(str::to_owned),
        reason,
    };
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    let mut params: Vec<(String, String, String)> = Vec::new();
    // Which field a continuation line extends: a header field or the last param.
    enum Target<'a> {
        None,
        Field(&'a str),
        Param,
    }
    let mut target = Target::None;
    let mut body_start = text.len();
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let line_number = number + 1;
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            target = Target::None;
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            body_start = start;
            break;
        };
        let continuation = comment.starts_with("  ") || comment.starts_with('\t');
        let comment = comment.trim();
        if comment.is_empty() {
            continue;
        }
        if continuation {
            match target {
                Target::Field(name) => {
                    let value = fields.entry(name).or_default();
                    value.push(' ');
                    value.push_str(comment);
                }
                Target::Param => {
                    if let Some((_, _, description)) = params.last_mut() {
                        if !description.is_empty() {
                            description.push(' ');
                        }
                        description.push_str(comment);
                    }
                }
                Target::None => {}
            }
            continue;
        }
        let Some((key, value)) = comment.split_once(':') else {
            // A plain comment in the header.
            target = Target::None;
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if key == "param" {
            let Some((name, default)) = value.split_once('=') else {
                return Err(fail(
                    fields.get("id").map(String::as_str),
                    format!("line {line_number}: `-- param: {value}` must be `-- param: name = default`"),
                ));
            };
            params.push((name.trim().to_owned(), default.trim().to_owned(), String::new()));
            target = Target::Param;
        } else if let Some(&name) = FIELDS.iter().find(|f| **f == key) {
            if fields.insert(name, value.to_owned()).is_some() {
                return Err(fail(None, format!("line {line_number}: `{name}` is given twice")));
            }
            target = Target::Field(name);
        } else if key.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()) && !key.is_empty() {
            return Err(fail(
                fields.get("id").map(String::as_str),
                format!("line {line_number}: unknown header field `{key}` (known: {}, param)", FIELDS.join(", ")),
            ));
        } else {
            target = Target::None;
        }
    }
    let id = fields.get("id").cloned().unwrap_or_default();
    let rule_id = (!id.is_empty()).then_some(id.as_str());
    for field in FIELDS {
        if fields.get(field).is_none_or(|v| v.trim().is_empty()) {
            return Err(fail(rule_id, format!("the header has no `-- {field}:` line")));
        }
    }
    if !is_identifier(&id) {
        return Err(fail(rule_id, format!("id `{id}` must be lower case letters, digits and _")));
    }
    if id != file_stem {
        return Err(fail(rule_id, format!("the file must be named after its id: {id}.sql")));
    }
    let severity = Severity::parse(&fields["severity"]).ok_or_else(|| {
        fail(rule_id, format!("severity `{}` must be low, medium, high or critical", fields["severity"]))
    })?;
    let mut parsed_params: Vec<Param> = Vec::new();
    for (name, default, description) in params {
        if !is_identifier(&name) {
            return Err(fail(rule_id, format!("parameter name `{name}` must be lower case letters, digits and _")));
        }
        if RESERVED_PARAMS.contains(&name.as_str()) {
            return Err(fail(rule_id, format!("parameter `{name}` is reserved: the engine binds $from and $to")));
        }
        if parsed_params.iter().any(|p| p.name == name) {
            return Err(fail(rule_id, format!("parameter `{name}` is declared twice")));
        }
        let default = ParamValue::parse(&default).ok_or_else(|| {
            fail(rule_id, format!("parameter `{name}`: default `{default}` must be an integer, a number or 'text'"))
        })?;
        parsed_params.push(Param { name, default, value: None, description });
    }
    let (window, window_param) = match parse_duration(&fields["window"]) {
        Some(window) => (window, None),
        None => {
            let name = fields["window"].trim();
            let window = parsed_params.iter().find(|p| p.name == name).and_then(|p| minutes(&p.default));
            let window = window.ok_or_else(|| {
                fail(
                    rule_id,
                    format!(
                        "window `{name}` must be a duration such as 0m, 15m, 1h or 7d, or the name of an integer \
                         parameter (minutes, default 0 or more)"
                    ),
                )
            })?;
            (window, Some(name.to_owned()))
        }
    };
    let sql = text[body_start..].trim().trim_end_matches(';').trim_end().to_owned();
    if sql.is_empty() {
        return Err(fail(rule_id, "the file has a header but no query after it".into()));
    }
    Ok(Rule {
        id,
        title: fields["title"].clone(),
        severity,
        soc2: fields["soc2"].split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        mitre: fields["mitre"].clone(),
        description: fields["description"].clone(),
        remediation: fields["remediation"].clone(),
        window,
        window_param,
        params: parsed_params,
        sql,
        origin,
    })
}

/// Sets configured parameter values on `rule`; a value for an unknown parameter or of
/// another type than the default is an error.
pub fn apply_params(rule: &mut Rule, values: &BTreeMap<String, ParamValue>) -> Result<(), RuleError> {
    for (name, value) in values {
        let origin = rule.origin.to_string();
        let Some(param) = rule.params.iter_mut().find(|p| &p.name == name) else {
            return Err(RuleError {
                origin: "config".into(),
                rule_id: Some(rule.id.clone()),
                reason: format!("no parameter `{name}` in {origin}"),
            });
        };
        let value = match (&param.default, value) {
            // An integer where a number is expected is fine.
            (ParamValue::Float(_), ParamValue::Int(v)) => ParamValue::Float(*v as f64),
            (d, v) if std::mem::discriminant(d) == std::mem::discriminant(v) => v.clone(),
            (d, v) => {
                return Err(RuleError {
                    origin: "config".into(),
                    rule_id: Some(rule.id.clone()),
                    reason: format!("parameter `{name}` is {}, not {} ({v})", d.kind(), v.kind()),
                });
            }
        };
        let number = match value {
            ParamValue::Int(v) => Some(v as f64),
            ParamValue::Float(v) => Some(v),
            ParamValue::Text(_) => None,
        };
        if rule.window_param.as_deref() == Some(name.as_str()) && number.is_some_and(|n| n < 0.0) {
            return Err(RuleError {
                origin: "config".into(),
                rule_id: Some(rule.id.clone()),
                reason: format!("parameter `{name}` is the rule's window in minutes: 0 or more, not {value}"),
            });
        }
        if let (Some(limit), Some(number)) = (param.limit(), number)
            && number > limit
        {
            return Err(RuleError {
                origin: "config".into(),
                rule_id: Some(rule.id.clone()),
                reason: format!("parameter `{name}` = {number} is above its limit of {limit} (the rule's window)"),
            });
        }
        param.value = Some(value);
    }
    Ok(())
}

fn is_identifier(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `0`, `30s`, `15m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> Option<TimeDelta> {
    let text = text.trim();
    if text == "0" {
        return Some(TimeDelta::zero());
    }
    let unit = text.chars().last()?;
    let amount: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok().filter(|n| *n >= 0)?;
    match unit {
        's' => TimeDelta::try_seconds(amount),
        'm' => TimeDelta::try_minutes(amount),
        'h' => TimeDelta::try_hours(amount),
        'd' => TimeDelta::try_days(amount),
        _ => None,
    }
}

/// The rules compiled into TokenTrail: `queries/*.sql` of the source tree.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("balanced_hub_signins", include_str!("../../queries/balanced_hub_signins.sql")),
    ("collection_enumeration", include_str!("../../queries/collection_enumeration.sql")),
    ("container_or_database_deleted", include_str!("../../queries/container_or_database_deleted.sql")),
    ("cosmos_query_injection", include_str!("../../queries/cosmos_query_injection.sql")),
    ("data_volume_spike", include_str!("../../queries/data_volume_spike.sql")),
    ("data_volume_spike_daily", include_str!("../../queries/data_volume_spike_daily.sql")),
    ("diagnostic_setting_removed", include_str!("../../queries/diagnostic_setting_removed.sql")),
    ("disabled_account_attempts", include_str!("../../queries/disabled_account_attempts.sql")),
    ("distributed_spray", include_str!("../../queries/distributed_spray.sql")),
    ("distributed_spray_then_data_access", include_str!("../../queries/distributed_spray_then_data_access.sql")),
    ("dormant_principal", include_str!("../../queries/dormant_principal.sql")),
    ("impossible_travel", include_str!("../../queries/impossible_travel.sql")),
    ("ip_not_in_signins", include_str!("../../queries/ip_not_in_signins.sql")),
    ("key_auth_access", include_str!("../../queries/key_auth_access.sql")),
    ("key_client_auth_failures", include_str!("../../queries/key_client_auth_failures.sql")),
    ("listkeys_then_key_access", include_str!("../../queries/listkeys_then_key_access.sql")),
    ("local_auth_reenabled", include_str!("../../queries/local_auth_reenabled.sql")),
    ("mass_delete", include_str!("../../queries/mass_delete.sql")),
    ("new_collection_for_principal", include_str!("../../queries/new_collection_for_principal.sql")),
    ("new_country_signin", include_str!("../../queries/new_country_signin.sql")),
    ("new_user_agent", include_str!("../../queries/new_user_agent.sql")),
    ("no_prior_signin", include_str!("../../queries/no_prior_signin.sql")),
    ("password_spray", include_str!("../../queries/password_spray.sql")),
    ("permission_probing", include_str!("../../queries/permission_probing.sql")),
    ("risky_signin_data_access", include_str!("../../queries/risky_signin_data_access.sql")),
    ("role_granted_then_used", include_str!("../../queries/role_granted_then_used.sql")),
    ("signin_log_missing", include_str!("../../queries/signin_log_missing.sql")),
    ("source_reset", include_str!("../../queries/source_reset.sql")),
    ("source_silent", include_str!("../../queries/source_silent.sql")),
    ("sp_credential_added_then_data_access", include_str!("../../queries/sp_credential_added_then_data_access.sql")),
    ("spray_then_data_access", include_str!("../../queries/spray_then_data_access.sql")),
    ("threat_intel_ip", include_str!("../../queries/threat_intel_ip.sql")),
    ("weak_auth_token_reaches_data", include_str!("../../queries/weak_auth_token_reaches_data.sql")),
    ("workload_identity_new_network", include_str!("../../queries/workload_identity_new_network.sql")),
];

/// The built-in rules, then the `.sql` files of `dir` (sorted by name): a file whose id is
/// a built-in's replaces it. Returns the rules and, separately, every file that failed.
pub fn load(dir: Option<&Path>) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in BUILT_IN {
        match parse(text, Origin::BuiltIn(name), name) {
            Ok(rule) => rules.push(rule),
            Err(error) => errors.push(error),
        }
    }
    let Some(dir) = dir else { return (rules, errors) };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(RuleError {
                origin: dir.display().to_string(),
                rule_id: None,
                reason: format!("cannot read the rules folder: {error}"),
            });
            return (rules, errors);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")))
        .collect();
    files.sort();
    for path in files {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                errors.push(RuleError {
                    origin: path.display().to_string(),
                    rule_id: None,
                    reason: format!("cannot read it: {error}"),
                });
                continue;
            }
        };
        match parse(&text, Origin::File(path.clone()), &stem) {
            Ok(rule) => match rules.iter_mut().find(|r| r.id == rule.id) {
                Some(existing) => *existing = rule,
                None => rules.push(rule),
            },
            Err(error) => errors.push(error),
        }
    }
    (rules, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "-- id: sample_rule\n-- title: A sample\n-- severity: High\n-- soc2: CC6.1, CC7.2\n\
        -- mitre: T1078 Valid Accounts\n-- window: 15m\n-- description: First line\n--   second line.\n\
        -- remediation: Do something.\n-- param: min_users = 5\n--   How many.\n-- param: codes = '1,2'\n\
        -- param: ratio = 2.5\n\nSELECT 1 AS x WHERE $min_users > 0;\n";

    fn parse_good(text: &str) -> Result<Rule, RuleError> {
        parse(text, Origin::BuiltIn("sample_rule"), "sample_rule")
    }

    #[test]
    fn a_complete_header_parses_into_a_rule() {
        let rule = parse_good(GOOD).expect("parses");
        assert_eq!(rule.id, "sample_rule");
        assert_eq!(rule.severity, Severity::High);
        assert_eq!(rule.soc2, ["CC6.1", "CC7.2"]);
        assert_eq!(rule.window, TimeDelta::minutes(15));
        assert_eq!(rule.description, "First line second line.");
        assert_eq!(rule.sql, "SELECT 1 AS x WHERE $min_users > 0");
        let names: Vec<(&str, &ParamValue, &str)> =
            rule.params.iter().map(|p| (p.name.as_str(), &p.default, p.description.as_str())).collect();
        assert_eq!(
            names,
            [
                ("min_users", &ParamValue::Int(5), "How many."),
                ("codes", &ParamValue::Text("1,2".into()), ""),
                ("ratio", &ParamValue::Float(2.5), "")
            ]
        );
    }

    /// GOOD with the line starting with `prefix` replaced by `by` (removed when empty).
    fn with_line(prefix: &str, by: &str) -> String {
        GOOD.split_inclusive('\n')
            .map(|l| {
                if l.starts_with(prefix) {
                    if by.is_empty() { String::new() } else { format!("{by}\n") }
                } else {
                    l.to_string()
                }
            })
            .collect()
    }

    #[test]
    fn every_problem_is_named() {
        let cases = [
            ("-- id:", "", "has no `-- id:` line"),
            ("-- severity:", "-- severity: urgent", "severity `urgent`"),
            ("-- window:", "-- window: soon", "window `soon`"),
            ("-- param: min_users", "-- param: min_users 5", "must be `-- param: name = default`"),
            ("-- param: min_users", "-- param: min_users = five", "default `five`"),
            ("-- param: min_users", "-- param: from = 1", "reserved"),
            ("-- param: codes", "-- param: min_users = 1", "declared twice"),
            ("-- title:", "-- colour: blue", "unknown header field `colour`"),
            ("-- remediation:", "", "has no `-- remediation:` line"),
        ];
        for (prefix, by, expected) in cases {
            let error = parse_good(&with_line(prefix, by)).expect_err(by);
            assert!(error.to_string().contains(expected), "{by}: {error}");
        }
        let renamed = parse(GOOD, Origin::BuiltIn("x"), "other_name").unwrap_err();
        assert!(renamed.reason.contains("sample_rule.sql"), "{renamed}");
        let no_query = parse_good(GOOD.split("\n\n").next().unwrap()).unwrap_err();
        assert!(no_query.reason.contains("no query"), "{no_query}");
    }

    #[test]
    fn configured_values_must_match_the_declared_type() {
        let mut rule = parse_good(GOOD).unwrap();
        let mut values = BTreeMap::new();
        values.insert("ratio".to_string(), ParamValue::Int(3));
        values.insert("min_users".to_string(), ParamValue::Int(8));
        apply_params(&mut rule, &values).unwrap();
        assert_eq!(rule.param("ratio").unwrap().effective(), &ParamValue::Float(3.0));
        assert_eq!(rule.param("min_users").unwrap().effective(), &ParamValue::Int(8));
        values.insert("codes".to_string(), ParamValue::Int(1));
        let error = apply_params(&mut rule, &values).unwrap_err();
        assert!(error.reason.contains("a string, not an integer"), "{error}");
        let mut unknown = BTreeMap::new();
        unknown.insert("nope".to_string(), ParamValue::Int(1));
        assert!(apply_params(&mut rule, &unknown).unwrap_err().reason.contains("no parameter `nope`"));
    }

    #[test]
    fn a_window_parameter_above_its_documented_limit_is_refused() {
        let (rules, errors) = load(None);
        assert!(errors.is_empty(), "{errors:?}");
        let mut spray = rules.into_iter().find(|r| r.id == "password_spray").unwrap();
        assert_eq!(spray.param("spray_minutes").unwrap().limit(), Some(25.0));
        let at_limit = BTreeMap::from([("spray_minutes".to_string(), ParamValue::Int(25))]);
        apply_params(&mut spray, &at_limit).unwrap();
        let above = BTreeMap::from([("spray_minutes".to_string(), ParamValue::Int(90))]);
        let error = apply_params(&mut spray, &above).unwrap_err();
        assert!(error.reason.contains("above its limit of 25"), "{error}");
        // Every built-in default is within its own limit.
        for rule in load(None).0 {
            for param in &rule.params {
                if let (Some(limit), ParamValue::Int(v)) = (param.limit(), &param.default) {
                    assert!(*v as f64 <= limit, "{}: {} = {v} above {limit}", rule.id, param.name);
                }
            }
        }
    }

    #[test]
    fn a_window_can_follow_an_integer_parameter_in_minutes() {
        let named = GOOD.replace("-- window: 15m", "-- window: min_users");
        let mut rule = parse_good(&named).expect("parses");
        assert_eq!(rule.window_param.as_deref(), Some("min_users"));
        assert_eq!((rule.window, rule.reach()), (TimeDelta::minutes(5), TimeDelta::minutes(5)));
        apply_params(&mut rule, &BTreeMap::from([("min_users".to_string(), ParamValue::Int(40))])).unwrap();
        assert_eq!(rule.reach(), TimeDelta::minutes(40), "the configured value, not the default");
        // A fixed window does not move with any parameter.
        let mut fixed = parse_good(GOOD).unwrap();
        apply_params(&mut fixed, &BTreeMap::from([("min_users".to_string(), ParamValue::Int(40))])).unwrap();
        assert_eq!(fixed.reach(), TimeDelta::minutes(15));
        // Only a declared integer parameter can be a window.
        for (window, what) in
            [("ratio", "a number"), ("codes", "a string"), ("nothing", "undeclared"), ("1x", "no unit")]
        {
            let error = parse_good(&GOOD.replace("-- window: 15m", &format!("-- window: {window}"))).unwrap_err();
            assert!(error.reason.contains("the name of an integer parameter"), "{what}: {error}");
        }
        let negative = named.replace("min_users = 5", "min_users = -5");
        assert!(parse_good(&negative).unwrap_err().reason.contains("default 0 or more"));
        let endless = named.replace("min_users = 5", "min_users = 9223372036854775807");
        assert!(parse_good(&endless).unwrap_err().reason.contains("the name of an integer parameter"));
        let below = BTreeMap::from([("min_users".to_string(), ParamValue::Int(-30))]);
        assert!(apply_params(&mut rule, &below).unwrap_err().reason.contains("window in minutes: 0 or more"));
        assert_eq!(rule.reach(), TimeDelta::minutes(40), "the refused value was not taken");
        // The built-in that uses it reads back as far as its parameter says.
        let mut mass_delete = load(None).0.into_iter().find(|r| r.id == "mass_delete").unwrap();
        assert_eq!(mass_delete.reach(), TimeDelta::minutes(15));
        apply_params(&mut mass_delete, &BTreeMap::from([("window_minutes".to_string(), ParamValue::Int(60))])).unwrap();
        assert_eq!(mass_delete.reach(), TimeDelta::hours(1));
    }

    #[test]
    fn values_and_durations_parse() {
        assert_eq!(ParamValue::parse("'it''s'"), Some(ParamValue::Text("it's".into())));
        assert_eq!(ParamValue::parse("''"), Some(ParamValue::Text(String::new())));
        assert_eq!(ParamValue::parse("-3"), Some(ParamValue::Int(-3)));
        assert_eq!(ParamValue::parse("0.5"), Some(ParamValue::Float(0.5)));
        assert_eq!(ParamValue::parse("abc"), None);
        assert_eq!(ParamValue::Text("it's".into()).to_string(), "'it''s'");
        assert_eq!(parse_duration("0"), Some(TimeDelta::zero()));
        assert_eq!(parse_duration("7d"), Some(TimeDelta::days(7)));
        assert_eq!(parse_duration("90s"), Some(TimeDelta::seconds(90)));
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn every_built_in_rule_parses() {
        let (rules, errors) = load(None);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules.len(), BUILT_IN.len());
        for rule in &rules {
            assert!(!rule.soc2.is_empty() && rule.mitre.starts_with('T'), "{}", rule.id);
            assert!(rule.description.len() > 80 && rule.remediation.len() > 40, "{}", rule.id);
            for param in &rule.params {
                assert!(rule.sql.contains(&format!("${}", param.name)), "{}: ${} unused", rule.id, param.name);
                assert!(!param.description.is_empty(), "{}: {} undocumented", rule.id, param.name);
            }
        }
    }
}
