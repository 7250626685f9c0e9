//! Config parsing: defaults, a full provider file, and one clear error per bad field.

use super::*;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(Path::new("node.toml"), text)
}

const PROVIDER: &str = r#"
data_dir = "/tmp/agora-node"
listen = ["/ip4/127.0.0.1/udp/7100/quic-v1", "/ip4/127.0.0.1/tcp/7100"]
bootstrap = ["/ip4/127.0.0.1/tcp/7000/p2p/12D3KooWKKqTYvz49x9WpH8xk8BuzgoqU8djZ1SgSFL1TAw1v8gS"]
http = "127.0.0.1:8100"
roles = ["provider", "gateway"]
region = "eu-west"
labels = { arch = "x86_64" }

[provider]
runtimes = ["sandbox", "docker"]
vcpu = 2.5
memory_mib = 4096
disk_mib = 20480
max_lease = "72h"
offer_ttl = "5m"
egress = true
tiers = ["standard"]
prices = { vcpu = 100, memory_gib = 10 }
"#;

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.roles, vec![Role::Gateway]);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.key_path(), c.data_dir.join("identity.key"));
    assert!(c.provider.is_none());
}

#[test]
fn full_provider_file() {
    let c = parse(PROVIDER).unwrap();
    assert!(c.has_role(Role::Provider) && c.has_role(Role::Gateway));
    let p = c.provider.unwrap();
    assert_eq!(p.vcpu_milli(), 2500);
    assert_eq!(p.runtimes, vec![Isolation::Sandbox, Isolation::Docker]);
    assert_eq!(p.max_lease, Duration::from_secs(72 * 3600));
    assert_eq!(p.blocked_ports, vec![25, 465, 587]);
    assert_eq!(Prices::from(p.prices).memory_gib, 10);
}

/// Each bad input names its field (and, for parse errors, the line).
#[test]
fn errors_name_the_field() {
    let cases = [
        ("listn = []", "listn"),
        ("listen = [\"not an address\"]", "listen"),
        ("listen = []", "listen"),
        ("bootstrap = [\"/ip4/127.0.0.1/tcp/7000\"]", "bootstrap"),
        ("http = \"localhost\"", "http"),
        ("roles = [\"miner\"]", "miner"),
        ("roles = [\"validator\"]", "genesis"),
        ("roles = [\"provider\"]", "provider"),
        ("region = \"EU West\"", "region"),
        ("[runtime]\nidle_timeout = \"0s\"", "runtime.idle_timeout"),
        ("[relay]\nsessions = 0", "relay.sessions"),
        ("[relay]\nsessions = 4\nper_agent = 5", "relay.per_agent"),
        ("[relay]\nidle = \"0s\"", "relay.idle"),
        ("[relay]\nhost = \"0.0.0.0\"", "relay.host"),
        ("[relay]\nhost = \"not an ip\"", "host"),
        ("[relay]\nrelays = true", "relays"),
        (
            "[runtime]\ncgroup_parent = \"../up\"",
            "runtime.cgroup_parent",
        ),
        (
            "[runtime]\nimages = [{ name = \"py\", tarball = \"/nonexistent.tar\" }]",
            "runtime.images.tarball",
        ),
        ("[runtime]\nretention = \"soon\"", "retention"),
        ("[runtime]\nwarm_sandboxes = 5000", "runtime.warm_sandboxes"),
        ("[runtime]\nwarm_sandboxes = -1", "warm_sandboxes"),
        (
            "[runtime]\nsandbox_pool = \"10.0.0.0\"",
            "runtime.sandbox_pool",
        ),
        (
            "[runtime]\nsandbox_pool = \"10.0.0.0/30\"",
            "runtime.sandbox_pool",
        ),
        (
            "[runtime]\negress_allow = [\"1.2.3.4/40\"]",
            "runtime.egress_allow",
        ),
        (
            "[runtime.docker]\nnode = \"Bad Name\"",
            "runtime.docker.node",
        ),
        (
            "[runtime.docker]\negress_subnet = \"nope\"",
            "runtime.docker.egress_subnet",
        ),
        ("[runtime.docker]\nnodes = \"x\"", "nodes"),
        ("[approvals]\ntimeout = \"0s\"", "approvals.timeout"),
        ("[approvals]\ntimeout = \"30days\"", "approvals.timeout"),
        (
            "[approvals]\nwebhook = \"ftp://host/x\"",
            "approvals.webhook",
        ),
        ("[approvals]\nwebhook = \"http://\"", "approvals.webhook"),
        ("[approvals]\nhook = \"http://127.0.0.1/\"", "hook"),
        (
            "[leases]\nprovider_lost_after = \"0s\"",
            "leases.provider_lost_after",
        ),
        (
            "[leases]\nprovider_lost_after = \"30days\"",
            "leases.provider_lost_after",
        ),
        (
            "[leases]\nprovider_lost_after = \"soon\"",
            "provider_lost_after",
        ),
    ];
    for (text, field) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(field), "{text}: {err}");
        assert!(err.starts_with("config node.toml"), "{err}");
    }
    let provider_cases = [
        ("vcpu = 2.5", "vcpu = 0.0", "provider.vcpu"),
        ("vcpu = 2.5", "vcpu = nan", "provider.vcpu"),
        (
            "offer_ttl = \"5m\"",
            "offer_ttl = \"1h\"",
            "provider.offer_ttl",
        ),
        ("max_lease = \"72h\"", "max_lease = \"soon\"", "max_lease"),
        (
            "runtimes = [\"sandbox\", \"docker\"]",
            "runtimes = [\"vm\"]",
            "vm",
        ),
        (
            "tiers = [\"standard\"]",
            "tiers = [\"Gold\"]",
            "provider.tiers",
        ),
        ("memory_mib = 4096", "memory_mib = 0", "provider.memory_mib"),
        ("memory_mib = 4096", "memory_mib = -1", "memory_mib"),
    ];
    for (from, to, field) in provider_cases {
        let text = PROVIDER.replace(from, to);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(field), "{to}: {err}");
    }
    // toml's messages carry the line number.
    let err = parse("region = \"x\"\nbogus = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, PROVIDER).unwrap();
    assert!(NodeConfig::load(&path).is_ok());
    let err = NodeConfig::load(&dir.path().join("nope.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn provider_config_becomes_a_valid_signed_offer() {
    use agora_protocol::{Ed25519, Offer, Signed, Timestamp};
    let c = parse(PROVIDER).unwrap();
    let p = c.provider.clone().unwrap();
    let identity = agora_attest::Identity::from_secret_bytes(&[4; 32]);
    let now = Timestamp::from_unix_secs(1_000);
    let images = BTreeMap::from([(
        Isolation::Sandbox,
        vec![agora_protocol::offer::ImageRef {
            name: "busybox".into(),
            digest: agora_protocol::Digest::of(b"rootfs"),
        }],
    )]);
    let signed = p
        .offer(
            &identity,
            7,
            now,
            &c,
            &images,
            vec!["127.0.0.1:7001".into()],
        )
        .unwrap();
    let back = Signed::<Offer>::decode(signed.as_bytes(), &Ed25519).unwrap();
    let o = back.body();
    assert_eq!(
        (o.seq, o.capacity.vcpu_milli, o.region.as_str()),
        (7, 2500, "eu-west")
    );
    assert_eq!(o.expires_at, Timestamp::from_unix_secs(1_300));
    assert!(o.has_image("busybox") && o.has_runtime(Isolation::Docker));
    assert_eq!(o.max_lease_secs, 72 * 3600);
    // A bad endpoint is refused rather than advertised.
    assert!(
        p.offer(&identity, 8, now, &c, &images, vec!["nowhere".into()])
            .is_err()
    );
}

#[test]
fn network_section_defaults_and_checks() {
    let c = parse("").unwrap();
    assert!(c.network.follows_all_regions());
    assert_eq!(c.network.target_peers, 8);
    let c = parse(
        "[network]\nkad_server = true\nfollow_regions = [\"eu-west\"]\nidle_timeout = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(c.network.kad_server, Some(true));
    assert!(!c.network.follows_all_regions());
    let err = parse("[network]\ntarget_peers = 500\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("network.target_peers"), "{err}");
    let err = parse("[network]\nfollow_regions = [\"a b\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("network.follow_regions"), "{err}");
    let err = parse("[network]\nbogus = 1\n").unwrap_err().to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn roles_parse_from_flags() {
    assert_eq!("validator".parse::<Role>(), Ok(Role::Validator));
    let err = "admin".parse::<Role>().unwrap_err();
    assert!(err.contains("provider, gateway, validator"), "{err}");
}

#[test]
fn signup_trust_and_tier_sections() {
    let c = parse("").unwrap();
    assert_eq!(c.signup.pow_bits, 16);
    assert_eq!(c.signup.per_address.burst, 10);
    assert_eq!(c.signup.per_address.interval, Duration::from_secs(6));
    assert!(c.trust.roots.is_empty());
    let tiers = c.tier_limits().unwrap();
    assert_eq!(
        tiers["contained"],
        agora_protocol::signup::TierLimits::contained()
    );
    assert!(tiers.contains_key("standard"));

    let dir = tempfile::tempdir().unwrap();
    let issuer = agora_attest::Identity::from_secret_bytes(&[8; 32]).agora_id();
    std::fs::write(dir.path().join("revoked.txt"), "# none yet\n").unwrap();
    let text = format!(
        r#"
[trust]
max_chain_len = 2
revocation_files = ["revoked.txt"]
[[trust.root]]
id = "{issuer}"
name = "Acme"

[signup]
pow_bits = 4
challenge_ttl = "30s"
max_outstanding = 50
per_address = "5/30s"
per_prefix = "120/h"
ipv6_prefix = 48

[tiers.contained]
max_memory_mib = 512
egress_ports = [443]
spending_limit_credits = 2

[tiers.pro]
max_vcpu = 8.5
max_lifetime = "30d"
egress_ports = "any"
max_file_mib = 2048
"#
    );
    let path = dir.path().join("node.toml");
    std::fs::write(&path, &text).unwrap();
    let c = NodeConfig::load(&path).unwrap();
    // Revocation lists are found relative to the config file.
    assert_eq!(
        c.trust.revocation_files,
        vec![dir.path().join("revoked.txt")]
    );
    assert_eq!(c.trust_store().unwrap().roots().count(), 1);
    assert_eq!(c.signup.pow_bits, 4);
    assert_eq!(c.signup.per_address.interval, Duration::from_secs(6));
    assert_eq!(c.signup.per_prefix.interval, Duration::from_secs(30));
    let tiers = c.tier_limits().unwrap();
    let contained = &tiers["contained"];
    assert_eq!(contained.max_memory_mib, 512);
    assert_eq!(contained.max_vcpu_milli, 1000);
    assert_eq!(contained.egress_ports, Some(vec![443]));
    assert_eq!(contained.spending_limit_credits, 2);
    let pro = &tiers["pro"];
    assert_eq!(pro.name, "pro");
    assert_eq!(pro.max_vcpu_milli, 8500);
    assert_eq!(pro.max_lifetime_secs, 30 * 86_400);
    assert_eq!(pro.egress_ports, None);
    assert_eq!(pro.max_file_bytes, 2048 * 1024 * 1024);
    // Unset fields of a new tier come from contained's built-in limits.
    assert_eq!(pro.max_memory_mib, 1024);
}

/// Each bad signup, trust or tier field is named.
#[test]
fn signup_trust_and_tier_errors_name_the_field() {
    let cases = [
        ("[signup]\npow_bits = 40", "signup.pow_bits"),
        ("[signup]\npow_bits = -1", "pow_bits"),
        ("[signup]\nchallenge_ttl = \"1s\"", "signup.challenge_ttl"),
        ("[signup]\nchallenge_ttl = \"soon\"", "challenge_ttl"),
        ("[signup]\nmax_outstanding = 0", "signup.max_outstanding"),
        ("[signup]\nper_address = \"lots\"", "per_address"),
        ("[signup]\nper_address = \"0/min\"", "per_address"),
        ("[signup]\nper_prefix = \"10/fortnight\"", "per_prefix"),
        ("[signup]\nper_prefix = \"5000/s\"", "per_prefix"),
        ("[signup]\nipv4_prefix = 4", "signup.ipv4_prefix"),
        ("[signup]\nipv6_prefix = 200", "signup.ipv6_prefix"),
        ("[signup]\nbogus = 1", "bogus"),
        ("[trust]\nmax_chain_len = 0", "trust.max_chain_len"),
        ("[trust]\nclock_skew_secs = 999999", "trust.clock_skew_secs"),
        (
            "[trust]\nrevocation_files = [\"/nonexistent/revoked.txt\"]",
            "trust.revocation_files",
        ),
        ("[[trust.root]]\nid = \"agora1nope\"\nname = \"x\"", "id"),
        ("[trust]\nroots = []", "roots"),
        ("[tiers.Gold]\nmax_vcpu = 1.0", "tiers.Gold"),
        ("[tiers.pro]\nmax_vcpu = 0.0", "tiers.pro.max_vcpu"),
        (
            "[tiers.pro]\nmax_memory_mib = 0",
            "tiers.pro.max_memory_mib",
        ),
        (
            "[tiers.pro]\nmax_lifetime = \"1s\"",
            "tiers.pro.max_lifetime",
        ),
        (
            "[tiers.pro]\nmax_concurrent = 0",
            "tiers.pro.max_concurrent",
        ),
        (
            "[tiers.pro]\negress_ports = [80, 25]",
            "tiers.pro.egress_ports",
        ),
        ("[tiers.pro]\negress_ports = \"some\"", "egress_ports"),
        ("[tiers.contained]\nvcpu = 1.0", "vcpu"),
    ];
    for (text, field) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(field), "{text}: {err}");
        assert!(err.starts_with("config node.toml"), "{err}");
    }
    // A revocation list with a bad line names the file and line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("revoked.txt"), "\nnot-a-revocation\n").unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[trust]\nrevocation_files = [\"revoked.txt\"]\n").unwrap();
    let err = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("trust.revocation_files") && err.contains("revoked.txt:2"),
        "{err}"
    );
}

#[test]
fn rates_parse() {
    let r = parse_rate("10/min").unwrap();
    assert_eq!((r.burst, r.interval), (10, Duration::from_secs(6)));
    let r = parse_rate(" 4 / 2s ").unwrap();
    assert_eq!((r.burst, r.interval), (4, Duration::from_millis(500)));
    assert_eq!(
        parse_rate("1/day").unwrap().interval,
        Duration::from_secs(86_400)
    );
    for bad in ["", "10", "x/min", "10/", "0/s", "2000/s", "1/2d"] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
}

#[test]
fn approvals_take_a_timeout_and_an_http_webhook() {
    let c =
        parse("[approvals]\ntimeout = \"5s\"\nwebhook = \"http://127.0.0.1:9000/x\"\n").unwrap();
    assert_eq!(c.approvals.timeout, Duration::from_secs(5));
    assert_eq!(
        c.approvals.webhook.as_deref(),
        Some("http://127.0.0.1:9000/x")
    );
    assert_eq!(parse("").unwrap().approvals, ApprovalSection::default());
}

#[test]
fn leases_take_a_provider_lost_after() {
    let c = parse("[leases]\nprovider_lost_after = \"3s\"\n").unwrap();
    assert_eq!(c.leases.provider_lost_after, Duration::from_secs(3));
    assert_eq!(
        parse("").unwrap().leases.provider_lost_after,
        Duration::from_secs(120)
    );
}
