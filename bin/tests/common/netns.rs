//! Brokers on separate hosts of one machine: each in its own network
//! namespace, joined by veth links to a bridge in the test's namespace, so
//! that the test's clients reach every broker and a test can cut the
//! network between two brokers (a real partition: packets are dropped, not
//! refused) while clients still reach both.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2's `ip`. Everything is named
//! after the test process and removed when the [`TestNetwork`] is dropped.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Host number of the test's own address on the bridge: hosts are 1..=N.
const BRIDGE_HOST: u8 = 254;
/// Networks a test process may create: the third octet of each subnet is
/// this many apart per process.
const NETWORKS_PER_PROCESS: u32 = 4;
/// First octet pair `10.SUBNET_BASE.x.0/24` of every test network.
const SUBNET_BASE: u8 = 213;
/// Third octets a test network may use (`10.SUBNET_BASE.0-249.0/24`).
const SUBNETS: u32 = 250;

/// Set (to anything) where network namespaces must work, as in CI: a test
/// that cannot create them fails instead of being skipped.
const REQUIRE_VARIABLE: &str = "SLUICE_REQUIRE_NETNS";

static NEXT_NETWORK: AtomicU32 = AtomicU32::new(0);

/// Where a broker runs: the network namespace it is started in (`None`:
/// the test's own) and the address it listens on there.
#[derive(Clone, Debug)]
pub struct Host {
    pub namespace: Option<String>,
    pub ip: IpAddr,
}

impl Host {
    pub fn loopback() -> Host {
        Host {
            namespace: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// `hosts` network namespaces on one bridge. Dropping it deletes them (and
/// with them their veth links) and the bridge; brokers in them must be
/// stopped first.
pub struct TestNetwork {
    bridge: String,
    namespaces: Vec<String>,
    /// `10.SUBNET_BASE.third.0/24`.
    third: u8,
}

impl TestNetwork {
    /// Creates the network, or says why it cannot be created here (not
    /// root, no iproute2, namespaces not permitted).
    pub fn try_new(hosts: usize) -> Result<TestNetwork, String> {
        assert!(
            hosts < BRIDGE_HOST as usize,
            "{hosts} hosts do not fit a /24"
        );
        let pid = std::process::id();
        let n = NEXT_NETWORK.fetch_add(1, Ordering::SeqCst);
        assert!(
            n < NETWORKS_PER_PROCESS,
            "more than {NETWORKS_PER_PROCESS} networks in one test process"
        );
        let third = free_third(((pid * NETWORKS_PER_PROCESS + n) % SUBNETS) as u8);
        // Interface names are at most 15 bytes.
        let tag = format!("{}{n}", pid % 100_000);
        let mut network = TestNetwork {
            bridge: format!("sbr{tag}"),
            namespaces: Vec::new(),
            third,
        };
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        let bridge_address = format!("{}/24", network.address(BRIDGE_HOST));
        ip(&["addr", "add", &bridge_address, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for index in 0..hosts {
            let namespace = format!("sluice-{tag}-{}", index + 1);
            ip(&["netns", "add", &namespace])?;
            network.namespaces.push(namespace.clone());
            let outside = format!("sv{tag}h{}", index + 1);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns",
                &namespace,
            ])?;
            ip(&["link", "set", &outside, "master", &network.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("{}/24", network.address(host_number(index)));
            ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// [`TestNetwork::try_new`], or `None` after saying on stderr why the
    /// calling test is skipped. With `SLUICE_REQUIRE_NETNS` set (CI runs as
    /// root) it panics instead, so the test cannot silently not run.
    pub fn or_skip(hosts: usize, test: &str) -> Option<TestNetwork> {
        match TestNetwork::try_new(hosts) {
            Ok(network) => Some(network),
            Err(reason) if std::env::var_os(REQUIRE_VARIABLE).is_some() => {
                panic!("{test}: {REQUIRE_VARIABLE} is set but {reason}")
            }
            Err(reason) => {
                eprintln!(
                    "SKIPPED {test}: network namespaces cannot be created here ({reason}); \
                     it needs root and iproute2 (set {REQUIRE_VARIABLE}=1 to make this a failure)"
                );
                None
            }
        }
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_BASE, self.third, host)
    }

    /// The host at `index` (0-based).
    pub fn host(&self, index: usize) -> Host {
        Host {
            namespace: Some(self.namespaces[index].clone()),
            ip: IpAddr::V4(self.address(host_number(index))),
        }
    }

    /// Drops every packet between hosts `a` and `b`, both ways; the test's
    /// clients still reach both.
    pub fn cut(&self, a: usize, b: usize) {
        self.blackhole("add", a, b);
        self.blackhole("add", b, a);
    }

    /// Undoes [`TestNetwork::cut`].
    pub fn heal(&self, a: usize, b: usize) {
        self.blackhole("del", a, b);
        self.blackhole("del", b, a);
    }

    fn blackhole(&self, action: &str, from: usize, to: usize) {
        let target = format!("{}/32", self.address(host_number(to)));
        let routed = ip(&[
            "-n",
            &self.namespaces[from],
            "route",
            action,
            "blackhole",
            &target,
        ]);
        if let Err(reason) = routed {
            panic!("{reason}");
        }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn host_number(index: usize) -> u8 {
    u8::try_from(index + 1).expect("fewer than 254 hosts")
}

/// Runs `ip` with `args`; its error output if it fails.
/// `wanted`, or the next third octet after it whose subnet no route of
/// this host uses: a test process killed before it could delete its
/// network leaves its bridge and route behind, and a new network on the
/// same subnet would not reach its hosts.
fn free_third(wanted: u8) -> u8 {
    let prefix = format!("10.{SUBNET_BASE}.");
    let used: std::collections::BTreeSet<u8> = Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix)?.split('.').next()?.parse().ok())
        .collect();
    (0..SUBNETS)
        .map(|step| ((u32::from(wanted) + step) % SUBNETS) as u8)
        .find(|third| !used.contains(third))
        .unwrap_or(wanted)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("running `ip {}`: {error}", args.join(" ")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
