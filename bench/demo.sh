#!/bin/sh
# demo.sh: two ovlsw nodes in network namespaces joined by a veth "underlay",
# one overlay network (VNI 42, 10.91.0.0/24) across them, a ping from one
# to the other, the status of a node, and everything torn down again.
# Usage: sudo sh bench/demo.sh [path/to/ovlsw]
set -eu

OVLSW=${1:-bin/ovlsw}
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates network namespaces): sudo make demo" >&2; exit 1; }
[ -x "$OVLSW" ] || { echo "demo: $OVLSW not found: run make build first" >&2; exit 1; }

id=$$
h1=ovlsw-demo-$id-h1
h2=ovlsw-demo-$id-h2
s1=/run/ovlsw/demo-$id-h1.sock
s2=/run/ovlsw/demo-$id-h2.sock
p1= p2=

cleanup() {
	trap - EXIT INT TERM
	for p in $p1 $p2; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $p1 $p2; do wait "$p" 2>/dev/null || true; done
	ip netns del "$h1" 2>/dev/null || true
	ip netns del "$h2" 2>/dev/null || true
	# The nodes keep the cluster secret and their join keys for a restart;
	# the demo's cluster is gone.
	for s in "$s1" "$s2"; do rm -f "${s%.sock}.secret" "${s%.sock}.joinkey"; done
	echo "demo: torn down"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_socket() { # path: poll for the control socket, 10 s at most
	i=0
	until [ -S "$1" ]; do
		i=$((i + 1))
		[ $i -le 100 ] || { echo "demo: ovlsw did not start (no $1)" >&2; exit 1; }
		sleep 0.1
	done
}

echo "demo: two hosts $h1 and $h2 with an underlay 192.168.91.0/24"
ip netns add "$h1"
ip netns add "$h2"
ip link add "ovd$id"a type veth peer name "ovd$id"b
ip link set "ovd$id"a netns "$h1" name ul0
ip link set "ovd$id"b netns "$h2" name ul0
ip -n "$h1" addr add 192.168.91.1/24 dev ul0
ip -n "$h2" addr add 192.168.91.2/24 dev ul0
for h in "$h1" "$h2"; do ip -n "$h" link set lo up; ip -n "$h" link set ul0 up; done

echo "demo: ovlsw up on each host, overlay 10.91.0.0/24 on VNI 42; host2 joins host1 by gossip"
ip netns exec "$h1" "$OVLSW" up --vni 42 --bind 192.168.91.1 \
	--address 10.91.0.1/24 --socket "$s1" --name host1 &
p1=$!
wait_socket "$s1"
# host1 founded the cluster and printed its join token; host2 joins with it.
tok=$("$OVLSW" token --socket "$s1")
ip netns exec "$h2" "$OVLSW" up --vni 42 --bind 192.168.91.2 --join 192.168.91.1 --token "$tok" \
	--address 10.91.0.2/24 --socket "$s2" --name host2 &
p2=$!
wait_socket "$s2"
# host2 is up once its socket answers; host1 forwards to it once gossip has
# told host1's switch that host2 serves VNI 42 (a fraction of a second):
# wait until host1's status lists host2's VTEP as a peer, 10 s at most.
i=0
until "$OVLSW" status --socket "$s1" | grep -q '^192\.168\.91\.2:4789 '; do
	i=$((i + 1))
	[ $i -le 100 ] || { echo "demo: host2 never joined host1's cluster" >&2; exit 1; }
	sleep 0.1
done

echo "demo: ping 10.91.0.2 from host1 across the overlay"
ip netns exec "$h1" ping -c 3 -i 0.2 -W 2 10.91.0.2

echo "demo: ovlsw status on host1"
"$OVLSW" status --socket "$s1"
echo
echo "demo: ovlsw fdb on host1"
"$OVLSW" fdb --socket "$s1"
echo
echo "demo: ovlsw peers on host1"
"$OVLSW" peers --socket "$s1"
