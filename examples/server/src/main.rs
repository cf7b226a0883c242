//! `wavesync-server`: see the library's documentation (`cargo doc -p wavesync-server`).

fn main() -> std::process::ExitCode {
    wavesync_server::run_cli(std::env::args_os())
}
