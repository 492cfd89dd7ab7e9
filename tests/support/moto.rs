//! A real S3-compatible server for the object storage tests (spec/objects.md): moto's server,
//! from PyPI, on loopback, one per test, killed when the test ends.
//!
//! The executable is `MOTO_SERVER` when set, else `target/moto/bin/moto_server`, which
//! `.ci/run` installs and which is installed here on first use when it is missing (a Python
//! virtual environment and `pip install 'moto[server]>=5.1.5,<6'`: 5.1.5 is the first moto that
//! honours `If-Match` on a put, which the pointer switch relies on).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running moto server.
pub struct Moto {
    child: Child,
    pub port: u16,
}

/// The moto the requirement names, installed once per test process.
fn moto_server() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        // Set but empty is unset, as `.ci/run` reads it.
        if let Some(exe) = std::env::var_os("MOTO_SERVER").filter(|v| !v.is_empty()) {
            return PathBuf::from(exe);
        }
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto");
        let exe = venv.join("bin/moto_server");
        if exe.exists() {
            return exe;
        }
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("run python3");
            assert!(
                out.status.success(),
                "could not install moto into {} ({}); install it with pip install 'moto[server]>=5.1.5,<6' and set MOTO_SERVER to its moto_server",
                venv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "moto[server]>=5.1.5,<6"]));
        exe
    })
}

impl Moto {
    /// Starts a server. `auth`: check credentials (moto's IAM), so unknown keys are refused.
    pub fn start_with(auth: bool) -> Moto {
        let port = free_port();
        let mut cmd = Command::new(moto_server());
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd.spawn().expect("start moto_server");
        let moto = Moto { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on port {port} within a minute"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn start() -> Moto {
        Moto::start_with(false)
    }

    /// The endpoint, as `AWS_ENDPOINT_URL` gives it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment the binaries reach this server with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// One request, with an authorization header moto reads the key from without checking the
    /// signature (unless it checks credentials): the status and the body.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&answer[..split]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = answer[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self.request(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8(body).unwrap();
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .map(|k| k.split("</Key>").next().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = self.request("GET", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 200, "GET {key}");
        body
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, answer) = self.request("PUT", &format!("/{bucket}/{key}"), body);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, _) = self.request("DELETE", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 204, "DELETE {key}");
    }

    /// The multipart uploads begun and neither completed nor aborted under `prefix`.
    pub fn open_uploads(&self, bucket: &str, prefix: &str) -> usize {
        let (status, body) =
            self.request("GET", &format!("/{bucket}?uploads&prefix={prefix}"), b"");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body).matches("<UploadId>").count()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chunked HTTP body, joined.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}
