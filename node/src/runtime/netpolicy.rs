//! The provider's network policy for workloads, as iptables rules (both runtimes).
//!
//! Default deny: a workload never reaches the host, private and shared address space
//! (10/8, 172.16/12, 192.168/16, 100.64/10), link-local (169.254/16, so also cloud metadata
//! at 169.254.169.254), loopback, multicast, nor SMTP ports (25, 465, 587) anywhere, nor the
//! provider's other blocked ports. What is left is the public Internet, and only when the
//! provider allows egress and the workload asked for it; an optional allow-list narrows it
//! further. Nothing unsolicited comes in: replies to the workload's own connections only.
//! IPv6 is not routed to workloads at all, so it needs no rules.
//!
//! Docker workload networks get one chain per network (`AGORA-D<tag>`) on their bridge,
//! installed when the network is created, before any container runs on it.
//!
//! Each sandbox gets its own chain `AGORA-<tag>` (tag: 12 hex digits of its id's hash),
//! jumped to from `FORWARD` for packets in and out of its host-side interface, two `INPUT`
//! rules dropping what it sends to the host, and one `nat` rule masquerading its traffic.
//! All are installed in one `iptables-restore --noflush` transaction and removed the same
//! way when the workload ends, so none leak (the tests count them before and after).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::{RuntimeError, WorkloadId};

/// Destinations always denied, as CIDR text.
pub const DENIED_NETS: [&str; 9] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// Ports always denied (SMTP: submission, smtps, smtp).
pub const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// What a workload may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether outbound connections to the public Internet are allowed at all.
    pub egress: bool,
    /// Destination ports denied on top of SMTP.
    pub blocked_ports: Vec<u16>,
    /// When not empty, egress only to these networks (`a.b.c.d/n`); the deny list still
    /// applies first.
    pub allow: Vec<(Ipv4Addr, u8)>,
}

/// A workload's place on the host network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The host-side interface.
    pub host_if: String,
    /// The workload's address.
    pub address: Ipv4Addr,
}

/// The per-workload tag used in chain and interface names.
pub fn tag(id: &WorkloadId) -> String {
    short_hash(id.as_str())
}

/// The chain holding a workload's rules.
pub fn chain(id: &WorkloadId) -> String {
    format!("AGORA-{}", tag(id))
}

/// The chain's rules for traffic in and out of interface `h` (shared by both runtimes).
fn filter_rules(s: &mut String, c: &str, h: &str, policy: &Policy) {
    let mut ports: Vec<u16> = SMTP_PORTS
        .iter()
        .chain(&policy.blocked_ports)
        .copied()
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let _ = writeln!(s, ":{c} - [0:0]");
    let _ = writeln!(
        s,
        "-A {c} -o {h} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let _ = writeln!(s, "-A {c} -o {h} -j DROP");
    for net in DENIED_NETS {
        let _ = writeln!(s, "-A {c} -i {h} -d {net} -j REJECT");
    }
    // multiport takes at most 15 ports per rule.
    for group in ports.chunks(15) {
        let list: Vec<String> = group.iter().map(u16::to_string).collect();
        for proto in ["tcp", "udp"] {
            let _ = writeln!(
                s,
                "-A {c} -i {h} -p {proto} -m multiport --dports {} -j REJECT",
                list.join(",")
            );
        }
    }
    if policy.egress {
        if policy.allow.is_empty() {
            let _ = writeln!(s, "-A {c} -i {h} -j ACCEPT");
        } else {
            for (net, len) in &policy.allow {
                let _ = writeln!(s, "-A {c} -i {h} -d {net}/{len} -j ACCEPT");
            }
        }
    }
    let _ = writeln!(s, "-A {c} -j REJECT");
    let _ = writeln!(s, "-I FORWARD 1 -i {h} -j {c}");
    let _ = writeln!(s, "-I FORWARD 1 -o {h} -j {c}");
    let _ = writeln!(s, "-I INPUT 1 -i {h} -j DROP");
    let _ = writeln!(
        s,
        "-I INPUT 1 -i {h} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
}

/// Removes what [`filter_rules`] added.
fn remove_filter_rules(s: &mut String, c: &str, h: &str) {
    let _ = writeln!(s, "-D FORWARD -i {h} -j {c}");
    let _ = writeln!(s, "-D FORWARD -o {h} -j {c}");
    let _ = writeln!(s, "-D INPUT -i {h} -j DROP");
    let _ = writeln!(
        s,
        "-D INPUT -i {h} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let _ = writeln!(s, "-F {c}");
    let _ = writeln!(s, "-X {c}");
}

/// `iptables-restore --noflush` input installing a sandbox's rules (and its NAT).
pub fn install_script(id: &WorkloadId, at: &Attachment, policy: &Policy) -> String {
    let mut s = String::from("*filter\n");
    filter_rules(&mut s, &chain(id), &at.host_if, policy);
    s.push_str("COMMIT\n*nat\n");
    let _ = writeln!(
        s,
        "-I POSTROUTING 1 -s {}/32 ! -o {} -j MASQUERADE",
        at.address, at.host_if
    );
    s.push_str("COMMIT\n");
    s
}

/// `iptables-restore --noflush` input removing what [`install_script`] installed.
pub fn remove_script(id: &WorkloadId, at: &Attachment) -> String {
    let mut s = String::from("*filter\n");
    remove_filter_rules(&mut s, &chain(id), &at.host_if);
    s.push_str("COMMIT\n*nat\n");
    let _ = writeln!(
        s,
        "-D POSTROUTING -s {}/32 ! -o {} -j MASQUERADE",
        at.address, at.host_if
    );
    s.push_str("COMMIT\n");
    s
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The Linux bridge of a Docker workload network (`agd` + 12 hex digits, set at creation
/// so rules can name it before any container runs).
pub fn bridge_name(network: &str) -> String {
    format!("agd{}", short_hash(network))
}

/// The chain holding a Docker workload network's rules.
pub fn bridge_chain(network: &str) -> String {
    format!("AGORA-D{}", short_hash(network))
}

/// Rules for a whole Docker workload network (Docker does its own NAT). They apply to every
/// container on it from before the first one starts, and live as long as the network.
pub fn bridge_install_script(network: &str, policy: &Policy) -> String {
    let mut s = String::from("*filter\n");
    filter_rules(
        &mut s,
        &bridge_chain(network),
        &bridge_name(network),
        policy,
    );
    s.push_str("COMMIT\n");
    s
}

/// Removes what [`bridge_install_script`] installed.
pub fn bridge_remove_script(network: &str) -> String {
    let mut s = String::from("*filter\n");
    remove_filter_rules(&mut s, &bridge_chain(network), &bridge_name(network));
    s.push_str("COMMIT\n");
    s
}

/// Runs `iptables-restore --noflush` with `script` (one atomic transaction).
///
/// # Errors
/// [`RuntimeError::Host`] with iptables' own message.
pub async fn restore(script: &str) -> Result<(), RuntimeError> {
    let mut cmd = tokio::process::Command::new("iptables-restore");
    cmd.arg("--noflush");
    super::command::run_with_input(cmd, script, "iptables-restore", Duration::from_secs(30)).await
}

/// Parses `a.b.c.d/n`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a.b.c.d/n"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("{text:?}: {e}"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("{text:?}: prefix length must be 0-32"))?;
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> WorkloadId {
        "w-1".parse().unwrap()
    }

    #[test]
    fn rules_deny_first_and_remove_exactly_what_they_add() {
        let at = Attachment {
            host_if: "ag0123456789ab".into(),
            address: Ipv4Addr::new(10, 213, 0, 2),
        };
        let policy = Policy {
            egress: true,
            blocked_ports: vec![22, 25],
            allow: vec![],
        };
        let install = install_script(&id(), &at, &policy);
        let deny = install.find("-d 10.0.0.0/8 -j REJECT").unwrap();
        let smtp = install.find("--dports 22,25,465,587").unwrap();
        let accept = install.find("-i ag0123456789ab -j ACCEPT").unwrap();
        assert!(deny < accept && smtp < accept);
        assert!(install.contains("169.254.0.0/16"));
        // Every -I has a matching -D.
        let remove = remove_script(&id(), &at);
        for line in install.lines().filter(|l| l.starts_with("-I ")) {
            let rule = line
                .split_whitespace()
                .filter(|w| *w != "1")
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                remove
                    .lines()
                    .any(|r| r.strip_prefix("-D ").is_some_and(|r| r == rule)),
                "{rule} is never removed"
            );
        }
        assert!(remove.contains(&format!("-X {}", chain(&id()))));
    }

    #[test]
    fn without_egress_or_outside_the_allow_list_everything_is_rejected() {
        let at = Attachment {
            host_if: "agx".into(),
            address: Ipv4Addr::new(10, 213, 0, 6),
        };
        let closed = install_script(
            &id(),
            &at,
            &Policy {
                egress: false,
                blocked_ports: vec![],
                allow: vec![],
            },
        );
        assert!(!closed.contains("-i agx -j ACCEPT"));
        let allow = install_script(
            &id(),
            &at,
            &Policy {
                egress: true,
                blocked_ports: vec![],
                allow: vec![parse_cidr("198.51.100.0/24").unwrap()],
            },
        );
        assert!(allow.contains("-i agx -d 198.51.100.0/24 -j ACCEPT"));
        assert!(!allow.contains("-i agx -j ACCEPT"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
    }

    #[test]
    fn tags_fit_interface_and_chain_names() {
        let t = tag(&"w-0123456789abcdef".parse().unwrap());
        assert_eq!(t.len(), 12);
        assert!(format!("ag{t}").len() <= 15);
        assert!(chain(&id()).len() <= 28);
    }
}
