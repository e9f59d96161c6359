//! The network the members live on: one namespace per member, joined to a
//! bridge in the tool's namespace by a veth pair, so the tool's clients
//! reach every member while the nemesis cuts links between members.
//!
//! Partitions are blackhole routes inside a member's namespace (it can no
//! longer send to the members named, and TCP across that link stops both
//! ways); slow or lossy links are `tc netem` on the member's end of its
//! veth (on kernels without netem: a tbf slow link and an nftables rule
//! dropping a share of packets). Everything is made with `ip`, `tc` and
//! `nft`, and removed when the [`Net`] drops: on success, on error, on panic and on Ctrl-C (the
//! signal handler drops it). Namespaces left by a run that was killed
//! outright are removed by the next run (their owner's pid is gone).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// Every name the tool creates starts with this.
const PREFIX: &str = "dj";

pub struct Net {
    /// The owner's pid: names derive from it, so runs on one machine do
    /// not collide.
    tag: u32,
    /// The third octet of the members' 10.213.x.0/24: one no interface on
    /// this machine had when the run began.
    subnet: u8,
    nodes: usize,
    /// Blackhole routes in place, as (member, unreachable member).
    blackholes: Vec<(usize, usize)>,
    /// Members whose link has a netem (or tbf) qdisc.
    shaped: Vec<usize>,
    /// Members with an nftables loss rule (kernels without netem).
    lossy: Vec<usize>,
}

/// Where the kernel has no netem (CONFIG_NET_SCH_NETEM, as in some VMs),
/// a slow link stands in for delay: tbf at this rate queues a busy link's
/// packets up to the fault's delay; nftables drops the fault's share.
const SLOW_LINK_RATE: &str = "1mbit";
const SLOW_LINK_BURST: &str = "32kbit";
/// The nftables table the loss rule lives in, in the member's namespace.
const NFT_TABLE: &str = "jepsen";

/// Runs a command (`ip`, `tc`, `mount`), failing with what it printed.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Net {
    /// Creates the bridge and one namespace per member. Needs root.
    pub fn create(nodes: usize) -> Result<Net, String> {
        remove_orphans();
        let tag = std::process::id();
        let net = Net {
            tag,
            subnet: free_subnet(tag),
            nodes,
            blackholes: Vec::new(),
            shaped: Vec::new(),
            lossy: Vec::new(),
        };
        // Built step by step; a failure part way drops `net`, which
        // removes what exists.
        let bridge = net.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", net.address(254));
        run("ip", &["addr", "add", &gateway, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for index in 0..nodes {
            let namespace = net.namespace(index);
            let (outer, inner) = net.veth(index);
            run("ip", &["netns", "add", &namespace])?;
            run(
                "ip",
                &[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
            )?;
            run("ip", &["link", "set", &inner, "netns", &namespace])?;
            run("ip", &["link", "set", &outer, "master", &bridge, "up"])?;
            let address = format!("{}/24", net.member_address(index));
            net.inside(index, "ip", &["addr", "add", &address, "dev", &inner])?;
            net.inside(index, "ip", &["link", "set", &inner, "up"])?;
            net.inside(index, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{PREFIX}b{}", self.tag)
    }

    /// The (bridge side, member side) names of member `index`'s veth.
    fn veth(&self, index: usize) -> (String, String) {
        (
            format!("{PREFIX}{}r{index}", self.tag),
            format!("{PREFIX}{}n{index}", self.tag),
        )
    }

    pub fn namespace(&self, index: usize) -> String {
        format!("{PREFIX}{}-{index}", self.tag)
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, host)
    }

    pub fn member_address(&self, index: usize) -> Ipv4Addr {
        self.address(index as u8 + 1)
    }

    /// Runs a command inside member `index`'s namespace.
    fn inside(&self, index: usize, program: &str, args: &[&str]) -> Result<(), String> {
        let namespace = self.namespace(index);
        let mut all = vec!["netns", "exec", namespace.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Member `from` can no longer send to member `to`.
    pub fn cut(&mut self, from: usize, to: usize) -> Result<(), String> {
        let route = format!("{}/32", self.member_address(to));
        self.inside(from, "ip", &["route", "add", "blackhole", &route])?;
        self.blackholes.push((from, to));
        Ok(())
    }

    /// Delay (with jitter) and loss on everything member `index` sends,
    /// with netem; on a kernel without it, a slow link and random loss.
    /// Returns what stood in for netem, if anything did.
    pub fn shape(
        &mut self,
        index: usize,
        delay_ms: u32,
        jitter_ms: u32,
        loss_percent: u32,
    ) -> Result<Option<String>, String> {
        let (_, inner) = self.veth(index);
        let (delay, jitter, loss) = (
            format!("{delay_ms}ms"),
            format!("{jitter_ms}ms"),
            format!("{loss_percent}%"),
        );
        let netem = self.inside(
            index,
            "tc",
            &[
                "qdisc", "replace", "dev", &inner, "root", "netem", "delay", &delay, &jitter,
                "loss", &loss,
            ],
        );
        match netem {
            Ok(()) => {
                self.shaped.push(index);
                Ok(None)
            }
            Err(error) if error.contains("qdisc kind is unknown") => {
                self.inside(
                    index,
                    "tc",
                    &[
                        "qdisc",
                        "replace",
                        "dev",
                        &inner,
                        "root",
                        "tbf",
                        "rate",
                        SLOW_LINK_RATE,
                        "burst",
                        SLOW_LINK_BURST,
                        "latency",
                        &delay,
                    ],
                )?;
                self.shaped.push(index);
                let chain = "{ type filter hook output priority 0; }";
                let below = loss_percent.to_string();
                self.inside(index, "nft", &["add", "table", "inet", NFT_TABLE])?;
                self.lossy.push(index);
                self.inside(
                    index,
                    "nft",
                    &["add", "chain", "inet", NFT_TABLE, "out", chain],
                )?;
                self.inside(
                    index,
                    "nft",
                    &[
                        "add", "rule", "inet", NFT_TABLE, "out", "numgen", "random", "mod", "100",
                        "<", &below, "drop",
                    ],
                )?;
                Ok(Some(format!(
                    "no netem in this kernel: tbf {SLOW_LINK_RATE} queueing up to {delay}, nftables dropping {loss}"
                )))
            }
            Err(error) => Err(error),
        }
    }

    /// Removes every cut, qdisc and loss rule; tries them all, and fails
    /// with the first error.
    pub fn heal(&mut self) -> Result<(), String> {
        let mut results = Vec::new();
        for (from, to) in std::mem::take(&mut self.blackholes) {
            let route = format!("{}/32", self.member_address(to));
            results.push(self.inside(from, "ip", &["route", "del", "blackhole", &route]));
        }
        for index in std::mem::take(&mut self.shaped) {
            let (_, inner) = self.veth(index);
            results.push(self.inside(index, "tc", &["qdisc", "del", "dev", &inner, "root"]));
        }
        for index in std::mem::take(&mut self.lossy) {
            results.push(self.inside(index, "nft", &["delete", "table", "inet", NFT_TABLE]));
        }
        results.into_iter().collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for index in 0..self.nodes {
            // Deleting the namespace deletes the veth end in it and so the
            // pair.
            let _ = run("ip", &["netns", "del", &self.namespace(index)]);
            let _ = run("ip", &["link", "del", &self.veth(index).0]);
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}

/// The third octet of a 10.213.x.0/24 that no interface here uses, trying
/// from `tag % 250` on (so concurrent runs start apart; two runs starting
/// at the same instant could still pick one subnet).
fn free_subnet(tag: u32) -> u8 {
    let used = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    let start = tag % SUBNETS;
    (0..SUBNETS)
        .map(|n| ((start + n) % SUBNETS) as u8)
        .find(|octet| !used.contains(&format!(" 10.213.{octet}.")))
        .unwrap_or(start as u8)
}

/// How many 10.213.x.0/24 subnets runs choose from.
const SUBNETS: u32 = 250;

/// Removes namespaces and bridges of runs whose process is gone.
fn remove_orphans() {
    let Ok(output) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return;
    };
    let links = String::from_utf8_lossy(&output.stdout).into_owned();
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let namespaces = String::from_utf8_lossy(&output.stdout).into_owned();
    let alive = |tag: &str| Path::new(&format!("/proc/{tag}")).exists();
    for namespace in namespaces.lines().filter_map(|line| line.split(' ').next()) {
        let Some(rest) = namespace.strip_prefix(PREFIX) else {
            continue;
        };
        if let Some((tag, _)) = rest.split_once('-') {
            if tag.chars().all(|c| c.is_ascii_digit()) && !alive(tag) {
                let _ = run("ip", &["netns", "del", namespace]);
            }
        }
    }
    for link in links.lines().filter_map(|line| line.split(": ").nth(1)) {
        let name = link.split('@').next().unwrap_or(link);
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let tag: String = rest
            .trim_start_matches('b')
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if !tag.is_empty() && !alive(&tag) {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}
