#!/bin/sh
# The traffic topology of ../shared/docs/real-ipvs.md, built inside the guest (never on a host).
#
#   client 10.10.9.10 ── br-front ── director 10.10.9.1 + VIP 10.10.9.100
#                           │          director 10.10.0.1 ── br-back ── rs1 10.10.0.11
#                           │                                      └── rs2 10.10.0.12
#                           └── rsN "front" leg 10.10.9.1N (down; DR tests bring it up)
#
# Real servers route via the director (NAT) and hold the VIP on lo with arp_ignore=1,
# arp_announce=2 and rp_filter off, so direct routing works once their front leg is up and
# replies bypass the director. Tests run the engine in the "director" namespace.
# IPv6 (NAT): client fd00:9::10, director fd00:9::1 + VIP fd00:9::100 and fd00::1, rsN fd00::1N.
set -eu

modprobe ip_vs
modprobe ipip # tunl0 for IPIP reals
for br in br-front br-back; do
	ip link add $br type bridge
	ip link set $br up
done

# leg NS IFNAME BRIDGE ADDR: a veth from NS (named IFNAME there) into BRIDGE.
leg() {
	ip link add "$1-$2" type veth peer name "$2" netns "$1"
	ip link set "$1-$2" master "$3" up
	ip -n "$1" addr add "$4" dev "$2"
	ip -n "$1" link set "$2" up
}

for ns in client director rs1 rs2; do
	ip netns add $ns
	ip -n $ns link set lo up
done

leg client front br-front 10.10.9.10/24
ip -n client route add default via 10.10.9.1

leg director front br-front 10.10.9.1/24
ip -n director addr add 10.10.9.100/32 dev front
leg director back br-back 10.10.0.1/24
ip netns exec director sysctl -qw net.ipv4.ip_forward=1

for i in 1 2; do
	ns=rs$i
	leg $ns back br-back 10.10.0.1$i/24
	ip -n $ns route add default via 10.10.0.1
	leg $ns front br-front 10.10.9.1$i/24
	ip -n $ns link set front down
	ip -n $ns addr add 10.10.9.100/32 dev lo
	ip netns exec $ns sh -c '
		sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
		sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
		for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
		ip link set tunl0 up
		ip addr add 10.10.9.100/32 dev tunl0
		for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
	'
done

# IPv6, NAT only (no DAD: addresses are usable at once).
ip -n client addr add fd00:9::10/64 dev front nodad
ip -n client -6 route add default via fd00:9::1
ip -n director addr add fd00:9::1/64 dev front nodad
ip -n director addr add fd00:9::100/128 dev front nodad
ip -n director addr add fd00::1/64 dev back nodad
ip netns exec director sysctl -qw net.ipv6.conf.all.forwarding=1
for i in 1 2; do
	ip -n rs$i addr add fd00::1$i/64 dev back nodad
	ip -n rs$i -6 route add default via fd00::1
done
