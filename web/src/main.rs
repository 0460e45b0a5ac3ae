//! `tongxin`: the server and its command line. Everything lives in the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tongxin_web::cli::main()
}
