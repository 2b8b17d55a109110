//! A real ClickHouse server for one test binary: its own config.xml,
//! users.xml and data dir in a temp dir, a free loopback port, killed on drop.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "clickhouse-server was not found: install it with \
    `apt-get install -y clickhouse-server clickhouse-client` (scripts/deps.sh does)";

pub struct ClickHouseServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn binary() -> Option<(PathBuf, Vec<&'static str>)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    for d in &dirs {
        let server = d.join("clickhouse-server");
        if server.is_file() {
            return Some((server, vec![]));
        }
    }
    for d in &dirs {
        let multi = d.join("clickhouse");
        if multi.is_file() {
            return Some((multi, vec!["server"]));
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ping(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

impl ClickHouseServer {
    pub fn start() -> Self {
        let (bin, args) = binary().unwrap_or_else(|| panic!("{INSTALL}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let (http, tcp) = (free_port(), free_port());
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("config.xml"), config).expect("config.xml");
        std::fs::write(dir.path().join("users.xml"), users).expect("users.xml");
        let child = Command::new(&bin)
            .args(&args)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {INSTALL}", bin.display()));
        let mut server = ClickHouseServer {
            child,
            dir,
            port: http,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(http) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("clickhouse-server exited with {status}: {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer /ping in 60 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
