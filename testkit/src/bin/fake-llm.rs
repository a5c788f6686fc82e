//! `fake-llm`: serves the fake OpenAI-compatible LLM's default behaviour
//! (echo replies, streamed one word per chunk) until killed.
//!
//! Usage: `fake-llm --listen 127.0.0.1:PORT [--delay-ms N]`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chatkitd_testkit::FakeLlm;

const USAGE: &str = "usage: fake-llm --listen ADDR:PORT [--delay-ms N]";

/// Parsed command line.
struct Args {
    listen: SocketAddr,
    delay: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = Some(v.parse().map_err(|e| format!("bad --listen {v:?}: {e}"))?);
            }
            "--delay-ms" => {
                let v = value("--delay-ms")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|e| format!("bad --delay-ms {v:?}: {e}"))?;
                delay = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    Ok(Args { listen, delay })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("fake-llm: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let llm = match FakeLlm::start_on(args.listen).await {
        Ok(llm) => llm,
        Err(e) => {
            eprintln!("fake-llm: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    llm.set_default_delay(args.delay);
    println!("listening on {}", llm.base_url());
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
