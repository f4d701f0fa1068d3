//! `nsqd`: the broker binary. Flags and behaviour follow nsqd 1.3.

use broker::options::Options;
use nsq_common::{logging, version::version_line};
use std::process::ExitCode;

// Many small, cross-thread message allocations: mimalloc keeps them fast and
// fragments far less than glibc's per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let opts = match Options::parse_from(std::env::args()) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    if opts.version {
        println!("{}", version_line("nsqd"));
        return ExitCode::SUCCESS;
    }
    logging::init(&opts.log_prefix, opts.log_level);
    nsq_common::listen::raise_open_files_limit();
    if let Err(e) = opts.validate() {
        nsq_common::fatal!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nsqd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failed to start runtime - {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(broker::server::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            nsq_common::fatal!("{e}");
            ExitCode::FAILURE
        }
    }
}
