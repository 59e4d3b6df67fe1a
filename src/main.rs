// mimalloc: ingest allocates and frees many short-lived buffers per chunk; the
// system allocator spent about a quarter of the ingest benchmark in page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tokentrail::cli::main()
}
