use super::*;
use std::process::{Child, Command, Stdio};

/// A real `qemu-nbd` serving `file` read-only on a socket in `dir`, or
/// `None` (with the reason printed) where qemu-nbd is not installed.
fn qemu_nbd(dir: &Path, file: &Path, name: &str) -> Option<(Child, std::path::PathBuf)> {
    let sock = dir.join("nbd.sock");
    let child = Command::new("qemu-nbd")
        .args(["--read-only", "--persistent", "--format=raw", "-x", name])
        .arg(format!("--socket={}", sock.display()))
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("skipped: qemu-nbd is not installed (scripts/deps.sh installs qemu-utils)");
        return None;
    };
    for _ in 0..200 {
        if sock.exists() {
            return Some((child, sock));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("qemu-nbd did not create its socket");
}

#[tokio::test]
async fn reads_from_qemu_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let Some((mut child, sock)) = qemu_nbd(dir.path(), &file, "disk0") else {
        return;
    };
    let limit = Duration::from_secs(10);
    let mut c = NbdConn::connect(&sock, "disk0", limit).await.unwrap();
    assert_eq!(c.info().size, data.len() as u64);
    let mut buf = vec![0u8; 1 << 20];
    c.read(12345, &mut buf).await.unwrap();
    assert_eq!(buf, data[12345..12345 + (1 << 20)]);
    let mut tail = vec![0u8; 100];
    c.read(data.len() as u64 - 100, &mut tail).await.unwrap();
    assert_eq!(tail, data[data.len() - 100..]);
    let e = c.read(data.len() as u64 - 10, &mut tail).await.unwrap_err();
    assert!(e.to_string().contains("outside the export"), "{e}");
    c.close().await;

    let e = NbdConn::connect(&sock, "nosuch", limit).await.unwrap_err();
    assert!(e.to_string().contains("refused the export"), "{e}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A server that accepts and then says nothing: the handshake times out.
#[tokio::test]
async fn a_silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let e = NbdConn::connect(&sock, "x", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, NbdError::Timeout { .. }), "{e}");
}

#[test]
fn hostile_handshake_bytes() {
    let mut g = [0u8; 18];
    assert!(parse_greeting(&g).is_err());
    g[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    assert!(parse_greeting(&g).unwrap_err().contains("fixed newstyle"));
    g[17] = 3;
    assert_eq!(parse_greeting(&g), Ok(3));

    let mut h = [0u8; 20];
    h[..8].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    h[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
    h[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(parse_option_reply_head(&h).unwrap_err().contains("at most"));

    assert!(option_reply(REP_INFO, &[0, 0, 1]).is_err());
    assert!(option_reply(99, &[]).is_err());
    assert_eq!(option_reply(REP_INFO, &[0, 3]), Ok(OptionReply::Other));
    let mut info = vec![0, 0];
    info.extend_from_slice(&4096u64.to_be_bytes());
    info.extend_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        option_reply(REP_INFO, &info),
        Ok(OptionReply::Export(ExportInfo {
            size: 4096,
            flags: 1
        }))
    );
    let e = option_reply((1 << 31) | 6, b"export 'x' not present").unwrap_err();
    assert!(e.contains("not present"), "{e}");
}
