//! ClamAV's daemon for the tests: Debian's `clamd` (`.ci/run` installs it),
//! started once per test binary with a signature database of its own that
//! holds the EICAR test signature (signatures cannot be downloaded here).
//! It stops when the test binary exits.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The EICAR test file, put together here so that no file of this
/// repository is itself flagged by a scanner.
pub fn eicar() -> Vec<u8> {
    let mut eicar = String::from("X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
    eicar.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    eicar.into_bytes()
}

struct Running {
    socket: PathBuf,
    _child: Child,
}

static CLAMD: OnceLock<Mutex<Option<Running>>> = OnceLock::new();

/// The socket of this test binary's clamd, started on first use.
pub fn socket() -> PathBuf {
    let slot = CLAMD.get_or_init(|| Mutex::new(None));
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.as_ref() {
        return running.socket.clone();
    }
    let running = start();
    let socket = running.socket.clone();
    *slot = Some(running);
    socket
}

fn start() -> Running {
    let dir = std::env::temp_dir().join(format!("guichet-clamd-{}", std::process::id()));
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("a folder for clamd");
    // A body signature (.ndb): any file type, anywhere in the file.
    let signature: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        db.join("guichet-test.ndb"),
        format!("Eicar-Test-Signature:0:*:{signature}\n"),
    )
    .expect("write the test signature");
    let socket = dir.join("clamd.sock");
    let _ = std::fs::remove_file(&socket);
    let config = dir.join("clamd.conf");
    std::fs::write(
        &config,
        format!(
            "LocalSocket {socket}\nFixStaleSocket yes\nDatabaseDirectory {db}\nForeground yes\n\
             LogFile {log}\nTemporaryDirectory {dir}\nStreamMaxLength 400M\nMaxFileSize 400M\n\
             MaxScanSize 400M\nMaxThreads 8\nReadTimeout 120\nCommandReadTimeout 30\n",
            socket = socket.display(),
            db = db.display(),
            log = dir.join("clamd.log").display(),
            dir = dir.display(),
        ),
    )
    .expect("write clamd's configuration");
    let clamd = ["/usr/sbin/clamd", "clamd"]
        .into_iter()
        .find(|c| !c.starts_with('/') || Path::new(c).exists())
        .unwrap_or("clamd");
    // Through a shell that waits on its standard input: when this test
    // binary exits, the pipe closes and the shell stops clamd.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{clamd} -c '{}' & pid=$!; read _ignored; kill $pid",
            config.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ping(&socket) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default();
            panic!(
                "clamd did not answer on {} within a minute: is it installed \
                 (apt-get install clamav-daemon, as .ci/run does)?\n{log}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Running {
        socket,
        _child: child,
    }
}

fn ping(socket: &Path) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut answer = [0u8; 5];
    conn.read_exact(&mut answer).is_ok() && &answer == b"PONG\0"
}
