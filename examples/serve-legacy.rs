//! The release server on its old thread-per-connection engine (feature `serve-faults`, which only
//! the dev-dependency enables): the reference `script/bench-serve` measures `flynnrel serve`
//! against, in the same run. Never shipped; the `flynnrel` binary has no such engine.
//!
//!   cargo build --release --example serve-legacy
//!   target/release/examples/serve-legacy DIR READY_FILE

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, ready] = args.as_slice() else {
        eprintln!("usage: serve-legacy DIR READY_FILE");
        std::process::exit(2);
    };
    let mut opts = flynnrel::serve::ServeOptions::new(dir);
    opts.thread_per_connection = true;
    let server = match flynnrel::serve::start(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve-legacy: {e}");
            std::process::exit(1);
        }
    };
    let urls = serde_json::json!({
        "api_url": server.api_url(),
        "web_url": server.web_url(),
        "storage_url": server.storage_url(),
        "root": dir,
    });
    let text = serde_json::to_vec_pretty(&urls).unwrap_or_default();
    if let Err(e) = flynnrel::fsutil::atomic_write(std::path::Path::new(ready), &text, 0o644) {
        eprintln!("serve-legacy: {e}");
        std::process::exit(1);
    }
    server.wait();
}
