//! The golden cases: input frame, expected verdict, expected output frame.

use super::*;

pub(crate) fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let c4 = |dport: u16| {
        FrameBuilder::tcp_v4(CLIENT4, VIP4, 40000, dport)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .tcp_flags(flags::SYN)
            .payload(b"hello")
    };
    let u4 = |dport: u16| {
        FrameBuilder::udp_v4(CLIENT4, VIP4, 40001, dport)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(b"query")
    };
    let c6 = |dport: u16| {
        FrameBuilder::tcp_v6(client6(), vip6(), 40000, dport)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .tcp_flags(flags::SYN)
            .payload(b"hello")
    };
    let u6 = |dport: u16| {
        FrameBuilder::udp_v6(client6(), vip6(), 40001, dport)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(b"query")
    };

    // ---- nat ----
    for (name, inb, out_dst, is_tcp, v6) in [
        (
            "nat ipv4 tcp syn",
            c4(P_NAT_TCP),
            NAT4.to_vec(),
            true,
            false,
        ),
        ("nat ipv4 udp", u4(P_NAT_UDP), NAT4.to_vec(), false, false),
        (
            "nat ipv6 tcp syn",
            c6(P_NAT_TCP),
            nat6().to_vec(),
            true,
            true,
        ),
        ("nat ipv6 udp", u6(P_NAT_UDP), nat6().to_vec(), false, true),
    ] {
        let mut exp = inb.clone().macs(MAC_LB, MAC_B_NAT).ttl(63);
        exp.ip = match exp.ip {
            Ip::V4 { src, .. } => Ip::V4 {
                src,
                dst: out_dst[..].try_into().unwrap(),
            },
            Ip::V6 { src, .. } => Ip::V6 {
                src,
                dst: out_dst[..].try_into().unwrap(),
            },
        };
        set_dport(&mut exp.transport, BACKEND_PORT);
        let _ = (is_tcp, v6);
        v.push(Case {
            name,
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    // Replies from the nat backend go back to the client from VIP:port.
    for (name, reply, vip, port) in [
        (
            "nat ipv4 tcp reply",
            FrameBuilder::tcp_v4(NAT4, CLIENT4, BACKEND_PORT, 40000)
                .tcp_flags(flags::SYN | flags::ACK)
                .payload(b"world"),
            Ip::V4 {
                src: VIP4,
                dst: CLIENT4,
            },
            P_NAT_TCP,
        ),
        (
            "nat ipv4 udp reply",
            FrameBuilder::udp_v4(NAT4, CLIENT4, BACKEND_PORT, 40001).payload(b"answer"),
            Ip::V4 {
                src: VIP4,
                dst: CLIENT4,
            },
            P_NAT_UDP,
        ),
        (
            "nat ipv6 tcp reply",
            FrameBuilder::tcp_v6(nat6(), client6(), BACKEND_PORT, 40000)
                .tcp_flags(flags::ACK)
                .payload(b"world"),
            Ip::V6 {
                src: vip6(),
                dst: client6(),
            },
            P_NAT_TCP,
        ),
        (
            "nat ipv6 udp reply",
            FrameBuilder::udp_v6(nat6(), client6(), BACKEND_PORT, 40001).payload(b"answer"),
            Ip::V6 {
                src: vip6(),
                dst: client6(),
            },
            P_NAT_UDP,
        ),
    ] {
        let input = reply.clone().macs(MAC_B_NAT, MAC_LB);
        let mut exp = reply.macs(MAC_LB, MAC_CLIENT_GW).ttl(63);
        exp.ip = vip;
        set_sport(&mut exp.transport, port);
        v.push(Case {
            name,
            input: input.build(),
            verdict: Verdict::ToClient,
            output: Some(exp.build()),
        });
    }
    // IPv4 UDP without checksum keeps a zero checksum through nat.
    {
        let inb = u4(P_NAT_UDP).udp_no_checksum();
        let mut exp = inb.clone().macs(MAC_LB, MAC_B_NAT).ttl(63);
        exp.ip = Ip::V4 {
            src: CLIENT4,
            dst: NAT4,
        };
        set_dport(&mut exp.transport, BACKEND_PORT);
        v.push(Case {
            name: "nat ipv4 udp zero checksum",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    // VLAN tag and IPv4 options survive nat.
    {
        let inb = c4(P_NAT_TCP).vlan(42).ipv4_options(&[0x94, 0x04, 0, 0]);
        let mut exp = inb.clone().macs(MAC_LB, MAC_B_NAT).ttl(63);
        exp.ip = Ip::V4 {
            src: CLIENT4,
            dst: NAT4,
        };
        set_dport(&mut exp.transport, BACKEND_PORT);
        v.push(Case {
            name: "nat ipv4 vlan + ip options",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    // IPv6 extension headers are skipped to find the ports.
    {
        let inb = c6(P_NAT_TCP)
            .ext(Ipv6Ext::HopByHop(vec![]))
            .ext(Ipv6Ext::DestOptions(vec![1, 2, 0, 0]));
        let mut exp = inb.clone().macs(MAC_LB, MAC_B_NAT).ttl(63);
        exp.ip = Ip::V6 {
            src: client6(),
            dst: nat6(),
        };
        set_dport(&mut exp.transport, BACKEND_PORT);
        v.push(Case {
            name: "nat ipv6 extension headers",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }

    // ---- dsr ----
    for (name, inb) in [
        ("dsr ipv4 tcp", c4(P_DSR)),
        ("dsr ipv4 udp", u4(P_DSR)),
        ("dsr ipv6 tcp", c6(P_DSR)),
        ("dsr ipv6 udp vlan", u6(P_DSR).vlan(7)),
    ] {
        let exp = inb.clone().macs(MAC_LB, MAC_B_DSR).ttl(63);
        v.push(Case {
            name,
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }

    // ---- tunnel ----
    {
        let inb = c4(P_IPIP).dont_frag(true).tos(0x28);
        let exp = ipv4_outer(&inb.clone().ttl(63), 4, TUN4, MAC_BACKEND_GW);
        v.push(Case {
            name: "tunnel ipip ipv4",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        // 802.1Q tag carried over to the encapsulated frame.
        let inb = c4(P_IPIP).vlan_tag(3, 300);
        let exp = ipv4_outer(&inb.clone().ttl(63), 4, TUN4, MAC_BACKEND_GW);
        v.push(Case {
            name: "tunnel ipip ipv4 vlan",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        let inb = u4(P_GUE);
        let h = hash_of(false, &CLIENT4, &VIP4, 40001, P_GUE, 17);
        let inner = inb.clone().ttl(63);
        let exp = FrameBuilder::udp_v4(TUNSRC4, TUN4, gue_sport(h), GUE_PORT)
            .udp_no_checksum()
            .macs(MAC_LB, MAC_BACKEND_GW)
            .payload(&inner.build_ip())
            .build();
        v.push(Case {
            name: "tunnel gue ipv4",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        let inb = c6(P_IPIP).tos(0x28);
        let h = hash_of(true, &client6(), &vip6(), 40000, P_IPIP, 6);
        let inner = inb.clone().ttl(63);
        let exp = FrameBuilder::new(
            Ip::V6 {
                src: tunsrc6(),
                dst: tun6(),
            },
            Transport::Raw { protocol: 41 },
        )
        .macs(MAC_LB, MAC_BACKEND_GW)
        .tos(0x28)
        .payload(&inner.build_ip())
        .build();
        let mut exp = exp;
        set_flow_label(&mut exp, 14, h as u32 & 0xfffff);
        v.push(Case {
            name: "tunnel ip6ip6",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        let inb = u6(P_GUE);
        let h = hash_of(true, &client6(), &vip6(), 40001, P_GUE, 17);
        let inner = inb.clone().ttl(63);
        let mut exp = FrameBuilder::udp_v6(tunsrc6(), tun6(), gue_sport(h), GUE_PORT)
            .macs(MAC_LB, MAC_BACKEND_GW)
            .payload(&inner.build_ip())
            .build();
        set_flow_label(&mut exp, 14, h as u32 & 0xfffff);
        v.push(Case {
            name: "tunnel gue ipv6 (udp checksum)",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        let inb = c4(P_IPIP).payload(&[0u8; 1460]);
        v.push(Case {
            name: "tunnel too big for mtu",
            input: inb.build(),
            verdict: Verdict::Drop(DropReason::TooBigForTunnel),
            output: None,
        });
    }

    // ---- ICMP about a VIP flow ----
    {
        // A backend's reply VIP:81 -> client hit a small MTU; the router tells the VIP.
        let quoted = FrameBuilder::tcp_v4(VIP4, CLIENT4, P_DSR, 40000)
            .tcp_flags(flags::ACK)
            .payload(&[0; 100])
            .build_ip();
        let inb = FrameBuilder::icmpv4(ROUTER4, VIP4, 3, 4, 1400)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(&quoted[..28]);
        let exp = inb.clone().macs(MAC_LB, MAC_B_DSR).ttl(63);
        v.push(Case {
            name: "icmp frag-needed to dsr backend",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    {
        let quoted = FrameBuilder::tcp_v4(VIP4, CLIENT4, P_NAT_TCP, 40000)
            .tcp_flags(flags::ACK)
            .payload(&[0; 100])
            .build_ip();
        let inb = FrameBuilder::icmpv4(ROUTER4, VIP4, 3, 4, 1400)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(&quoted[..28]);
        let exp_quoted = FrameBuilder::tcp_v4(NAT4, CLIENT4, BACKEND_PORT, 40000)
            .tcp_flags(flags::ACK)
            .payload(&[0; 100])
            .build_ip();
        let exp = FrameBuilder::icmpv4(ROUTER4, NAT4, 3, 4, 1400)
            .macs(MAC_LB, MAC_B_NAT)
            .ttl(63)
            .payload(&exp_quoted[..28]);
        v.push(Case {
            name: "icmp frag-needed to nat backend",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    {
        let quoted = FrameBuilder::udp_v6(vip6(), client6(), P_NAT_UDP, 40001)
            .payload(&[0; 100])
            .build_ip();
        let inb = FrameBuilder::icmpv6(router6(), vip6(), 2, 0, 1280)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(&quoted);
        let exp_quoted = FrameBuilder::udp_v6(nat6(), client6(), BACKEND_PORT, 40001)
            .payload(&[0; 100])
            .build_ip();
        let exp = FrameBuilder::icmpv6(router6(), nat6(), 2, 0, 1280)
            .macs(MAC_LB, MAC_B_NAT)
            .ttl(63)
            .payload(&exp_quoted);
        v.push(Case {
            name: "icmpv6 packet-too-big to nat backend",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp.build()),
        });
    }
    {
        let quoted = FrameBuilder::tcp_v6(vip6(), client6(), P_IPIP, 40000)
            .payload(&[0; 64])
            .build_ip();
        let inb = FrameBuilder::icmpv6(router6(), vip6(), 2, 0, 1280)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(&quoted);
        let h = hash_of(true, &client6(), &vip6(), 40000, P_IPIP, 6);
        let inner = inb.clone().ttl(63);
        let mut exp = FrameBuilder::new(
            Ip::V6 {
                src: tunsrc6(),
                dst: tun6(),
            },
            Transport::Raw { protocol: 41 },
        )
        .macs(MAC_LB, MAC_BACKEND_GW)
        .payload(&inner.build_ip())
        .build();
        set_flow_label(&mut exp, 14, h as u32 & 0xfffff);
        v.push(Case {
            name: "icmpv6 packet-too-big to tunnel backend",
            input: inb.build(),
            verdict: Verdict::ToBackend,
            output: Some(exp),
        });
    }
    {
        let inb = FrameBuilder::icmpv4(CLIENT4, VIP4, 8, 0, 0x0001_0001)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(b"ping");
        v.push(Case {
            name: "icmp echo to vip",
            input: inb.build(),
            verdict: Verdict::Drop(DropReason::IcmpNotForVip),
            output: None,
        });
    }
    {
        // Quoted packet from an address that is not the VIP the error was sent to.
        let quoted = FrameBuilder::tcp_v4(CLIENT4, VIP4, 40000, P_DSR).build_ip();
        let inb = FrameBuilder::icmpv4(ROUTER4, VIP4, 3, 4, 1400)
            .macs(MAC_CLIENT_GW, MAC_LB)
            .payload(&quoted[..28]);
        v.push(Case {
            name: "icmp about a non-vip flow",
            input: inb.build(),
            verdict: Verdict::Drop(DropReason::IcmpNotForVip),
            output: None,
        });
    }

    // ---- drops ----
    let good = c4(P_NAT_TCP).build();
    v.push(Case {
        name: "truncated ipv4 header",
        input: good[..30].to_vec(),
        verdict: Verdict::Drop(DropReason::Malformed),
        output: None,
    });
    v.push(Case {
        name: "truncated tcp header",
        input: good[..44].to_vec(),
        verdict: Verdict::Drop(DropReason::Malformed),
        output: None,
    });
    v.push(Case {
        name: "runt frame",
        input: vec![0; 10],
        verdict: Verdict::Drop(DropReason::Malformed),
        output: None,
    });
    {
        let mut bad = good.clone();
        bad[14] = 0x65; // version 6 in an IPv4 ethertype
        v.push(Case {
            name: "wrong ip version",
            input: bad,
            verdict: Verdict::Drop(DropReason::Malformed),
            output: None,
        });
    }
    {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&MAC_CLIENT_GW);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        v.push(Case {
            name: "arp",
            input: arp,
            verdict: Verdict::Drop(DropReason::NotIp),
            output: None,
        });
    }
    v.push(Case {
        name: "no listener on port",
        input: c4(9999).build(),
        verdict: Verdict::Drop(DropReason::NoListener),
        output: None,
    });
    v.push(Case {
        name: "udp to tcp-only listener port",
        input: u4(P_NAT_TCP).build(),
        verdict: Verdict::Drop(DropReason::NoListener),
        output: None,
    });
    v.push(Case {
        name: "pool without backends",
        input: c4(P_EMPTY).build(),
        verdict: Verdict::Drop(DropReason::NoBackend),
        output: None,
    });
    v.push(Case {
        name: "ttl 1",
        input: c4(P_NAT_TCP).ttl(1).build(),
        verdict: Verdict::Drop(DropReason::TtlExceeded),
        output: None,
    });
    v.push(Case {
        name: "hop limit 1",
        input: c6(P_DSR).ttl(1).build(),
        verdict: Verdict::Drop(DropReason::TtlExceeded),
        output: None,
    });
    {
        let gre = FrameBuilder::new(
            Ip::V4 {
                src: CLIENT4,
                dst: VIP4,
            },
            Transport::Raw { protocol: 47 },
        )
        .macs(MAC_CLIENT_GW, MAC_LB)
        .payload(&[0; 8]);
        v.push(Case {
            name: "gre to vip",
            input: gre.build(),
            verdict: Verdict::Drop(DropReason::UnsupportedProtocol),
            output: None,
        });
    }
    v
}
