// Package metrics exposes a node's counters in the Prometheus text format
// (ovlsw up --metrics). Its collector reads the switch's, the FDB's and
// gossip's existing counters when scraped: the data path does no work for
// metrics, and a node nobody scrapes pays nothing.
//
// Design notes:
//   - client_golang is the Prometheus project's own library: its text
//     encoder and registry checks (duplicate series, label consistency)
//     are what promtool expects, and a hand-written exposition would have
//     to re-learn them. The collector is "unchecked" in its terms only
//     where label values are discovered at scrape time (ports, peers).
//   - Labels are bounded: port names (one per attached endpoint), peer
//     VTEP addresses (one per member), VNIs, drop reasons, FDB origins and
//     member states. Nothing is labelled by MAC or IP of an endpoint.
//   - Counters that are sums over ports (per VNI) fall when a port goes:
//     Prometheus's rate() takes that for a counter reset, which is what it
//     is.
//   - Plain counter groups (proxy answers, gossip messages, and the DNS
//     answers the resolver will add) are tables of (name, help, getter):
//     a new counter is one line.
package metrics

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// Namespace prefixes every metric name.
const Namespace = "ovlsw"

// Sources are the getters the collector calls at each scrape. Each may be
// nil (that group is left out); each must be safe to call concurrently
// with the data path and must not block for long.
type Sources struct {
	// Switch returns the switch's ports, peers, drops and offloads.
	Switch func() vtep.Stats
	// FDB returns the forwarding table's entries by origin and the MACs
	// refused at the learning limits.
	FDB func() (byOrigin map[fdb.Origin]int, refused uint64)
	// Gossip returns the agent's counters and members; ok false while
	// gossip does not run.
	Gossip func() (st gossip.Stats, members []gossip.MemberInfo, ok bool)
	// KeyEpoch returns the gossip key epoch; ok false without a cluster
	// secret.
	KeyEpoch func() (epoch uint64, ok bool)
	// Extra are further counter tables (capture, events, DNS), each read
	// at scrape time.
	Extra []Table
}

// Table is a group of plain counters read from one snapshot: Snapshot is
// called once a scrape and each Counter's Get reads its field.
type Table struct {
	Snapshot func() any
	Counters []Counter
}

// Counter is one unlabelled counter of a Table: its full name (with the
// namespace and _total), help text and getter from the table's snapshot.
type Counter struct {
	Name, Help string
	Get        func(snapshot any) uint64
}

// BuildInfo labels ovlsw_build_info.
type BuildInfo struct {
	Version string
}

// Collector is a prometheus.Collector over a node's counters.
type Collector struct {
	src   Sources
	build BuildInfo

	buildInfo *prometheus.Desc
	offload   *prometheus.Desc

	portRxFrames, portRxBytes, portTxFrames, portTxBytes *prometheus.Desc
	portUp                                               *prometheus.Desc
	peerRxFrames, peerRxBytes, peerTxFrames, peerTxBytes *prometheus.Desc
	vniRxFrames, vniRxBytes, vniTxFrames, vniTxBytes     *prometheus.Desc
	vniPorts                                             *prometheus.Desc
	drops                                                *prometheus.Desc
	proxy                                                table

	fdbEntries, fdbRefused *prometheus.Desc

	members  *prometheus.Desc
	gossip   []gossipCounter
	gossipG  []gossipGauge
	keyEpoch *prometheus.Desc

	extra []table
}

type table struct {
	snap  func() any
	descs []*prometheus.Desc
	gets  []func(any) uint64
}

func newTable(t Table) table {
	out := table{snap: t.Snapshot}
	for _, c := range t.Counters {
		out.descs = append(out.descs, prometheus.NewDesc(c.Name, c.Help, nil, nil))
		out.gets = append(out.gets, c.Get)
	}
	return out
}

func (t *table) describe(ch chan<- *prometheus.Desc) {
	for _, d := range t.descs {
		ch <- d
	}
}

func (t *table) collect(ch chan<- prometheus.Metric) {
	if t.snap != nil {
		t.collectFrom(ch, t.snap())
	}
}

// collectFrom sends the table's counters read from snapshot s.
func (t *table) collectFrom(ch chan<- prometheus.Metric, s any) {
	for i, d := range t.descs {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(t.gets[i](s)))
	}
}

type gossipCounter struct {
	desc *prometheus.Desc
	get  func(*gossip.Stats) uint64
}

type gossipGauge struct {
	desc *prometheus.Desc
	get  func(*gossip.Stats) int
}

// ProxyCounters is the table of the ARP/ND proxy's counters; stats may be
// nil where the snapshot is handed over otherwise.
func ProxyCounters(stats func() vtep.ProxyStats) Table {
	var snap func() any
	if stats != nil {
		snap = func() any { return stats() }
	}
	get := func(f func(vtep.ProxyStats) uint64) func(any) uint64 {
		return func(s any) uint64 { return f(s.(vtep.ProxyStats)) }
	}
	return Table{
		Snapshot: snap,
		Counters: []Counter{
			{Namespace + "_proxy_arp_answers_total", "ARP requests the proxy answered on the asking port.", get(func(s vtep.ProxyStats) uint64 { return s.ARPAnswered })},
			{Namespace + "_proxy_nd_answers_total", "IPv6 neighbour solicitations the proxy answered on the asking port.", get(func(s vtep.ProxyStats) uint64 { return s.NDAnswered })},
			{Namespace + "_proxy_unknown_flooded_total", "ARP/ND questions about unknown addresses flooded.", get(func(s vtep.ProxyStats) uint64 { return s.Flooded })},
			{Namespace + "_proxy_unknown_dropped_total", "ARP/ND questions about unknown addresses dropped by the flood policy.", get(func(s vtep.ProxyStats) uint64 { return s.Dropped })},
			{Namespace + "_proxy_gratuitous_sent_total", "Gratuitous ARPs and unsolicited neighbour advertisements sent after an address moved.", get(func(s vtep.ProxyStats) uint64 { return s.GratuitousSent })},
		},
	}
}

// New returns a collector over src.
func New(src Sources, build BuildInfo) *Collector {
	n := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	c := &Collector{src: src, build: build,
		buildInfo: n("build_info", "A constant 1, labelled with the version of ovlsw and of Go it was built with.", "version", "goversion"),
		offload:   n("offload_info", "A constant 1, labelled with the fast path's state: the TAP ports' offloads, the VXLAN socket's, and userspace GRO.", "tap", "udp", "gro"),

		portRxFrames: n("port_receive_frames_total", "Frames read from a local port (sent by its container or host).", "port", "vni"),
		portRxBytes:  n("port_receive_bytes_total", "Bytes of the frames read from a local port.", "port", "vni"),
		portTxFrames: n("port_transmit_frames_total", "Frames written to a local port.", "port", "vni"),
		portTxBytes:  n("port_transmit_bytes_total", "Bytes of the frames written to a local port.", "port", "vni"),
		portUp:       n("port_up", "1 while a local port's reader runs, 0 once its device failed.", "port", "vni"),
		peerRxFrames: n("peer_receive_frames_total", "Inner frames received from a remote VTEP.", "peer"),
		peerRxBytes:  n("peer_receive_bytes_total", "Bytes of the inner frames received from a remote VTEP.", "peer"),
		peerTxFrames: n("peer_transmit_frames_total", "Inner frames sent to a remote VTEP.", "peer"),
		peerTxBytes:  n("peer_transmit_bytes_total", "Bytes of the inner frames sent to a remote VTEP.", "peer"),
		vniRxFrames:  n("vni_receive_frames_total", "Frames read from the local ports of a VNI (the sum over its ports: falls when a port goes).", "vni"),
		vniRxBytes:   n("vni_receive_bytes_total", "Bytes of the frames read from the local ports of a VNI.", "vni"),
		vniTxFrames:  n("vni_transmit_frames_total", "Frames written to the local ports of a VNI.", "vni"),
		vniTxBytes:   n("vni_transmit_bytes_total", "Bytes of the frames written to the local ports of a VNI.", "vni"),
		vniPorts:     n("vni_ports", "Local ports of a VNI.", "vni"),
		drops:        n("drops_total", "Frames and datagrams the switch dropped, by reason.", "reason"),

		fdbEntries: n("fdb_entries", "Forwarding table entries, by origin.", "origin"),
		fdbRefused: n("fdb_refused_total", "MACs not learned because a port or VNI was at its learning limit."),

		members:  n("gossip_members", "Cluster members as this node sees them (itself included), by state.", "state"),
		keyEpoch: n("gossip_key_epoch", "The epoch of the gossip key in use (rises by one at each rotation)."),
	}
	c.proxy = newTable(ProxyCounters(nil)) // read from the switch's snapshot
	gc := func(name, help string, get func(*gossip.Stats) uint64) {
		c.gossip = append(c.gossip, gossipCounter{n(name, help), get})
	}
	gc("gossip_messages_received_total", "Gossip broadcasts received (bindings, leaves and networks).", func(s *gossip.Stats) uint64 { return s.MessagesIn })
	gc("gossip_messages_sent_total", "Gossip broadcasts sent, every retransmission counted.", func(s *gossip.Stats) uint64 { return s.MessagesOut })
	gc("gossip_message_received_bytes_total", "Bytes of the gossip broadcasts received.", func(s *gossip.Stats) uint64 { return s.BytesIn })
	gc("gossip_message_sent_bytes_total", "Bytes of the gossip broadcasts sent.", func(s *gossip.Stats) uint64 { return s.BytesOut })
	gc("gossip_states_received_total", "Push/pull state exchanges received.", func(s *gossip.Stats) uint64 { return s.StatesIn })
	gc("gossip_states_sent_total", "Push/pull state exchanges sent.", func(s *gossip.Stats) uint64 { return s.StatesOut })
	gc("gossip_malformed_total", "Gossip payloads dropped as malformed.", func(s *gossip.Stats) uint64 { return s.Malformed })
	gc("gossip_stale_total", "Gossip records from an older process of their owner.", func(s *gossip.Stats) uint64 { return s.Stale })
	gc("gossip_queue_pruned_total", "Broadcasts pruned from a full queue.", func(s *gossip.Stats) uint64 { return s.QueuePruned })
	gg := func(name, help string, get func(*gossip.Stats) int) {
		c.gossipG = append(c.gossipG, gossipGauge{n(name, help), get})
	}
	gg("gossip_queued_broadcasts", "Broadcasts waiting in the gossip queue.", func(s *gossip.Stats) int { return s.Queued })
	gg("gossip_local_bindings", "Bindings this node owns.", func(s *gossip.Stats) int { return s.LocalBindings })
	gg("gossip_remote_bindings", "Bindings of live members.", func(s *gossip.Stats) int { return s.RemoteBindings })
	gg("gossip_parked_bindings", "Bindings of members not alive, not installed.", func(s *gossip.Stats) int { return s.Parked })
	gg("gossip_duplicate_macs", "MACs flagged by duplicate detection.", func(s *gossip.Stats) int { return s.Duplicates })
	gg("gossip_networks", "Live networks.", func(s *gossip.Stats) int { return s.Networks })
	gg("gossip_network_conflicts", "Networks left out for a conflict.", func(s *gossip.Stats) int { return s.NetworkConflicts })
	for _, t := range src.Extra {
		c.extra = append(c.extra, newTable(t))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.offload,
		c.portRxFrames, c.portRxBytes, c.portTxFrames, c.portTxBytes, c.portUp,
		c.peerRxFrames, c.peerRxBytes, c.peerTxFrames, c.peerTxBytes,
		c.vniRxFrames, c.vniRxBytes, c.vniTxFrames, c.vniTxBytes, c.vniPorts, c.drops,
		c.fdbEntries, c.fdbRefused, c.members, c.keyEpoch} {
		ch <- d
	}
	c.proxy.describe(ch)
	for _, g := range c.gossip {
		ch <- g.desc
	}
	for _, g := range c.gossipG {
		ch <- g.desc
	}
	for i := range c.extra {
		c.extra[i].describe(ch)
	}
}

// Collect implements prometheus.Collector: one snapshot of each source.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, c.build.Version, runtime.Version())
	if c.src.Switch != nil {
		st := c.src.Switch()
		c.collectSwitch(&st, gauge, counter)
		c.proxy.collectFrom(ch, st.Proxy)
	}
	if c.src.FDB != nil {
		by, refused := c.src.FDB()
		for _, o := range fdb.Origins() {
			gauge(c.fdbEntries, float64(by[o]), o.String())
		}
		counter(c.fdbRefused, refused)
	}
	if c.src.Gossip != nil {
		if st, members, ok := c.src.Gossip(); ok {
			states := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
			for _, m := range members {
				states[m.State]++
			}
			for s, k := range states {
				gauge(c.members, float64(k), s)
			}
			for _, g := range c.gossip {
				counter(g.desc, g.get(&st))
			}
			for _, g := range c.gossipG {
				gauge(g.desc, float64(g.get(&st)))
			}
		}
	}
	if c.src.KeyEpoch != nil {
		if e, ok := c.src.KeyEpoch(); ok {
			gauge(c.keyEpoch, float64(e))
		}
	}
	for i := range c.extra {
		c.extra[i].collect(ch)
	}
}

func (c *Collector) collectSwitch(st *vtep.Stats, gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	gro := "off"
	if st.Offload.GRO {
		gro = "on"
	}
	tap := st.Offload.TAP
	if tap == "" {
		tap = "none"
	}
	gauge(c.offload, 1, tap, st.Offload.UDP, gro)
	type vniSum struct {
		vtep.Traffic
		ports int
	}
	vnis := map[uint32]*vniSum{}
	seen := map[string]bool{}
	for _, p := range st.Ports {
		name := p.Name
		if seen[name] { // names are unique in practice; a clash must not break the scrape
			name += "#" + strconv.Itoa(p.ID)
		}
		seen[name] = true
		vni := strconv.FormatUint(uint64(p.VNI), 10)
		counter(c.portRxFrames, p.RxFrames, name, vni)
		counter(c.portRxBytes, p.RxBytes, name, vni)
		counter(c.portTxFrames, p.TxFrames, name, vni)
		counter(c.portTxBytes, p.TxBytes, name, vni)
		up := 1.0
		if p.Error != "" {
			up = 0
		}
		gauge(c.portUp, up, name, vni)
		v := vnis[p.VNI]
		if v == nil {
			v = &vniSum{}
			vnis[p.VNI] = v
		}
		v.RxFrames += p.RxFrames
		v.RxBytes += p.RxBytes
		v.TxFrames += p.TxFrames
		v.TxBytes += p.TxBytes
		v.ports++
	}
	for id, v := range vnis {
		vni := strconv.FormatUint(uint64(id), 10)
		counter(c.vniRxFrames, v.RxFrames, vni)
		counter(c.vniRxBytes, v.RxBytes, vni)
		counter(c.vniTxFrames, v.TxFrames, vni)
		counter(c.vniTxBytes, v.TxBytes, vni)
		gauge(c.vniPorts, float64(v.ports), vni)
	}
	for _, p := range st.Peers {
		a := p.Addr.String()
		counter(c.peerRxFrames, p.RxFrames, a)
		counter(c.peerRxBytes, p.RxBytes, a)
		counter(c.peerTxFrames, p.TxFrames, a)
		counter(c.peerTxBytes, p.TxBytes, a)
	}
	for reason, n := range st.Drops {
		counter(c.drops, n, reason)
	}
}
