//! The server process itself: the default port, the non-loopback flag, and
//! SIGTERM (last: it ends the server the other cases use).

use crate::{start_server, Web};
use anyhow::{bail, ensure, Context};
use file_restore_tests::harness::Group;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `serve`'s fixed default port.
const DEFAULT_PORT: u16 = 8917;

/// Adds the cases to `g`; call it last.
pub fn cases(g: &mut Group<Web>) {
    g.case("server::default_port_taken_gives_a_free_one", |ctx| {
        // Hold the default port (unless something else already does).
        let _held = std::net::TcpListener::bind(("127.0.0.1", DEFAULT_PORT)).ok();
        let (mut child, url) = start_server(&ctx.bin, &ctx.runtime, &[])?;
        let _ = child.kill();
        let _ = child.wait();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .context("not a loopback URL")?;
        let (port, token) = rest.split_once("/?token=").context("no token")?;
        ensure!(
            port != DEFAULT_PORT.to_string(),
            "took the default port although it was taken"
        );
        ensure!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "token {token:?} is not 128 bits in hex"
        );
        Ok(())
    });
    g.case("server::non_loopback_needs_allow_remote", |ctx| {
        let out = ctx
            .cli()
            .args(["serve", "--listen", "0.0.0.0:0"])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1) && out.stdout.is_empty(),
            "exit {:?}, stdout {:?}",
            out.status,
            out.stdout
        );
        ensure!(
            err.contains("--allow-remote") && err.contains("not a loopback"),
            "stderr: {err}"
        );
        let mut child = ctx
            .cli()
            .args(["serve", "--allow-remote", "--listen", "0.0.0.0:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        child
            .stderr
            .take()
            .context("stderr")?
            .read_to_string(&mut err)?;
        ensure!(line.starts_with("http://0.0.0.0:"), "URL {line:?}");
        ensure!(
            err.contains("not a loopback address"),
            "no warning on stderr: {err}"
        );
        Ok(())
    });
    g.case("server::sigterm_ends_it", |ctx| {
        let mut guard = ctx.server.lock().unwrap_or_else(|e| e.into_inner());
        let child = guard.as_mut().context("server gone")?;
        let pid = i32::try_from(child.id())?;
        // SAFETY: kill(2) on the pid of our own child.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.try_wait()? {
                guard.take();
                ensure!(status.success(), "exit status {status} after SIGTERM");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("still running 10 s after SIGTERM")
    });
}
