//! Table of wrong services files: each must be rejected with the exact line of the offending
//! node and a reason that says what is wrong.

use fiberlb_shared::services::parse_services;

/// (what, file, expected line, expected column if checked, substring of the reason)
type Case = (
    &'static str,
    &'static str,
    usize,
    Option<usize>,
    &'static str,
);

const CASES: &[Case] = &[
    (
        "syntax error: unclosed flow sequence",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners: [\n      {port: 80\n",
        6,
        None,
        "YAML syntax error",
    ),
    (
        "syntax error: bad indentation",
        "pools:\n  - name: a\n   backends: []\n",
        3,
        None,
        "YAML syntax error",
    ),
    (
        "unknown top-level field lists the allowed ones",
        "# comment\ntunel:\n  source_v4: 10.0.0.1\n",
        2,
        Some(1),
        "unknown field `tunel` in the top level; allowed fields: tunnel, loadbalancers, pools",
    ),
    (
        "unknown backend field",
        "pools:\n  - name: a\n    backends:\n      - address: 10.0.0.1\n        port: 80\n        wieght: 3\n",
        6,
        Some(9),
        "unknown field `wieght` in backend; allowed fields: address, port, weight, mac, state, healthy",
    ),
    (
        "unknown field inside a flow mapping",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, prot: 80}\n",
        4,
        Some(29),
        "unknown field `prot`",
    ),
    (
        "quoted number",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: \"80\"}\n",
        4,
        Some(35),
        "backend port must be an integer, got the string \"80\"; remove the quotes",
    ),
    (
        "list where a number goes",
        "pools:\n  - name: a\n    backends:\n      - address: 10.0.0.1\n        port: [80]\n",
        5,
        Some(15),
        "backend port must be an integer, got a list",
    ),
    (
        "bad IPv4 VIP",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.300\n",
        3,
        Some(10),
        "vip `10.0.0.300` is not an IP address",
    ),
    (
        "bad backend IPv6 address",
        "pools:\n  - name: a\n    backends:\n      - {address: \"fd00::1::2\", port: 80}\n",
        4,
        None,
        "backend address `fd00::1::2` is not an IP address",
    ),
    (
        "bad MAC",
        "pools:\n  - name: a\n    backends:\n      - address: 10.0.0.1\n        port: 80\n        mac: \"02:00:00:00:01\"\n",
        6,
        Some(14),
        "backend mac `02:00:00:00:01` is not a MAC address",
    ),
    (
        "listener port 0",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - {port: 0, protocol: tcp, mode: nat, pool: a}\n",
        5,
        Some(16),
        "listener port 0 out of range 1-65535",
    ),
    (
        "backend port too large",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 70000}\n",
        4,
        None,
        "backend port 70000 out of range 1-65535",
    ),
    (
        "negative weight",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 80, weight: -1}\n",
        4,
        None,
        "backend weight -1 out of range 0-10000",
    ),
    (
        "weight out of range",
        "pools:\n  - name: a\n    backends:\n      - address: 10.0.0.1\n        port: 80\n      - address: 10.0.0.2\n        port: 80\n        weight: 20000\n",
        8,
        Some(17),
        "backend weight 20000 out of range 0-10000",
    ),
    (
        "unknown protocol lists the allowed values",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - port: 80\n        protocol: sctp\n        mode: nat\n        pool: a\n",
        6,
        Some(19),
        "unknown protocol `sctp`; allowed: tcp, udp",
    ),
    (
        "unknown mode",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: proxy, pool: a}\n",
        5,
        None,
        "unknown mode `proxy`; allowed: dsr, tunnel, nat",
    ),
    (
        "unknown encap",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: tunnel, encap: vxlan, pool: a}\n",
        5,
        None,
        "unknown encap `vxlan`; allowed: ipip, gue",
    ),
    (
        "encap on a nat listener",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, encap: gue, pool: a}\n",
        5,
        None,
        "encap applies only to mode tunnel",
    ),
    (
        "unknown algorithm",
        "pools:\n  - name: a\n    algorithm: round-robin\n",
        3,
        Some(16),
        "unknown algorithm `round-robin`; allowed: maglev, maglev-source-ip",
    ),
    (
        "unknown state",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 80, state: paused}\n",
        4,
        None,
        "unknown backend state `paused`; allowed: enabled, drained, disabled",
    ),
    (
        "healthy not a bool",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 80, healthy: yes}\n",
        4,
        None,
        "healthy must be true or false, got `yes`",
    ),
    (
        "table size not prime",
        "pools:\n  - name: a\n    table_size: 65536\n",
        3,
        Some(17),
        "not prime",
    ),
    (
        "missing required field",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, pool: a}\n      - port: 81\n        protocol: tcp\n        pool: a\n",
        6,
        Some(9),
        "listener is missing required field `mode`",
    ),
    (
        "duplicate key",
        "pools:\n  - name: a\n    algorithm: maglev\n    algorithm: maglev-source-ip\n",
        4,
        Some(5),
        "duplicate field `algorithm` in pool",
    ),
    (
        "duplicate pool name",
        "pools:\n  - name: a\n  - name: b\n  - name: a\n",
        4,
        Some(11),
        "duplicate pool name \"a\" (first used on line 2)",
    ),
    (
        "duplicate load balancer name",
        "loadbalancers:\n  - {name: web, vip: 10.0.0.1}\n  - {name: web, vip: 10.0.0.2}\n",
        3,
        None,
        "duplicate load balancer name \"web\"",
    ),
    (
        "listener names an unknown pool (pools after load balancers)",
        "loadbalancers:\n  - name: web\n    vip: 10.0.0.1\n    listeners:\n      - port: 80\n        protocol: tcp\n        mode: nat\n        pool: wbe\npools:\n  - name: web\n",
        8,
        Some(15),
        "listener \"web/80/tcp\" names pool \"wbe\", which is not defined under pools; defined: web",
    ),
    (
        "two listeners on the same vip/port/protocol",
        "loadbalancers:\n  - name: a\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, pool: p}\n  - name: b\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: udp, mode: nat, pool: q}\n      - {port: 80, protocol: tcp, mode: dsr, pool: p}\npools:\n  - name: p\n  - name: q\n",
        10,
        Some(9),
        "10.0.0.1 port 80/tcp is already used by listener \"a/80/tcp\" (line 5)",
    ),
    (
        "duplicate backend in a pool",
        "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 80}\n      - {address: 10.0.0.2, port: 80}\n      - {address: 10.0.0.1, port: 80, weight: 5}\n",
        6,
        None,
        "backend 10.0.0.1:80 appears twice in pool \"a\" (first on line 4)",
    ),
    (
        "nat ambiguity from ServiceSet::validate",
        "loadbalancers:\n  - name: a\n    vip: 10.0.0.1\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, pool: web}\n  - name: b\n    vip: 10.0.0.2\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, pool: web}\npools:\n  - name: web\n    backends:\n      - {address: 10.1.0.1, port: 8080}\n",
        9,
        None,
        "reached through two listeners (\"a/80/tcp\" and \"b/80/tcp\")",
    ),
    (
        "dsr family mismatch points at the backend",
        "loadbalancers:\n  - name: a\n    vip: 10.0.0.1\n    listeners:\n      - {port: 53, protocol: udp, mode: dsr, pool: dns}\npools:\n  - name: dns\n    backends:\n      - {address: 10.1.0.1, port: 53}\n      - address: \"fd00::53\"\n        port: 53\n",
        10,
        Some(18),
        "dsr mode needs backends of the VIP's address family; backend fd00::53 is not",
    ),
    (
        "nat family mismatch",
        "pools:\n  - name: p\n    backends:\n      - {address: 10.1.0.1, port: 80}\nloadbalancers:\n  - name: v6\n    vip: \"fd00::1\"\n    listeners:\n      - {port: 80, protocol: tcp, mode: nat, pool: p}\n",
        4,
        None,
        "nat mode needs backends of the VIP's address family; backend 10.1.0.1 is not",
    ),
    (
        "tunnel without a source address points at the listener's mode",
        "loadbalancers:\n  - name: t\n    vip: 10.0.0.1\n    listeners:\n      - port: 443\n        protocol: tcp\n        mode: tunnel\n        pool: p\npools:\n  - name: p\n    backends:\n      - {address: 10.1.0.1, port: 443}\n",
        7,
        Some(15),
        "tunnel mode to v4 backends needs a tunnel source address (tunnel.source_v4)",
    ),
    (
        "tunnel source of the wrong family",
        "tunnel:\n  source_v4: \"fd00::1\"\n",
        2,
        Some(14),
        "tunnel.source_v4 must be a unicast IPv4 address, got fd00::1",
    ),
    (
        "gue port 0",
        "tunnel:\n  gue_port: 0\n",
        2,
        Some(13),
        "tunnel.gue_port 0 out of range 1-65535",
    ),
    (
        "multicast VIP",
        "loadbalancers:\n  - name: web\n    vip: 224.0.0.1\n",
        3,
        Some(10),
        "vip 224.0.0.1 is not a usable unicast address",
    ),
    (
        "load balancer name with a slash",
        "loadbalancers:\n  - name: a/b\n    vip: 10.0.0.1\n",
        2,
        Some(11),
        "load balancer name \"a/b\" is not allowed",
    ),
    (
        "top level is a list",
        "- name: web\n",
        1,
        Some(1),
        "a services file is a mapping with the fields tunnel, loadbalancers, pools",
    ),
    (
        "backends is a mapping",
        "pools:\n  - name: a\n    backends:\n      address: 10.0.0.1\n",
        4,
        Some(7),
        "`backends` must be a list, got a mapping",
    ),
    (
        "two documents",
        "pools: []\n---\npools: []\n",
        2,
        None,
        "a second YAML document starts here",
    ),
    (
        "merge keys",
        "pools:\n  - &base {name: a}\n  - <<: *base\n    name: b\n",
        3,
        Some(5),
        "merge keys (<<) are not supported",
    ),
    (
        "custom tag",
        "pools:\n  - name: !secret a\n",
        2,
        None,
        "unsupported YAML tag",
    ),
];

#[test]
fn every_bad_file_names_its_line_and_reason() {
    let mut failures = Vec::new();
    for &(what, text, line, column, reason) in CASES {
        match parse_services(text) {
            Ok(set) => failures.push(format!("{what}: accepted, got {set:?}")),
            Err(e) => {
                let ok_line = e.line == Some(line);
                let ok_col = column.is_none() || e.column == column;
                let ok_reason = e.message.contains(reason);
                if !(ok_line && ok_col && ok_reason) {
                    failures.push(format!(
                        "{what}: expected line {line} col {column:?} containing {reason:?}, got line {:?} col {:?}: {}",
                        e.line, e.column, e.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(CASES.len() >= 20);
}

#[test]
fn display_is_compiler_style() {
    let text = "pools:\n  - name: a\n    backends:\n      - {address: 10.0.0.1, port: 80, weight: 20000}\n";
    let e = parse_services(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 4, column 47: backend weight 20000 out of range 0-10000"
    );
}
