#!/usr/bin/env bash
# The README's first command: sets the machine up, builds fiberlb in release and replays a
# sample capture through the forwarding pipeline, then shows what came out: the counters,
# the rewritten packets as tshark decodes them, and scapy's independent check.
#   sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/setup.sh
else
  echo "demo.sh: not root, skipping package setup (tshark and python3-scapy must be installed)"
fi
echo "==> building (release)"
cargo build --release --workspace --bins
work=$(mktemp -d /tmp/fiberlb-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo
echo "==> a sample capture of client traffic to examples/services.yaml"
target/release/sample_capture "$work/in.pcap"
echo
echo "==> fiberlb-dataplane replay --services examples/services.yaml --config examples/replay.toml"
target/release/fiberlb-dataplane replay --services examples/services.yaml \
  --config examples/replay.toml --in "$work/in.pcap" --out "$work/out.pcap"
echo
if command -v tshark >/dev/null; then
  echo "==> what came out (tshark; first packet of each kind)"
  tshark -r "$work/out.pcap" -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE \
    -o udp.try_heuristic_first:TRUE -d udp.port==6080,ip \
    -T fields -E separator='|' -e frame.number -e eth.dst -e ip.src -e ip.dst -e ipv6.src -e ipv6.dst \
    -e tcp.dstport -e udp.dstport -e ip.ttl -e _ws.col.Protocol -e _ws.expert.message 2>/dev/null |
    awk -F'|' 'BEGIN{printf "%-4s %-17s %-34s %-34s %-6s %-6s %s\n","#","dst MAC","src","dst","dport","ttl","proto/expert"}
      { key=$4$6 "|" $10 "|" $7$8; split($9,t,","); if (!(key in s)) { s[key]=1;
        printf "%-4s %-17s %-34s %-34s %-6s %-6s %s %s\n",$1,$2,$3$5,$4$6,$7$8,t[length(t)],$10,$11 } }' | head -25
  echo
fi
if /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
  echo "==> scapy's independent check of every packet (checksums, headers per mode)"
  /usr/bin/python3 scripts/check_capture.py "$work/out.pcap"
fi
