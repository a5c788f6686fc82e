//! Terminal input of `chatkitd chat`: stdin lines read on a thread of their
//! own (tokio's stdin cannot cancel a blocking read, which would hold the exit
//! until the user pressed Enter), and SIGINT as a stream of interrupts.
//! Nothing here knows threads, messages or how an answer is rendered.

use std::io::BufRead;

use tokio::sync::mpsc;

use crate::cli::CliError;

/// Lines of stdin, read on a thread of their own.
pub(super) fn read_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// SIGINT (Ctrl-C), counted from the start of the session: a press while
/// nothing listens is seen by the next wait.
pub(super) struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(super) fn new() -> Result<Interrupts, CliError> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            Ok(Interrupts { signal })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    pub(super) async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
