//! What a console statement may be, decided on DuckDB's own parse tree
//! (`json_serialize_sql`), failing closed: a node this module does not know to be
//! read-only is refused, wherever in the tree it is.
//!
//! - **Query nodes**: SELECT, set operations and recursive CTEs only. DuckDB accepts
//!   any statement inside `WITH` (`WITH c AS (COPY … TO 'file') SELECT …`), and a
//!   read-only transaction does not stop `COPY … TO`; so every query node, in every CTE
//!   body and subquery, is checked, and anything with a file target (`file_path`,
//!   COPY's `info`) is refused.
//! - **Tables**: a table or view granted to one of the caller's roles ([`super::grants`]),
//!   or a CTE in scope. Scopes follow DuckDB's binder: a query sees its own CTEs and
//!   those of the queries around it; a CTE body sees the CTEs defined before it, and
//!   itself only in the recursive part of a recursive CTE (elsewhere its own name is
//!   the catalog's table: `WITH access_log AS (SELECT * FROM access_log)` reads the
//!   table). File paths as tables (`FROM 'file'`), other catalogs and schemas, `SHOW`
//!   without a query (`SHOW TABLES`) are refused; `DESCRIBE`/`SUMMARIZE` of a query are
//!   checked as that query.
//! - **Table functions**: `range`, `generate_series`, `unnest` (rows from arguments).
//! - **Functions**: DuckDB's built-in scalar, aggregate, window functions and macros,
//!   and the macros of our migrations, minus those that reach outside the query, change
//!   state, sleep or reveal settings ([`DENIED_FUNCTIONS`]).
//! - **Sizes** (a query must not build values bigger than the process can hold, and
//!   DuckDB builds a value for each of a chunk's 2,048 rows before anything can stop
//!   it; its memory limit does not count these values): functions whose output size an
//!   argument sets take literal arguments under small bounds ([`amplifier`]);
//!   aggregates that gather every row into one value (`list`, `string_agg`, …) and
//!   lambdas (which repeat their body for each element of a list) are refused; top-n
//!   forms (`max(x, n)`) take a literal `n` ≤ [`MAX_TOP_N`] and are not window functions;
//!   a statement names at most [`MAX_COLUMN_REFS`] columns.

use serde_json::Value as Json;
use std::collections::HashSet;

/// Table functions a console query may use: they make rows from their arguments and
/// read nothing else.
pub const TABLE_FUNCTIONS: [&str; 3] = ["range", "generate_series", "unnest"];

/// Functions that reach outside the query (environment, settings, sequences, logs,
/// catalog SQL), change state, or hold a thread (sleep).
pub const DENIED_FUNCTIONS: &[&str] = &[
    "getenv",
    "current_setting",
    "nextval",
    "currval",
    "setval",
    "write_log",
    "sleep_ms",
    "pg_sleep",
    "pg_get_viewdef",
    "pg_get_constraintdef",
    "get_block_size",
    "format_type",
    "json_execute_serialized_sql",
    "read_text",
    "read_blob",
    "query",
    "query_table",
];

/// Functions DuckDB's binder knows that `duckdb_functions()` does not list.
const SPECIAL_FUNCTIONS: &[&str] = &["unnest", "unlist", "row", "struct_pack", "try", "grouping", "grouping_id"];

/// Aggregates whose one value holds every row of its group.
pub const COLLECTING_AGGREGATES: &[&str] = &[
    "list",
    "array_agg",
    "string_agg",
    "group_concat",
    "listagg",
    "histogram",
    "histogram_exact",
    "bitstring_agg",
    "json_group_array",
    "json_group_object",
    "json_group_structure",
    "variant_group_array",
    "variant_group_object",
];

/// Aggregates with a top-n form (`max(x, n)`, `arg_max(x, y, n)`), and the argument
/// position of `n` (0-based).
const TOP_N: &[(&str, usize)] = &[
    ("max", 1),
    ("min", 1),
    ("arg_max", 2),
    ("arg_min", 2),
    ("argmax", 2),
    ("argmin", 2),
    ("max_by", 2),
    ("min_by", 2),
    ("arg_max_nulls_last", 2),
    ("arg_min_nulls_last", 2),
    ("approx_top_k", 1),
    ("lttb", 2),
];

pub const MAX_TOP_N: i64 = 100;
/// Bytes a literal `repeat` may make.
pub const MAX_REPEAT_BYTES: i64 = 1024;
/// Characters `lpad`/`rpad` may pad to, and `printf`/`format` widths and precisions.
pub const MAX_WIDTH: i64 = 1024;
/// Bytes of a `replace`/`regexp_replace` replacement.
pub const MAX_REPLACEMENT_BYTES: usize = 64;
pub const MAX_COLUMN_REFS: usize = 256;

/// What the caller may name: tables and views (lower case) granted to its roles, and
/// functions (lower case) that exist in DuckDB or our migrations.
pub struct Catalog {
    pub tables: HashSet<String>,
    pub functions: HashSet<String>,
}

/// Why a statement is refused: one line per problem, each saying what to change.
pub type Problems = Vec<String>;

/// Checks one serialised statement (`json_serialize_sql`'s `statements[0]`).
pub fn check(statement: &Json, catalog: &Catalog) -> Problems {
    let mut walk = Walk { catalog, problems: Vec::new(), column_refs: 0 };
    let node = &statement["node"];
    if !node.is_object() {
        walk.refuse("the statement has no query");
    } else {
        walk.query(node, &Scope::default());
    }
    if walk.column_refs > MAX_COLUMN_REFS {
        walk.refuse(format!("the statement names {} columns; at most {MAX_COLUMN_REFS}", walk.column_refs));
    }
    let mut seen = HashSet::new();
    walk.problems.retain(|p| seen.insert(p.clone()));
    walk.problems
}

/// The CTE names a part of the query can see.
#[derive(Default, Clone)]
struct Scope {
    ctes: Vec<String>,
}

impl Scope {
    fn with(&self, name: &str) -> Scope {
        let mut ctes = self.ctes.clone();
        ctes.push(name.to_ascii_lowercase());
        Scope { ctes }
    }

    fn sees(&self, name: &str) -> bool {
        self.ctes.iter().any(|c| c.eq_ignore_ascii_case(name))
    }
}

struct Walk<'a> {
    catalog: &'a Catalog,
    problems: Problems,
    column_refs: usize,
}

const QUERY_NODES: [&str; 3] = ["SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE"];
const TABLE_REFS: [&str; 8] =
    ["BASE_TABLE", "SUBQUERY", "JOIN", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY", "PIVOT", "SHOW_REF"];

impl Walk<'_> {
    fn refuse(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// A query node: its CTEs first (each body in the scope of the CTEs before it),
    /// then everything else in the scope its CTEs make.
    fn query(&mut self, node: &Json, outer: &Scope) {
        let kind = node["type"].as_str().unwrap_or_default();
        if !QUERY_NODES.contains(&kind) {
            let what = kind.strip_suffix("_QUERY_NODE").or(kind.strip_suffix("_NODE")).unwrap_or(kind);
            self.refuse(format!(
                "{} is not allowed here: the SQL console only reads (SELECT, WITH … SELECT, UNION, EXPLAIN SELECT)",
                if what.is_empty() { "this statement" } else { what }
            ));
            return;
        }
        let mut scope = outer.clone();
        if let Some(map) = node["cte_map"]["map"].as_array() {
            for entry in map {
                let name = entry["key"].as_str().unwrap_or_default();
                let body = &entry["value"]["query_node"];
                if body["type"] == "RECURSIVE_CTE_NODE" {
                    self.recursive_cte(body, &scope, name);
                } else if body.is_object() {
                    self.query(body, &scope);
                } else {
                    self.refuse(format!("the CTE {name:?} has no query"));
                }
                // Everything of the entry but the body (column aliases, key targets).
                for (key, value) in entry["value"].as_object().into_iter().flatten() {
                    if key != "query_node" {
                        self.any(value, &scope);
                    }
                }
                scope = scope.with(name);
            }
        }
        if kind == "RECURSIVE_CTE_NODE" {
            // A recursive CTE met outside a CTE map has no name to see.
            self.recursive_cte(node, &scope, "");
            return;
        }
        for (key, value) in node.as_object().into_iter().flatten() {
            if key != "cte_map" {
                self.any(value, &scope);
            }
        }
    }

    /// `left` (the anchor) does not see the CTE's own name; `right` does.
    fn recursive_cte(&mut self, node: &Json, scope: &Scope, name: &str) {
        let mut inner = scope.clone();
        for (key, value) in node.as_object().into_iter().flatten() {
            match key.as_str() {
                "cte_map" => {
                    // A WITH inside the body: check it as a query of its own.
                    if value["map"].as_array().is_some_and(|m| !m.is_empty()) {
                        self.refuse("a WITH inside a recursive CTE's body is not supported here");
                    }
                }
                "right" => {
                    if !name.is_empty() {
                        inner = scope.with(name);
                    }
                    self.node_in(value, &inner);
                    inner = scope.clone();
                }
                _ => self.node_in(value, &inner),
            }
        }
    }

    fn node_in(&mut self, value: &Json, scope: &Scope) {
        self.any(value, scope);
    }

    /// Any part of the tree: classified by its shape, so nothing is skipped.
    fn any(&mut self, value: &Json, scope: &Scope) {
        match value {
            Json::Array(items) => items.iter().for_each(|item| self.any(item, scope)),
            Json::Object(map) => {
                if map.contains_key("file_path") || map.contains_key("info_type") || map.contains_key("info") {
                    self.refuse("statements that read or write files (COPY, EXPORT, …) are not allowed here");
                    return;
                }
                let kind = map.get("type").and_then(Json::as_str).unwrap_or_default();
                if map.contains_key("class") {
                    self.expression(value, scope);
                } else if map.contains_key("cte_map") || kind.ends_with("_NODE") {
                    self.query(value, scope);
                } else if map.contains_key("sample") && map.contains_key("alias") && !kind.is_empty() {
                    self.table_ref(value, scope);
                } else {
                    map.values().for_each(|v| self.any(v, scope));
                }
            }
            _ => {}
        }
    }

    fn table_ref(&mut self, node: &Json, scope: &Scope) {
        let kind = node["type"].as_str().unwrap_or_default();
        if !TABLE_REFS.contains(&kind) {
            self.refuse(format!("a {kind} table reference is not allowed here"));
            return;
        }
        match kind {
            "BASE_TABLE" => self.base_table(node, scope),
            "TABLE_FUNCTION" => {
                let function = &node["function"];
                let name = function["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
                let qualified = !function["schema"].as_str().unwrap_or_default().is_empty()
                    || !function["catalog"].as_str().unwrap_or_default().is_empty();
                if qualified || !TABLE_FUNCTIONS.contains(&name.as_str()) {
                    self.refuse(format!(
                        "table function {name} is not allowed (allowed: {})",
                        TABLE_FUNCTIONS.join(", ")
                    ));
                    return;
                }
                // Its arguments are expressions; the function itself is not a scalar call.
                for (key, value) in function.as_object().into_iter().flatten() {
                    if key == "arguments" || key == "children" {
                        self.any(value, scope);
                    }
                }
            }
            "SHOW_REF" => {
                if node["query"].is_object() {
                    self.query(&node["query"], scope);
                } else {
                    let what = node["table_name"].as_str().unwrap_or_default().trim_matches('"').to_string();
                    self.refuse(format!(
                        "SHOW {what} is not allowed here; GET /api/sql/schema lists the tables you can read"
                    ));
                }
            }
            _ => {
                for (key, value) in node.as_object().into_iter().flatten() {
                    if key != "type" {
                        self.any(value, scope);
                    }
                }
            }
        }
    }

    fn base_table(&mut self, node: &Json, scope: &Scope) {
        let name = node["table_name"].as_str().unwrap_or_default();
        let catalog = node["catalog_name"].as_str().unwrap_or_default();
        let schema = node["schema_name"].as_str().unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if catalog.is_empty() && schema.is_empty() && scope.sees(name) {
            return;
        }
        let local = catalog.is_empty() && (schema.is_empty() || schema.eq_ignore_ascii_case("main"));
        if !local {
            self.refuse(format!(
                "{catalog}{}{schema}.{name}: only TokenTrail's own tables can be read",
                if catalog.is_empty() { "" } else { "." }
            ));
        } else if lower.contains(['/', '\\', '.', ':']) {
            self.refuse(format!("{name:?} looks like a file or URL; the console reads only TokenTrail's tables"));
        } else if !self.catalog.tables.contains(&lower) {
            self.refuse(format!("{name:?} is not a table or view your roles may read; GET /api/sql/schema lists them"));
        }
        if node["at_clause"].is_object() {
            self.refuse("AT (time travel) is not supported here");
        }
    }

    fn expression(&mut self, node: &Json, scope: &Scope) {
        let class = node["class"].as_str().unwrap_or_default();
        match class {
            "COLUMN_REF" => self.column_refs += 1,
            "LAMBDA" | "LAMBDA_REF" => {
                self.refuse(
                    "lambdas (list_transform, list comprehensions, …) are not allowed here: they repeat their body \
                     for every element; unnest the list and work on rows",
                );
                return;
            }
            "FUNCTION" => self.function(node),
            "WINDOW" => self.window(node),
            _ => {}
        }
        for (key, value) in node.as_object().into_iter().flatten() {
            if key != "class" && key != "type" {
                self.any(value, scope);
            }
        }
    }

    fn function(&mut self, node: &Json) {
        let name = node["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
        let schema = node["schema"].as_str().unwrap_or_default();
        let catalog = node["catalog"].as_str().unwrap_or_default();
        if node["is_operator"] == true && !self.catalog.functions.contains(&name) {
            // Operators (`+`, `||`, `->>`) are DuckDB's own.
            return;
        }
        if !catalog.is_empty() || !(schema.is_empty() || schema.eq_ignore_ascii_case("main")) {
            self.refuse(format!("{name}: call functions without a catalog or schema"));
            return;
        }
        if DENIED_FUNCTIONS.contains(&name.as_str()) || name.starts_with("__internal") {
            self.refuse(format!("function {name} is not allowed in the SQL console"));
            return;
        }
        if !self.catalog.functions.contains(&name) && !SPECIAL_FUNCTIONS.contains(&name.as_str()) {
            self.refuse(format!("{name} is not a function of this DuckDB"));
            return;
        }
        if node["export_state"] == true {
            self.refuse(format!("{name}: EXPORT_STATE is not allowed here"));
        }
        if COLLECTING_AGGREGATES.contains(&name.as_str()) {
            self.refuse(format!(
                "{name} gathers every row into one value, which the console does not allow; GROUP BY the column \
                 to see its values as rows, or count(DISTINCT …)"
            ));
            return;
        }
        let arguments = arguments(node);
        if let Some((_, at)) = TOP_N.iter().find(|(n, _)| *n == name) {
            if let Some(n) = arguments.get(*at) {
                match integer(n) {
                    Some(n) if (1..=MAX_TOP_N).contains(&n) => {}
                    _ => self.refuse(format!("{name}: its count must be a number from 1 to {MAX_TOP_N}")),
                }
            }
            return;
        }
        if let Err(problem) = amplifier(&name, &arguments) {
            self.refuse(problem);
        }
    }

    fn window(&mut self, node: &Json) {
        let name = node["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
        if name.is_empty() {
            return;
        }
        if DENIED_FUNCTIONS.contains(&name.as_str()) || COLLECTING_AGGREGATES.contains(&name.as_str()) {
            self.refuse(format!("{name} is not allowed as a window function here"));
        } else if TOP_N.iter().any(|(n, at)| *n == name && arguments(node).len() > *at) {
            self.refuse(format!("{name} with a count is not allowed as a window function here"));
        } else if node["type"] == "WINDOW_AGGREGATE" && !self.catalog.functions.contains(&name) {
            self.refuse(format!("{name} is not a function of this DuckDB"));
        }
    }
}

/// A function call's argument expressions.
fn arguments(node: &Json) -> Vec<&Json> {
    let list = node["arguments"].as_array().or_else(|| node["children"].as_array());
    list.into_iter().flatten().map(|a| if a["expression"].is_object() { &a["expression"] } else { a }).collect()
}

/// A literal's text and kind, through casts of literals.
fn literal(node: &Json) -> Option<(&str, &str)> {
    match node["class"].as_str()? {
        "CONSTANT" => Some((node["literal"]["kind"].as_str()?, node["literal"]["text"].as_str()?)),
        "CAST" => literal(&node["child"]),
        _ => None,
    }
}

fn integer(node: &Json) -> Option<i64> {
    let (kind, text) = literal(node)?;
    if kind == "STRING" {
        return None;
    }
    text.trim().parse().ok()
}

fn string(node: &Json) -> Option<&str> {
    match literal(node)? {
        ("STRING", text) => Some(text),
        _ => None,
    }
}

/// Functions whose output size an argument sets (rather than their input): allowed
/// only with literal arguments under small bounds, so no row's value can be large.
fn amplifier(name: &str, args: &[&Json]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).copied();
    match name {
        "repeat" => {
            let value = arg(0).and_then(string);
            let count = arg(1).and_then(integer);
            match (value, count) {
                (Some(v), Some(n)) if n >= 0 && (v.len() as i64).saturating_mul(n) <= MAX_REPEAT_BYTES => Ok(()),
                _ => Err(format!(
                    "repeat needs a literal string and count making at most {MAX_REPEAT_BYTES} bytes; for bars use bar()"
                )),
            }
        }
        "lpad" | "rpad" => match arg(1).and_then(integer) {
            Some(n) if (0..=MAX_WIDTH).contains(&n) => Ok(()),
            _ => Err(format!("{name} needs a literal length of at most {MAX_WIDTH}")),
        },
        "printf" | "format" => match arg(0).and_then(string) {
            Some(format) if widths(format).iter().all(|w| *w <= MAX_WIDTH) => Ok(()),
            _ => Err(format!("{name} needs a literal format whose widths are at most {MAX_WIDTH}")),
        },
        "bar" => match arg(3) {
            None => Ok(()),
            Some(width) => match integer(width) {
                Some(n) if (1..=MAX_WIDTH).contains(&n) => Ok(()),
                _ => Err(format!("bar needs a literal width of at most {MAX_WIDTH}")),
            },
        },
        "to_base" => match arg(2) {
            None => Ok(()),
            Some(width) => match integer(width) {
                Some(n) if (0..=256).contains(&n) => Ok(()),
                _ => Err("to_base needs a literal minimum length of at most 256".into()),
            },
        },
        "replace" | "regexp_replace" => match arg(2).and_then(string) {
            Some(r) if r.len() <= MAX_REPLACEMENT_BYTES => Ok(()),
            _ => Err(format!("{name} needs a literal replacement of at most {MAX_REPLACEMENT_BYTES} bytes")),
        },
        "range" | "generate_series" | "list_resize" | "array_resize" => Err(format!(
            "{name} as a value makes a list of any size and is not allowed here; use range() in FROM for rows"
        )),
        _ => Ok(()),
    }
}

/// The widths and precisions of a printf (`%10.3f`) or fmt (`{:>10}`) format.
fn widths(format: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut inside = false;
    for c in format.chars() {
        match c {
            '%' | '{' => {
                inside = true;
                digits.clear();
            }
            '0'..='9' if inside => digits.push(c),
            _ if inside => {
                if !digits.is_empty() {
                    out.push(digits.parse().unwrap_or(i64::MAX));
                    digits.clear();
                }
                if c.is_ascii_alphabetic() || c == '}' {
                    inside = false;
                }
            }
            _ => {}
        }
    }
    if !digits.is_empty() {
        out.push(digits.parse().unwrap_or(i64::MAX));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_of_printf_and_fmt_formats() {
        assert_eq!(widths("%10.3f and %s"), vec![10, 3]);
        assert_eq!(widths("{:>1000000} {}"), vec![1000000]);
        assert_eq!(widths("%099999999999999999999999d"), vec![i64::MAX]);
        assert!(widths("plain text 123").is_empty());
    }
}
