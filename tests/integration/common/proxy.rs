//! A TCP proxy the test can cut and restore, to make a real server
//! unreachable for one service without touching the server itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::TestEnv;
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// False while frozen: the open links pass nothing on either way. New
    /// links follow the sender here now.
    flowing: Arc<std::sync::Mutex<watch::Sender<bool>>>,
    /// The senders of the links silenced for good (`silence_open`), kept so
    /// that those links stay open and silent rather than close.
    silenced: std::sync::Mutex<Vec<watch::Sender<bool>>>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let flowing = Arc::new(std::sync::Mutex::new(watch::Sender::new(true)));
        let (o, l, f) = (open.clone(), links.clone(), flowing.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (up, down) = {
                    let f = f.lock().expect("the proxy's flow");
                    (f.subscribe(), f.subscribe())
                };
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(upstream).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        // One way ending ends the link (both sockets close).
                        tokio::select! {
                            _ = pass(from_client, to_server, up) => {}
                            _ = pass(from_server, to_client, down) => {}
                        }
                    }
                });
                l.lock().await.push(link.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            open,
            flowing,
            silenced: Default::default(),
            links,
            accept,
        }
    }

    /// A proxy to the test broker (`GUICHET_TEST_AMQP_URL`).
    pub async fn to_broker() -> Self {
        Self::start(server_addr(&super::amqp_base_url(), 5672)).await
    }

    /// A proxy to the test PostgreSQL (`GUICHET_TEST_DATABASE_URL`).
    pub async fn to_database() -> Self {
        Self::start(server_addr(&super::database_admin_url(), 5432)).await
    }

    /// `env`'s vhost on the broker, through this proxy.
    pub fn amqp_url(&self, env: &TestEnv) -> String {
        let mut url = self.through(&super::amqp_base_url());
        url.set_path(&format!("/{}", env.name));
        url.to_string()
    }

    /// `env`'s database, through this proxy.
    pub fn database_url(&self, env: &TestEnv) -> String {
        self.through(env.database_url.as_deref().expect("a servers test"))
            .to_string()
    }

    fn through(&self, url: &str) -> reqwest::Url {
        let mut url = reqwest::Url::parse(url).expect("a server URL");
        url.set_ip_host(self.addr.ip()).expect("an IP host");
        url.set_port(Some(self.addr.port())).expect("a port");
        url
    }

    /// Refuses new connections and drops every open one.
    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The open links go silent both ways, their sockets still open: what a
    /// network that drops packets does (no reset, no end of stream).
    pub fn freeze(&self) {
        self.flowing
            .lock()
            .expect("the proxy's flow")
            .send_replace(false);
    }

    pub fn thaw(&self) {
        self.flowing
            .lock()
            .expect("the proxy's flow")
            .send_replace(true);
    }

    /// The links open now go silent for good, their sockets still open,
    /// while new links pass: one connection lost without a reset (a NAT or
    /// firewall entry dropped) to a server that is otherwise fine.
    pub fn silence_open(&self) {
        let open = std::mem::replace(
            &mut *self.flowing.lock().expect("the proxy's flow"),
            watch::Sender::new(true),
        );
        open.send_replace(false);
        self.silenced.lock().expect("the silenced links").push(open);
    }
}

/// Copies `from` to `to`, holding what it read while the proxy is frozen.
async fn pass(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flowing: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Where the server of `url` listens (`default_port` if it names none).
fn server_addr(url: &str, default_port: u16) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("a server URL");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(default_port);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("a resolvable server host")
        .next()
        .expect("an address for the server host")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
