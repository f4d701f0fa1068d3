//! `nsqlookupd`: the discovery daemon binary. Flags and behaviour follow
//! nsqlookupd 1.3.

use lookupd::options::Options;
use nsq_common::{logging, version::version_line};
use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match Options::parse_from(std::env::args()) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    if opts.version {
        println!("{}", version_line("nsqlookupd"));
        return ExitCode::SUCCESS;
    }
    logging::init(&opts.log_prefix, opts.log_level);
    nsq_common::listen::raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nsqlookupd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failed to start runtime - {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lookupd::nsqlookupd::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            nsq_common::fatal!("failed to instantiate nsqlookupd - {e}");
            ExitCode::FAILURE
        }
    }
}
