//! Compiles the one C++ shim into DuckDB's buffer pool (`src/store/cpp/purge.cpp`)
//! against the headers of the DuckDB that libduckdb-sys builds and links.

fn main() {
    let include = std::env::var("DEP_DUCKDB_INCLUDE").expect("libduckdb-sys (bundled) publishes DuckDB's headers");
    println!("cargo:rerun-if-changed=src/store/cpp/purge.cpp");
    let mut build = cc::Build::new();
    build.cpp(true).file("src/store/cpp/purge.cpp").include(&include).flag_if_supported("-std=c++17").warnings(false);
    // The same as libduckdb-sys: DuckDB's headers assume exactly one of DEBUG and NDEBUG.
    let debug = std::env::var("DEBUG").is_ok_and(|v| v != "false" && v != "0");
    build.define(if debug { "DEBUG" } else { "NDEBUG" }, None);
    build.compile("tokentrail_duckdb_shim");
}
