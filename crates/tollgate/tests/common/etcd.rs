//! Real `etcd` servers on free ports of 127.0.0.1, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdServer {
    child: Option<Child>,
    pub client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
}

impl EtcdServer {
    /// Starts a one-member cluster keeping its data under `dir`.
    pub fn start(dir: &Path) -> EtcdServer {
        let mut server = EtcdServer {
            child: None,
            client_port: super::redis::free_port(),
            peer_port: super::redis::free_port(),
            data_dir: dir.join("etcd-data"),
        };
        server.restart();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the server again on the same ports and data after [`EtcdServer::stop`].
    pub fn restart(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (scripts/test installs etcd-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctl(&["endpoint", "health"]).1 {
            assert!(
                Instant::now() < deadline,
                "etcd did not start on {}",
                self.client_port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `etcdctl` against this server; returns its output and whether it succeeded.
    pub fn ctl(&self, args: &[&str]) -> (String, bool) {
        let output = Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=1s")
            .args(args)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl is installed (scripts/test installs etcd-client)");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            output.status.success(),
        )
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
