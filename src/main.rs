fn main() -> std::process::ExitCode {
    tokentrail::cli::main()
}
