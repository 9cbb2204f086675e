//! The little of QMP (QEMU's JSON control socket) the host uses: the
//! handshake, one command, and knowing when QEMU has finished creating its
//! devices.
//!
//! QEMU may send the greeting from its monitor I/O thread while it is still
//! setting up, but it answers ordinary commands (`qmp_capabilities`) only
//! from its main loop, which starts after every device was created. For a
//! kernel vsock VM that means `vhost-vsock-device` has set the guest CID
//! (QEMU exits instead when another VM holds it). So an answer to
//! `qmp_capabilities` tells that the CID is this VM's, and only then may the
//! host connect to it ([`answered`]).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Pause between attempts to reach a QMP socket that is not there yet.
const RETRY: Duration = Duration::from_millis(10);

/// Most QMP messages (events) read while waiting for one answer.
const MAX_EVENTS: usize = 256;
/// Longest QMP line accepted.
const MAX_ANSWER: usize = 1 << 20;

/// A QMP connection after the handshake.
pub(crate) struct Qmp {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Qmp {
    /// Connects, reads the greeting and sends `qmp_capabilities`; returns once
    /// QEMU answered it (from its main loop).
    pub(crate) async fn connect(socket: &Path) -> io::Result<Qmp> {
        let stream = UnixStream::connect(socket).await?;
        let (read, write) = stream.into_split();
        let mut qmp = Qmp {
            lines: BufReader::new(read).lines(),
            write,
        };
        let greeting = qmp.lines.next_line().await?.unwrap_or_default();
        if !greeting.contains("QMP") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a QMP greeting: {greeting:?}"),
            ));
        }
        let answer = qmp.execute("qmp_capabilities").await?;
        if !answer.contains("\"return\"") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("qmp_capabilities failed: {answer:?}"),
            ));
        }
        Ok(qmp)
    }

    /// Sends `command` with `arguments` and returns its `return` value, or
    /// QEMU's error description as the error. Events QEMU sends in between
    /// are skipped (at most [`MAX_EVENTS`]); the caller bounds the time.
    pub(crate) async fn call(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> io::Result<Result<serde_json::Value, String>> {
        let msg = serde_json::json!({"execute": command, "arguments": arguments});
        self.write.write_all(format!("{msg}\n").as_bytes()).await?;
        for _ in 0..MAX_EVENTS {
            let Some(line) = self.lines.next_line().await? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("QEMU closed QMP during {command}"),
                ));
            };
            if line.len() > MAX_ANSWER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("QMP answer to {command} longer than {MAX_ANSWER} bytes"),
                ));
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("QMP answer to {command}: {e}"),
                )
            })?;
            if let Some(r) = v.get("return") {
                return Ok(Ok(r.clone()));
            }
            if let Some(e) = v.get("error") {
                let desc = e
                    .get("desc")
                    .and_then(|d| d.as_str())
                    .unwrap_or("unknown error");
                return Ok(Err(desc.to_owned()));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no answer to {command} among {MAX_EVENTS} QMP messages"),
        ))
    }

    /// Sends a command without arguments and returns the next line (its
    /// answer; `""` when QEMU closed the socket, as after `quit`).
    pub(crate) async fn execute(&mut self, command: &str) -> io::Result<String> {
        self.write
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .await?;
        Ok(self.lines.next_line().await?.unwrap_or_default())
    }
}

/// Returns once QEMU answered on `socket` (see the module docs), retrying
/// while the socket is not there yet or QEMU closes it. Never gives up: the
/// caller bounds it and watches QEMU for an exit.
pub(crate) async fn answered(socket: &Path) {
    loop {
        match Qmp::connect(socket).await {
            Ok(_) => return,
            Err(e) => log::trace!("QMP {} not answering yet: {e}", socket.display()),
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::net::UnixListener;

    /// A QMP server that appears after a while, greets at once and answers
    /// `qmp_capabilities` only after `setup` (QEMU creating its devices),
    /// setting `done` just before it answers.
    pub(crate) fn slow_qemu(socket: &Path, setup: Duration, done: Arc<AtomicBool>) {
        let socket = socket.to_path_buf();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let listener = UnixListener::bind(&socket).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"{\"QMP\": {\"version\": {}}}\n")
                .await
                .unwrap();
            let cmd = lines.next_line().await.unwrap().unwrap();
            assert_eq!(cmd, r#"{"execute":"qmp_capabilities"}"#);
            tokio::time::sleep(setup).await;
            done.store(true, Ordering::SeqCst);
            w.write_all(b"{\"return\": {}}\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
    }

    #[tokio::test]
    async fn answered_waits_for_the_main_loop() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let done = Arc::new(AtomicBool::new(false));
        slow_qemu(&socket, Duration::from_millis(300), done.clone());
        tokio::time::timeout(Duration::from_secs(5), answered(&socket))
            .await
            .unwrap();
        assert!(done.load(Ordering::SeqCst), "returned before QEMU answered");
    }
}
